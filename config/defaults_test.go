package config

import (
	"reflect"
	"testing"
	"time"
)

func TestDefault(t *testing.T) {
	c := Default()
	tests := []struct {
		key       string
		got, want any
	}{
		{"listen", c.Listen, ":8080"},
		{"upstream", c.Upstream, ""},
		{"admin", c.Admin, "127.0.0.1:9090"},
		{"tls", c.TLS, (*TLS)(nil)},
		{"timeouts.read_header", c.Timeouts.ReadHeader.Std(), 10 * time.Second},
		{"timeouts.http_idle", c.Timeouts.HTTPIdle.Std(), 120 * time.Second},
		{"timeouts.upstream_dial", c.Timeouts.UpstreamDial.Std(), 10 * time.Second},
		{"timeouts.shutdown", c.Timeouts.Shutdown.Std(), 30 * time.Second},
		{"timeouts.drain_delay", c.Timeouts.DrainDelay.Std(), time.Duration(0)},
		{"websocket.ping_interval", c.WebSocket.PingInterval.Std(), 25 * time.Second},
		{"websocket.pong_timeout", c.WebSocket.PongTimeout.Std(), 10 * time.Second},
		{"websocket.idle_timeout", c.WebSocket.IdleTimeout.Std(), time.Duration(0)},
		{"websocket.max_lifetime", c.WebSocket.MaxLifetime.Std(), time.Duration(0)},
		{"websocket.max_message_size", c.WebSocket.MaxMessageSize, ByteSize(1 << 20)},
		{"websocket.allowed_origins", len(c.WebSocket.AllowedOrigins), 0},
		{"websocket.subprotocol_fallback", c.WebSocket.SubprotocolFallback, false},
		{"websocket.compression", c.WebSocket.Compression, false},
		{"sse.heartbeat", c.SSE.Heartbeat.Std(), 15 * time.Second},
		{"sse.retry", c.SSE.Retry.Std(), 2 * time.Second},
		{"sse.padding", c.SSE.Padding, 2048},
		{"sse.replay", c.SSE.Replay, 1000},
		{"sse.session_ttl", c.SSE.SessionTTL.Std(), 60 * time.Second},
		{"sse.max_sessions", c.SSE.MaxSessions, 10000},
		{"sse.binary", c.SSE.Binary, "base64"},
		{"sse.bind_ip", c.SSE.BindIP, false},
		{"routes", len(c.Routes), 0},
		{"limits.max_connections", c.Limits.MaxConnections, 0},
		{"limits.max_connections_per_ip", c.Limits.MaxConnectionsPerIP, 0},
		{"trusted_proxies", len(c.TrustedProxies), 0},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "json"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.key, tt.got, tt.want)
		}
	}
}

func TestDefaultTLS(t *testing.T) {
	got := *defaultTLS()
	want := TLS{Listen: ":8443", Storage: "./certs", RedirectHTTP: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaultTLS() = %+v, want %+v", got, want)
	}
}

// TestSampleMatchesDefaults parses DESIGN.md's sample proxy.yaml (copied to
// testdata) and checks that, apart from the keys it sets on purpose
// (upstream, tls, routes), it says exactly what Default says.
func TestSampleMatchesDefaults(t *testing.T) {
	c, warnings, err := Load("testdata/sample.yaml", nil)
	if err != nil {
		t.Fatalf("Load(sample): %v", err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	if got, want := c.Upstream, "http://127.0.0.1:3000"; got != want {
		t.Errorf("upstream = %q, want %q", got, want)
	}
	wantTLS := TLS{Listen: ":8443", Domains: []string{"app.example.com"}, Email: "ops@example.com",
		Storage: "./certs", RedirectHTTP: true}
	if c.TLS == nil || !reflect.DeepEqual(*c.TLS, wantTLS) {
		t.Errorf("tls = %+v, want %+v", c.TLS, wantTLS)
	}
	wantRoutes := []Route{{Path: "/ws/", SSE: true}}
	if !reflect.DeepEqual(c.Routes, wantRoutes) {
		t.Errorf("routes = %+v, want %+v", c.Routes, wantRoutes)
	}

	c.Upstream, c.TLS, c.Routes, c.File = "", nil, nil, ""
	c.WebSocket.AllowedOrigins, c.TrustedProxies = nil, nil // [] in the sample
	if want := Default(); !reflect.DeepEqual(c, want) {
		t.Errorf("sample without upstream, tls, routes:\n%+v\nwant Default():\n%+v", c, want)
	}
}
