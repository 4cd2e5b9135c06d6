package proxy

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge"
	"github.com/streamgate/streamgate/bridge/wsconn"
	"github.com/streamgate/streamgate/config"
)

// routeTable is one immutable snapshot of the routing configuration. A
// request resolves its route once and keeps it to the end, so a reload
// never changes a live connection's settings.
type routeTable struct {
	routes    []*route
	trusted   trustedProxies
	limits    config.Limits
	timeouts  config.Timeouts
	transport *http.Transport
	ready     *readiness // /readyz's check of the top-level upstream
}

// route is one entry of the table, its settings already merged with the
// top-level ones.
type route struct {
	path     string
	target   *url.URL // the http(s) upstream
	ws       wsconn.Options
	origins  originPolicy
	fallback bool // websocket.subprotocol_fallback
	upgrader *websocket.Upgrader
	dialer   *websocket.Dialer
	dialWait time.Duration
	http     *httputil.ReverseProxy
	bridge   *bridge.Bridge // nil unless the route has sse: true
}

// match returns the first route whose path is a prefix of p. The table
// always ends with a "/" route, so there is always one.
func (t *routeTable) match(p string) *route {
	for _, rt := range t.routes {
		if strings.HasPrefix(p, rt.path) {
			return rt
		}
	}
	return t.routes[len(t.routes)-1]
}

// buildTable maps a validated config onto a route table: this is the one
// place where config types become the option structs of wsconn and bridge.
func (s *Server) buildTable(cfg *config.Config) (*routeTable, error) {
	upTLS, err := upstreamTLSConfig(cfg.UpstreamTLS)
	if err != nil {
		return nil, err
	}
	if cfg.UpstreamTLS.InsecureSkipVerify {
		s.logger.Warn().Msg("upstream_tls.insecure_skip_verify is on: upstream certificates are NOT verified; anyone on the path can impersonate the app")
	}
	dialWait := cfg.Timeouts.UpstreamDial.Std()
	// Every upstream connection, HTTP, WebSocket or SSE bridge, is dialled
	// through one guard, which backs off from an upstream that is down.
	guard := wsconn.NewDialGuard(&net.Dialer{Timeout: dialWait, KeepAlive: 30 * time.Second}, s.logger)
	t := &routeTable{
		trusted:   parseTrusted(cfg.TrustedProxies),
		limits:    cfg.Limits,
		timeouts:  cfg.Timeouts,
		transport: newTransport(guard, dialWait, upTLS),
		ready:     newReadiness(cfg.Upstream, dialWait),
	}
	dialOpts := wsconn.DialOptions{Timeout: dialWait, TLSConfig: upTLS, BufferPool: s.bufferPool,
		NetDialContext: guard.DialContext}
	dialer := wsconn.NewDialer(dialOpts)
	// A bridge's upstream leg is read by gorilla for the session's whole
	// life, and a proxy holds thousands of them: a small read buffer.
	dialOpts.ReadBufferSize = bridgeReadBufferSize
	bridgeDialer := wsconn.NewDialer(dialOpts)
	for _, r := range cfg.EffectiveRoutes() {
		target, err := url.Parse(cfg.UpstreamFor(r))
		if err != nil {
			return nil, fmt.Errorf("route %s: upstream: %w", r.Path, err)
		}
		ws := r.WebSocket.Apply(cfg.WebSocket)
		rt := &route{
			path:     r.Path,
			target:   target,
			ws:       relayOptions(ws),
			origins:  newOriginPolicy(ws.AllowedOrigins),
			fallback: ws.SubprotocolFallback,
			upgrader: wsconn.NewUpgrader(ws.Compression, s.bufferPool),
			dialer:   dialer,
			dialWait: dialWait,
		}
		rt.ws.Metrics = s.relayMetrics
		rt.http = s.newReverseProxy(target, t)
		if r.SSE {
			if rt.bridge, err = s.bridgeFor(cfg, t, rt, bridgeDialer); err != nil {
				return nil, fmt.Errorf("route %s: %w", r.Path, err)
			}
		}
		t.routes = append(t.routes, rt)
	}
	return t, nil
}

// bridgeReadBufferSize is the read buffer of an SSE bridge's upstream
// leg (see wsconn.DialOptions.ReadBufferSize): 512 B, where a relayed
// WebSocket's gorilla connection has 2 KiB.
const bridgeReadBufferSize = 512

// bridgeFor returns the SSE bridge of a route. Bridges hold sessions that
// clients resume, so a reload that leaves a route's bridge settings as they
// were (its path and upstream, the sse block, the keepalive and size limit
// of the upstream leg, origins and trusted proxies) carries the same Bridge
// over; one whose settings changed gets a new
// Bridge, and the old one is closed when the reload commits (its streams
// end with a retry hint and resume on the new one as fresh sessions).
func (s *Server) bridgeFor(cfg *config.Config, t *routeTable, rt *route, dialer *websocket.Dialer) (*bridge.Bridge, error) {
	key := fmt.Sprintf("%s|%s|%+v|%v/%v/%v|%v|%v", rt.path, rt.target, cfg.SSE,
		rt.ws.PingInterval, rt.ws.PongTimeout, rt.ws.MaxMessageSize, rt.origins, cfg.TrustedProxies)
	if b, ok := s.bridges[key]; ok {
		s.nextBridges[key] = b
		return b, nil
	}
	leg := rt.ws
	leg.Metrics = s.bridgeLegMetrics
	b, err := bridge.New(bridge.Options{
		Route:       rt.path,
		Heartbeat:   cfg.SSE.Heartbeat.Std(),
		Retry:       cfg.SSE.Retry.Std(),
		SessionTTL:  cfg.SSE.SessionTTL.Std(),
		Padding:     cfg.SSE.Padding,
		Replay:      cfg.SSE.Replay,
		MaxSessions: cfg.SSE.MaxSessions,
		BindIP:      cfg.SSE.BindIP,
		Leg:         leg,
		Dialer:      dialer,
		Upstream: func(r *http.Request) (string, http.Header) {
			return upstreamWebSocketURL(rt.target, r.URL), upstreamHeader(r, t.trusted)
		},
		CheckOrigin: func(r *http.Request) bool { return rt.origins.allow(r, t.trusted) },
		CORSOrigin: func(r *http.Request) bool {
			return rt.origins.crossOrigin() && r.Header.Get("Origin") != "" && rt.origins.allow(r, t.trusted)
		},
		ClientIP: t.trusted.clientIP,
		Track:    func(end func()) func() { return s.conns.track("sse", end) },
		Poller:   s.poller,
		Logger:   s.logger,
		Metrics:  s.bridgeMetrics,
	})
	if err != nil {
		return nil, err
	}
	s.nextBridges[key] = b
	return b, nil
}

// relayOptions maps a route's merged websocket block onto relay options.
func relayOptions(ws config.WebSocket) wsconn.Options {
	return wsconn.Options{
		PingInterval:   ws.PingInterval.Std(),
		PongTimeout:    ws.PongTimeout.Std(),
		IdleTimeout:    ws.IdleTimeout.Std(),
		MaxLifetime:    ws.MaxLifetime.Std(),
		MaxMessageSize: int64(ws.MaxMessageSize),
	}
}

// newTransport is the HTTP client transport to the upstream. It never uses
// an environment proxy: a sidecar talks to its app directly.
func newTransport(guard *wsconn.DialGuard, dialWait time.Duration, tlsConf *tls.Config) *http.Transport {
	return &http.Transport{
		DialContext:           guard.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   dialWait,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
