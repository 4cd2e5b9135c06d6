package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

func TestSendStatuses(t *testing.T) {
	h := newHarness(t, Options{
		Leg:      wsconn.Options{MaxMessageSize: 16},
		BindIP:   true,
		ClientIP: func(r *http.Request) string { return r.Header.Get("X-Test-IP") },
		CheckOrigin: func(r *http.Request) bool {
			o := r.Header.Get("Origin")
			return o == "" || o == "https://app.example"
		},
		CORSOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "https://app.example" },
	})
	ip := http.Header{"X-Test-IP": {"10.0.0.1"}}
	s := h.stream("/ws", ip)
	sid := s.session()
	up := h.up.next(t)
	send := "/ws?sg_session=" + sid

	tests := []struct {
		name        string
		path        string
		contentType string
		body        string
		hdr         http.Header
		status      int
		want        *upMsg
	}{
		{"text", send, "text/plain; charset=utf-8", "hello", ip, 202, &upMsg{false, "hello"}},
		{"json is binary", send, "application/json", `{"a":1}`, ip, 202, &upMsg{true, `{"a":1}`}},
		{"no content type is binary", send, "", "\x00\x01", ip, 202, &upMsg{true, "\x00\x01"}},
		{"exactly the limit", send, "text/plain", strings.Repeat("x", 16), ip, 202, &upMsg{false, strings.Repeat("x", 16)}},
		{"allowed cross origin", send, "text/plain", "cors", http.Header{"X-Test-IP": {"10.0.0.1"}, "Origin": {"https://app.example"}}, 202, &upMsg{false, "cors"}},
		{"too large", send, "text/plain", strings.Repeat("x", 17), ip, 413, nil},
		{"unknown session", "/ws?sg_session=" + newSessionID(), "text/plain", "x", ip, 404, nil},
		{"malformed session", "/ws?sg_session=nope", "text/plain", "x", ip, 404, nil},
		{"no session", "/ws", "text/plain", "x", ip, 404, nil},
		{"foreign origin", send, "text/plain", "x", http.Header{"X-Test-IP": {"10.0.0.1"}, "Origin": {"https://evil.example"}}, 403, nil},
		{"other IP", send, "text/plain", "x", http.Header{"X-Test-IP": {"10.0.0.2"}}, 403, nil},
		{"text not UTF-8", send, "text/plain", "\xff", ip, 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := h.post(tt.path, tt.contentType, tt.body, tt.hdr); got != tt.status {
				t.Fatalf("status %d, want %d", got, tt.status)
			}
			if tt.want != nil {
				// Acknowledged means written: the upstream has it or is
				// about to read it.
				if m := up.next(t); m != *tt.want {
					t.Errorf("upstream got %+v, want %+v", m, *tt.want)
				}
			}
		})
	}
	select {
	case m := <-up.recv:
		t.Errorf("upstream got %+v from a refused POST", m)
	default:
	}
}

func TestPreflight(t *testing.T) {
	h := newHarness(t, Options{
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") != "https://evil.example" },
		CORSOrigin:  func(r *http.Request) bool { return r.Header.Get("Origin") == "https://app.example" },
	})
	do := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, h.srv.URL+"/ws?sg_session="+newSessionID(), nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := do("https://app.example")
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("preflight status %d, want 204", resp.StatusCode)
	}
	for k, want := range map[string]string{
		"Access-Control-Allow-Origin":      "https://app.example",
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, POST, OPTIONS",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if !strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Errorf("Access-Control-Allow-Headers %q lacks Content-Type", resp.Header.Get("Access-Control-Allow-Headers"))
	}
	if resp := do("https://other.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("an origin not allowed cross-origin got CORS headers")
	}
	if resp := do("https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("refused origin: status %d, want 403", resp.StatusCode)
	}
}

// TestSendOrder has several senders POST concurrently, each waiting for
// its 202 before its next message, and checks the upstream gets every
// message once and each sender's messages in order.
func TestSendOrder(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	const senders, each = 8, 40
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			for j := range each {
				if got := h.post("/ws?sg_session="+sid, "text/plain", fmt.Sprintf("%d:%d", i, j), nil); got != http.StatusAccepted {
					t.Errorf("sender %d message %d: status %d", i, j, got)
					return
				}
			}
		})
	}
	wg.Wait()
	next := make([]int, senders)
	for range senders * each {
		m := up.next(t)
		var i, j int
		if _, err := fmt.Sscanf(m.data, "%d:%d", &i, &j); err != nil {
			t.Fatalf("upstream got %q", m.data)
		}
		if j != next[i] {
			t.Fatalf("sender %d: got message %d, want %d", i, j, next[i])
		}
		next[i]++
	}
}

// TestEcho round-trips a message: POST in, upstream echo, event out.
func TestEcho(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/echo", nil)
	sid := s.session()
	if got := h.post("/echo?sg_session="+sid, "text/plain", "ping\npong", nil); got != http.StatusAccepted {
		t.Fatalf("status %d", got)
	}
	if ev := s.nextEvent(); ev.data != "ping\npong" || ev.id != sid+".1" {
		t.Errorf("got %q %q", ev.id, ev.data)
	}
}

// TestSendSlowBodyCutOff trickles a back-channel body: it is cut off with
// 408 once BodyTimeout has passed, and the session keeps working.
func TestSendSlowBodyCutOff(t *testing.T) {
	h := newHarness(t, Options{BodyTimeout: 200 * time.Millisecond})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /ws?sg_session=%s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nab", sid)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("got %d, want 408", resp.StatusCode)
	}
	t.Logf("slow body cut off after %s (body timeout 200ms)", time.Since(start))
	if code := h.post("/ws?sg_session="+sid, "text/plain", "after", nil); code != http.StatusAccepted {
		t.Fatalf("session disturbed: POST got %d", code)
	}
	if m := up.next(t); m.data != "after" {
		t.Errorf("upstream got %q", m.data)
	}
}

// TestSendLooksUpSessionFirst sends POSTs whose bodies never come, to an
// unknown session and from another IP than the stream's: each is answered
// at once, without the body being asked for (no 100 Continue) or awaited.
func TestSendLooksUpSessionFirst(t *testing.T) {
	h := newHarness(t, Options{
		BodyTimeout: time.Hour, // only the session lookup can answer in time
		BindIP:      true,
		ClientIP:    func(r *http.Request) string { return r.Header.Get("X-Test-IP") },
	})
	s := h.stream("/ws", http.Header{"X-Test-IP": {"10.0.0.1"}})
	sid := s.session()
	up := h.up.next(t)
	for _, tt := range []struct {
		name, sid, ip, expect string
		status                int
	}{
		{"unknown session, 100-continue", newSessionID(), "10.0.0.1", "100-continue", http.StatusNotFound},
		{"unknown session, body withheld", newSessionID(), "10.0.0.1", "", http.StatusNotFound},
		{"other IP, body withheld", sid, "10.0.0.2", "", http.StatusForbidden},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			req := fmt.Sprintf("POST /ws?sg_session=%s HTTP/1.1\r\nHost: x\r\nX-Test-IP: %s\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n", tt.sid, tt.ip)
			if tt.expect != "" {
				req += "Expect: " + tt.expect + "\r\n"
			}
			if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(wait)) // bounds a failing test only
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer before the body: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if code := h.post("/ws?sg_session="+sid, "text/plain", "after", http.Header{"X-Test-IP": {"10.0.0.1"}}); code != http.StatusAccepted {
		t.Fatalf("session disturbed: POST got %d", code)
	}
	if m := up.next(t); m.data != "after" {
		t.Errorf("upstream got %q", m.data)
	}
}

// gateConn is an upstream connection whose writes can be held: once
// armed, a write waits until release (or Close) and reports on held.
type gateConn struct {
	net.Conn
	g      *gate
	closed chan struct{}
	once   sync.Once
}

func (c *gateConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

type gate struct {
	armed    atomic.Bool
	held     chan struct{} // gets a token when a write is held
	released chan struct{}
	once     sync.Once
}

func newGate() *gate {
	return &gate{held: make(chan struct{}, 1), released: make(chan struct{})}
}

func (g *gate) release() { g.once.Do(func() { close(g.released) }) }

func (g *gate) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &gateConn{Conn: c, g: g, closed: make(chan struct{})}, nil
}

func (c *gateConn) Write(p []byte) (int, error) {
	if c.g.armed.Load() {
		select {
		case c.g.held <- struct{}{}:
		default:
		}
		select {
		case <-c.g.released:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(p)
}

// sendHook tells the test when a back-channel message reaches the store.
type sendHook struct {
	store
	sending chan string
}

func (h *sendHook) Send(ctx context.Context, id string, m message) error {
	h.sending <- string(m.Data)
	return h.store.Send(ctx, id, m)
}

// TestSendGivesUpWhenClientLeaves holds the upstream write of one POST,
// so that a second POST waits behind it; the second's client goes away:
// its handler must stop waiting at once, and its message must never reach
// the upstream.
func TestSendGivesUpWhenClientLeaves(t *testing.T) {
	g := newGate()
	handled := make(chan string, 10)
	h := newHarness(t, Options{
		Dialer: &websocket.Dialer{NetDialContext: g.dial},
		Leg:    wsconn.Options{WriteTimeout: time.Hour}, // the gate, not a timeout, ends the held write
	}, func(srv *httptest.Server) {
		inner := srv.Config.Handler
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner.ServeHTTP(w, r)
			if m := r.Header.Get("X-Test-Msg"); m != "" {
				handled <- m
			}
		})
	})
	t.Cleanup(g.release) // before the harness's cleanup, which closes the bridge
	hook := &sendHook{store: h.b.store, sending: make(chan string, 10)}
	h.b.store = hook
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	post := func(ctx context.Context, msg string) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, h.srv.URL+"/ws?sg_session="+sid, strings.NewReader(msg))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("X-Test-Msg", msg)
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	waitFor := func(c <-chan string, want, what string) {
		t.Helper()
		select {
		case got := <-c:
			if got != want {
				t.Fatalf("%s: got %q, want %q", what, got, want)
			}
		case <-time.After(wait):
			t.Fatalf("%s: nothing for %q", what, want)
		}
	}

	g.armed.Store(true)
	first := make(chan error, 1)
	go func() { first <- post(context.Background(), "first") }()
	select {
	case <-g.held:
	case <-time.After(wait):
		t.Fatal("the first message was never written upstream")
	}
	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- post(ctx, "second") }()
	waitFor(hook.sending, "first", "store")
	waitFor(hook.sending, "second", "store")
	cancel()
	waitFor(handled, "second", "handler returned") // while "first" is still held

	g.armed.Store(false)
	g.release()
	if err := <-first; err != nil {
		t.Fatalf("first POST: %v", err)
	}
	if err := <-second; err == nil {
		t.Error("second POST succeeded after its client went away")
	}
	if err := post(context.Background(), "third"); err != nil {
		t.Fatalf("third POST: %v", err)
	}
	for _, want := range []string{"first", "third"} {
		if m := up.next(t); m.data != want {
			t.Errorf("upstream got %q, want %q", m.data, want)
		}
	}
}
