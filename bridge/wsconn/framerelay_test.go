package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
)

// relayFront starts a server that dials upstreamURL and relays each client
// to it with opts, and returns its ws:// URL.
func relayFront(t *testing.T, upstreamURL string, opts Options) string {
	t.Helper()
	return frontServer(t, upstreamURL, opts, func(ctx context.Context, r *Relay) { r.Run(ctx) })
}

// frontServer starts a server that dials upstreamURL for each client,
// upgrades the client and hands both legs, as a Relay with opts, to relay;
// it returns its ws:// URL.
func frontServer(t *testing.T, upstreamURL string, opts Options, relay func(context.Context, *Relay)) string {
	t.Helper()
	pool := NewBufferPool()
	dialer := NewDialer(DialOptions{BufferPool: pool, Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, err := Dial(ctx, dialer, upstreamURL, nil, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, err := NewUpgrader(false, pool).Upgrade(w, r, nil)
		if err != nil {
			u.Close()
			return
		}
		relay(ctx, NewRelay(c, u, opts))
	}))
	t.Cleanup(func() { cancel(); front.Close() })
	return "ws" + strings.TrimPrefix(front.URL, "http")
}

// forEachRelayMode runs test once per way a frame relay can run: on
// goroutines, and on an event loop where the platform has them.
func forEachRelayMode(t *testing.T, test func(t *testing.T, p *Poller)) {
	t.Run("goroutines", func(t *testing.T) { test(t, nil) })
	p, err := NewPoller(1)
	if errors.Is(err, errors.ErrUnsupported) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	t.Run("event loop", func(t *testing.T) { test(t, p) })
}

// acceptKey is the Sec-WebSocket-Accept value for key (RFC 6455 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// rawUpstream serves one WebSocket connection by hand: it reads the
// handshake, writes the 101 with line ends eol followed by greeting in the
// same write, and hands the connection to serve. It returns the ws:// URL.
func rawUpstream(t *testing.T, eol string, greeting []byte, serve func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		out := fmt.Appendf(nil, "HTTP/1.1 101 Switching Protocols%sUpgrade: websocket%sConnection: Upgrade%sSec-WebSocket-Accept: %s%s%s",
			eol, eol, eol, acceptKey(req.Header.Get("Sec-WebSocket-Key")), eol, eol)
		c.Write(append(out, greeting...)) // one write: the frames arrive with the 101
		serve(c, br)
	}()
	return "ws://" + ln.Addr().String() + "/"
}

// readUntilEOF is a rawUpstream serve function that drops what it reads.
func readUntilEOF(c net.Conn, br *bufio.Reader) { _, _ = io.Copy(io.Discard, br) }

// TestFrameRelayKeepsFramesSentWithThe101 checks that frames an upstream
// writes in the same TCP segment as its 101 response (a greeting) reach
// the client: gorilla's Dialer must not swallow them into its buffer,
// since the frame relay reads the connection directly. Go's HTTP parser
// accepts bare LF line ends, so the header's end is found with those too.
func TestFrameRelayKeepsFramesSentWithThe101(t *testing.T) {
	forEachRelayMode(t, testFrameRelayKeepsFramesSentWithThe101)
}

func testFrameRelayKeepsFramesSentWithThe101(t *testing.T, p *Poller) {
	for _, eol := range []string{"\r\n", "\n"} {
		t.Run(fmt.Sprintf("eol %q", eol), func(t *testing.T) {
			greeting := appendFrame(nil, opText, []byte("hello, one"), false)
			greeting = appendFrame(greeting, opText, []byte("hello, two"), false)
			up := rawUpstream(t, eol, greeting, readUntilEOF)
			c, _, err := websocket.DefaultDialer.Dial(relayFront(t, up, Options{Poller: p, CloseTimeout: 100 * time.Millisecond}), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for _, want := range []string{"hello, one", "hello, two"} {
				if _, p, err := c.ReadMessage(); err != nil || string(p) != want {
					t.Fatalf("got %q %v, want %q", p, err, want)
				}
			}
		})
	}
}

// rawClient dials url (ws://) and does the client handshake by hand, so
// that a test can write any bytes as frames.
func rawClient(t *testing.T, url string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	return c, br
}

// readFrame reads one whole frame from br and returns its header and
// unmasked payload.
func readFrame(br *bufio.Reader) (frameHeader, []byte, error) {
	var hdr []byte
	for {
		h, complete, err := parseFrameHeader(hdr)
		if err != nil {
			return h, nil, err
		}
		if complete {
			p := make([]byte, h.length)
			if _, err := io.ReadFull(br, p); err != nil {
				return h, nil, err
			}
			maskBytes(h.key, 0, p)
			return h, p, nil
		}
		b, err := br.ReadByte()
		if err != nil {
			return h, nil, err
		}
		hdr = append(hdr, b)
	}
}

// lengthFrame is a masked frame header announcing length bytes, with
// length written as the 64-bit form whatever its size.
func lengthFrame(b0 byte, length uint64) []byte {
	h := []byte{b0, maskBit | 127, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}
	for i := range 8 {
		h[2+i] = byte(length >> (56 - 8*i))
	}
	return h
}

// TestFrameRelayLengthsCannotOverflow sends frames whose lengths, added to
// the message so far or to the header, overflow int64: the size limit must
// still hold (1009), and nothing may crash the process (a panic in a relay
// goroutine would end every connection).
func TestFrameRelayLengthsCannotOverflow(t *testing.T) {
	forEachRelayMode(t, testFrameRelayLengthsCannotOverflow)
}

func testFrameRelayLengthsCannotOverflow(t *testing.T, p *Poller) {
	// Masked first fragments (not FIN) of 10 and 500 zero bytes.
	first10 := append([]byte{opBinary, maskBit | 10, 1, 2, 3, 4}, make([]byte, 10)...)
	first500 := append([]byte{opBinary, maskBit | 126, 0x01, 0xF4, 1, 2, 3, 4}, make([]byte, 500)...)
	tests := []struct {
		name   string
		limit  int64
		frames [][]byte
		code   int // close code the client must get; 0: the relay ends without one
	}{
		{"continuation past int64 under a limit", 1 << 20,
			[][]byte{first10, lengthFrame(finBit|opContinuation, 1<<63-6)}, websocket.CloseMessageTooBig},
		{"limit bypass by wrapping the message size", 1000,
			[][]byte{first500, lengthFrame(finBit|opContinuation, 1<<63-1-1000)}, websocket.CloseMessageTooBig},
		{"one frame of 2^63-1 bytes without a limit", 0,
			[][]byte{lengthFrame(finBit|opBinary, 1<<63-1)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The upstream reports the close code it got when its
			// connection ends: the relay ended, and how.
			upstreamGot := make(chan int, 1)
			up := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) {
				code := websocket.CloseAbnormalClosure
				for {
					h, p, err := readFrame(br)
					if err != nil {
						break
					}
					if h.op == opClose {
						code, _, _ = parseClosePayload(p)
					}
				}
				upstreamGot <- code
			})
			c, br := rawClient(t, relayFront(t, up, Options{Poller: p, MaxMessageSize: tt.limit, CloseTimeout: 100 * time.Millisecond}))
			for _, f := range tt.frames {
				if _, err := c.Write(f); err != nil {
					t.Fatal(err)
				}
			}
			if tt.code == 0 {
				c.Close() // the sender gives up mid-frame; the relay must end cleanly
				select {
				case code := <-upstreamGot:
					if code != websocket.CloseGoingAway {
						t.Fatalf("upstream got %d, want 1001 client connection lost", code)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("the relay did not end after its client left mid-frame")
				}
				return
			}
			for {
				h, p, err := readFrame(br)
				if err != nil {
					t.Fatalf("no close frame: %v", err)
				}
				if h.op == opClose {
					if code, _, _ := parseClosePayload(p); code != tt.code {
						t.Fatalf("close %d, want %d", code, tt.code)
					}
					return
				}
			}
		})
	}
}

// TestFrameRelayKeepsSmallFramesWhole trickles a frame to the relay one
// byte per write: a frame that fits the read buffer must reach the
// upstream as one frame, not as a fragment per read.
func TestFrameRelayKeepsSmallFramesWhole(t *testing.T) {
	forEachRelayMode(t, testFrameRelayKeepsSmallFramesWhole)
}

func testFrameRelayKeepsSmallFramesWhole(t *testing.T, p *Poller) {
	frames := make(chan int, 1)
	up := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) {
		n := 0
		for {
			h, p, err := readFrame(br)
			if err != nil {
				return
			}
			n++
			if h.fin {
				if string(p) != strings.Repeat("x", 200) {
					n = -1
				}
				frames <- n
				return
			}
		}
	})
	c, _ := rawClient(t, relayFront(t, up, Options{Poller: p, CloseTimeout: 100 * time.Millisecond}))
	for _, b := range appendFrame(nil, opText, []byte(strings.Repeat("x", 200)), true) {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond) // let each byte be its own read
	}
	select {
	case n := <-frames:
		if n != 1 {
			t.Fatalf("the upstream got the message in %d frames (-1: wrong payload), want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream got no whole message")
	}
}

// deadlineConn records read deadlines and fails writes as told.
type deadlineConn struct {
	net.Conn
	readDeadlines []time.Time
	writes        [][]byte
	failWrite     error
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.readDeadlines = append(c.readDeadlines, t)
	return nil
}
func (c *deadlineConn) SetWriteDeadline(time.Time) error { return nil }
func (c *deadlineConn) Write(p []byte) (int, error) {
	if c.failWrite != nil {
		return len(p) / 2, c.failWrite
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

// TestLivenessDeadline checks the lazy deadline: data frames move it at
// most every sixteenth of the window, but a ping or pong always does, so
// that a pong right after a data frame still buys a whole window (a small
// pong_timeout would otherwise kill a leg that answers every ping).
func TestLivenessDeadline(t *testing.T) {
	dc := &deadlineConn{}
	r := newFrameRelay(dc, &deadlineConn{}, Options{PingInterval: 800 * time.Millisecond, PongTimeout: 10 * time.Millisecond})
	t0 := time.Now()
	r.extendDeadlineFrom(client, t0, false)
	r.extendDeadlineFrom(client, t0.Add(time.Millisecond), false)  // data, too soon: not moved
	r.extendDeadlineFrom(client, t0.Add(2*time.Millisecond), true) // pong: moved
	want := []time.Time{t0.Add(810 * time.Millisecond), t0.Add(812 * time.Millisecond)}
	if len(dc.readDeadlines) != 2 || !dc.readDeadlines[0].Equal(want[0]) || !dc.readDeadlines[1].Equal(want[1]) {
		t.Fatalf("deadlines %v, want %v", dc.readDeadlines, want)
	}
}

// TestFailedControlWriteBreaksTheLeg checks that a control frame cut off
// by a failed write stops every later write to that leg: after half a
// frame, anything more would be read as its rest.
func TestFailedControlWriteBreaksTheLeg(t *testing.T) {
	dc := &deadlineConn{failWrite: errors.New("i/o timeout")}
	w := &frameWriter{conn: dc, timeout: time.Second}
	if err := w.writeOwn(opPing, []byte("123"), time.Now().Add(time.Second)); err == nil {
		t.Fatal("the failed ping reported no error")
	}
	dc.failWrite = nil
	if err := w.write(appendFrame(nil, opText, []byte("hello"), false), time.Now()); err != nil || len(dc.writes) != 0 {
		t.Fatalf("a data frame went out after a cut ping: err %v, writes %q", err, dc.writes)
	}
	if err := w.writeOwn(opPong, nil, time.Now().Add(time.Second)); err == nil || len(dc.writes) != 0 {
		t.Fatalf("a control frame went out after a cut ping: err %v, writes %q", err, dc.writes)
	}
}

// TestFrameRelayByteExact relays messages of many sizes, around and far
// beyond the read buffer, text and binary, whole and fragmented, through a
// frame relay to an echo upstream and back, with pings from both legs in
// between, and checks every byte.
func TestFrameRelayByteExact(t *testing.T) { forEachRelayMode(t, testFrameRelayByteExact) }

func testFrameRelayByteExact(t *testing.T, p *Poller) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		answerPingsPatiently(c)
		for i := 0; ; i++ {
			mt, rd, err := c.NextReader()
			if err != nil {
				return
			}
			if i%3 == 0 {
				_ = c.WriteControl(websocket.PingMessage, []byte("up"), time.Now().Add(patientWrite))
			}
			wr, err := c.NextWriter(mt) // gorilla fragments what exceeds its buffer
			if err != nil {
				return
			}
			if _, err := bufio.NewReader(rd).WriteTo(wr); err != nil || wr.Close() != nil {
				return
			}
		}
	}))
	defer up.Close()
	front := relayFront(t, "ws"+strings.TrimPrefix(up.URL, "http"), Options{Poller: p, PingInterval: 50 * time.Millisecond, PongTimeout: time.Second})
	c, _, err := (&websocket.Dialer{WriteBufferSize: 1000}).Dial(front, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 125, 126, 65535, 65536, frameBufferSize - 14, frameBufferSize, frameBufferSize + 1, 3*frameBufferSize + 7, 1 << 20}
	for i := 0; i < 40; i++ {
		sizes = append(sizes, rng.IntN(3*frameBufferSize))
	}
	for i, size := range sizes {
		mt := websocket.BinaryMessage
		msg := make([]byte, size)
		if i%2 == 0 {
			mt = websocket.TextMessage
			for j := range msg {
				msg[j] = byte('a' + rng.IntN(26))
			}
			if size >= 3 {
				copy(msg[size/2:], "€") // a character split wherever the frames split
			}
		} else {
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(mt, msg); err != nil {
			t.Fatalf("message %d (%d bytes): write: %v", i, size, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		gt, got, err := c.ReadMessage()
		if err != nil || gt != mt || !bytes.Equal(got, msg) {
			t.Fatalf("message %d (%d bytes, type %d): got type %d, %d bytes, equal %v, err %v", i, size, mt, gt, len(got), bytes.Equal(got, msg), err)
		}
	}
}

// TestMaskBytes compares the word-at-a-time masking with the definition,
// at every start position and length around a word.
func TestMaskBytes(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for pos := 0; pos < 8; pos++ {
		for n := 0; n < 40; n++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(pos+i)%4]
			}
			if end := maskBytes(key, pos, b); end != pos+n || !bytes.Equal(b, want) {
				t.Fatalf("pos %d len %d: got %x, want %x", pos, n, b, want)
			}
		}
	}
}

// TestParseFrameHeader checks lengths, masks and the stateless protocol
// checks, and that a header cut short is reported incomplete.
func TestParseFrameHeader(t *testing.T) {
	tests := []struct {
		name   string
		frame  []byte
		length int64
		masked bool
		err    string
	}{
		{"short text", appendFrame(nil, opText, []byte("hi"), false), 2, false, ""},
		{"masked 126", appendFrame(nil, opBinary, make([]byte, 126), true), 126, true, ""},
		{"64-bit length", appendFrame(nil, opBinary, make([]byte, 70000), false), 70000, false, ""},
		{"length with the top bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, 0, false, "bad length"},
		{"RSV2", []byte{0xA1, 0}, 0, false, "RSV2 set"},
		{"opcode 3", []byte{0x83, 0}, 0, false, "bad opcode 3"},
		{"fragmented ping", []byte{0x09, 0}, 0, false, "FIN not set on control"},
		{"long pong", []byte{0x8A, 126, 0, 126}, 0, false, "len > 125 for control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for cut := 0; cut < min(len(tt.frame), maxFrameHeader); cut++ {
				h, complete, err := parseFrameHeader(tt.frame[:cut])
				if complete && cut < h.size || !complete && err != nil {
					t.Fatalf("cut at %d: complete %v err %v for a %d-byte header", cut, complete, err, h.size)
				}
			}
			h, complete, err := parseFrameHeader(tt.frame)
			if !complete {
				t.Fatal("incomplete")
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || h.length != tt.length || h.masked != tt.masked {
				t.Fatalf("got length %d masked %v err %v", h.length, h.masked, err)
			}
		})
	}
}

// TestFrameWriterSize guards the per-connection cost of a relay: every
// proxied WebSocket holds two frameWriters, idle or not, so a field that
// pushes the struct past the 176-byte size class costs 32 bytes or more
// on each.
func TestFrameWriterSize(t *testing.T) {
	if n := unsafe.Sizeof(frameWriter{}); n > 176 {
		t.Errorf("frameWriter is %d bytes, want at most 176 (group its small fields, or move rarely used ones out)", n)
	}
}
