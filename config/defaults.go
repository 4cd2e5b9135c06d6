package config

import "time"

// Defaults of every key, as in DESIGN.md's sample proxy.yaml. Keys not listed
// here default to their zero value: no upstream (it is required), no TLS
// block, no routes, no allowed origins, no trusted proxies, no limits.
const (
	DefaultListen = ":8080"
	DefaultAdmin  = "127.0.0.1:9090"

	// Defaults of a tls block that is present but leaves these keys unset.
	DefaultTLSListen       = ":8443"
	DefaultTLSStorage      = "./certs"
	DefaultTLSRedirectHTTP = true

	DefaultReadHeaderTimeout   = 10 * time.Second
	DefaultHTTPIdleTimeout     = 120 * time.Second
	DefaultUpstreamDialTimeout = 10 * time.Second
	DefaultShutdownTimeout     = 30 * time.Second
	DefaultDrainDelay          = 0 * time.Second

	DefaultPingInterval   = 25 * time.Second
	DefaultPongTimeout    = 10 * time.Second
	DefaultIdleTimeout    = 0 * time.Second // never
	DefaultMaxLifetime    = 0 * time.Second // unlimited
	DefaultMaxMessageSize = 1 << 20

	DefaultSSEHeartbeat   = 15 * time.Second
	DefaultSSERetry       = 2 * time.Second
	DefaultSSEPadding     = 2048
	DefaultSSEReplay      = 1000
	DefaultSSESessionTTL  = 60 * time.Second
	DefaultSSEMaxSessions = 10000
	DefaultSSEBinary      = "base64"

	DefaultLogLevel  = "info"
	DefaultLogFormat = "json"
)

// Default returns a new Config holding every default. Its Upstream is empty,
// so it does not validate until one is set.
func Default() *Config {
	return &Config{
		Listen: DefaultListen,
		Admin:  DefaultAdmin,
		Timeouts: Timeouts{
			ReadHeader:   Duration(DefaultReadHeaderTimeout),
			HTTPIdle:     Duration(DefaultHTTPIdleTimeout),
			UpstreamDial: Duration(DefaultUpstreamDialTimeout),
			Shutdown:     Duration(DefaultShutdownTimeout),
			DrainDelay:   Duration(DefaultDrainDelay),
		},
		WebSocket: WebSocket{
			PingInterval:   Duration(DefaultPingInterval),
			PongTimeout:    Duration(DefaultPongTimeout),
			IdleTimeout:    Duration(DefaultIdleTimeout),
			MaxLifetime:    Duration(DefaultMaxLifetime),
			MaxMessageSize: DefaultMaxMessageSize,
		},
		SSE: SSE{
			Heartbeat:   Duration(DefaultSSEHeartbeat),
			Retry:       Duration(DefaultSSERetry),
			Padding:     DefaultSSEPadding,
			Replay:      DefaultSSEReplay,
			SessionTTL:  Duration(DefaultSSESessionTTL),
			MaxSessions: DefaultSSEMaxSessions,
			Binary:      DefaultSSEBinary,
		},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// defaultTLS returns the defaults of a tls block, used when the file or the
// environment has one.
func defaultTLS() *TLS {
	return &TLS{
		Listen:       DefaultTLSListen,
		Storage:      DefaultTLSStorage,
		RedirectHTTP: DefaultTLSRedirectHTTP,
	}
}
