package proxy_test

import (
	"bufio"
	"encoding/json"
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

	"github.com/streamgate/streamgate/config"
)

// Bad input at the HTTP and handshake level, written as raw bytes on TCP
// connections: each must be refused cleanly (an HTTP status, and a log
// line where streamgate itself refuses) or be made harmless, without
// reaching the app as a WebSocket and without disturbing a WebSocket that
// is open meanwhile.

// seen is what the test upstream's plain HTTP side received.
type seen struct {
	method, path, host, body string
	header                   http.Header
	contentLength            int64
	transferEncoding         []string
}

// mixedBackend is an upstream that echoes WebSockets on every path and
// answers plain HTTP requests with "plain", recording them.
type mixedBackend struct {
	*httptest.Server
	wsAccepted atomic.Int32
	mu         sync.Mutex
	plain      []seen
}

func newMixedBackend(t *testing.T) *mixedBackend {
	t.Helper()
	b := &mixedBackend{}
	var u upgraded
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			body, _ := io.ReadAll(r.Body)
			b.mu.Lock()
			b.plain = append(b.plain, seen{r.Method, r.URL.Path, r.Host, string(body), r.Header.Clone(), r.ContentLength, r.TransferEncoding})
			b.mu.Unlock()
			fmt.Fprint(w, "plain")
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		b.wsAccepted.Add(1)
		u.serve(c, r, echo)
	}))
	t.Cleanup(func() {
		b.Close()
		u.closeAll()
	})
	return b
}

// plainSeen returns the plain requests the upstream received so far.
func (b *mixedBackend) plainSeen() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.plain...)
}

// rawExchange writes req on a new TCP connection to addr and reads n
// responses. The request is written concurrently with reading, so a
// server that answers before reading all of it (431) is still heard.
func rawExchange(t *testing.T, addr, req string, n int) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go func() { _, _ = io.WriteString(conn, req) }()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	var out []*http.Response
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read response %d: %v", len(out)+1, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		resp.Header.Set("X-Test-Body", string(body))
		out = append(out, resp)
	}
	return out
}

// wsHeaders is a valid handshake's headers (without Host).
const wsHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

func TestBadHandshakesAreRefusedCleanly(t *testing.T) {
	be := newMixedBackend(t)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	addr := srv.Addr().String()
	bystander := dial(t, wsURL(srv, "/ws/bystander"), nil)
	mustEcho(t, bystander, "hello")
	accepted := be.wsAccepted.Load()

	huge := strings.Repeat("a", 1<<20+8<<10) // over net/http's 1 MiB + 4 KiB header limit
	tests := []struct {
		name   string
		req    string
		status int
		// logged, if set, is the message of the log line streamgate
		// writes for the refusal; Go's server refuses some requests
		// before streamgate sees them, and logs nothing.
		logged string
		check  func(t *testing.T, resp *http.Response)
	}{
		{
			name:   "missing Sec-WebSocket-Key",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status: http.StatusBadRequest, logged: "missing or invalid Sec-WebSocket-Key",
		},
		{
			name:   "Sec-WebSocket-Key not base64",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: not*base64*at*all!\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status: http.StatusBadRequest, logged: "missing or invalid Sec-WebSocket-Key",
		},
		{
			name:   "Sec-WebSocket-Key of 8 bytes",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: AAAAAAAAAAA=\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status: http.StatusBadRequest, logged: "missing or invalid Sec-WebSocket-Key",
		},
		{
			name:   "wrong version",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
			status: http.StatusUpgradeRequired, logged: "unsupported Sec-WebSocket-Version (want 13)",
			check: func(t *testing.T, resp *http.Response) {
				if v := resp.Header.Get("Sec-WebSocket-Version"); v != "13" {
					t.Errorf("426 without Sec-WebSocket-Version: 13 (got %q)", v)
				}
			},
		},
		{
			name:   "POST upgrade",
			req:    "POST /ws/a HTTP/1.1\r\nHost: x\r\n" + wsHeaders + "Content-Length: 0\r\n\r\n",
			status: http.StatusMethodNotAllowed, logged: "WebSocket handshake must be a GET",
		},
		{
			// Without "Connection: upgrade" a request is not a
			// WebSocket handshake (RFC 6455 section 4.2.1): it is
			// proxied as plain HTTP, Upgrade stripped as hop-by-hop.
			name:   "Upgrade: websocket without Connection: upgrade",
			req:    "GET /plain/no-connection HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status: http.StatusOK,
			check: func(t *testing.T, resp *http.Response) {
				if body := resp.Header.Get("X-Test-Body"); body != "plain" {
					t.Errorf("body %q, want the upstream's plain answer", body)
				}
				s := lastPlain(t, be, "/plain/no-connection")
				if s.header.Get("Upgrade") != "" || s.header.Get("Connection") != "" {
					t.Errorf("upstream saw Upgrade %q, Connection %q: want both stripped", s.header.Get("Upgrade"), s.header.Get("Connection"))
				}
			},
		},
		{
			name:   "Connection: upgrade without Upgrade",
			req:    "GET /plain/no-upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
			status: http.StatusOK,
		},
		{
			name:   "header over 1 MiB",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\n" + wsHeaders + "X-Huge: " + huge + "\r\n\r\n",
			status: http.StatusRequestHeaderFieldsTooLarge,
		},
		{
			name:   "two different Content-Length",
			req:    "POST /plain/cl HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
			status: http.StatusBadRequest,
		},
		{
			name:   "unknown Transfer-Encoding",
			req:    "POST /plain/te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
			status: http.StatusNotImplemented,
		},
		{
			name:   "space before the colon",
			req:    "POST /plain/te HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\nhello",
			status: http.StatusBadRequest,
		},
		{
			name:   "obs-fold on the first header line",
			req:    "GET /plain/fold HTTP/1.1\r\n X-Folded: a\r\nHost: x\r\n\r\n",
			status: http.StatusBadRequest,
		},
		{
			name:   "control character in a header value",
			req:    "GET /ws/a HTTP/1.1\r\nHost: x\r\n" + wsHeaders + "X-Bad: a\x00b\r\n\r\n",
			status: http.StatusBadRequest,
		},
		{
			name:   "request line with a space in the target",
			req:    "GET /ws/a b HTTP/1.1\r\nHost: x\r\n" + wsHeaders + "\r\n",
			status: http.StatusBadRequest,
		},
		{
			name:   "HTTP/1.1 without Host",
			req:    "GET /ws/a HTTP/1.1\r\n" + wsHeaders + "\r\n",
			status: http.StatusBadRequest,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := rawExchange(t, addr, tt.req, 1)[0]
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (body %q)", resp.StatusCode, tt.status, resp.Header.Get("X-Test-Body"))
			}
			if tt.check != nil {
				tt.check(t, resp)
			}
			if tt.logged != "" {
				logs.wait(t, window, func(m map[string]any) bool {
					return m["message"] == tt.logged && m["status"] == float64(tt.status)
				})
			}
			if n := be.wsAccepted.Load(); n != accepted {
				t.Errorf("the upstream accepted %d WebSocket(s) for it", n-accepted)
				accepted = n
			}
			mustEcho(t, bystander, "still here after "+tt.name)
		})
	}
}

// lastPlain returns the last plain request the upstream saw for path.
func lastPlain(t *testing.T, be *mixedBackend, path string) seen {
	t.Helper()
	all := be.plainSeen()
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].path == path {
			return all[i]
		}
	}
	t.Fatalf("the upstream never saw %s", path)
	return seen{}
}

// TestRequestSmugglingIsReframed sends the classic request smuggling
// shapes. Go's server does not refuse these two with 400, as the issue
// expected: RFC 9112 lets a server that forwards the message take
// Transfer-Encoding over Content-Length (removing Content-Length) and
// replace an obs-fold with a space (sections 6.3 and 5.2), and net/http
// does both. What matters is that the proxy and the upstream cannot
// disagree on where a request ends: the upstream never sees the client's
// framing, only the one net/http's transport writes for what the proxy
// parsed, so a "smuggled" request is just the client's next request, seen,
// routed and answered by the proxy like any other.
func TestRequestSmugglingIsReframed(t *testing.T) {
	be := newMixedBackend(t)
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	addr := srv.Addr().String()
	bystander := dial(t, wsURL(srv, "/ws/bystander"), nil)

	t.Run("Transfer-Encoding and Content-Length", func(t *testing.T) {
		// CL.TE: by Content-Length the body runs into the next request;
		// by chunked it ends at "0".
		smuggled := "GET /plain/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
		req := "POST /plain/te-cl HTTP/1.1\r\nHost: x\r\nContent-Length: " + fmt.Sprint(5+len(smuggled)) +
			"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
		resps := rawExchange(t, addr, req, 2)
		for i, r := range resps {
			if r.StatusCode != http.StatusOK {
				t.Errorf("response %d: status %d", i+1, r.StatusCode)
			}
		}
		first := lastPlain(t, be, "/plain/te-cl")
		if first.body != "" {
			t.Errorf("upstream got body %q for the POST, want none", first.body)
		}
		if cl := first.header.Get("Content-Length"); cl != "" && cl != "0" {
			t.Errorf("upstream saw Content-Length %q: the client's must be dropped", cl)
		}
		lastPlain(t, be, "/plain/smuggled") // a request of its own
	})
	t.Run("chunked body", func(t *testing.T) {
		req := "POST /plain/chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
		rawExchange(t, addr, req, 1)
		if s := lastPlain(t, be, "/plain/chunked"); s.body != "hello" {
			t.Errorf("upstream got body %q, want hello", s.body)
		}
	})
	t.Run("obs-fold continuation", func(t *testing.T) {
		req := "GET /plain/fold HTTP/1.1\r\nHost: x\r\nX-Folded: first\r\n second\r\n\r\n"
		if r := rawExchange(t, addr, req, 1)[0]; r.StatusCode != http.StatusOK {
			t.Errorf("status %d", r.StatusCode)
		}
		if got := lastPlain(t, be, "/plain/fold").header.Get("X-Folded"); got != "first second" {
			t.Errorf("upstream saw X-Folded %q, want the fold replaced by a space", got)
		}
	})
	t.Run("obs-fold hiding Transfer-Encoding", func(t *testing.T) {
		req := "POST /plain/fold-te HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nTransfer-Encoding:\r\n chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
		if r := rawExchange(t, addr, req, 1)[0]; r.StatusCode != http.StatusOK {
			t.Errorf("status %d", r.StatusCode)
		}
		if s := lastPlain(t, be, "/plain/fold-te"); s.body != "hello" {
			t.Errorf("upstream got body %q, want hello (chunked, as the proxy read it)", s.body)
		}
	})
	mustEcho(t, bystander, "still here")
}

// TestUpgradeWithBody sends a WebSocket handshake that carries a body. The
// bytes after the headers cannot be WebSocket frames (the server has not
// answered yet), so the handshake is refused with 400 before the upstream
// is dialled.
func TestUpgradeWithBody(t *testing.T) {
	be := newMixedBackend(t)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	bystander := dial(t, wsURL(srv, "/ws/bystander"), nil)
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /ws/body HTTP/1.1\r\nHost: x\r\n"+wsHeaders+"Content-Length: 5\r\n\r\nhello")
	_ = conn.SetReadDeadline(time.Now().Add(window))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("upgraded a handshake that carried a body")
	}
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("handshake with a body: got %v %v, want 400", resp, err)
	}
	// Refused before the upstream is dialled, with the reason logged.
	logs.wait(t, window, msgContains("must not carry a body"))
	mustEcho(t, bystander, "still here")
}

// TestRequestCannotChooseUpstream checks that streamgate is no open proxy:
// an absolute-form request target, a Host header or a CONNECT naming
// another host still reach the configured upstream, which sees its own
// host, with the client's Host in X-Forwarded-Host.
func TestRequestCannotChooseUpstream(t *testing.T) {
	be := newMixedBackend(t)
	beHost := strings.TrimPrefix(be.URL, "http://")
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	addr := srv.Addr().String()

	t.Run("absolute-form target", func(t *testing.T) {
		rawExchange(t, addr, "GET http://evil.example/plain/abs HTTP/1.1\r\nHost: evil.example\r\n\r\n", 1)
		s := lastPlain(t, be, "/plain/abs")
		if s.host != beHost || s.header.Get("X-Forwarded-Host") != "evil.example" {
			t.Errorf("upstream saw Host %q, X-Forwarded-Host %q; want %q, evil.example", s.host, s.header.Get("X-Forwarded-Host"), beHost)
		}
	})
	t.Run("CONNECT", func(t *testing.T) {
		resp := rawExchange(t, addr, "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", 1)[0]
		if resp.StatusCode == http.StatusOK && resp.Header.Get("X-Test-Body") != "plain" {
			t.Errorf("CONNECT answered 200 by something other than the upstream")
		}
		t.Logf("CONNECT evil.example:443 -> %d %q", resp.StatusCode, resp.Header.Get("X-Test-Body"))
	})
	t.Run("WebSocket Host", func(t *testing.T) {
		got := make(chan *http.Request, 1)
		ws := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
			got <- r
			echo(c, r)
		})
		_, logger := newLogLines(t)
		srv := startProxy(t, testConfig(ws.URL), logger)
		dial(t, wsURL(srv, "/ws/host"), http.Header{"Host": {"evil.example"}})
		r := <-got
		if want := strings.TrimPrefix(ws.URL, "http://"); r.Host != want {
			t.Errorf("upstream saw Host %q, want its own %q", r.Host, want)
		}
		if xfh := r.Header.Get("X-Forwarded-Host"); xfh != "evil.example" {
			t.Errorf("X-Forwarded-Host %q, want the client's Host evil.example", xfh)
		}
	})
}

// TestClientCannotSpoofForwarding checks that headers naming the client's
// address, scheme or host reach the upstream only as streamgate wrote them
// when the client is not a trusted proxy, for plain HTTP and WebSocket
// alike: X-Forwarded-For/-Host/-Proto are replaced, and the standard
// Forwarded header (RFC 7239), which streamgate does not write, is removed.
func TestClientCannotSpoofForwarding(t *testing.T) {
	be := newMixedBackend(t)
	got := make(chan *http.Request, 1)
	ws := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		got <- r
		echo(c, r)
	})
	spoof := http.Header{
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=6.6.6.6;host=evil.example;proto=https"},
	}
	check := func(t *testing.T, h http.Header, clientHost string) {
		t.Helper()
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": clientHost, "X-Forwarded-Proto": "http", "Forwarded": ""}
		for k, v := range want {
			if g := h.Get(k); g != v {
				t.Errorf("upstream saw %s %q, want %q", k, g, v)
			}
		}
	}
	t.Run("http", func(t *testing.T) {
		_, logger := newLogLines(t)
		srv := startProxy(t, testConfig(be.URL), logger)
		req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/plain/spoof"), nil)
		for k, v := range spoof {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		check(t, lastPlain(t, be, "/plain/spoof").header, srv.Addr().String())
	})
	t.Run("websocket", func(t *testing.T) {
		_, logger := newLogLines(t)
		srv := startProxy(t, testConfig(ws.URL), logger)
		dial(t, wsURL(srv, "/spoof"), spoof.Clone())
		check(t, (<-got).Header, srv.Addr().String())
	})
}

// TestOriginPolicyOnEveryTransport checks, through the proxy, that the
// default same-host origin rule guards the three ways into a route with
// sse: true alike (cross-site WebSocket hijacking and its SSE and POST
// equivalents): a foreign Origin, or the opaque "null" of a sandboxed page,
// gets 403 on the WebSocket handshake, the event stream and the
// back-channel POST; the page's own origin and a request without Origin (not
// a browser) get in.
func TestOriginPolicyOnEveryTransport(t *testing.T) {
	pb, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	_, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)
	self := "http://" + srv.Addr().String()

	st := openSSE(t, httpURL(srv, "/live/feed"), nil)
	var sess struct{ Send string }
	if ev := st.next(t); json.Unmarshal([]byte(ev.data), &sess) != nil || sess.Send == "" {
		t.Fatalf("first event %+v", ev)
	}
	<-pb.joined

	transports := map[string]func(origin string) int{
		"websocket": func(origin string) int {
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			c, resp, _ := websocket.DefaultDialer.Dial(wsURL(srv, "/live/feed"), h)
			if c != nil {
				c.Close()
			}
			if resp == nil {
				return 0
			}
			return resp.StatusCode
		},
		"sse": func(origin string) int {
			req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/live/feed"), nil)
			req.Header.Set("Accept", "text/event-stream")
			return do(t, req, origin)
		},
		"post": func(origin string) int {
			req, _ := http.NewRequest(http.MethodPost, httpURL(srv, sess.Send), strings.NewReader("m"))
			req.Header.Set("Content-Type", "text/plain")
			return do(t, req, origin)
		},
	}
	want := map[string]int{"websocket": http.StatusSwitchingProtocols, "sse": http.StatusOK, "post": http.StatusAccepted}
	for name, try := range transports {
		for _, tt := range []struct {
			origin string
			ok     bool
		}{
			{"http://evil.example", false},
			{"null", false},
			{"http://" + srv.Addr().String() + ".evil.example", false},
			{"https://" + srv.Addr().String(), false}, // scheme differs
			{self, true},
			{"", true},
		} {
			status := try(tt.origin)
			if tt.ok && status != want[name] || !tt.ok && status != http.StatusForbidden {
				t.Errorf("%s with Origin %q: %d", name, tt.origin, status)
			}
		}
	}
}

// do sends req with origin (none if empty) and returns the status.
func do(t *testing.T, req *http.Request, origin string) int {
	t.Helper()
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
