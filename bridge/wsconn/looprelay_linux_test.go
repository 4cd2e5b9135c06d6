package wsconn

import (
	"bufio"
	"context"
	"encoding/binary"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() { c, _ := ln.Accept(); ch <- c }()
	x, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	y := <-ch
	t.Cleanup(func() { x.Close(); y.Close() })
	return x.(*net.TCPConn), y.(*net.TCPConn)
}

// setBuf sets the socket buffer option opt (SO_RCVBUF, SO_SNDBUF) of c.
func setBuf(t *testing.T, c *net.TCPConn, opt, n int) {
	rc, _ := c.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, opt, n) })
}

// rawRelay relays a raw client peer and a raw upstream peer; the relay's
// client leg sends through a small buffer to a client with a small one,
// so that a backlog forms as soon as the client stops reading.
func rawRelay(t *testing.T, opts Options) (cPeer, uPeer *net.TCPConn, results chan Result) {
	cPeer, cRelay := tcpPair(t)
	uRelay, uPeer := tcpPair(t)
	setBuf(t, cPeer, syscall.SO_RCVBUF, 4096)
	setBuf(t, cRelay, syscall.SO_SNDBUF, 4096)
	results = make(chan Result, 1)
	newFrameRelay(cRelay, uRelay, opts).Start(context.Background(), func(res Result) { results <- res })
	return cPeer, uPeer, results
}

// TestFINWhilePaused: the upstream sends 40 KB and ends TCP (no close
// frame) while the client is not reading, so the FIN's one edge comes
// while the direction waits for the client's backlog. The client must get
// every frame and then 1011 "upstream connection lost", and the relay
// must end.
func TestFINWhilePaused(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		cPeer, uPeer, results := rawRelay(t, Options{Poller: p, CloseTimeout: 200 * time.Millisecond})
		const n = 40
		msg := make([]byte, 1000)
		for i := range n {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := uPeer.Write(appendFrame(nil, opBinary, msg, false)); err != nil {
				t.Fatal(err)
			}
		}
		_ = uPeer.CloseWrite() // FIN, and keep reading (no RST)
		go func() { _, _ = bufio.NewReader(uPeer).WriteTo(discard{}) }()
		time.Sleep(300 * time.Millisecond) // the client is not reading meanwhile
		_ = cPeer.SetReadDeadline(time.Now().Add(3 * time.Second))
		br := bufio.NewReader(cPeer)
		for i := range n {
			h, pl, err := readFrame(br)
			if err != nil || h.op != opBinary || binary.BigEndian.Uint32(pl) != uint32(i) {
				t.Fatalf("frame %d: %v %v", i, h, err)
			}
		}
		h, pl, err := readFrame(br)
		if err != nil || h.op != opClose || len(pl) < 2 || int(binary.BigEndian.Uint16(pl)) != websocket.CloseInternalServerErr {
			t.Errorf("after the data: %+v %q %v, want close 1011", h, pl, err)
		}
		select {
		case <-results:
		case <-time.After(5 * time.Second):
			t.Fatal("the relay did not end (done never called)")
		}
	})
}

// discard is an io.Writer that drops everything.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// TestRefusalWhileBacklogged: the client leg has a backlog (the client is
// not reading) when the client sends a message over the limit. Once it
// reads, it must get the data and then the 1009 close frame: the shutdown
// of our side of TCP waits for the backlog.
func TestRefusalWhileBacklogged(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		cPeer, uPeer, results := rawRelay(t, Options{Poller: p, MaxMessageSize: 100, CloseTimeout: 2 * time.Second})
		go func() { _, _ = bufio.NewReader(uPeer).WriteTo(discard{}) }()
		const n = 400
		msg := make([]byte, 100) // at the limit
		for range n {
			if _, err := uPeer.Write(appendFrame(nil, opBinary, msg, false)); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		if _, err := cPeer.Write(appendFrame(nil, opBinary, make([]byte, 1000), true)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		_ = cPeer.SetReadDeadline(time.Now().Add(3 * time.Second))
		br := bufio.NewReader(cPeer)
		// Data until the relay ended (what follows it is dropped), then the close.
		h, pl, err := readFrame(br)
		for i := 0; err == nil && h.op == opBinary && i < n; i++ {
			h, pl, err = readFrame(br)
		}
		if err != nil || h.op != opClose || len(pl) < 2 || int(binary.BigEndian.Uint16(pl)) != websocket.CloseMessageTooBig {
			t.Fatalf("after the data: %+v %q %v, want close 1009", h, pl, err)
		}
		_ = cPeer.CloseWrite()
		select {
		case <-results:
		case <-time.After(5 * time.Second):
			t.Fatal("the relay did not end")
		}
	})
}

// TestClosedPollerRelaysOnGoroutines: a relay made after Poller.Close is
// relayed by goroutines, not closed.
func TestClosedPollerRelaysOnGoroutines(t *testing.T) {
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	front, results := startedFront(t, echoUpstream(t), Options{Poller: p})
	c, _, err := websocket.DefaultDialer.Dial(front, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.NetConn().SetDeadline(time.Now().Add(3 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.ReadMessage(); err != nil || string(got) != "hi" {
		t.Fatalf("echo: %q %v; result %+v", got, err, <-results)
	}
}
