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
	var ev sseEvent
	var data []string
	for {
		line, err := s.rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if data != nil {
				ev.data = strings.Join(data, "\n")
				return ev
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
	_, logger := newLogLines(t)
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
	// A foreign origin is refused on the bridge as on WebSockets.
	req, _ := http.NewRequest(http.MethodGet, httpURL(srv, "/live/feed"), nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Origin", "http://evil.example")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign origin: %v %v", resp.Status, err)
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
