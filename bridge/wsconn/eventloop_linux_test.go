package wsconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// startedFront is a relay front whose handler starts each relay with
// Start and returns, as the proxy does; every Result arrives on results.
func startedFront(t *testing.T, upstreamURL string, opts Options) (url string, results chan Result) {
	t.Helper()
	results = make(chan Result, 1000)
	url = frontServer(t, upstreamURL, opts, func(ctx context.Context, r *Relay) {
		r.Start(ctx, func(res Result) { results <- res })
	})
	return url, results
}

// echoUpstream is a WebSocket server that echoes every message; its URL is
// ws://.
func echoUpstream(t *testing.T) string {
	t.Helper()
	up := httptest.NewServer(echoHandler(nil))
	t.Cleanup(up.Close)
	return "ws" + strings.TrimPrefix(up.URL, "http")
}

// waitGoroutines waits until at most n goroutines run, and returns how
// many do.
func waitGoroutines(n int) int {
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return runtime.NumGoroutine()
}

// TestEventLoopHoldsNoGoroutinePerConnection opens connections relayed on
// an event loop and checks that they cost the proxy side no goroutine
// (the echo upstream has one per connection), that each still relays,
// and that every goroutine is gone once they have closed.
func TestEventLoopHoldsNoGoroutinePerConnection(t *testing.T) {
	p, err := NewPoller(2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	front, results := startedFront(t, echoUpstream(t), Options{Poller: p, PingInterval: time.Second, PongTimeout: time.Second})
	const n = 100
	before := runtime.NumGoroutine()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial(front, nil)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
	}
	for i, c := range conns {
		msg := []byte(strings.Repeat("x", i))
		_ = c.NetConn().SetDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if _, got, err := c.ReadMessage(); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("connection %d: got %d bytes, %v", i, len(got), err)
		}
	}
	// One goroutine per connection is the upstream's handler; the front
	// may still be finishing a handler or two.
	if grown := runtime.NumGoroutine() - before; grown > n+n/10 {
		t.Fatalf("%d connections added %d goroutines, want about %d (the upstream's)", n, grown, n)
	}
	for _, c := range conns {
		_ = c.WriteControl(websocket.CloseMessage, CloseMessage(websocket.CloseNormalClosure, "bye"), time.Now().Add(time.Second))
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseNormalClosure {
			t.Fatalf("close echo: %v", err)
		}
		c.Close()
	}
	for range n {
		select {
		case res := <-results:
			if res.ClosedBy != ClosedByClient || res.ClientCode != websocket.CloseNormalClosure || res.MsgsUp != 1 {
				t.Fatalf("result %+v", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a relay did not end")
		}
	}
	if after := waitGoroutines(before); after > before {
		t.Fatalf("%d goroutines after the connections closed, %d before", after, before)
	}
}

// TestEventLoopBackpressure floods a client that reads slowly through a
// small receive buffer, and stops reading for longer than the liveness
// window: every byte must arrive in order, and the connection must
// survive (the write timeout, not the window, bounds a backlog).
func TestEventLoopBackpressure(t *testing.T) {
	const total, size = 16 << 20, 60 << 10
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		// The client's pause backs this socket up for a second: a pong
		// must be let wait longer than gorilla's default.
		answerPingsPatiently(c)
		go func() { // answer pings and the close
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		}()
		msg := make([]byte, size)
		for i := 0; i < total/size; i++ {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
				return
			}
		}
		time.Sleep(5 * time.Second)
	}))
	defer up.Close()
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	front, results := startedFront(t, "ws"+strings.TrimPrefix(up.URL, "http"), Options{
		Poller: p, PingInterval: 50 * time.Millisecond, PongTimeout: 300 * time.Millisecond, WriteTimeout: 5 * time.Second,
	})
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, _, err := (&websocket.Dialer{NetDialContext: small.DialContext}).Dial(front, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < total/size; i++ {
		if i == 10 {
			time.Sleep(time.Second) // past the 350 ms liveness window
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, got, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(got) != size || binary.BigEndian.Uint32(got) != uint32(i) {
			t.Fatalf("message %d: %d bytes, number %d", i, len(got), binary.BigEndian.Uint32(got))
		}
	}
	select {
	case res := <-results:
		t.Fatalf("the relay ended: %+v", res)
	default:
	}
}

// TestPollerCloseEndsRelays closes a Poller with connections on it: both
// legs of each get 1001, every done function runs, and the loops' goroutines
// end.
func TestPollerCloseEndsRelays(t *testing.T) {
	before := runtime.NumGoroutine()
	p, err := NewPoller(2)
	if err != nil {
		t.Fatal(err)
	}
	front, results := startedFront(t, echoUpstream(t), Options{Poller: p})
	conns := make([]*websocket.Conn, 3)
	for i := range conns {
		if conns[i], _, err = websocket.DefaultDialer.Dial(front, nil); err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
		// A round trip: the relay is running, so it is on the loop (one
		// made after Close would run on goroutines).
		_ = conns[i].NetConn().SetDeadline(time.Now().Add(5 * time.Second))
		if err := conns[i].WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := conns[i].ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, _, err := c.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.CloseGoingAway {
			t.Fatalf("client got %v, want 1001", err)
		}
	}
	for range conns {
		select {
		case res := <-results:
			if res.ClosedBy != ClosedByShutdown {
				t.Fatalf("result %+v", res)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a done function did not run")
		}
	}
	for _, c := range conns {
		c.Close()
	}
	// The loops, the connections and the upstream's handlers are gone
	// (the test servers' own goroutines end at cleanup).
	if after := waitGoroutines(before + 2); after > before+2 {
		t.Fatalf("%d goroutines after Close, %d before", after, before)
	}
}
