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
	"strings"
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
	var logs bytes.Buffer
	cmd.Stderr = &logs
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
