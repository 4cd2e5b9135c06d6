package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// probeEcho is a WebSocket echo server that selects "chat" when offered
// and says hello first.
func probeEcho(t *testing.T) *httptest.Server {
	t.Helper()
	up := &websocket.Upgrader{Subprotocols: []string{"chat"}}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		for {
			mt, p, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, p) != nil {
				return // the probe closes every connection it opens
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestProbeCommand(t *testing.T) {
	echo := probeEcho(t)
	wsURL := "ws" + strings.TrimPrefix(echo.URL, "http") + "/ws"
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "login first", http.StatusUnauthorized)
	}))
	t.Cleanup(refuse.Close)
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		fmt.Fprint(w, ": ping\n\nid: 1\ndata: one\n\n")
		_ = http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(sse.Close)

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string
		stderr     string
		jsonReport bool
	}{
		{"healthy", []string{"-for", "100ms", "-subprotocol", "chat", wsURL}, 0,
			[]string{"101 Switching Protocols", "subprotocol  chat", "hello", "result: healthy"}, "", false},
		{"flags after the URL", []string{wsURL, "-for", "0", "-header", "Authorization: Bearer x", "-origin", echo.URL}, 0,
			[]string{"origin: " + echo.URL, "result: healthy"}, "", false},
		{"no subprotocol selected", []string{"-for", "0", "-subprotocol", "graphql-ws", wsURL}, 1,
			[]string{"result: FAILED"}, "likely cause: client offered subprotocols (graphql-ws) but the server selected none", false},
		{"401", []string{"-for", "0", "ws" + strings.TrimPrefix(refuse.URL, "http")}, 1,
			[]string{"401 Unauthorized", "login first"}, "likely cause: 401 on handshake", false},
		{"sse", []string{"-sse", "-for", "100ms", sse.URL}, 0,
			[]string{"200 OK", "X-Accel-Buffering: (not sent)", "ids", "result: healthy"}, "", false},
		{"json", []string{"-json", "-for", "0", wsURL}, 0, []string{`"ok": true`}, "", true},
		{"no URL", []string{"-for", "1s"}, 2, nil, "want exactly one URL", false},
		{"bad header", []string{"-header", "nocolon", wsURL}, 2, nil, "want 'Name: value'", false},
		{"bad scheme", []string{"ftp://127.0.0.1/"}, 2, nil, "not ws, wss, http or https", false},
		{"missing CA file", []string{"-cacert", "/nonexistent.pem", wsURL}, 2, nil, "read -cacert", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := dispatch(append([]string{"probe"}, tt.args...), &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
			for _, want := range tt.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tt.stderr)
			}
			if tt.code == 1 && strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
				t.Errorf("stderr is not one line: %q", stderr.String())
			}
			if tt.jsonReport {
				var rep struct {
					OK       bool
					Status   int
					Findings []struct{ ID string }
					End      struct{ By string }
				}
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
					t.Fatalf("-json output: %v\n%s", err, stdout.String())
				}
				if !rep.OK || rep.Status != 101 || rep.End.By != "probe" || len(rep.Findings) == 0 {
					t.Errorf("json report %+v", rep)
				}
			}
		})
	}
}

// TestProbeCommandTimeout checks -timeout bounds a handshake that never
// comes, and exits 1 naming the timeout.
func TestProbeCommandTimeout(t *testing.T) {
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(stall.Close)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := dispatch([]string{"probe", "-timeout", "200ms", "-sse", stall.URL}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "likely cause: timeout") {
		t.Errorf("exit %d, stderr %q: want 1 and a timeout", code, stderr.String())
	}
	// A generous bound: without -timeout the default (10s) would apply.
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %s with -timeout 200ms", elapsed)
	}
}
