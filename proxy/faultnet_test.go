package proxy_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tcpRelay forwards TCP connections from a loopback listener of its own to
// target, and can black-hole them: stop forwarding in both directions
// without closing anything, as a dead network path, a NAT that dropped its
// mapping or a frozen host does. Data read after that is dropped and the
// relay stops reading, so the sender's buffers fill up as they would on a
// dead path.
type tcpRelay struct {
	ln     net.Listener
	target string
	hole   chan struct{} // closed by blackhole
	done   chan struct{} // closed by close
	once   sync.Once
	wg     sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn
}

// newTCPRelay starts a relay to target (host:port); it is closed when the
// test ends.
func newTCPRelay(t testing.TB, target string) *tcpRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpRelay{ln: ln, target: target, hole: make(chan struct{}), done: make(chan struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// Addr is the relay's listening address.
func (r *tcpRelay) Addr() string { return r.ln.Addr().String() }

func (r *tcpRelay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.forward(out, in)
		go r.forward(in, out)
	}
}

// forward copies src to dst until either fails or the relay is
// black-holed. A clean end (EOF) is passed on as a half-close, a reset as
// a close.
func (r *tcpRelay) forward(dst, src net.Conn) {
	defer r.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.hole:
			<-r.done // drop what was read, and read no more
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_ = dst.(*net.TCPConn).CloseWrite()
			} else {
				dst.Close()
			}
			return
		}
	}
}

// blackhole stops all forwarding, now and for later connections.
func (r *tcpRelay) blackhole() { r.once.Do(func() { close(r.hole) }) }

// close closes the listener and every connection and waits for the
// relay's goroutines.
func (r *tcpRelay) close() {
	select {
	case <-r.done:
		return
	default:
	}
	close(r.done)
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// resetConn closes c abruptly: SO_LINGER 0 makes the kernel send a TCP RST
// instead of a FIN, as when a process is killed or a host reboots.
func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

// openFDs counts this process's open file descriptors; the test is skipped
// where /proc is not available.
func openFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// rssKiB is this process's resident set size in KiB, or 0 when unknown.
func rssKiB() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// eventually polls cond until it is true or timeout passes, backing off as
// goleak does. It is for conditions no event signals, such as the kernel
// releasing a file descriptor; it reports whether cond became true.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, 100*time.Millisecond)
	}
}

// mustEcho fails the test unless c echoes msg back.
func mustEcho(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("echo connection: write: %v", err)
	}
	_, p, err := c.ReadMessage()
	if err != nil || string(p) != msg {
		t.Fatalf("echo connection: got %q, %v, want %q", p, err, msg)
	}
}

// rawWS is a WebSocket client over a plain TCP connection, for writing
// frames no well-behaved library would send.
type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
}

// dialRaw performs a WebSocket handshake to addr for path by hand and
// returns the connection once the server has answered 101.
func dialRaw(t *testing.T, addr, path string) *rawWS {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var key [16]byte
	_, _ = rand.Read(key[:])
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, base64.StdEncoding.EncodeToString(key[:]))
	br := bufio.NewReader(conn)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d", resp.StatusCode)
	}
	return &rawWS{conn: conn, br: br}
}

// Frame header bits (RFC 6455 section 5.2).
const (
	finBit  = 0x80
	rsv1Bit = 0x40
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
)

// clientFrame encodes one frame: b0 is the first byte (FIN, RSV and
// opcode); the payload is masked when masked is true, as a client must.
func clientFrame(b0 byte, payload []byte, masked bool) []byte {
	f := []byte{b0, 0}
	switch n := len(payload); {
	case n < 126:
		f[1] = byte(n)
	case n <= 0xffff:
		f[1] = 126
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f[1] = 127
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if !masked {
		return append(f, payload...)
	}
	f[1] |= 0x80
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

// closePayload is a close frame payload: code and reason.
func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

func (c *rawWS) write(t *testing.T, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if _, err := c.conn.Write(f); err != nil {
			t.Fatalf("write frame: %v", err)
		}
	}
}

// readFrame reads one server frame (unmasked) and returns its opcode and
// payload.
func (c *rawWS) readFrame() (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if h[1]&0x80 != 0 {
		return 0, nil, errors.New("server sent a masked frame")
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(c.br, payload)
	return h[0] & 0x0f, payload, err
}

// readClose reads frames until a close frame and returns its code and
// reason; code is 0 if the connection ended without one.
func (c *rawWS) readClose(t *testing.T, timeout time.Duration) (code int, reason string) {
	t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(timeout))
	for {
		op, p, err := c.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no close frame within %s", timeout)
			}
			return 0, ""
		}
		if op != opClose {
			continue
		}
		if len(p) < 2 {
			return websocket.CloseNoStatusReceived, ""
		}
		return int(binary.BigEndian.Uint16(p)), string(p[2:])
	}
}

// closeCounter is a log writer that counts "connection closed" lines per
// connection id, closed_by and client code, without keeping the lines: a
// soak writes too many to hold. zerolog writes each event in one Write.
type closeCounter struct {
	mu       sync.Mutex
	byConn   map[string]int
	byCause  map[string]int
	byCode   map[int]int
	total    int
	warnings []string // the first few lines above info
	changed  chan struct{}
}

func newCloseCounter() *closeCounter {
	return &closeCounter{byConn: map[string]int{}, byCause: map[string]int{}, byCode: map[int]int{}, changed: make(chan struct{}, 1)}
}

func (c *closeCounter) Write(p []byte) (int, error) {
	var m struct {
		Level      string  `json:"level"`
		Message    string  `json:"message"`
		Conn       string  `json:"conn"`
		ClosedBy   string  `json:"closed_by"`
		ClientCode float64 `json:"client_code"`
	}
	if json.Unmarshal(p, &m) != nil {
		return len(p), nil
	}
	c.mu.Lock()
	if m.Message == "connection closed" {
		c.total++
		c.byConn[m.Conn]++
		c.byCause[m.ClosedBy]++
		c.byCode[int(m.ClientCode)]++
	} else if (m.Level == "warn" || m.Level == "error") && len(c.warnings) < 10 {
		c.warnings = append(c.warnings, strings.TrimSpace(string(p)))
	}
	c.mu.Unlock()
	select {
	case c.changed <- struct{}{}:
	default:
	}
	return len(p), nil
}

// waitTotal waits until n close lines were counted, or timeout passes,
// and returns the count.
func (c *closeCounter) waitTotal(n int, timeout time.Duration) int {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		total := c.total
		c.mu.Unlock()
		if total >= n {
			return total
		}
		select {
		case <-c.changed:
		case <-deadline.C:
			return total
		}
	}
}

// matching returns the lines collected so far for which match is true.
func (l *logLines) matching(match func(map[string]any) bool) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, m := range l.lines {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// waitCount waits until n lines match, failing the test if they do not
// within timeout, and returns how many match then.
func (l *logLines) waitCount(t *testing.T, timeout time.Duration, n int, match func(map[string]any) bool) int {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := len(l.matching(match)); got >= n {
			return got
		}
		select {
		case <-l.added:
		case <-deadline.C:
			t.Fatalf("%d matching log lines within %s, want %d", len(l.matching(match)), timeout, n)
			return 0
		}
	}
}
