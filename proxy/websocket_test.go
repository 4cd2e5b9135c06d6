package proxy_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/config"
)

func TestWebSocketRelaysMessagesByteExact(t *testing.T) {
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	c := dial(t, wsURL(srv, "/chat?room=1"), nil)

	big := bytes.Repeat([]byte{0, 1, 2, 0xff}, 100<<10) // 400 KiB, many frames
	msgs := []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello")},
		{websocket.TextMessage, []byte("line1\nline2\r\n\x00 ünïcödé")},
		{websocket.BinaryMessage, []byte{0, 0xfe, 0xff, 10, 13}},
		{websocket.TextMessage, []byte{}},
		{websocket.BinaryMessage, big},
	}
	for _, m := range msgs {
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		typ, got, err := c.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("got type %d len %d, want type %d len %d", typ, len(got), m.typ, len(m.data))
		}
	}
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"))
	readClose(t, c, 5*time.Second)

	line := logs.wait(t, 5*time.Second, closedLine)
	wantBytes := 0.0
	for _, m := range msgs {
		wantBytes += float64(len(m.data))
	}
	for k, want := range map[string]any{
		"kind": "ws", "route": "/", "client_ip": "127.0.0.1", "closed_by": "client",
		"client_code": 1000.0, "upstream_code": 1000.0, "msgs_up": 5.0, "msgs_down": 5.0,
		"bytes_up": wantBytes, "bytes_down": wantBytes,
	} {
		if line[k] != want {
			t.Errorf("log %s = %v, want %v", k, line[k], want)
		}
	}
	for _, k := range []string{"conn", "duration"} {
		if _, ok := line[k]; !ok {
			t.Errorf("log line lacks %s: %v", k, line)
		}
	}
	if _, ok := line["error"]; ok {
		t.Errorf("clean close logged an error: %v", line["error"])
	}
}

func TestWebSocketForwardsRequest(t *testing.T) {
	got := make(chan *http.Request, 1)
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		got <- r
		echo(c, r)
	})
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL+"/base"), logger)
	h := http.Header{}
	h.Set("Cookie", "sid=abc")
	h.Set("Authorization", "Bearer t0k")
	h.Set("Origin", "http://"+srv.Addr().String())
	h.Set("X-Forwarded-For", "6.6.6.6") // not from a trusted proxy: replaced
	dial(t, wsURL(srv, "/ws/x?a=1&b=2"), h)
	r := <-got
	for k, want := range map[string]string{
		"Cookie": "sid=abc", "Authorization": "Bearer t0k", "Origin": "http://" + srv.Addr().String(),
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": srv.Addr().String(),
	} {
		if g := r.Header.Get(k); g != want {
			t.Errorf("upstream saw %s %q, want %q", k, g, want)
		}
	}
	if r.URL.Path != "/base/ws/x" || r.URL.RawQuery != "a=1&b=2" {
		t.Errorf("upstream saw %s?%s, want /base/ws/x?a=1&b=2", r.URL.Path, r.URL.RawQuery)
	}
}

func TestWebSocketCloseCodesForwarded(t *testing.T) {
	t.Run("upstream to client", func(t *testing.T) {
		be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "unauthorized"))
			_, _, _ = c.ReadMessage() // the echo
		})
		logs, logger := newLogLines(t)
		srv := startProxy(t, testConfig(be.URL), logger)
		ce := readClose(t, dial(t, wsURL(srv, "/"), nil), 5*time.Second)
		if ce.Code != 4001 || ce.Text != "unauthorized" {
			t.Errorf("client got %d %q, want 4001 \"unauthorized\"", ce.Code, ce.Text)
		}
		line := logs.wait(t, 5*time.Second, closedLine)
		if line["closed_by"] != "upstream" || line["upstream_code"] != 4001.0 || line["client_code"] != 4001.0 {
			t.Errorf("log: closed_by %v upstream_code %v client_code %v", line["closed_by"], line["upstream_code"], line["client_code"])
		}
	})
	t.Run("client to upstream", func(t *testing.T) {
		got := make(chan *websocket.CloseError, 1)
		be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					ce, _ := err.(*websocket.CloseError)
					got <- ce
					return
				}
			}
		})
		_, logger := newLogLines(t)
		srv := startProxy(t, testConfig(be.URL), logger)
		c := dial(t, wsURL(srv, "/"), nil)
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4002, "bye now"))
		ce := <-got
		if ce == nil || ce.Code != 4002 || ce.Text != "bye now" {
			t.Errorf("upstream got %v, want 4002 \"bye now\"", ce)
		}
	})
	t.Run("upstream vanishes without close", func(t *testing.T) {
		be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
			c.UnderlyingConn().Close()
		})
		logs, logger := newLogLines(t)
		srv := startProxy(t, testConfig(be.URL), logger)
		ce := readClose(t, dial(t, wsURL(srv, "/"), nil), 5*time.Second)
		if ce.Code != websocket.CloseInternalServerErr {
			t.Errorf("client got %d, want 1011", ce.Code)
		}
		line := logs.wait(t, 5*time.Second, closedLine)
		if line["closed_by"] != "upstream" || line["upstream_code"] != 1006.0 || line["error"] == nil {
			t.Errorf("log: %v", line)
		}
	})
}

func TestWebSocketOversizeMessage(t *testing.T) {
	upstreamGot := make(chan *websocket.CloseError, 1)
	be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
		_, _, err := c.ReadMessage()
		ce, _ := err.(*websocket.CloseError)
		upstreamGot <- ce
	})
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.WebSocket.MaxMessageSize = 1024
	srv := startProxy(t, cfg, logger)
	c := dial(t, wsURL(srv, "/"), nil)
	_ = c.WriteMessage(websocket.BinaryMessage, make([]byte, 2048))
	if ce := readClose(t, c, 5*time.Second); ce.Code != websocket.CloseMessageTooBig {
		t.Errorf("sender got %d, want 1009", ce.Code)
	}
	if ce := <-upstreamGot; ce == nil || ce.Code != websocket.CloseGoingAway {
		t.Errorf("other leg got %v, want a clean 1001", ce)
	}
	line := logs.wait(t, 5*time.Second, closedLine)
	if line["closed_by"] != "error" || !strings.Contains(line["error"].(string), "larger than 1024") {
		t.Errorf("log: %v", line)
	}
}

func TestWebSocketSubprotocols(t *testing.T) {
	selecting := &websocket.Upgrader{Subprotocols: []string{"v2"}}
	legacy := &websocket.Upgrader{}
	tests := []struct {
		name     string
		upgrader *websocket.Upgrader
		fallback bool
		want     string
		warn     bool
	}{
		{"upstream selects", selecting, false, "v2", false},
		{"upstream selects none", legacy, false, "", true},
		{"fallback to first offer", legacy, true, "v1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := wsBackend(t, tt.upgrader, echo)
			logs, logger := newLogLines(t)
			cfg := testConfig(be.URL)
			cfg.WebSocket.SubprotocolFallback = tt.fallback
			srv := startProxy(t, cfg, logger)
			d := websocket.Dialer{Subprotocols: []string{"v1", "v2"}}
			c, _, err := d.Dial(wsURL(srv, "/"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Subprotocol(); got != tt.want {
				t.Errorf("client got subprotocol %q, want %q", got, tt.want)
			}
			if tt.warn {
				logs.wait(t, 5*time.Second, msgContains("browsers fail this connection"))
			}
		})
	}
}

func TestWebSocketUpstreamRefusal(t *testing.T) {
	be := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/auth":
			w.Header().Set("WWW-Authenticate", `Bearer realm="app"`)
			http.Error(w, "no token", http.StatusUnauthorized)
		default:
			_, _ = w.Write([]byte("plain page, no websocket here"))
		}
	})
	up := newHTTPBackend(t, be)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(up.URL), logger)
	tests := []struct {
		path   string
		status int
		cause  string
	}{
		{"/auth", http.StatusUnauthorized, "rejected the credentials"},
		{"/page", http.StatusOK, "instead of 101"},
	}
	for _, tt := range tests {
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, tt.path), nil)
		if err == nil || resp == nil {
			t.Fatalf("%s: dial succeeded or no response: %v", tt.path, err)
		}
		if resp.StatusCode != tt.status {
			t.Errorf("%s: client got %d, want %d", tt.path, resp.StatusCode, tt.status)
		}
		if tt.status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: WWW-Authenticate not passed on", tt.path)
		}
		line := logs.wait(t, 5*time.Second, msgContains(tt.cause))
		if line["upstream_status"] != float64(tt.status) {
			t.Errorf("%s: log upstream_status %v", tt.path, line["upstream_status"])
		}
	}
}

func TestWebSocketOriginPolicy(t *testing.T) {
	be := wsBackend(t, nil, echo)
	tests := []struct {
		name    string
		allowed []string
		origin  func(self string) string
		want    int
	}{
		{"no origin header", nil, func(string) string { return "" }, http.StatusSwitchingProtocols},
		{"same host", nil, func(self string) string { return "http://" + self }, http.StatusSwitchingProtocols},
		{"foreign host", nil, func(string) string { return "http://evil.example" }, http.StatusForbidden},
		{"same host other scheme", nil, func(self string) string { return "https://" + self }, http.StatusForbidden},
		{"listed", []string{"https://app.example"}, func(string) string { return "https://APP.example:443" }, http.StatusSwitchingProtocols},
		{"not listed", []string{"https://app.example"}, func(self string) string { return "http://" + self }, http.StatusForbidden},
		{"any", []string{"*"}, func(string) string { return "http://evil.example" }, http.StatusSwitchingProtocols},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, logger := newLogLines(t)
			cfg := testConfig(be.URL)
			cfg.WebSocket.AllowedOrigins = tt.allowed
			srv := startProxy(t, cfg, logger)
			h := http.Header{}
			if o := tt.origin(srv.Addr().String()); o != "" {
				h.Set("Origin", o)
			}
			c, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "/"), h)
			if c != nil {
				c.Close()
			}
			if resp == nil {
				t.Fatalf("no response: %v", err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("got %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusForbidden {
				logs.wait(t, 5*time.Second, msgContains("origin not allowed"))
			}
		})
	}
}

func TestWebSocketConnectionLimits(t *testing.T) {
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.Limits = config.Limits{MaxConnections: 2, MaxConnectionsPerIP: 1}
	srv := startProxy(t, cfg, logger)
	first := dial(t, wsURL(srv, "/"), nil)
	_, resp, err := websocket.DefaultDialer.Dial(wsURL(srv, "/"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second connection from the same IP: want 503, got %v %v", resp, err)
	}
	logs.wait(t, 5*time.Second, func(m map[string]any) bool { return m["detail"] == "max_connections_per_ip" })
	// The first connection is unaffected.
	if err := first.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := first.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("first connection disturbed: %q %v", p, err)
	}
	// Closing it frees the slot.
	_ = first.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	readClose(t, first, 5*time.Second)
	logs.wait(t, 5*time.Second, closedLine)
	dial(t, wsURL(srv, "/"), nil)
}

func TestWebSocketCompression(t *testing.T) {
	be := wsBackend(t, nil, echo)
	_, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.WebSocket.Compression = true
	srv := startProxy(t, cfg, logger)
	d := websocket.Dialer{EnableCompression: true}
	c, resp, err := d.Dial(wsURL(srv, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if ext := resp.Header.Get("Sec-WebSocket-Extensions"); !strings.Contains(ext, "permessage-deflate") {
		t.Errorf("no permessage-deflate negotiated: %q", ext)
	}
	msg := strings.Repeat("compressible ", 1000)
	_ = c.WriteMessage(websocket.TextMessage, []byte(msg))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != msg {
		t.Fatalf("echo through compression failed: %v", err)
	}
}

func TestWebSocketBadHandshake(t *testing.T) {
	dialed := make(chan struct{}, 10)
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) { dialed <- struct{}{} })
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"bad key", map[string]string{"Sec-WebSocket-Key": "short", "Sec-WebSocket-Version": "13"}, http.StatusBadRequest},
		{"missing key", map[string]string{"Sec-WebSocket-Version": "13"}, http.StatusBadRequest},
		{"wrong version", map[string]string{"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "8"}, http.StatusUpgradeRequired},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/"), nil)
		req.Header.Set("Connection", "keep-alive, Upgrade")
		req.Header.Set("Upgrade", "websocket")
		for k, v := range tt.header {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: got %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
	select {
	case <-dialed:
		t.Error("a bad handshake reached the upstream")
	default:
	}
}
