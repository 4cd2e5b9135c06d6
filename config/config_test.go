package config

import (
	"reflect"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestWebSocketOverrideApply(t *testing.T) {
	base := Default().WebSocket
	base.AllowedOrigins = []string{"https://a.example.com"}
	size := 4 * KiB

	tests := []struct {
		name string
		o    WebSocketOverride
		want func(ws *WebSocket)
	}{
		{"empty", WebSocketOverride{}, func(ws *WebSocket) {}},
		{"durations", WebSocketOverride{PingInterval: dur(5 * time.Second), PongTimeout: dur(2 * time.Second), IdleTimeout: dur(time.Minute), MaxLifetime: dur(time.Hour)},
			func(ws *WebSocket) {
				ws.PingInterval, ws.PongTimeout = Duration(5*time.Second), Duration(2*time.Second)
				ws.IdleTimeout, ws.MaxLifetime = Duration(time.Minute), Duration(time.Hour)
			}},
		{"pings off", WebSocketOverride{PingInterval: dur(0)}, func(ws *WebSocket) { ws.PingInterval = 0 }},
		{"size and flags", WebSocketOverride{MaxMessageSize: &size, SubprotocolFallback: new(true), Compression: new(true)},
			func(ws *WebSocket) { ws.MaxMessageSize, ws.SubprotocolFallback, ws.Compression = size, true, true }},
		{"origins", WebSocketOverride{AllowedOrigins: []string{"*"}}, func(ws *WebSocket) { ws.AllowedOrigins = []string{"*"} }},
		{"explicit empty origins", WebSocketOverride{AllowedOrigins: []string{}}, func(ws *WebSocket) { ws.AllowedOrigins = []string{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := base
			want.AllowedOrigins = []string{"https://a.example.com"}
			tt.want(&want)
			got := tt.o.Apply(base)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Apply =\n%+v\nwant\n%+v", got, want)
			}
			if len(got.AllowedOrigins) > 0 {
				got.AllowedOrigins[0] = "changed"
				if base.AllowedOrigins[0] != "https://a.example.com" || (tt.o.AllowedOrigins != nil && tt.o.AllowedOrigins[0] == "changed") {
					t.Errorf("Apply shares its AllowedOrigins with its inputs")
				}
			}
		})
	}
}

func TestApplyFromYAML(t *testing.T) {
	src := `upstream: http://a
websocket:
  ping_interval: 20s
  allowed_origins: ["https://a.example.com"]
routes:
  - path: /ws/slow
    websocket: {ping_interval: 50s, pong_timeout: 20s, allowed_origins: []}
  - path: /ws/
    upstream: http://b
`
	c, _, err := Parse([]byte(src), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	slow := c.Routes[0].WebSocket.Apply(c.WebSocket)
	if slow.PingInterval.Std() != 50*time.Second || slow.PongTimeout.Std() != 20*time.Second || slow.AllowedOrigins == nil || len(slow.AllowedOrigins) != 0 {
		t.Errorf("routes[0] websocket = %+v, want ping 50s, pong 20s, origins []", slow)
	}
	ws := c.Routes[1].WebSocket.Apply(c.WebSocket)
	if !reflect.DeepEqual(ws, c.WebSocket) {
		t.Errorf("routes[1] websocket = %+v, want the top level %+v", ws, c.WebSocket)
	}
}

func TestEffectiveRoutes(t *testing.T) {
	tests := []struct {
		name   string
		routes []Route
		want   []string
	}{
		{"none", nil, []string{"/"}},
		{"implicit last", []Route{{Path: "/ws/"}, {Path: "/api/"}}, []string{"/ws/", "/api/", "/"}},
		{"explicit root", []Route{{Path: "/ws/"}, {Path: "/", Upstream: "http://b"}}, []string{"/ws/", "/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			c.Routes = tt.routes
			got := c.EffectiveRoutes()
			var paths []string
			for _, r := range got {
				paths = append(paths, r.Path)
			}
			if !reflect.DeepEqual(paths, tt.want) {
				t.Errorf("EffectiveRoutes paths = %q, want %q", paths, tt.want)
			}
			if len(tt.routes) > 0 && &got[0] == &c.Routes[0] {
				t.Errorf("EffectiveRoutes returned c.Routes itself, want a copy")
			}
			if last := got[len(got)-1]; tt.name != "explicit root" && !reflect.DeepEqual(last, Route{Path: "/"}) {
				t.Errorf("implicit route = %+v, want {Path: /}", last)
			}
		})
	}
}

func TestUpstreamFor(t *testing.T) {
	c := valid()
	if got, want := c.UpstreamFor(Route{Path: "/"}), "http://127.0.0.1:3000"; got != want {
		t.Errorf("UpstreamFor(no upstream) = %q, want %q", got, want)
	}
	if got, want := c.UpstreamFor(Route{Path: "/ws/", Upstream: "http://b:1"}), "http://b:1"; got != want {
		t.Errorf("UpstreamFor(own upstream) = %q, want %q", got, want)
	}
}

// TestMarshalParsesBack checks that a Config written with yaml.Marshal (as
// `streamgate validate` might print it) parses back to itself.
func TestMarshalParsesBack(t *testing.T) {
	c, _, err := Load("testdata/sample.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	size := 64 * KiB
	c.Routes = append(c.Routes, Route{Path: "/slow/", Upstream: "http://b:1", WebSocket: WebSocketOverride{
		PingInterval: dur(50 * time.Second), PongTimeout: dur(20 * time.Second), MaxMessageSize: &size,
		AllowedOrigins: []string{}, Compression: new(false),
	}})
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, _, err := Parse(out, "testdata/sample.yaml", nil)
	if err != nil {
		t.Fatalf("Parse(Marshal(sample)):\n%v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, c)
	}
}
