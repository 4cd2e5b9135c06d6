package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

// logLines collects the proxy's JSON log lines for tests to wait on.
type logLines struct {
	mu    sync.Mutex
	lines []map[string]any
	added chan struct{}
	pw    *io.PipeWriter
}

func newLogLines(t *testing.T) (*logLines, zerolog.Logger) {
	return newLogLinesInto(t, &logLines{})
}

// newLogLinesInto makes a logger whose lines l collects.
func newLogLinesInto(t *testing.T, l *logLines) (*logLines, zerolog.Logger) {
	pr, pw := io.Pipe()
	l.added, l.pw = make(chan struct{}, 1), pw
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			l.mu.Lock()
			l.lines = append(l.lines, m)
			l.mu.Unlock()
			select {
			case l.added <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { pw.Close(); <-done })
	return l, zerolog.New(pw).Level(zerolog.DebugLevel)
}

// wait returns the first line for which match is true, failing the test
// if none comes within timeout.
func (l *logLines) wait(t *testing.T, timeout time.Duration, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		for _, m := range l.lines {
			if match(m) {
				l.mu.Unlock()
				return m
			}
		}
		l.mu.Unlock()
		select {
		case <-l.added:
		case <-deadline.C:
			t.Fatalf("no matching log line within %s", timeout)
			return nil
		}
	}
}

func closedLine(m map[string]any) bool { return m["message"] == "connection closed" }

func msgContains(s string) func(map[string]any) bool {
	return func(m map[string]any) bool {
		msg, _ := m["message"].(string)
		return strings.Contains(msg, s)
	}
}

// testConfig is a valid config on loopback with ephemeral ports.
func testConfig(upstream string) *config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Admin = "127.0.0.1:0"
	cfg.Upstream = upstream
	cfg.Timeouts.Shutdown = config.Duration(5 * time.Second)
	return cfg
}

// running is a proxy whose Run goroutine the test owns.
type running struct {
	*proxy.Server
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// runServer runs srv until the test ends or Cancel is called.
func runServer(t testing.TB, srv *proxy.Server) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: srv, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// Cancel starts the shutdown, as SIGTERM does.
func (r *running) Cancel() { r.cancel() }

// Stop cancels Run if needed and returns its result once it has returned.
func (r *running) Stop() error {
	r.cancel()
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// launchProxy validates cfg, builds a server and runs it until the test
// ends or the test stops it.
func launchProxy(t testing.TB, cfg *config.Config, logger zerolog.Logger) *running {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return runServer(t, srv)
}

// startProxy runs a server for cfg until the test ends.
func startProxy(t testing.TB, cfg *config.Config, logger zerolog.Logger) *proxy.Server {
	t.Helper()
	return launchProxy(t, cfg, logger).Server
}

// addresser is a proxy.Server, or a running one.
type addresser interface{ Addr() net.Addr }

func wsURL(srv addresser, path string) string { return "ws://" + srv.Addr().String() + path }

func httpURL(srv addresser, path string) string { return "http://" + srv.Addr().String() + path }

// upgraded tracks the WebSockets a test server upgraded: httptest does not
// close hijacked connections, so a handler blocked on one would never
// return. closeAll closes them and waits for their handlers.
type upgraded struct {
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []*websocket.Conn
}

// serve runs handle on c, registered until it returns.
func (u *upgraded) serve(c *websocket.Conn, r *http.Request, handle func(*websocket.Conn, *http.Request)) {
	u.wg.Add(1)
	defer u.wg.Done()
	defer c.Close()
	u.mu.Lock()
	u.conns = append(u.conns, c)
	u.mu.Unlock()
	handle(c, r)
}

func (u *upgraded) closeAll() {
	u.mu.Lock()
	for _, c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// wsBackend is a test upstream: handle runs for each accepted WebSocket.
func wsBackend(t testing.TB, upgrader *websocket.Upgrader, handle func(c *websocket.Conn, r *http.Request)) *httptest.Server {
	t.Helper()
	if upgrader == nil {
		upgrader = &websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	}
	var u upgraded
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := upgrader.Upgrade(w, r, nil); err == nil {
			u.serve(c, r, handle)
		}
	}))
	t.Cleanup(func() {
		s.Close()
		u.closeAll()
	})
	return s
}

// echo echoes every message until the connection ends.
func echo(c *websocket.Conn, _ *http.Request) {
	for {
		mt, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		if c.WriteMessage(mt, p) != nil {
			return
		}
	}
}

func dial(t *testing.T, url string, h http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readClose reads until the connection reports a close and returns it.
func readClose(t *testing.T, c *websocket.Conn, timeout time.Duration) *websocket.CloseError {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok {
			t.Fatalf("want a close frame, got %v", err)
		}
		return ce
	}
}

// wsStatus attempts a WebSocket handshake and returns the HTTP status.
func wsStatus(t *testing.T, url string) int {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if c != nil {
		c.Close()
	}
	if resp == nil {
		t.Fatalf("no handshake response from %s: %v", url, err)
	}
	return resp.StatusCode
}
