package proxy_test

import (
	"bufio"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamgate/streamgate/config"
)

// TestShutdownCutsSlowSSEClientAtBudget: shutdown is over within
// timeouts.shutdown even while a hijacked event stream is blocked writing
// to a client that stopped reading: at the budget's end the bridges are
// aborted, as http.Server.Close cuts the connections it still tracks,
// rather than waiting for the stream's write timeout (10 s). That holds
// too for a bridge a reload replaced, which is still closing its streams.
func TestShutdownCutsSlowSSEClientAtBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reload bool // replace the stream's bridge before the shutdown
	}{
		{"current bridge", false},
		{"bridge a reload replaced", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pb, upstream := newPushBackend(t)
			cfg := testConfig(upstream)
			cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
			cfg.Timeouts.Shutdown = config.Duration(2 * time.Second)
			_, logger := newLogLines(t)
			r := launchProxy(t, cfg, logger)

			d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
				return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			}}
			c, err := d.Dial("tcp", r.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET /live/feed HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
			br := bufio.NewReader(c)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			var got string
			for !strings.Contains(got, "event: session") {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatal(err)
				}
				got += line
			}
			<-pb.joined
			big := strings.Repeat("x", 16<<10)
			for range 400 { // ~6 MiB: more than the socket buffers; the client reads no more
				pb.broadcast(t, big)
			}
			time.Sleep(500 * time.Millisecond) // the stream is now blocked in a write
			if tc.reload {
				next := *cfg
				next.SSE.Heartbeat = config.Duration(cfg.SSE.Heartbeat.Std() + time.Second) // a new bridge
				if err := r.Reload(&next); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			_ = r.Stop()
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("shutdown took %s, budget 2s", took.Round(100*time.Millisecond))
			} else {
				t.Logf("shutdown took %s", took.Round(100*time.Millisecond))
			}
		})
	}
}

// TestClientJSReleasesItsSlot: a request for client.js gives its
// connection slot back, so that with max_connections 1 a second one is
// served.
func TestClientJSReleasesItsSlot(t *testing.T) {
	_, upstream := newPushBackend(t)
	cfg := testConfig(upstream)
	cfg.Limits = config.Limits{MaxConnections: 1}
	_, logger := newLogLines(t)
	srv := startProxy(t, cfg, logger)
	for i := range 2 {
		if code, _ := get(t, httpURL(srv, "/.streamgate/client.js")); code != 200 {
			t.Fatalf("request %d for client.js: %d", i+1, code)
		}
	}
}
