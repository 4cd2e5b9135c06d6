//go:build linux

package wsconn

import (
	"bufio"
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// newTestPoller returns a Poller with one loop, closed at the test's end.
func newTestPoller(t *testing.T) *Poller {
	t.Helper()
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestLegsOnLoopHoldNoGoroutine opens legs read by an event loop and
// checks that they cost no goroutine (the echo upstream has one per
// connection), that each still reads and writes, and that every goroutine
// is gone once they have ended.
func TestLegsOnLoopHoldNoGoroutine(t *testing.T) {
	const n = 200
	url := echoUpstream(t)
	p := newTestPoller(t)
	before := runtime.NumGoroutine()
	legs := make([]*Leg, n)
	recs := make([]*legRecorder, n)
	for i := range legs {
		legs[i] = dialLeg(t, url, Options{PingInterval: time.Minute}, p)
		recs[i] = newLegRecorder()
		legs[i].Start(recs[i])
	}
	for i, l := range legs {
		if err := l.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
			t.Fatalf("leg %d: %v", i, err)
		}
		if m := recs[i].next(t); string(m.p) != "ping" {
			t.Fatalf("leg %d: got %q back", i, m.p)
		}
	}
	if grown := runtime.NumGoroutine() - before; grown > n+n/10 {
		t.Errorf("%d goroutines more for %d legs on a loop, want at most %d (the upstream's)", grown, n, n+n/10)
	}
	for _, l := range legs {
		l.Close(websocket.CloseNormalClosure, "")
	}
	for i, r := range recs {
		if end := r.ended(t); end.Code != websocket.CloseNormalClosure || end.Err != nil {
			t.Errorf("leg %d ended with %+v, want a clean 1000", i, end)
		}
	}
	if left := waitGoroutines(before); left > before {
		t.Errorf("%d goroutines left after the legs ended, want %d", left, before)
	}
}

// TestLegOnLoopBackpressure writes to an upstream that reads nothing:
// each write waits until the socket has taken its message, the backlog
// never holds more than one message, and a backlog that outlasts the
// write timeout ends the leg with a write timeout, not a ping timeout
// (the liveness window, shorter, is not judged while a backlog waits).
func TestLegOnLoopBackpressure(t *testing.T) {
	const size = 64 << 10
	release := make(chan struct{})
	url := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) {
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		<-release
	})
	defer close(release)
	p := newTestPoller(t)
	l := dialLeg(t, url, Options{PingInterval: 200 * time.Millisecond, PongTimeout: 200 * time.Millisecond, WriteTimeout: time.Second}, p)
	// Small socket buffers, so that the backlog forms within the first
	// writes: loopback's autotuned ones take megabytes, which on a loaded
	// machine can outlast the liveness window before a backlog waits
	// (the peer sends nothing, not even a pong).
	if err := unix.SetsockoptInt(l.lp.out.fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<10); err != nil {
		t.Fatal(err)
	}
	rec := newLegRecorder()
	l.Start(rec)
	msg := make([]byte, size)
	var err error
	maxBacklog := 0
	for i := 0; i < 10000 && err == nil; i++ {
		err = l.WriteMessage(websocket.BinaryMessage, msg)
		l.lp.out.mu.Lock()
		maxBacklog = max(maxBacklog, len(l.lp.out.pending))
		l.lp.out.mu.Unlock()
	}
	if !IsTimeout(err) {
		t.Fatalf("writes to a peer that reads nothing ended with %v, want a write timeout", err)
	}
	if maxBacklog > size+maxFrameHeader+1024 {
		t.Errorf("the backlog held %d bytes, want at most one %d-byte message and a few control frames", maxBacklog, size)
	}
	end := rec.ended(t)
	if end.ClosedBy != ClosedByError || end.Err == nil || !strings.Contains(end.Err.Error(), "write") {
		t.Errorf("got %+v, want error: a write timeout", end)
	}
	if err := l.WriteMessage(websocket.BinaryMessage, msg); err == nil {
		t.Error("a write to the ended leg succeeded")
	}
}

// TestPollerCloseEndsLegs closes a Poller with legs on it: each peer gets
// 1001 and each handler hears of the end before Close returns.
func TestPollerCloseEndsLegs(t *testing.T) {
	const n = 3
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	told := make(chan int, n)
	recs := make([]*legRecorder, n)
	for i := range recs {
		url := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) { told <- closeCodeFrom(br) })
		recs[i] = newLegRecorder()
		dialLeg(t, url, Options{}, p).Start(recs[i])
	}
	_ = p.Close()
	for i, r := range recs {
		select {
		case end := <-r.end:
			if end.Err == nil {
				t.Errorf("leg %d: got %+v, want an error (the connection was closed)", i, end)
			}
		default:
			t.Errorf("leg %d: Close returned before its handler heard of the end", i)
		}
	}
	for range n {
		if code := <-told; code != websocket.CloseGoingAway {
			t.Errorf("peer was told %d, want 1001", code)
		}
	}
	// A leg made on the closed Poller is read by a goroutine, and works.
	url := rawUpstream(t, "\r\n", appendFrame(nil, opText, []byte("hi"), false), readUntilEOF)
	c, _, err := Dial(context.Background(), NewDialer(DialOptions{}), url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLeg(c, Options{Poller: p})
	if l.OnLoop() {
		t.Fatal("a leg made after Poller.Close is on a loop")
	}
	rec := newLegRecorder()
	l.Start(rec)
	if m := rec.next(t); string(m.p) != "hi" {
		t.Errorf("got %q, want %q", m.p, "hi")
	}
	l.Stop()
	select {
	case <-rec.end:
	case <-time.After(5 * time.Second):
		t.Error("Stop did not end the leg")
	}
}

// rawUpstreamOK is a rawUpstream that reads until the connection ends.
func rawUpstreamOK(t *testing.T) string { return rawUpstream(t, "\r\n", nil, readUntilEOF) }
