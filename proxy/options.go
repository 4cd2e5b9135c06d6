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
	dialWait := cfg.Timeouts.UpstreamDial.Std()
	t := &routeTable{
		trusted:   parseTrusted(cfg.TrustedProxies),
		limits:    cfg.Limits,
		timeouts:  cfg.Timeouts,
		transport: newTransport(dialWait, upTLS),
	}
	dialer := wsconn.NewDialer(wsconn.DialOptions{Timeout: dialWait, TLSConfig: upTLS, BufferPool: s.bufferPool})
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
		t.routes = append(t.routes, rt)
	}
	return t, nil
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
func newTransport(dialWait time.Duration, tlsConf *tls.Config) *http.Transport {
	d := &net.Dialer{Timeout: dialWait, KeepAlive: 30 * time.Second}
	return &http.Transport{
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   dialWait,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
