package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestValidateReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(`listen: ":8080"
upstream: "ftp://app"
bogus_key: 1
websocket:
  ping_interval: "10s"
  pong_timeout: "20s"
  max_message_size: "lots"
`), 0o600)
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"validate", "-config", bad}, &stdout, &stderr); code == 0 {
		t.Fatalf("validate of a bad file exited 0: %s", stderr.String())
	}
	out := stderr.String()
	for _, want := range []string{
		"bad.yaml:2: upstream:", "bad.yaml:3: bogus_key:", "bad.yaml:6: websocket.pong_timeout:",
		"bad.yaml:7: websocket.max_message_size:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("upstream: \"http://127.0.0.1:3000\"\n"), 0o600)
	stdout.Reset()
	stderr.Reset()
	if code := dispatch([]string{"validate", "-config", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("validate of a good file exited %d: %s", code, stderr.String())
	}
	if code := dispatch([]string{"validate", "-config", filepath.Join(dir, "missing.yaml")}, &stdout, &stderr); code == 0 {
		t.Errorf("validate of a missing file exited 0")
	}
}

func TestVersionAndUnknownCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := dispatch([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "streamgate ") {
		t.Errorf("version: %d %q", code, stdout.String())
	}
	if code := dispatch([]string{"frobnicate"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown command exited %d, want 2", code)
	}
}

// TestUnexpectedArguments checks that an argument the command does not take
// is a usage error naming it, instead of being ignored (validate went on to
// check ./proxy.yaml). The run cases name a missing config, so that a run
// that ignored the argument would fail with 1 rather than serve.
func TestUnexpectedArguments(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"validate with a file", []string{"validate", "/some/file.yaml"},
			[]string{`streamgate validate: unexpected argument "/some/file.yaml"`, "streamgate validate -config /some/file.yaml"}},
		{"validate after -config", []string{"validate", "-config", missing, "extra"},
			[]string{`streamgate validate: unexpected argument "extra"`, "-config FILE"}},
		{"version", []string{"version", "extra"}, []string{`streamgate version: unexpected argument "extra"`}},
		{"run after -config", []string{"-config", missing, "other.yaml"},
			[]string{`streamgate: unexpected argument "other.yaml"`, "streamgate -config other.yaml"}},
		{"run with a file", []string{"other.yaml"},
			[]string{`streamgate: unknown command "other.yaml"`, "streamgate -config other.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := dispatch(tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit %d, want 2 (usage); stderr:\n%s", code, stderr.String())
			}
			for _, want := range tt.want {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout = %q, want nothing", stdout.String())
			}
		})
	}
}

// buildBinary builds streamgate into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "streamgate")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestSIGTERMDrain runs the real binary, holds a WebSocket through it, sends
// SIGTERM and checks the client gets 1001 and the process exits within
// timeouts.shutdown.
func TestSIGTERMDrain(t *testing.T) {
	bin := buildBinary(t)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, p) != nil {
				return
			}
		}
	}))
	defer up.Close()
	listen, admin := freePort(t), freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "proxy.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`listen: %q
admin: %q
upstream: %q
timeouts:
  shutdown: "4s"
`, listen, admin, up.URL)), 0o600)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-config", cfgPath)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait for readiness through the admin listener.
	var c *websocket.Conn
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		c, _, err = websocket.DefaultDialer.Dial("ws://"+listen+"/", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy never came up: %v\n%s", err, logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling a port another process opens
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "hi" {
		t.Fatalf("echo: %q %v", p, err)
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	ce, ok := err.(*websocket.CloseError)
	if !ok || ce.Code != websocket.CloseGoingAway {
		t.Errorf("client got %v, want close 1001", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v\n%s", err, logs.String())
	}
	if elapsed := time.Since(start); elapsed > 4*time.Second+time.Second {
		t.Errorf("exited after %s, shutdown budget 4s", elapsed)
	}
	if !strings.Contains(logs.String(), `"closed_by":"shutdown"`) || !strings.Contains(logs.String(), `"message":"drained"`) {
		t.Errorf("logs lack the shutdown close or drain summary:\n%s", logs.String())
	}
}

// TestOutOfFileDescriptors runs the binary with a hard limit on open files
// and fills it with WebSockets: new requests must get an answer (503 from
// the listener, or 502 when the upstream dial has no descriptor), the log
// must name the cause, and once connections close it must serve again. A
// proxied WebSocket holds two descriptors, so the two limits end with the
// last free slot taken by an accept (63) or by nothing (64); the odd case
// once lost the listener's spare descriptor to an upstream dial.
func TestOutOfFileDescriptors(t *testing.T) {
	bin := buildBinary(t)
	for _, limit := range []int{63, 64} {
		t.Run(fmt.Sprintf("ulimit-%d", limit), func(t *testing.T) {
			t.Parallel()
			testOutOfFileDescriptors(t, bin, limit)
		})
	}
}

func testOutOfFileDescriptors(t *testing.T, bin string, limit int) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		go func() { <-release; c.Close() }()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer up.Close()
	listen := freePort(t)
	cfgPath := filepath.Join(t.TempDir(), "proxy.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf("listen: %q\nadmin: \"\"\nupstream: %q\ntimeouts:\n  shutdown: \"2s\"\n", listen, up.URL)), 0o600)
	cmd := exec.Command("sh", "-c", `ulimit -n "$2" && exec "$0" -config "$1"`, bin, cfgPath, strconv.Itoa(limit))
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var conns []*websocket.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	statuses := map[int]int{}
	for i := 0; i < 80 && statuses[503]+statuses[502] < 5; i++ {
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
		c, resp, err := d.Dial("ws://"+listen+"/", nil)
		switch {
		case err == nil:
			conns = append(conns, c)
			statuses[101]++
		case resp != nil:
			statuses[resp.StatusCode]++
		default:
			if i == 0 {
				time.Sleep(50 * time.Millisecond) // the binary is still starting
				i--
				continue
			}
			statuses[0]++ // no answer at all: what this listener exists to prevent
			t.Logf("handshake %d got no answer: %v", i, err)
		}
	}
	t.Logf("handshake outcomes under a %d-file limit: %v", limit, statuses)
	if statuses[101] == 0 || statuses[503]+statuses[502] == 0 {
		t.Fatalf("want some connections and then refusals, got %v\n%s", statuses, logs.String())
	}
	if statuses[0] > 0 {
		t.Errorf("%d handshakes got no answer at all", statuses[0])
	}
	if !strings.Contains(logs.String(), "too many open files") {
		t.Errorf("log does not name the cause:\n%s", logs.String())
	}
	// Free the descriptors: it serves again.
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	close(release)
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var c *websocket.Conn
		if c, _, err = websocket.DefaultDialer.Dial("ws://"+listen+"/", nil); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("no recovery after the connections closed: %v", err)
}

// syncBuffer is a bytes.Buffer that a child process's output copier and
// the test may use at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
