package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// valid returns a Config that passes Validate.
func valid() *Config {
	c := Default()
	c.Upstream = "http://127.0.0.1:3000"
	return c
}

func dur(d time.Duration) *Duration { return (*Duration)(&d) }

func TestValidateValid(t *testing.T) {
	cert, key := writeKeyPair(t, t.TempDir(), "a", time.Now().Add(time.Hour))
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"defaults with upstream", func(c *Config) {}},
		{"pings off", func(c *Config) { c.WebSocket.PingInterval, c.WebSocket.PongTimeout = 0, 0 }},
		{"no admin", func(c *Config) { c.Admin = "" }},
		{"admin on another port", func(c *Config) { c.Admin = ":9090" }},
		{"listen on port 0 twice", func(c *Config) { c.Listen, c.Admin = "127.0.0.1:0", "127.0.0.1:0" }},
		{"acme", func(c *Config) {
			c.TLS = &TLS{Listen: ":8443", Domains: []string{"app.example.com", "localhost"}, CA: "https://localhost:14000/dir"}
		}},
		{"static certs", func(c *Config) { c.TLS = &TLS{Listen: "[::1]:8443", CertFile: cert, KeyFile: key} }},
		{"upstream mtls", func(c *Config) { c.UpstreamTLS = UpstreamTLS{CAFile: cert, CertFile: cert, KeyFile: key} }},
		{"https upstream with path", func(c *Config) { c.Upstream = "https://app.internal:8443/base" }},
		{"origins", func(c *Config) {
			c.WebSocket.AllowedOrigins = []string{"https://a.example.com", "http://localhost:3000"}
		}},
		{"any origin", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"*"} }},
		{"routes", func(c *Config) {
			c.Routes = []Route{{Path: "/ws/chat", SSE: true}, {Path: "/ws/", Upstream: "http://other:1"}, {Path: "/"}}
		}},
		{"limits", func(c *Config) { c.Limits = Limits{MaxConnections: 100, MaxConnectionsPerIP: 100} }},
		{"per-ip only", func(c *Config) { c.Limits = Limits{MaxConnectionsPerIP: 10} }},
		{"trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "::1", "fd00::/8", "192.168.0.1"} }},
		{"zero padding and replay", func(c *Config) { c.SSE.Padding, c.SSE.Replay, c.SSE.SessionTTL = 0, 0, 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(c)
			if err := c.Validate(); err != nil {
				t.Errorf("Validate() = %v, want nil", err)
			}
		})
	}
}

func TestValidateInvalid(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a", time.Now().Add(time.Hour))
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name string
		edit func(c *Config)
		key  string
		msg  string // a prefix of the problem's Msg
	}{
		{"no listen", func(c *Config) { c.Listen = "" }, "listen", "required"},
		{"listen without port", func(c *Config) { c.Listen = "8080" }, "listen", `"8080" is not host:port`},
		{"listen bad port", func(c *Config) { c.Listen = ":http" }, "listen", `":http": port "http" is not a number`},
		{"no upstream", func(c *Config) { c.Upstream = "" }, "upstream", "required"},
		{"upstream without scheme", func(c *Config) { c.Upstream = "127.0.0.1:3000" }, "upstream", `"127.0.0.1:3000" needs a scheme`},
		{"ws upstream", func(c *Config) { c.Upstream = "ws://a:1" }, "upstream", `"ws://a:1": use http:// or https://`},
		{"ftp upstream", func(c *Config) { c.Upstream = "ftp://a" }, "upstream", `"ftp://a": scheme must be http or https`},
		{"upstream without host", func(c *Config) { c.Upstream = "http:///x" }, "upstream", `"http:///x" has no host`},
		{"upstream with query", func(c *Config) { c.Upstream = "http://a/?x=1" }, "upstream", "\"http://a/?x=1\" must not have a query or fragment"},
		{"upstream with fragment", func(c *Config) { c.Upstream = "http://a/#x" }, "upstream", "\"http://a/#x\" must not have a query or fragment"},
		{"admin is listen", func(c *Config) { c.Admin = ":8080" }, "admin", `":8080" collides with listen ":8080"`},
		{"admin on wildcard port", func(c *Config) { c.Admin, c.Listen = "127.0.0.1:8080", ":8080" }, "admin", `"127.0.0.1:8080" collides`},
		{"admin bad", func(c *Config) { c.Admin = "localhost" }, "admin", `"localhost" is not host:port`},
		{"admin is tls listen", func(c *Config) {
			c.Admin = ":8443"
			c.TLS = &TLS{Listen: ":8443", Domains: []string{"a.example.com"}}
		}, "admin", `":8443" collides with tls.listen ":8443"`},
		{"tls listen is listen", func(c *Config) { c.TLS = &TLS{Listen: ":8080", Domains: []string{"a.example.com"}} }, "tls.listen", `":8080" collides with listen`},
		{"tls without listen", func(c *Config) { c.TLS = &TLS{Domains: []string{"a.example.com"}} }, "tls.listen", "required"},
		{"tls without certs", func(c *Config) { c.TLS = &TLS{Listen: ":8443"} }, "tls", "tls needs domains (ACME) or cert_file and key_file"},
		{"tls both", func(c *Config) {
			c.TLS = &TLS{Listen: ":8443", Domains: []string{"a.example.com"}, CertFile: cert, KeyFile: key}
		}, "tls", "set domains (ACME) or cert_file and key_file, not both"},
		{"cert without key", func(c *Config) { c.TLS = &TLS{Listen: ":8443", CertFile: cert} }, "tls.key_file", "required when cert_file is set"},
		{"key without cert", func(c *Config) { c.TLS = &TLS{Listen: ":8443", KeyFile: cert} }, "tls.cert_file", "required when key_file is set"},
		{"missing cert", func(c *Config) { c.TLS = &TLS{Listen: ":8443", CertFile: missing, KeyFile: key} }, "tls.cert_file",
			`cannot read "` + missing + `": no such file or directory`},
		{"cert is a directory", func(c *Config) { c.TLS = &TLS{Listen: ":8443", CertFile: dir, KeyFile: key} }, "tls.cert_file",
			`cannot read "` + dir + `": is a directory`},
		{"missing ca_root", func(c *Config) { c.TLS = &TLS{Listen: ":8443", Domains: []string{"a.example.com"}, CARoot: missing} }, "tls.ca_root", "cannot read"},
		{"domain with scheme", func(c *Config) { c.TLS = &TLS{Listen: ":8443", Domains: []string{"https://a.example.com"}} }, "tls.domains[0]", "\"https://a.example.com\": a domain has no scheme"},
		{"domain with port", func(c *Config) { c.TLS = &TLS{Listen: ":8443", Domains: []string{"a.example.com:443"}} }, "tls.domains[0]", "\"a.example.com:443\": a domain has no port"},
		{"wildcard domain", func(c *Config) { c.TLS = &TLS{Listen: ":8443", Domains: []string{"ok.example.com", "*.example.com"}} }, "tls.domains[1]", `"*.example.com": wildcard`},
		{"bad domain", func(c *Config) { c.TLS = &TLS{Listen: ":8443", Domains: []string{"a_b.example.com"}} }, "tls.domains[0]", `"a_b.example.com" is not a valid host name`},
		{"bad ca", func(c *Config) {
			c.TLS = &TLS{Listen: ":8443", Domains: []string{"a.example.com"}, CA: "acme.example.com/dir"}
		}, "tls.ca", `"acme.example.com/dir" is not an http:// or https:// URL`},
		{"upstream cert without key", func(c *Config) { c.UpstreamTLS.CertFile = cert }, "upstream_tls.key_file", "required when cert_file is set"},
		{"missing upstream ca", func(c *Config) { c.UpstreamTLS.CAFile = missing }, "upstream_tls.ca_file", "cannot read"},
		{"negative duration", func(c *Config) { c.Timeouts.HTTPIdle = -1 }, "timeouts.http_idle", "-1ns: must not be negative"},
		{"no read_header", func(c *Config) { c.Timeouts.ReadHeader = 0 }, "timeouts.read_header", "must be greater than 0: without it"},
		{"no upstream_dial", func(c *Config) { c.Timeouts.UpstreamDial = 0 }, "timeouts.upstream_dial", "must be greater than 0"},
		{"drain longer than shutdown", func(c *Config) { c.Timeouts.DrainDelay = Duration(30 * time.Second) }, "timeouts.shutdown",
			"30s must be greater than drain_delay (30s): the drain delay is spent inside the shutdown budget"},
		{"pong equals ping", func(c *Config) { c.WebSocket.PongTimeout = c.WebSocket.PingInterval }, "websocket.pong_timeout",
			"25s must be less than ping_interval (25s): the pong must come back before the next ping is due"},
		{"no pong", func(c *Config) { c.WebSocket.PongTimeout = 0 }, "websocket.pong_timeout", "must be greater than 0 while pings are on"},
		{"negative ping", func(c *Config) { c.WebSocket.PingInterval = -1 }, "websocket.ping_interval", "-1ns: must not be negative"},
		{"no message size", func(c *Config) { c.WebSocket.MaxMessageSize = 0 }, "websocket.max_message_size", "0B: must be greater than 0 and at most 1GiB"},
		{"huge message size", func(c *Config) { c.WebSocket.MaxMessageSize = GiB + 1 }, "websocket.max_message_size", "1073741825B: must be greater than 0"},
		{"origin with path", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"https://a.example.com/"} }, "websocket.allowed_origins[0]", `"https://a.example.com/" is not an origin`},
		{"origin without scheme", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"https://ok", "a.example.com"} }, "websocket.allowed_origins[1]", `"a.example.com" is not an origin`},
		{"origin ws scheme", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"ws://a.example.com"} }, "websocket.allowed_origins[0]", `"ws://a.example.com" is not an origin`},
		{"star mixed", func(c *Config) { c.WebSocket.AllowedOrigins = []string{"*", "https://a.example.com"} }, "websocket.allowed_origins", `"*" allows any origin and cannot be mixed`},
		{"no heartbeat", func(c *Config) { c.SSE.Heartbeat = 0 }, "sse.heartbeat", "must be greater than 0"},
		{"no retry", func(c *Config) { c.SSE.Retry = 0 }, "sse.retry", "must be greater than 0"},
		{"padding too big", func(c *Config) { c.SSE.Padding = 65537 }, "sse.padding", "65537: must be between 0 and 65536"},
		{"negative replay", func(c *Config) { c.SSE.Replay = -1 }, "sse.replay", "-1: must be between 0 and 1000000"},
		{"replay too big", func(c *Config) { c.SSE.Replay = 1_000_001 }, "sse.replay", "1000001: must be between 0 and 1000000"},
		{"negative session ttl", func(c *Config) { c.SSE.SessionTTL = -1 }, "sse.session_ttl", "-1ns: must not be negative"},
		{"no sessions", func(c *Config) { c.SSE.MaxSessions = 0 }, "sse.max_sessions", "0: must be greater than 0"},
		{"binary hex", func(c *Config) { c.SSE.Binary = "hex" }, "sse.binary", `"hex": want one of base64`},
		{"route without path", func(c *Config) { c.Routes = []Route{{}} }, "routes[0].path", "required"},
		{"route relative path", func(c *Config) { c.Routes = []Route{{Path: "ws/"}} }, "routes[0].path", `"ws/" must start with "/"`},
		{"route path with query", func(c *Config) { c.Routes = []Route{{Path: "/ws?x"}} }, "routes[0].path", `"/ws?x" must be a path`},
		{"route bad upstream", func(c *Config) { c.Routes = []Route{{Path: "/ws/", Upstream: "wss://x"}} }, "routes[0].upstream", `"wss://x": use http:// or https://`},
		{"route pong over ping", func(c *Config) {
			c.Routes = []Route{{Path: "/ws/", WebSocket: WebSocketOverride{PingInterval: dur(5 * time.Second)}}}
		}, "routes[0].websocket.pong_timeout", "10s must be less than ping_interval (5s)"},
		{"route origins", func(c *Config) {
			c.Routes = []Route{{Path: "/ws/", WebSocket: WebSocketOverride{AllowedOrigins: []string{"nope"}}}}
		}, "routes[0].websocket.allowed_origins[0]", `"nope" is not an origin`},
		{"negative limit", func(c *Config) { c.Limits.MaxConnections = -1 }, "limits.max_connections", "-1: must not be negative"},
		{"per-ip over total", func(c *Config) { c.Limits = Limits{MaxConnections: 10, MaxConnectionsPerIP: 11} }, "limits.max_connections_per_ip",
			"11 must not exceed max_connections (10)"},
		{"bad trusted proxy", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33"} }, "trusted_proxies[1]", `"10.0.0.0/33" is neither a CIDR nor an IP address`},
		{"bad log level", func(c *Config) { c.Log.Level = "trace" }, "log.level", `"trace": want one of debug, info, warn, error`},
		{"bad log format", func(c *Config) { c.Log.Format = "text" }, "log.format", `"text": want one of json, console`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.edit(c)
			err := c.Validate()
			errs := mustErrors(t, err)
			if len(errs) != 1 {
				t.Errorf("got %d problems, want 1:\n%v", len(errs), err)
			}
			if got := errs[0]; got.Key != tt.key || !strings.HasPrefix(got.Msg, tt.msg) {
				t.Errorf("got %q: %q\nwant %q: %q...", got.Key, got.Msg, tt.key, tt.msg)
			}
		})
	}
}

func TestValidateUnreadableFileUnwraps(t *testing.T) {
	c := valid()
	c.UpstreamTLS.CAFile = filepath.Join(t.TempDir(), "nope.pem")
	err := c.Validate()
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want true", err)
	}
}

func TestValidateShadowedRoutes(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  []string // "key: msg" per problem
	}{
		{"specific first", []string{"/ws/chat", "/ws/", "/"}, nil},
		{"catch-all first", []string{"/", "/ws/"}, []string{`routes[1].path: never matched: routes[0] path "/" matches first`}},
		{"prefix first", []string{"/ws", "/api", "/ws/chat"}, []string{`routes[2].path: never matched: routes[0] path "/ws" matches first`}},
		{"duplicate", []string{"/a", "/a"}, []string{`routes[1].path: never matched: duplicate of routes[0] path "/a", which matches first`}},
		{"reported once per route", []string{"/", "/a", "/a/b"}, []string{
			`routes[1].path: never matched: routes[0] path "/" matches first`,
			`routes[2].path: never matched: routes[0] path "/" matches first`,
		}},
		{"invalid earlier path shadows nothing", []string{"", "/a"}, []string{"routes[0].path: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			for _, p := range tt.paths {
				c.Routes = append(c.Routes, Route{Path: p})
			}
			var got []string
			if err := c.Validate(); err != nil {
				for _, fe := range mustErrors(t, err) {
					got = append(got, fe.Key+": "+fe.Msg)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestValidateRouteInheritsOnce checks that a bad top-level websocket value
// is reported at the top level only, not again for each route inheriting it.
func TestValidateRouteInheritsOnce(t *testing.T) {
	c := valid()
	c.WebSocket.PongTimeout = c.WebSocket.PingInterval
	c.Routes = []Route{{Path: "/a/"}, {Path: "/b/", WebSocket: WebSocketOverride{Compression: new(true)}}}
	errs := mustErrors(t, c.Validate())
	if len(errs) != 1 || errs[0].Key != "websocket.pong_timeout" {
		t.Errorf("problems:\n%v\nwant one, on websocket.pong_timeout", errs)
	}

	// A route that turns pings off is fine even if the top level is not.
	c.Routes = []Route{{Path: "/a/", WebSocket: WebSocketOverride{PingInterval: dur(0)}}}
	errs = mustErrors(t, c.Validate())
	if len(errs) != 1 {
		t.Errorf("problems:\n%v\nwant one", errs)
	}
}

// TestParsePlacesValidationErrors checks which key and line a contradiction
// is reported on: the key the file sets, or the block holding a default.
func TestParsePlacesValidationErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"pong set", "upstream: http://a\nwebsocket:\n  pong_timeout: 30s\n",
			"p.yaml:3: websocket.pong_timeout: 30s must be less than ping_interval (25s): the pong must come back before the next ping is due"},
		{"ping set", "upstream: http://a\nwebsocket:\n  ping_interval: 5s\n",
			"p.yaml:3: websocket.ping_interval: 5s must be greater than pong_timeout (10s): the pong must come back before the next ping is due"},
		{"default under a block", "upstream: http://a\ntls:\n  domains: [a.example.com]\n  listen: :8080\n",
			`p.yaml:4: tls.listen: ":8080" collides with listen ":8080"`},
		{"route ping set", "upstream: http://a\nroutes:\n  - path: /ws/\n    websocket:\n      ping_interval: 5s\n",
			"p.yaml:5: routes[0].websocket.ping_interval: 5s must be greater than pong_timeout (10s): the pong must come back before the next ping is due"},
		{"list item", "upstream: http://a\ntrusted_proxies:\n  - 10.0.0.0/8\n  - nope\n",
			`p.yaml:4: trusted_proxies[1]: "nope" is neither a CIDR nor an IP address`},
		{"unset top-level key", "listen: :80\n", "p.yaml: upstream: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// writeKeyPair writes a self-signed certificate valid until notAfter and its
// private key, both PEM, to dir as name.crt and name.key and returns their
// paths.
func writeKeyPair(t *testing.T, dir, name string, notAfter time.Time) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notAfter.Add(-2 * time.Hour),
		NotAfter:     notAfter,
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for path, block := range map[string]*pem.Block{cert: {Type: "CERTIFICATE", Bytes: der}, key: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key
}

// TestParseChecksFileContents checks that the certificate, key and CA files
// a config names are loaded as the proxy will load them, and that a file
// that would stop the proxy from starting is a problem on its key and line.
func TestParseChecksFileContents(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeKeyPair(t, dir, "a", time.Now().Add(time.Hour))
	_, otherKey := writeKeyPair(t, dir, "b", time.Now().Add(time.Hour))
	expired, expiredKey := writeKeyPair(t, dir, "old", time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tlsBlock := func(cert, key string) string {
		return fmt.Sprintf("upstream: http://a\ntls:\n  listen: \":8443\"\n  cert_file: %q\n  key_file: %q\n", cert, key)
	}
	upstreamBlock := func(ca, cert, key string) string {
		return fmt.Sprintf("upstream: https://a\nupstream_tls:\n  ca_file: %q\n  cert_file: %q\n  key_file: %q\n", ca, cert, key)
	}
	tests := []struct {
		name, src string
		want      []string // each a prefix of one problem, in order
	}{
		{"tls pair", tlsBlock(cert, key), nil},
		{"tls key of another certificate", tlsBlock(cert, otherKey), []string{
			fmt.Sprintf("p.yaml:5: tls.key_file: %q is not the key of cert_file %q: tls: private key does not match public key", otherKey, cert),
		}},
		{"tls junk key", tlsBlock(cert, junk), []string{
			fmt.Sprintf("p.yaml:5: tls.key_file: %q is not the key of cert_file %q: tls: failed to find any PEM data in key input", junk, cert),
		}},
		{"tls junk certificate", tlsBlock(junk, key), []string{
			fmt.Sprintf("p.yaml:4: tls.cert_file: %q holds no certificate: tls: failed to find any PEM data in certificate input", junk),
		}},
		{"tls key as certificate", tlsBlock(key, key), []string{
			fmt.Sprintf("p.yaml:4: tls.cert_file: %q holds no certificate: tls: ", key),
		}},
		{"tls expired certificate", tlsBlock(expired, expiredKey), []string{
			fmt.Sprintf("p.yaml:4: tls.cert_file: %q: certificate expired on 2020-01-02T03:04:05Z", expired),
		}},
		{"tls ca_root without a certificate", "upstream: http://a\ntls:\n  domains: [a.example.com]\n  ca_root: " + strconv.Quote(junk) + "\n", []string{
			fmt.Sprintf("p.yaml:4: tls.ca_root: %q holds no PEM certificate", junk),
		}},
		{"tls certificate a device", tlsBlock("/dev/zero", key), []string{
			`p.yaml:4: tls.cert_file: cannot read "/dev/zero": not a regular file`,
		}},
		{"upstream mtls", upstreamBlock(cert, cert, key), nil},
		{"upstream expired client certificate", upstreamBlock(cert, expired, expiredKey), nil}, // the proxy starts with it
		{"upstream key of another certificate", upstreamBlock(cert, cert, otherKey), []string{
			fmt.Sprintf("p.yaml:5: upstream_tls.key_file: %q is not the key of cert_file %q: tls: private key does not match public key", otherKey, cert),
		}},
		{"upstream junk ca and certificate", upstreamBlock(junk, junk, key), []string{
			fmt.Sprintf("p.yaml:3: upstream_tls.ca_file: %q holds no PEM certificate", junk),
			fmt.Sprintf("p.yaml:4: upstream_tls.cert_file: %q holds no certificate: ", junk),
		}},
		{"unreadable files are not loaded", tlsBlock(filepath.Join(dir, "missing.crt"), junk), []string{
			"p.yaml:4: tls.cert_file: cannot read",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			var got []string
			if err != nil {
				for _, fe := range mustErrors(t, err) {
					got = append(got, fe.Error())
				}
			}
			ok := len(got) == len(tt.want)
			for i := 0; ok && i < len(got); i++ {
				ok = strings.HasPrefix(got[i], tt.want[i])
			}
			if !ok {
				t.Errorf("problems:\n%s\nwant (prefixes)\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}
