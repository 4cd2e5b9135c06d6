package proxy_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/config"
)

func newHTTPBackend(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func TestHTTPProxy(t *testing.T) {
	be := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Saw-Path", r.URL.Path+"?"+r.URL.RawQuery)
		w.Header().Set("X-Saw-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Saw-Conn-Token", r.Header.Get("X-Hop"))
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, body)
	}))
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)

	req, _ := http.NewRequest(http.MethodPost, httpURL(srv, "/a/b?c=d"), strings.NewReader("payload"))
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "POST payload" {
		t.Errorf("body %q", body)
	}
	for k, want := range map[string]string{"X-Saw-Path": "/a/b?c=d", "X-Saw-XFF": "127.0.0.1", "X-Saw-Conn-Token": ""} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
}

func TestHTTPTrustedProxyChain(t *testing.T) {
	be := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.Header.Get("X-Forwarded-For"), "|", r.Header.Get("X-Forwarded-Proto"))
	}))
	_, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.TrustedProxies = []string{"127.0.0.0/8"}
	srv := startProxy(t, cfg, logger)
	req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got, want := string(body), "203.0.113.9, 127.0.0.1|https"; got != want {
		t.Errorf("upstream saw %q, want %q", got, want)
	}
}

func TestHTTPUpstreamSSEFlushedPerWrite(t *testing.T) {
	release := make(chan struct{})
	be := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	resp, err := http.Get(httpURL(srv, "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	defer close(release)
	// The first event must arrive while the upstream still holds the
	// response open: a buffering proxy would block here.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("got %q, %v", line, err)
	}
}

func TestHTTPUpstreamErrors(t *testing.T) {
	// A listener that is closed again: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	refused := "http://" + ln.Addr().String()
	ln.Close()
	tests := []struct {
		name   string
		cfg    func() *config.Config
		status int
		cause  string
	}{
		{"unreachable", func() *config.Config { return testConfig(refused) }, http.StatusBadGateway, "upstream unreachable"},
		{"dial timeout", func() *config.Config {
			cfg := testConfig(refused)
			cfg.Timeouts.UpstreamDial = config.Duration(time.Nanosecond)
			return cfg
		}, http.StatusGatewayTimeout, "upstream timed out"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs, logger := newLogLines(t)
			srv := startProxy(t, tt.cfg(), logger)
			resp, err := http.Get(httpURL(srv, "/x"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("got %d, want %d", resp.StatusCode, tt.status)
			}
			line := logs.wait(t, 5*time.Second, msgContains(tt.cause))
			if line["error"] == nil || line["path"] != "/x" {
				t.Errorf("log line lacks cause or path: %v", line)
			}
			// WebSocket upgrades get the same statuses.
			wsResp := wsStatus(t, wsURL(srv, "/x"))
			if wsResp != tt.status {
				t.Errorf("websocket: got %d, want %d", wsResp, tt.status)
			}
		})
	}
}

func TestSlowlorisCutAtReadHeader(t *testing.T) {
	be := newHTTPBackend(t, http.NotFoundHandler())
	_, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.Timeouts.ReadHeader = config.Duration(200 * time.Millisecond)
	srv := startProxy(t, cfg, logger)
	conn, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err = io.ReadAll(conn) // returns when the server closes the connection
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("server kept a slow header open for %s", time.Since(start))
	}
	t.Logf("slow header cut after %s (read_header 200ms)", time.Since(start))
}
