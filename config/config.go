package config

import (
	"slices"
	"time"
)

// Config is the whole proxy.yaml schema after defaults, environment overrides
// and validation. The zero value is not useful; build one with Load or Default.
type Config struct {
	// Listen is the plain HTTP listener address, e.g. ":8080".
	Listen string `yaml:"listen"`
	// Upstream is the app's base URL (http:// or https://); ws:// and wss://
	// upstream URLs are derived from it.
	Upstream string `yaml:"upstream"`
	// Admin is the address of the admin listener (/healthz, /readyz,
	// /metrics); never the public listener. Empty disables it. Default
	// "127.0.0.1:9090".
	Admin string `yaml:"admin"`
	// TLS configures the TLS listener; nil means plain HTTP only.
	TLS *TLS `yaml:"tls"`
	// UpstreamTLS configures TLS towards https:// and wss:// upstreams.
	UpstreamTLS UpstreamTLS `yaml:"upstream_tls"`
	// Timeouts holds the server-wide timeouts.
	Timeouts Timeouts `yaml:"timeouts"`
	// WebSocket holds the top-level WebSocket settings; routes may override them.
	WebSocket WebSocket `yaml:"websocket"`
	// SSE holds the settings of the WebSocket-to-SSE bridge.
	SSE SSE `yaml:"sse"`
	// Routes are tried in order; the first path-prefix match wins.
	Routes []Route `yaml:"routes"`
	// Limits caps concurrent connections.
	Limits Limits `yaml:"limits"`
	// TrustedProxies lists CIDRs (or single IPs) whose X-Forwarded-* headers
	// are believed; others' are overwritten.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// Log configures logging.
	Log Log `yaml:"log"`

	// File is the path the configuration was loaded from ("" for defaults).
	File string `yaml:"-"`
}

// TLS configures the TLS listener: ACME through certmagic, or static files.
//
// Exactly one source of certificates is set: Domains (ACME) or CertFile and
// KeyFile (static). Keys left unset in a present tls block take the
// DefaultTLS* values.
type TLS struct {
	// Listen is the TLS listener address. Default ":8443".
	Listen string `yaml:"listen"`
	// Domains are the host names certmagic obtains certificates for (ACME,
	// HTTP-01 answered on Listen of the Config).
	Domains []string `yaml:"domains"`
	// Email is the ACME account email; optional.
	Email string `yaml:"email"`
	// CA is the ACME directory URL; empty means Let's Encrypt.
	CA string `yaml:"ca"`
	// CARoot is the path of a PEM file holding the ACME server's root
	// certificate (Pebble in tests); empty means the system roots.
	CARoot string `yaml:"ca_root"`
	// Storage is the certmagic storage folder. Default "./certs".
	Storage string `yaml:"storage"`
	// CertFile is the path of a static PEM certificate (chain), used instead
	// of ACME together with KeyFile.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the path of the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
	// RedirectHTTP makes the plain listener redirect to https. Default true.
	RedirectHTTP bool `yaml:"redirect_http"`
	// HSTS is the Strict-Transport-Security header value, e.g.
	// "max-age=31536000"; empty sends no header.
	HSTS string `yaml:"hsts"`
}

// UpstreamTLS configures the TLS client used towards the upstream.
type UpstreamTLS struct {
	// CAFile is the path of a PEM bundle of roots to trust instead of the
	// system roots; empty means the system roots.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify disables verification of the upstream certificate.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// CertFile is the path of a PEM client certificate (mutual TLS), set
	// together with KeyFile; empty means none.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the path of the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
}

// Timeouts are the server-wide timeouts.
type Timeouts struct {
	// ReadHeader bounds reading a request's headers; always > 0. Default 10s.
	ReadHeader Duration `yaml:"read_header"`
	// HTTPIdle is how long an idle keep-alive connection stays open; 0 means
	// never closed for idleness. Default 120s.
	HTTPIdle Duration `yaml:"http_idle"`
	// UpstreamDial bounds connecting to the upstream; always > 0. Default 10s.
	UpstreamDial Duration `yaml:"upstream_dial"`
	// Shutdown is the whole drain budget on SIGTERM; always greater than
	// DrainDelay. Default 30s.
	Shutdown Duration `yaml:"shutdown"`
	// DrainDelay is how long to wait, once /readyz reports 503, before
	// closing anything; it is spent inside Shutdown. Default 0.
	DrainDelay Duration `yaml:"drain_delay"`
}

// WebSocket holds the WebSocket proxy settings.
type WebSocket struct {
	// PingInterval is how often both legs (client and upstream) are pinged;
	// 0 turns pings off. Default 25s.
	PingInterval Duration `yaml:"ping_interval"`
	// PongTimeout is how long a leg may take to answer a ping before it is
	// considered dead; when pings are on it is > 0 and less than
	// PingInterval. Default 10s.
	PongTimeout Duration `yaml:"pong_timeout"`
	// IdleTimeout closes a connection after this long without a data frame
	// in either direction; 0 means never.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxLifetime closes a connection this long after it opened; 0 means
	// never.
	MaxLifetime Duration `yaml:"max_lifetime"`
	// MaxMessageSize is the largest message accepted from either leg, in
	// bytes; 1 byte to 1GiB. Default 1MiB.
	MaxMessageSize ByteSize `yaml:"max_message_size"`
	// AllowedOrigins lists the origins ("https://app.example.com") allowed to
	// connect; empty means the request's own host only; ["*"] means any.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// SubprotocolFallback selects the client's first offered subprotocol when
	// the upstream selects none.
	SubprotocolFallback bool `yaml:"subprotocol_fallback"`
	// Compression enables permessage-deflate on the client leg.
	Compression bool `yaml:"compression"`
}

// WebSocketOverride is a route's websocket block: nil fields inherit the
// top-level WebSocket settings.
// Each field overrides the WebSocket field of the same name; AllowedOrigins
// overrides when non-nil, so an explicit empty list means "same host only".
type WebSocketOverride struct {
	PingInterval        *Duration `yaml:"ping_interval"`
	PongTimeout         *Duration `yaml:"pong_timeout"`
	IdleTimeout         *Duration `yaml:"idle_timeout"`
	MaxLifetime         *Duration `yaml:"max_lifetime"`
	MaxMessageSize      *ByteSize `yaml:"max_message_size"`
	AllowedOrigins      []string  `yaml:"allowed_origins"`
	SubprotocolFallback *bool     `yaml:"subprotocol_fallback"`
	Compression         *bool     `yaml:"compression"`
}

// SSE holds the settings of the WebSocket-to-SSE bridge.
type SSE struct {
	// Heartbeat is the interval of ": ping" comment lines; > 0. Default 15s.
	Heartbeat Duration `yaml:"heartbeat"`
	// Retry is the reconnect delay sent to EventSource in the "retry:"
	// field; > 0. Default 2s.
	Retry Duration `yaml:"retry"`
	// Padding is the size in bytes of the comment sent first, to flush
	// buffering proxies; 0 to 65536, 0 sends none. Default 2048.
	Padding int `yaml:"padding"`
	// Replay is how many events are kept per session for Last-Event-ID
	// resume; 0 to 1,000,000, 0 keeps none. Default 1000.
	Replay int `yaml:"replay"`
	// SessionTTL keeps a session's upstream WebSocket open this long after
	// its last SSE client left; 0 closes it at once. Default 60s.
	SessionTTL Duration `yaml:"session_ttl"`
	// MaxSessions caps concurrent sessions; > 0. Default 10000.
	MaxSessions int `yaml:"max_sessions"`
	// Binary is how binary WebSocket messages become SSE data; only
	// "base64". Default "base64".
	Binary string `yaml:"binary"`
	// BindIP accepts back-channel POSTs only from the stream's client IP.
	BindIP bool `yaml:"bind_ip"`
}

// Route is one entry of routes.
type Route struct {
	// Path is the path prefix the route matches; it starts with "/".
	Path string `yaml:"path"`
	// Upstream is the route's upstream base URL; empty means the top-level
	// Upstream (see Config.UpstreamFor).
	Upstream string `yaml:"upstream"`
	// SSE also offers the route's WebSocket endpoint as Server-Sent Events
	// with a POST back-channel.
	SSE bool `yaml:"sse"`
	// WebSocket overrides the top-level websocket settings for this route
	// (see WebSocketOverride.Apply).
	WebSocket WebSocketOverride `yaml:"websocket"`
}

// Limits caps concurrent connections; 0 means unlimited.
type Limits struct {
	// MaxConnections caps concurrent connections; beyond it requests get 503.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps concurrent connections per client IP; at most
	// MaxConnections when both are set.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
}

// Log configures logging.
type Log struct {
	// Level is one of debug, info, warn, error. Default "info".
	Level string `yaml:"level"`
	// Format is "json" or "console" (for humans). Default "json".
	Format string `yaml:"format"`
}

// Duration is a time.Duration written in YAML as a Go duration string
// ("25s", "1m30s") or "0".
type Duration time.Duration

// ByteSize is a size in bytes written in YAML as "1MiB", "64KiB", "512" etc.
type ByteSize int64

// Apply returns base with the overrides of o applied.
func (o WebSocketOverride) Apply(base WebSocket) WebSocket {
	ws := base
	setIf(&ws.PingInterval, o.PingInterval)
	setIf(&ws.PongTimeout, o.PongTimeout)
	setIf(&ws.IdleTimeout, o.IdleTimeout)
	setIf(&ws.MaxLifetime, o.MaxLifetime)
	setIf(&ws.MaxMessageSize, o.MaxMessageSize)
	setIf(&ws.SubprotocolFallback, o.SubprotocolFallback)
	setIf(&ws.Compression, o.Compression)
	ws.AllowedOrigins = slices.Clone(base.AllowedOrigins)
	if o.AllowedOrigins != nil {
		ws.AllowedOrigins = slices.Clone(o.AllowedOrigins)
	}
	return ws
}

// overrides reports whether o sets the websocket key named by its yaml tag.
func (o WebSocketOverride) overrides(key string) bool {
	switch key {
	case "ping_interval":
		return o.PingInterval != nil
	case "pong_timeout":
		return o.PongTimeout != nil
	case "idle_timeout":
		return o.IdleTimeout != nil
	case "max_lifetime":
		return o.MaxLifetime != nil
	case "max_message_size":
		return o.MaxMessageSize != nil
	case "allowed_origins":
		return o.AllowedOrigins != nil
	case "subprotocol_fallback":
		return o.SubprotocolFallback != nil
	case "compression":
		return o.Compression != nil
	}
	return false
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// EffectiveRoutes returns a copy of the routes in match order, ending with
// the implicit route "/" (top-level upstream and settings) unless a route
// already has path "/".
func (c *Config) EffectiveRoutes() []Route {
	routes := slices.Clone(c.Routes)
	if !slices.ContainsFunc(routes, func(r Route) bool { return r.Path == "/" }) {
		routes = append(routes, Route{Path: "/"})
	}
	return routes
}

// UpstreamFor returns the upstream base URL of r: its own, or else the
// top-level Upstream.
func (c *Config) UpstreamFor(r Route) string {
	if r.Upstream != "" {
		return r.Upstream
	}
	return c.Upstream
}
