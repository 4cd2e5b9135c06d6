package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/streamgate/streamgate/config"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct{ id, event, data string }

// sseStream reads events from an open event stream.
type sseStream struct {
	resp *http.Response
	rd   *bufio.Reader
}

func openSSE(t *testing.T, url string, header http.Header) *sseStream {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return &sseStream{resp: resp, rd: bufio.NewReader(resp.Body)}
}

// next returns the next event with data (comments and id-only blocks are
// skipped, as EventSource does).
func (s *sseStream) next(t *testing.T) sseEvent {
	t.Helper()
	ev, err := s.nextEvent()
	if err != nil {
		t.Fatalf("stream ended: %v", err)
	}
	return ev
}

// nextEvent is next for goroutines other than the test's.
func (s *sseStream) nextEvent() (sseEvent, error) {
	var ev sseEvent
	var data []string
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil {
				ev.data = strings.Join(data, "\n")
				return ev, nil
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.event = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		}
	}
}

// pushBackend is an upstream that can send a message to every connected
// client, and reports messages it receives.
type pushBackend struct {
	mu     sync.Mutex
	conns  map[*websocket.Conn]bool
	joined chan struct{}
	got    chan string
}

func newPushBackend(t *testing.T) (*pushBackend, string) {
	pb := &pushBackend{conns: map[*websocket.Conn]bool{}, joined: make(chan struct{}, 100), got: make(chan string, 100)}
	be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
		pb.mu.Lock()
		pb.conns[c] = true
		pb.mu.Unlock()
		pb.joined <- struct{}{}
		defer func() {
			pb.mu.Lock()
			delete(pb.conns, c)
			pb.mu.Unlock()
		}()
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			pb.got <- string(p)
		}
	})
	return pb, be.URL
}

// broadcast sends m to every connected client and returns how many.
func (pb *pushBackend) broadcast(t *testing.T, m string) int {
	t.Helper()
	pb.mu.Lock()
	defer pb.mu.Unlock()
	for c := range pb.conns {
		if err := c.WriteMessage(websocket.TextMessage, []byte(m)); err != nil {
			t.Errorf("broadcast: %v", err)
		}
	}
	return len(pb.conns)
}

func TestSSEBridgeThroughProxy(t *testing.T) {
	pb, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	logs, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)

	st := openSSE(t, httpURL(srv, "/live/feed?x=1"), nil)
	if ct := st.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	open := st.next(t)
	var sess struct{ Session, Send string }
	if open.event != "session" || json.Unmarshal([]byte(open.data), &sess) != nil || sess.Session == "" {
		t.Fatalf("first event %+v", open)
	}
	<-pb.joined
	pb.broadcast(t, "hello\nworld")
	if ev := st.next(t); ev.data != "hello\nworld" || ev.id != sess.Session+".1" {
		t.Errorf("event %+v", ev)
	}
	resp, err := http.Post(httpURL(srv, sess.Send), "text/plain", strings.NewReader("from the browser"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("POST: %s", resp.Status)
	}
	if m := <-pb.got; m != "from the browser" {
		t.Errorf("upstream got %q", m)
	}
	// Non-SSE requests on the route still reach the app as plain HTTP, and
	// the browser client is served.
	if code, body := get(t, httpURL(srv, "/.streamgate/client.js")); code != http.StatusOK || !strings.Contains(body, "StreamgateSocket") {
		t.Errorf("client.js: %d", code)
	}
	// A foreign origin is refused on the bridge as on WebSockets, stream
	// and back-channel alike, with a log line and a count.
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		url := httpURL(srv, "/live/feed")
		if method == http.MethodPost {
			url = httpURL(srv, sess.Send)
		}
		req, _ := http.NewRequest(method, url, strings.NewReader("x"))
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Origin", "http://evil.example")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s from a foreign origin: %s", method, resp.Status)
		}
	}
	refused := logs.wait(t, 5*time.Second, msgContains("origin not allowed"))
	if refused["kind"] != "sse" || refused["detail"] != "http://evil.example" {
		t.Errorf("refusal logged as %v", refused)
	}
	// The bridged messages count with the relayed ones, under kind="sse":
	// one each way, "hello\nworld" (11 bytes) down and 16 bytes up.
	_, body := get(t, "http://"+srv.AdminAddr().String()+"/metrics")
	for _, want := range []string{
		`streamgate_messages_total{direction="down",kind="sse"} 1`,
		`streamgate_messages_total{direction="up",kind="sse"} 1`,
		`streamgate_message_bytes_total{direction="down",kind="sse"} 11`,
		`streamgate_message_bytes_total{direction="up",kind="sse"} 16`,
		`streamgate_rejected_total{reason="origin"} 2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestReloadKeepsLiveConnections keeps a WebSocket and an SSE stream open
// across several reloads (one of which changes the route's WebSocket
// settings) and checks no message is lost or duplicated on either.
func TestReloadKeepsLiveConnections(t *testing.T) {
	pb, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	_, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)

	ws := dial(t, wsURL(srv, "/live/ws"), nil)
	st := openSSE(t, httpURL(srv, "/live/sse"), nil)
	st.next(t) // session
	<-pb.joined
	<-pb.joined
	for round := 1; round <= 5; round++ {
		next := testConfig(upstream)
		next.Routes = []config.Route{{Path: "/live/", SSE: true}}
		next.WebSocket.IdleTimeout = config.Duration(time.Duration(round) * time.Hour)
		if err := srv.Reload(next); err != nil {
			t.Fatalf("reload %d: %v", round, err)
		}
		// Both upstream connections, the WebSocket's and the SSE
		// session's, must still be there.
		msg := fmt.Sprintf("after reload %d", round)
		if n := pb.broadcast(t, msg); n != 2 {
			t.Fatalf("after reload %d: %d upstream connections, want 2", round, n)
		}
		if _, p, err := ws.ReadMessage(); err != nil || string(p) != msg {
			t.Fatalf("websocket after reload %d: %q %v", round, p, err)
		}
		if ev := st.next(t); ev.data != msg {
			t.Fatalf("sse after reload %d: %+v", round, ev)
		}
	}
}

// TestReloadLeavesNoGoroutines reloads 20 times with a changed SSE
// setting, which replaces the route's Bridge each time (a stream on it
// ends), and checks that the replaced Bridges leave no goroutine behind:
// the total comes back to what it was (golang-lru's expirable cache left
// one per Bridge).
func TestReloadLeavesNoGoroutines(t *testing.T) {
	be := wsBackend(t, nil, echo)
	cfg := testConfig(be.URL)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	_, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)
	// The baseline, once the server's own goroutines have all started.
	before := runtime.NumGoroutine()
	for stable := 0; stable < 5; {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n != before {
			before, stable = n, 0
		} else {
			stable++
		}
	}
	for round := 1; round <= 20; round++ {
		// A stream on the current Bridge ends once a reload retires it:
		// the reload did replace the Bridge.
		st := openSSE(t, httpURL(srv, "/live/feed"), nil)
		st.next(t) // session
		ended := make(chan error, 1)
		go func() {
			for {
				if _, err := st.nextEvent(); err != nil {
					ended <- err
					return
				}
			}
		}()
		next := testConfig(be.URL)
		next.Routes = []config.Route{{Path: "/live/", SSE: true}}
		next.SSE.Heartbeat = config.Duration(time.Duration(round) * time.Second)
		if err := srv.Reload(next); err != nil {
			t.Fatalf("reload %d: %v", round, err)
		}
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatalf("reload %d: the stream on the replaced Bridge did not end", round)
		}
		st.resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after 20 reloads: %d goroutines, %d before:\n%s",
				runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReloadRefusesInvalidConfig checks that an invalid config does not
// replace the running one.
func TestReloadRefusesInvalidConfig(t *testing.T) {
	be := wsBackend(t, nil, echo)
	_, logger := newLogLines(t)
	srv := startProxy(t, testConfig(be.URL), logger)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("upstream: 'ftp://nope'\n"), 0o600)
	if _, _, err := config.Load(path, nil); err == nil {
		t.Fatal("config.Load accepted a bad upstream")
	}
	// The server only ever sees validated configs; its own refusal is
	// for what validation cannot see, such as unreadable upstream_tls
	// files.
	bad := testConfig(be.URL)
	bad.UpstreamTLS.CAFile = filepath.Join(t.TempDir(), "missing.pem")
	if err := srv.Reload(bad); err == nil {
		t.Error("Reload accepted a missing CA file")
	}
	c := dial(t, wsURL(srv, "/"), nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte("still serving"))
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "still serving" {
		t.Errorf("after refused reload: %q %v", p, err)
	}
}

// TestShutdownEndsSSEWithRetryHint checks the drain ends an SSE stream with
// a retry: hint (so EventSource reconnects elsewhere and resumes) and counts
// it in the drain summary.
func TestShutdownEndsSSEWithRetryHint(t *testing.T) {
	_, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	cfg.Timeouts.Shutdown = config.Duration(3 * time.Second)
	logs, logger := newLogLines(t)
	srv := launchProxy(t, cfg, logger)
	st := openSSE(t, httpURL(srv, "/live/feed"), nil)
	st.next(t) // session
	srv.Cancel()
	var sawRetry bool
	for {
		line, err := st.rd.ReadString('\n')
		if strings.HasPrefix(line, "retry: ") {
			sawRetry = true
		}
		if err != nil {
			break // the stream ended
		}
	}
	if !sawRetry {
		t.Error("stream ended without a retry: hint")
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if line := logs.wait(t, time.Second, msgContains("drained")); line["sse_closed"] != 1.0 {
		t.Errorf("drain summary: %v", line)
	}
}

// TestShutdownUnderSSELoadLosesNoAcknowledgedMessage drains the proxy while
// SSE clients post through the back-channel as fast as they can: every POST
// answered 202 must have reached the upstream, and the drain must finish
// within timeouts.shutdown.
func TestShutdownUnderSSELoadLosesNoAcknowledgedMessage(t *testing.T) {
	var received atomic.Int64
	var handlers sync.WaitGroup
	be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
			received.Add(1)
		}
	})
	cfg := testConfig(be.URL)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	cfg.Timeouts.Shutdown = config.Duration(4 * time.Second)
	_, logger := newLogLines(t)
	srv := launchProxy(t, cfg, logger)

	const clients = 10
	var acked atomic.Int64
	var posters sync.WaitGroup
	for i := range clients {
		st := openSSE(t, httpURL(srv, fmt.Sprintf("/live/feed?c=%d", i)), nil)
		var sess struct{ Send string }
		if err := json.Unmarshal([]byte(st.next(t).data), &sess); err != nil {
			t.Fatal(err)
		}
		posters.Add(1)
		go func() {
			defer posters.Done()
			client := &http.Client{Timeout: 5 * time.Second}
			for n := 0; ; n++ {
				resp, err := client.Post(httpURL(srv, sess.Send), "text/plain", strings.NewReader(fmt.Sprintf("msg %d", n)))
				if err != nil {
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					return
				}
				acked.Add(1)
			}
		}()
	}
	for acked.Load() < 500 {
		runtime.Gosched()
	}
	start := time.Now()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	drain := time.Since(start)
	posters.Wait()
	handlers.Wait() // the upstream has read everything it was sent
	t.Logf("drained in %s with %d messages acknowledged, %d received upstream", drain, acked.Load(), received.Load())
	if received.Load() < acked.Load() {
		t.Errorf("%d messages acknowledged with 202 but only %d reached the upstream", acked.Load(), received.Load())
	}
	if drain > 4*time.Second+time.Second {
		t.Errorf("drain took %s, budget 4s", drain)
	}
}

// TestSSEChurn runs bridged SSE sessions through a full life many times:
// open a stream, post a message the upstream echoes, read it back, leave.
// Sessions expire after a short session_ttl; at the end every stream has
// been logged exactly once, every session's upstream is closed, and no
// goroutine is left (the golang-lru cleaner, which cannot be stopped, is
// the one expected survivor per bridge).
func TestSSEChurn(t *testing.T) {
	cycles := 2000
	if testing.Short() {
		cycles = 200
	}
	ignore := goleak.IgnoreCurrent()
	var upstreams atomic.Int64
	t.Run("cycles", func(t *testing.T) {
		be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
			upstreams.Add(1)
			defer upstreams.Add(-1)
			echo(c, r)
		})
		cfg := testConfig(be.URL)
		cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
		cfg.SSE.SessionTTL = config.Duration(50 * time.Millisecond)
		logs, logger := newLogLines(t)
		srv := startProxy(t, cfg, logger)
		client := &http.Client{Timeout: 10 * time.Second}
		const workers = 8
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < cycles; i += workers {
					if err := sseCycle(client, httpURL(srv, "/live/echo"), i); err != nil {
						t.Errorf("cycle %d: %v", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			// A worker stopped at its first error: waiting 30 s for the
			// log lines of cycles never run would only repeat it.
			t.FailNow()
		}
		sseEnd := func(m map[string]any) bool { return closedLine(m) && m["kind"] == "sse" }
		logs.waitCount(t, 30*time.Second, cycles, sseEnd)
		seen := map[any]int{}
		for _, m := range logs.matching(sseEnd) {
			seen[m["conn"]]++
		}
		if len(seen) != cycles {
			t.Errorf("%d distinct streams logged, want %d", len(seen), cycles)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("stream %v logged %d times", id, n)
			}
		}
		// Sessions expire session_ttl after their stream left, closing
		// their upstream, without waiting for the shutdown.
		start := time.Now()
		for upstreams.Load() > 0 && time.Since(start) < 10*time.Second {
			time.Sleep(10 * time.Millisecond) // polling another component's timers
		}
		if n := upstreams.Load(); n != 0 {
			t.Errorf("%d upstream connections still open 10s after their sessions' ttl", n)
		}
		t.Logf("SSE churn: %d sessions opened, used and expired (all upstreams closed %s after the last cycle)", cycles, time.Since(start).Round(time.Millisecond))
	})
	http.DefaultClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)
}

// sseCycle opens a stream, posts one message, reads its echo as an event
// and leaves.
func sseCycle(client *http.Client, url string, i int) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	st := &sseStream{resp: resp, rd: bufio.NewReader(resp.Body)}
	ev, err := st.nextEvent()
	if err != nil {
		return err
	}
	var sess struct{ Send string }
	if err := json.Unmarshal([]byte(ev.data), &sess); err != nil {
		return fmt.Errorf("session event %q: %w", ev.data, err)
	}
	msg := fmt.Sprintf("cycle %d", i)
	post, err := client.Post(strings.TrimSuffix(url, "/live/echo")+sess.Send, "text/plain", strings.NewReader(msg))
	if err != nil {
		return err
	}
	post.Body.Close()
	if post.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST: %s", post.Status)
	}
	if ev, err = st.nextEvent(); err != nil || ev.data != msg {
		return fmt.Errorf("echo: %+v %v", ev, err)
	}
	return nil
}

// TestSSEUpstreamRefusalIsLogged checks that an upstream refusing the
// bridged handshake reaches the client as its own status and is logged at
// Warn with the status and a likely cause.
func TestSSEUpstreamRefusalIsLogged(t *testing.T) {
	up := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no token", http.StatusUnauthorized)
	}))
	cfg := testConfig(up.URL)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	logs, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)
	req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/live/feed"), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("got %d, want the upstream's 401", resp.StatusCode)
	}
	line := logs.wait(t, 5*time.Second, msgContains("sse upstream dial failed"))
	if line["level"] != "warn" || line["status"] != 401.0 || line["likely_cause"] == nil {
		t.Errorf("log line: %v", line)
	}
}

// TestSSEStreamHoldsItsConnectionSlot: an event stream, which outlives its
// handler once it has taken its HTTP/1 connection over, counts against
// max_connections until it ends, and frees its slot when its client
// leaves.
func TestSSEStreamHoldsItsConnectionSlot(t *testing.T) {
	_, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	cfg.Limits = config.Limits{MaxConnections: 1}
	logs, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)

	st := openSSE(t, httpURL(srv, "/live/feed"), nil)
	if ev := st.next(t); ev.event != "session" {
		t.Fatalf("first event %+v", ev)
	}
	if code, _ := get(t, httpURL(srv, "/.streamgate/client.js")); code != http.StatusServiceUnavailable {
		t.Fatalf("a request beside the open stream: %d, want 503 (max_connections 1)", code)
	}
	st.resp.Body.Close()
	logs.wait(t, 5*time.Second, func(m map[string]any) bool { return m["kind"] == "sse" && m["closed_by"] == "client" })
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := get(t, httpURL(srv, "/.streamgate/client.js"))
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stream ended: %d, want 200: its slot was not freed", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
