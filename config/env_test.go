package config

import (
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"listen", "STREAMGATE_LISTEN"},
		{"websocket.ping_interval", "STREAMGATE_WEBSOCKET_PING_INTERVAL"},
		{"tls.cert_file", "STREAMGATE_TLS_CERT_FILE"},
		{"upstream_tls.ca_file", "STREAMGATE_UPSTREAM_TLS_CA_FILE"},
	}
	for _, tt := range tests {
		if got := EnvName(tt.path); got != tt.want {
			t.Errorf("EnvName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestEnvSchema checks that the schema derived from the yaml tags gives
// every key its own variable, and that every overridable key can be set.
func TestEnvSchema(t *testing.T) {
	keys := envSchema()
	seen := map[string]string{}
	var paths []string
	for _, k := range keys {
		if other, dup := seen[k.name]; dup {
			t.Errorf("%s is the variable of both %s and %s", k.name, other, k.path)
		}
		seen[k.name] = k.path
		paths = append(paths, k.path)
		if k.list {
			continue
		}
		c := Default()
		sample := map[reflect.Kind]string{reflect.String: "x", reflect.Bool: "true", reflect.Int: "7", reflect.Int64: "3", reflect.Slice: "a,b"}[k.typ.Kind()]
		if k.typ == reflect.TypeFor[Duration]() {
			sample = "3s"
		}
		val, err := parseEnvValue(k.typ, sample)
		if err != nil {
			t.Errorf("%s: %v", k.name, err)
			continue
		}
		k.set(c, val)
	}
	for _, p := range []string{"listen", "tls.cert_file", "upstream_tls.ca_file", "websocket.allowed_origins", "sse.bind_ip", "log.format", "routes"} {
		if !slices.Contains(paths, p) {
			t.Errorf("schema has no key %q", p)
		}
	}
	for _, p := range []string{"file", "routes.path", "routes.websocket.ping_interval"} {
		if slices.Contains(paths, p) {
			t.Errorf("schema has key %q, want none", p)
		}
	}
}

func TestEnvOverrides(t *testing.T) {
	file := "upstream: http://file:3000\nwebsocket:\n  ping_interval: 25s\n  allowed_origins: [\"https://a.example.com\"]\n"
	env := []string{
		"HOME=/root",
		"STREAMGATE_UPSTREAM=http://env:3000",
		"STREAMGATE_WEBSOCKET_PING_INTERVAL=40s",
		"STREAMGATE_WEBSOCKET_MAX_MESSAGE_SIZE=64 KiB",
		"STREAMGATE_WEBSOCKET_ALLOWED_ORIGINS=https://b.example.com, https://c.example.com:8443",
		"STREAMGATE_WEBSOCKET_COMPRESSION=true",
		"STREAMGATE_SSE_PADDING=0",
		"STREAMGATE_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.1",
		"STREAMGATE_ADMIN=",
		"STREAMGATE_LOG_LEVEL=debug",
	}
	c, warnings, err := Parse([]byte(file), "p.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q, want none", warnings)
	}
	tests := []struct {
		key       string
		got, want any
	}{
		{"upstream", c.Upstream, "http://env:3000"},
		{"websocket.ping_interval", c.WebSocket.PingInterval.Std(), 40 * time.Second},
		{"websocket.pong_timeout", c.WebSocket.PongTimeout.Std(), DefaultPongTimeout},
		{"websocket.max_message_size", c.WebSocket.MaxMessageSize, 64 * KiB},
		{"websocket.allowed_origins", c.WebSocket.AllowedOrigins, []string{"https://b.example.com", "https://c.example.com:8443"}},
		{"websocket.compression", c.WebSocket.Compression, true},
		{"sse.padding", c.SSE.Padding, 0},
		{"trusted_proxies", c.TrustedProxies, []string{"10.0.0.0/8", "192.168.1.1"}},
		{"admin", c.Admin, ""},
		{"log.level", c.Log.Level, "debug"},
		{"tls", c.TLS, (*TLS)(nil)},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.key, tt.got, tt.want)
		}
	}
}

func TestEnvWarnings(t *testing.T) {
	env := []string{
		"STREAMGATE_UPSTREAM=http://a",
		"STREAMGATE_PING_INTERVAL=5s",
		"STREAMGATE_ROUTES=/ws/",
		"STREAMGATE_ROUTES_0_PATH=/ws/",
		"STREAMGATE_TLS=on",
		"NOT_STREAMGATE_X=1",
	}
	_, warnings, err := Parse(nil, "p.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"STREAMGATE_PING_INTERVAL ignored: no config key matches it",
		"STREAMGATE_ROUTES ignored: routes cannot be set from the environment",
		"STREAMGATE_ROUTES_0_PATH ignored: routes cannot be set from the environment",
		"STREAMGATE_TLS ignored: no config key matches it",
	}
	if !slices.Equal(warnings, want) {
		t.Errorf("warnings =\n%s\nwant\n%s", strings.Join(warnings, "\n"), strings.Join(want, "\n"))
	}
}

func TestEnvBadValues(t *testing.T) {
	env := []string{
		"STREAMGATE_UPSTREAM=http://a",
		"STREAMGATE_WEBSOCKET_PING_INTERVAL=soon",
		"STREAMGATE_SSE_MAX_SESSIONS=many",
		"STREAMGATE_SSE_BIND_IP=maybe",
		"STREAMGATE_WEBSOCKET_MAX_MESSAGE_SIZE=huge",
		"STREAMGATE_LISTEN=8080",
	}
	_, _, err := Parse([]byte("listen: :80\n"), "p.yaml", env)
	want := strings.Join([]string{
		`env STREAMGATE_LISTEN: listen: "8080" is not host:port (e.g. ":8080" or "127.0.0.1:8080")`,
		`env STREAMGATE_SSE_BIND_IP: sse.bind_ip: invalid boolean "maybe": want true or false`,
		`env STREAMGATE_SSE_MAX_SESSIONS: sse.max_sessions: invalid integer "many"`,
		`env STREAMGATE_WEBSOCKET_MAX_MESSAGE_SIZE: websocket.max_message_size: invalid size "huge": want bytes or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "1MiB"`,
		`env STREAMGATE_WEBSOCKET_PING_INTERVAL: websocket.ping_interval: invalid duration "soon": want a Go duration such as "25s" or "1m30s"`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("error =\n%v\nwant\n%s", err, want)
	}
	errs := mustErrors(t, err)
	if got := errs[0]; got.Line != 0 || got.Key != "listen" || got.File != "env STREAMGATE_LISTEN" {
		t.Errorf("first problem = %+v, want File env STREAMGATE_LISTEN, Line 0, Key listen", *got)
	}
}

func TestEnvCreatesTLSBlock(t *testing.T) {
	env := []string{"STREAMGATE_UPSTREAM=http://a", "STREAMGATE_TLS_DOMAINS=a.example.com,b.example.com", "STREAMGATE_TLS_EMAIL=ops@example.com"}
	c, _, err := Parse(nil, "p.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{Listen: DefaultTLSListen, Domains: []string{"a.example.com", "b.example.com"}, Email: "ops@example.com",
		Storage: DefaultTLSStorage, RedirectHTTP: true}
	if c.TLS == nil || !reflect.DeepEqual(*c.TLS, want) {
		t.Errorf("tls = %+v, want %+v", c.TLS, want)
	}

	// An override of one key keeps the file's other tls keys.
	file := "upstream: http://a\ntls:\n  listen: :9443\n  domains: [a.example.com]\n"
	c, _, err = Parse([]byte(file), "p.yaml", []string{"STREAMGATE_TLS_REDIRECT_HTTP=false"})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.Listen != ":9443" || c.TLS.RedirectHTTP || c.TLS.Storage != DefaultTLSStorage {
		t.Errorf("tls = %+v, want listen :9443, redirect_http false, storage %s", c.TLS, DefaultTLSStorage)
	}

	// A tls block that only the environment creates is blamed on it.
	_, _, err = Parse(nil, "p.yaml", []string{"STREAMGATE_UPSTREAM=http://a", "STREAMGATE_TLS_EMAIL=ops@example.com"})
	if want := "env STREAMGATE_TLS_EMAIL: tls: tls needs domains (ACME) or cert_file and key_file"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}
