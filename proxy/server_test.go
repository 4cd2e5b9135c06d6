package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminEndpoints(t *testing.T) {
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	admin := "http://" + srv.AdminAddr().String()

	if code, _ := get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d", code)
	}
	if code, body := get(t, admin+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d %s", code, body)
	}
	// Traffic shows up in metrics.
	c := dial(t, wsURL(srv, "/"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("m"))
	_, _, _ = c.ReadMessage()
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
	readClose(t, c, 5*time.Second)
	logs.wait(t, 5*time.Second, closedLine) // counters are final once the line is out
	code, body := get(t, admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics %d", code)
	}
	for _, want := range []string{
		"streamgate_connections_active", "streamgate_upstream_dial_seconds_count",
		`streamgate_messages_total{direction="up",kind="ws"} 1`,
		`streamgate_message_bytes_total{direction="down",kind="ws"} 1`,
		"go_goroutines", "process_open_fds",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Go's profiles, for an operator's pprof: the goroutine dump names
	// the relay's goroutines, and a short CPU profile is a gzipped proto.
	if code, body := get(t, admin+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "proxy.(*Server)") {
		t.Errorf("/debug/pprof/goroutine %d, no proxy goroutine in:\n%.300s", code, body)
	}
	if code, body := get(t, admin+"/debug/pprof/profile?seconds=1"); code != http.StatusOK || !strings.HasPrefix(body, "\x1f\x8b") {
		t.Errorf("/debug/pprof/profile %d, %d bytes, not gzip", code, len(body))
	}
	// The admin endpoints are not on the public listener. The upstream is
	// a WebSocket-only test server; a 200 would mean the proxy served its
	// own endpoints publicly.
	for _, path := range []string{"/metrics", "/debug/pprof/"} {
		if code, _ := get(t, httpURL(srv, path)); code == http.StatusOK {
			t.Errorf("public %s answered 200", path)
		}
	}
}

func TestReadyzUpstreamDown(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig("http://"+addr), logger)
	if code, body := get(t, "http://"+srv.AdminAddr().String()+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "upstream unreachable") {
		t.Errorf("/readyz with upstream down: %d %q", code, body)
	}
}

func TestShutdownDrainsWebSockets(t *testing.T) {
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.Timeouts.Shutdown = config.Duration(3 * time.Second)
	srv := launchProxy(t, cfg, logger)

	const n = 20
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dial(t, wsURL(srv, "/"), nil)
	}
	admin := "http://" + srv.AdminAddr().String()
	start := time.Now()
	srv.Cancel()

	var wg sync.WaitGroup
	codes := make([]int, n)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Answer the close like a browser does.
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					if ce, ok := err.(*websocket.CloseError); ok {
						codes[i] = ce.Code
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	for i, code := range codes {
		if code != websocket.CloseGoingAway {
			t.Errorf("conn %d got close %d, want 1001", i, code)
		}
	}
	if elapsed > 3*time.Second+time.Second {
		t.Errorf("drain took %s, budget 3s", elapsed)
	}
	line := logs.wait(t, time.Second, msgContains("drained"))
	if line["ws_closed"] != float64(n) || line["forced"] != 0.0 {
		t.Errorf("drain summary: %v", line)
	}
	if _, err := http.Get(admin + "/readyz"); err == nil {
		t.Errorf("admin listener still up after Run returned")
	}
	t.Logf("drained %d WebSockets in %s", n, elapsed)
}

func TestNoGoroutineLeaksAfterManyConnections(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	t.Run("cycles", func(t *testing.T) {
		be := wsBackend(t, nil, echo)
		_, logger := newLogLines(t)
		srv := launchProxy(t, testConfig(be.URL), logger)
		const cycles = 2000
		const workers = 8
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < cycles/workers; i++ {
					c, _, err := websocket.DefaultDialer.Dial(wsURL(srv, "/"), nil)
					if err != nil {
						t.Error(err)
						return
					}
					_ = c.WriteMessage(websocket.TextMessage, []byte("ping"))
					_, _, _ = c.ReadMessage()
					if i%2 == 0 {
						_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""))
						_, _, _ = c.ReadMessage()
					}
					c.Close() // half of them vanish without a close frame
				}
			}()
		}
		wg.Wait()
		if err := srv.Stop(); err != nil {
			t.Fatal(err)
		}
	})
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// TestCloseWithoutRun checks that Close releases a Server that New built
// and that never ran: its listeners (their addresses can be bound again),
// the event loops' and the SSE bridge's goroutines; and that a Server
// runs once.
func TestCloseWithoutRun(t *testing.T) {
	be := wsBackend(t, nil, echo)
	_, logger := newLogLines(t)
	ignore := goleak.IgnoreCurrent()
	cfg := testConfig(be.URL)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	next := testConfig(be.URL) // a reload that retires the bridge
	next.Routes = []config.Route{{Path: "/other/", SSE: true}}
	if err := srv.Reload(next); err != nil {
		t.Fatal(err)
	}
	addrs := []string{srv.Addr().String(), srv.AdminAddr().String()}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Close(); err == nil {
		t.Error("a second Close returned no error")
	}
	if err := srv.Reload(next); err == nil {
		t.Error("Reload after Close returned no error (its bridges would never be closed)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Run(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("Run after Close: %v (context: %v), want an error at once", err, ctx.Err())
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Errorf("%s still bound after Close: %v", a, err)
			continue
		}
		ln.Close()
	}
	goleak.VerifyNone(t, ignore)

	ran := launchProxy(t, testConfig(be.URL), logger)
	if err := ran.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ran.Close(); err == nil {
		t.Error("Close after Run returned no error")
	}
}
