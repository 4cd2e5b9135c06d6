package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"
)

// ioTimeout bounds every client read, write and handshake in these tests,
// so a bug fails a test instead of hanging it. It is never waited out.
const ioTimeout = 10 * time.Second

// newServer serves a new App on loopback; both are closed at cleanup.
func newServer(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	a := New(opts)
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		a.Close() // First: the server does not track hijacked connections.
		srv.Close()
	})
	return srv
}

// dial opens a WebSocket to path on srv, offering subprotocols. The
// connection is closed at cleanup.
func dial(t *testing.T, srv *httptest.Server, path string, subprotocols ...string) *websocket.Conn {
	t.Helper()
	conn, resp, err := dialRaw(srv, path, subprotocols...)
	if err != nil {
		t.Fatalf("dial %s: %v (response %v)", path, err, resp)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func dialRaw(srv *httptest.Server, path string, subprotocols ...string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{HandshakeTimeout: ioTimeout, Subprotocols: subprotocols}
	conn, resp, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+path, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	return conn, resp, err
}

func read(t *testing.T, conn *websocket.Conn) (int, []byte) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	typ, data, err := conn.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, data
}

func write(t *testing.T, conn *websocket.Conn, typ int, data []byte) {
	t.Helper()
	if err := conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set write deadline: %v", err)
	}
	if err := conn.WriteMessage(typ, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestCounter(t *testing.T) {
	srv := newServer(t, Options{Interval: 5 * time.Millisecond})
	conn := dial(t, srv, "/ws/counter")
	write(t, conn, websocket.TextMessage, []byte("ignored")) // Incoming messages are read and dropped.

	var last uint64
	for i := range 5 {
		typ, data := read(t, conn)
		if typ != websocket.TextMessage {
			t.Fatalf("message %d: type %d, want text", i, typ)
		}
		var tick struct {
			N *uint64 `json:"n"`
			T string  `json:"t"`
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&tick); err != nil || tick.N == nil {
			t.Fatalf("message %d: %q is not {\"n\":..,\"t\":..}: %v", i, data, err)
		}
		if _, err := time.Parse(time.RFC3339Nano, tick.T); err != nil {
			t.Errorf("message %d: t: %v", i, err)
		}
		if *tick.N <= last {
			t.Errorf("message %d: n = %d after %d, want increasing", i, *tick.N, last)
		}
		last = *tick.N
	}
}

func TestChatBroadcast(t *testing.T) {
	srv := newServer(t, Options{})
	// The server joins a client to the chat just after the handshake, so
	// each client first sees its own message come back: then it has joined.
	alice := dial(t, srv, "/ws/chat")
	write(t, alice, websocket.TextMessage, []byte("alice joined"))
	expect(t, "alice", alice, websocket.TextMessage, "alice joined")
	bob := dial(t, srv, "/ws/chat")
	write(t, bob, websocket.TextMessage, []byte("bob joined"))
	expect(t, "bob", bob, websocket.TextMessage, "bob joined")
	expect(t, "alice", alice, websocket.TextMessage, "bob joined")

	write(t, alice, websocket.TextMessage, []byte("hello, bob"))
	write(t, alice, websocket.BinaryMessage, []byte{0, 0xff, 0xfe})
	for _, c := range []struct {
		name string
		conn *websocket.Conn
	}{{"alice", alice}, {"bob", bob}} {
		expect(t, c.name, c.conn, websocket.TextMessage, "hello, bob")
		expect(t, c.name, c.conn, websocket.BinaryMessage, "\x00\xff\xfe")
	}
}

func expect(t *testing.T, who string, conn *websocket.Conn, wantType int, want string) {
	t.Helper()
	typ, data := read(t, conn)
	if typ != wantType || string(data) != want {
		t.Errorf("%s got (type %d) %q, want (type %d) %q", who, typ, data, wantType, want)
	}
}

func TestEcho(t *testing.T) {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	tests := []struct {
		name string
		typ  int
		data []byte
	}{
		{"text", websocket.TextMessage, []byte("héllo, wörld ✓")},
		{"empty text", websocket.TextMessage, []byte{}},
		{"multi-line text", websocket.TextMessage, []byte("a\nb\r\n\ndata: c\n")},
		{"binary", websocket.BinaryMessage, allBytes},
		{"empty binary", websocket.BinaryMessage, []byte{}},
		{"large binary", websocket.BinaryMessage, bytes.Repeat(allBytes, maxMessageSize/len(allBytes))},
	}
	srv := newServer(t, Options{})
	conn := dial(t, srv, "/ws/echo")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			write(t, conn, tt.typ, tt.data)
			typ, got := read(t, conn)
			if typ != tt.typ {
				t.Errorf("got type %d, want %d", typ, tt.typ)
			}
			if !bytes.Equal(got, tt.data) {
				t.Errorf("got %d bytes, want %d bytes, byte-exact", len(got), len(tt.data))
			}
		})
	}
}

func TestSubprotocols(t *testing.T) {
	tests := []struct {
		name      string
		supported []string
		offered   []string
		want      string
	}{
		{"legacy app selects none", nil, []string{"chat.v1"}, ""},
		{"first offered that is supported", []string{"v2", "v1"}, []string{"v0", "v1", "v2"}, "v1"},
		{"none supported", []string{"v2"}, []string{"v1"}, ""},
		{"none offered", []string{"v2"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, Options{Subprotocols: tt.supported})
			conn := dial(t, srv, "/ws/echo", tt.offered...)
			if got := conn.Subprotocol(); got != tt.want {
				t.Errorf("got subprotocol %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	tests := []struct {
		path       string
		wantStatus int
		wantType   string // Content-Type prefix
		wantBody   string // substring
	}{
		{"/", http.StatusOK, "text/html", "new WebSocket("},
		{"/healthz", http.StatusOK, "text/plain", "ok"},
		{"/ws/echo", http.StatusUpgradeRequired, "text/plain", "WebSocket"},
		{"/ws/chat", http.StatusUpgradeRequired, "text/plain", "WebSocket"},
		{"/ws/counter", http.StatusUpgradeRequired, "text/plain", "WebSocket"},
		{"/index.html", http.StatusNotFound, "text/plain", ""},
		{"/ws/other", http.StatusNotFound, "text/plain", ""},
		{"/nope", http.StatusNotFound, "text/plain", ""},
	}
	srv := newServer(t, Options{})
	client := srv.Client()
	client.Timeout = ioTimeout
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := client.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("read body: %v", err)
			}
			if g, w := resp.StatusCode, tt.wantStatus; g != w {
				t.Errorf("got status %d, want %d", g, w)
			}
			if g := resp.Header.Get("Content-Type"); !strings.HasPrefix(g, tt.wantType) {
				t.Errorf("got Content-Type %q, want %q", g, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body %.80q does not contain %q", body, tt.wantBody)
			}
			if tt.wantStatus == http.StatusUpgradeRequired {
				if g := resp.Header.Get("Upgrade"); g != "websocket" {
					t.Errorf("got Upgrade %q, want %q", g, "websocket")
				}
			}
		})
	}
}

// TestClose checks that Close sends 1001 to every client, refuses new
// WebSockets and leaves no goroutine behind.
func TestClose(t *testing.T) {
	defer goleak.VerifyNone(t)

	a := New(Options{Interval: time.Millisecond})
	srv := httptest.NewServer(a)
	defer srv.Close()

	paths := []string{"/ws/counter", "/ws/chat", "/ws/echo"}
	type result struct {
		path string
		err  error
	}
	results := make(chan result, len(paths))
	for _, path := range paths {
		conn, resp, err := dialRaw(srv, path)
		if err != nil {
			t.Fatalf("dial %s: %v (response %v)", path, err, resp)
		}
		defer conn.Close()
		// Read until the server closes, so the client answers its close frame.
		go func() {
			_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
			for {
				if _, _, err := conn.ReadMessage(); err != nil {
					results <- result{path, err}
					return
				}
			}
		}()
	}

	a.Close()
	for range paths {
		r := <-results
		var ce *websocket.CloseError
		if !errors.As(r.err, &ce) {
			t.Errorf("%s: got %v, want a close frame", r.path, r.err)
			continue
		}
		if ce.Code != websocket.CloseGoingAway || ce.Text != "server shutting down" {
			t.Errorf("%s: got close %d %q, want %d %q", r.path, ce.Code, ce.Text, websocket.CloseGoingAway, "server shutting down")
		}
	}

	_, resp, err := dialRaw(srv, "/ws/echo")
	if !errors.Is(err, websocket.ErrBadHandshake) || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dial after Close: got %v (response %v), want 503", err, resp)
	}
	a.Close() // Idempotent.
}

func TestHubDropsSlowClient(t *testing.T) {
	h := newHub()
	slow := newClient(nil) // No pumps: nothing drains its queue.
	h.add(slow)
	m := message{typ: websocket.TextMessage, data: []byte("x")}
	for range sendQueueSize {
		h.broadcast(m)
	}
	select {
	case <-slow.kicked:
		t.Fatalf("kicked with a queue of %d, want room for %d", len(slow.send), sendQueueSize)
	default:
	}

	h.broadcast(m)
	select {
	case <-slow.kicked:
	default:
		t.Fatal("not kicked with a full queue")
	}
	if slow.kickCode != websocket.ClosePolicyViolation || slow.kickReason != "too slow" {
		t.Errorf("got kick %d %q, want %d %q", slow.kickCode, slow.kickReason, websocket.ClosePolicyViolation, "too slow")
	}
	if n := len(h.clients); n != 0 {
		t.Errorf("hub has %d clients after the drop, want 0", n)
	}
}

func TestReadLimit(t *testing.T) {
	srv := newServer(t, Options{})
	conn := dial(t, srv, "/ws/echo")
	if err := conn.SetWriteDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set write deadline: %v", err)
	}
	// The server may close before it has read all of it: ignore the error.
	_ = conn.WriteMessage(websocket.BinaryMessage, make([]byte, maxMessageSize+1))
	if err := conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatalf("set read deadline: %v", err)
	}
	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("got %v, want close %d", err, websocket.CloseMessageTooBig)
	}
}
