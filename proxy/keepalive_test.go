package proxy_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/config"
)

// frozen upgrades and then neither reads nor writes: it answers no ping, like
// a hung process or a black-holed path, until the test ends.
func frozen(done <-chan struct{}) func(*websocket.Conn, *http.Request) {
	return func(*websocket.Conn, *http.Request) { <-done }
}

func TestKeepaliveDetectsFrozenUpstream(t *testing.T) {
	done := make(chan struct{})
	be := wsBackend(t, nil, frozen(done))
	t.Cleanup(func() { close(done) })
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.WebSocket.PingInterval = config.Duration(200 * time.Millisecond)
	cfg.WebSocket.PongTimeout = config.Duration(100 * time.Millisecond)
	srv := startProxy(t, cfg, logger)

	c := dial(t, wsURL(srv, "/"), nil)
	// The client answers pings (gorilla does while reading), so only the
	// upstream leg is dead. Detection is due within ping_interval +
	// pong_timeout; allow generous slack for a loaded machine.
	start := time.Now()
	ce := readClose(t, c, 5*time.Second)
	elapsed := time.Since(start)
	if ce.Code != websocket.CloseInternalServerErr {
		t.Errorf("client got %d %q, want 1011", ce.Code, ce.Text)
	}
	line := logs.wait(t, 5*time.Second, closedLine)
	if line["closed_by"] != "ping_timeout" || line["upstream_code"] != 1006.0 {
		t.Errorf("log: %v", line)
	}
	t.Logf("frozen upstream detected after %s (ping_interval+pong_timeout = 300ms)", elapsed)
}

func TestKeepalivePingsBothLegs(t *testing.T) {
	upstreamPinged := make(chan struct{}, 1)
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		c.SetPingHandler(func(data string) error {
			select {
			case upstreamPinged <- struct{}{}:
			default:
			}
			return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
		})
		echo(c, r)
	})
	_, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.WebSocket.PingInterval = config.Duration(50 * time.Millisecond)
	cfg.WebSocket.PongTimeout = config.Duration(40 * time.Millisecond)
	srv := startProxy(t, cfg, logger)
	c := dial(t, wsURL(srv, "/"), nil)
	clientPinged := make(chan struct{}, 16)
	c.SetPingHandler(func(data string) error {
		select {
		case clientPinged <- struct{}{}:
		default:
		}
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	got := make(chan string, 1)
	go func() {
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				close(got)
				return
			}
			got <- string(p)
		}
	}()
	for name, ch := range map[string]chan struct{}{"client": clientPinged, "upstream": upstreamPinged} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s leg never pinged", name)
		}
	}
	// Four more pings (over 200ms) take the silent connection well past
	// the 90ms liveness window: answering them must have kept it open.
	for range 4 {
		select {
		case <-clientPinged:
		case <-time.After(5 * time.Second):
			t.Fatal("pings stopped")
		}
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("alive")); err != nil {
		t.Fatalf("connection died despite pongs: %v", err)
	}
	if m, ok := <-got; !ok || m != "alive" {
		t.Fatalf("connection died despite pongs: echo %q", m)
	}
}

func TestIdleTimeoutAndLifetime(t *testing.T) {
	tests := []struct {
		name     string
		set      func(*config.WebSocket)
		closedBy string
	}{
		{"idle", func(ws *config.WebSocket) { ws.IdleTimeout = config.Duration(150 * time.Millisecond) }, "idle_timeout"},
		{"lifetime", func(ws *config.WebSocket) { ws.MaxLifetime = config.Duration(150 * time.Millisecond) }, "lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			upstreamGot := make(chan int, 1)
			be := wsBackend(t, nil, func(c *websocket.Conn, _ *http.Request) {
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						code := 0
						if ce, ok := err.(*websocket.CloseError); ok {
							code = ce.Code
						}
						upstreamGot <- code
						return
					}
				}
			})
			logs, logger := newLogLines(t)
			cfg := testConfig(be.URL)
			tt.set(&cfg.WebSocket)
			srv := startProxy(t, cfg, logger)
			c := dial(t, wsURL(srv, "/"), nil)
			if ce := readClose(t, c, 5*time.Second); ce.Code != websocket.CloseGoingAway {
				t.Errorf("client got %d, want 1001", ce.Code)
			}
			if code := <-upstreamGot; code != websocket.CloseGoingAway {
				t.Errorf("upstream got %d, want 1001", code)
			}
			if line := logs.wait(t, 5*time.Second, closedLine); line["closed_by"] != tt.closedBy {
				t.Errorf("closed_by %v, want %s", line["closed_by"], tt.closedBy)
			}
		})
	}
}

func TestRouteOverridesWebSocketSettings(t *testing.T) {
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	idle := config.Duration(100 * time.Millisecond)
	cfg.Routes = []config.Route{{Path: "/short/", WebSocket: config.WebSocketOverride{IdleTimeout: &idle}}}
	srv := startProxy(t, cfg, logger)

	long := dial(t, wsURL(srv, "/other"), nil)
	short := dial(t, wsURL(srv, "/short/x"), nil)
	if ce := readClose(t, short, 5*time.Second); ce.Code != websocket.CloseGoingAway {
		t.Errorf("short route: got %d, want 1001", ce.Code)
	}
	line := logs.wait(t, 5*time.Second, closedLine)
	if line["route"] != "/short/" || line["closed_by"] != "idle_timeout" {
		t.Errorf("log: %v", line)
	}
	// The default route has no idle timeout: still open.
	if err := long.WriteMessage(websocket.TextMessage, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := long.ReadMessage(); err != nil {
		t.Fatalf("default route closed: %v", err)
	}
}
