package corporateproxy

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

// TestThroughBufferingProxy puts Debian's nginx, configured by
// nginx.conf.tmpl (no Upgrade passed, buffering on), between a client and
// streamgate, and checks that WebSocket handshakes fail there while the SSE
// bridge delivers each event as it is sent and the POST back-channel works.
func TestThroughBufferingProxy(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err = os.Stat("/usr/sbin/nginx"); err != nil {
			t.Fatal("nginx not installed: run `apt-get install -y nginx` (bash .ci/run does)")
		}
		nginx = "/usr/sbin/nginx"
	}
	up := newUpstream(t)
	sg := startStreamgate(t, up.URL)
	front := startNginx(t, nginx, sg)

	// 1. WebSocket: the proxy does not pass Upgrade, so the handshake fails.
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+front+"/ws/feed", nil)
	if err == nil || resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket through the hostile proxy should fail: %v %v", resp, err)
	}
	t.Logf("WebSocket through the proxy: %s (as intended)", resp.Status)

	// 2. SSE: every event must arrive before the next one is sent.
	req, _ := http.NewRequest(http.MethodGet, "http://"+front+"/ws/feed", nil)
	req.Header.Set("Accept", "text/event-stream")
	sresp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	if sresp.StatusCode != http.StatusOK {
		t.Fatalf("SSE through the proxy: %s", sresp.Status)
	}
	rd := bufio.NewReader(sresp.Body)
	session := nextData(t, rd, "session")
	send := between(session, `"send":"`, `"`)
	conn := up.await(t)
	for i, msg := range []string{"one", "two", "three"} {
		start := time.Now()
		if err := conn.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		// A buffering proxy would hold this event: the read would block
		// until the test's deadline.
		if got := nextData(t, rd, ""); got != msg {
			t.Fatalf("event %d: %q, want %q", i, got, msg)
		}
		t.Logf("event %q arrived %s after it was sent", msg, time.Since(start))
	}

	// 3. Control: the app's own SSE, without streamgate's bridge, is held
	// back by the same proxy (so step 2 proves something).
	held := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + front + "/native")
		if err == nil {
			defer resp.Body.Close()
			_, err = bufio.NewReader(resp.Body).ReadString('\n')
		}
		held <- err
	}()
	select {
	case err := <-held:
		t.Errorf("control: an unmarked event stream came through the proxy unbuffered (%v); the recipe's proxy does not buffer", err)
	case <-time.After(2 * time.Second):
		t.Log("control: the app's own unmarked SSE is still held by the proxy after 2s")
	}

	// 4. The back-channel works through the proxy.
	presp, err := http.Post("http://"+front+send, "text/plain", strings.NewReader("hello upstream"))
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST through the proxy: %s", presp.Status)
	}
	if _, p, err := conn.ReadMessage(); err != nil || string(p) != "hello upstream" {
		t.Fatalf("upstream got %q %v", p, err)
	}
}

// nextData returns the data of the next event named event ("" for the
// default), skipping comments and other blocks.
func nextData(t *testing.T, rd *bufio.Reader, event string) string {
	t.Helper()
	type result struct {
		data string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		var name, data string
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				ch <- result{err: err}
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if data != "" && name == event {
					ch <- result{data: data}
					return
				}
				name, data = "", ""
			case strings.HasPrefix(line, "event: "):
				name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				data = line[len("data: "):]
			}
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("stream ended: %v", r.err)
		}
		return r.data
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s: the proxy is holding it back")
		return ""
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}

// upstream is a WebSocket app whose connections the test drives.
type upstream struct {
	*httptest.Server
	conns chan *websocket.Conn
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{conns: make(chan *websocket.Conn, 4)}
	var wg sync.WaitGroup
	done := make(chan struct{})
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/native" {
			// The app's own SSE, without streamgate's anti-buffering
			// headers and padding: the control case.
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: native\n\n"))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return
		}
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		u.conns <- c
		<-done
		c.Close()
	}))
	t.Cleanup(func() { close(done); u.Close(); wg.Wait() })
	return u
}

func (u *upstream) await(t *testing.T) *websocket.Conn {
	t.Helper()
	select {
	case c := <-u.conns:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("streamgate never dialled the upstream")
		return nil
	}
}

func startStreamgate(t *testing.T, upstreamURL string) string {
	t.Helper()
	cfg := config.Default()
	cfg.Listen, cfg.Admin, cfg.Upstream = "127.0.0.1:0", "", upstreamURL
	cfg.Routes = []config.Route{{Path: "/ws/", SSE: true}}
	cfg.WebSocket.AllowedOrigins = []string{"*"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv.Addr().String()
}

func startNginx(t *testing.T, nginx, streamgate string) string {
	t.Helper()
	prefix := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	tmpl, err := os.ReadFile("nginx.conf.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("{{PREFIX}}", prefix, "{{LISTEN}}", listen, "{{STREAMGATE}}", streamgate).Replace(string(tmpl))
	path := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(nginx, "-p", prefix, "-c", path)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", listen)
		if err == nil {
			c.Close()
			return listen
		}
		if time.Now().After(deadline) {
			logs, _ := os.ReadFile(filepath.Join(prefix, "error.log"))
			t.Fatalf("nginx did not start: %v\n%s\n%s", err, out, logs)
		}
	}
}
