package proxy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// newReverseProxy returns the plain HTTP proxy of one route. httputil
// strips hop-by-hop headers (matching Connection tokens) and, since Rewrite
// is used, any incoming X-Forwarded-* headers; setForwarded puts back a
// trusted proxy's chain. Responses of text/event-stream are flushed on every
// write by httputil itself.
func (s *Server) newReverseProxy(target *url.URL, t *routeTable) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			t.trusted.setForwarded(pr.Out.Header, pr.In)
		},
		Transport: t.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			s.proxyError(w, r, err, t)
		},
		ErrorLog: newStdLogger(s.logger, "reverse proxy"),
	}
}

// proxyError answers a request the upstream could not serve: 504 when the
// dial timed out, 502 otherwise, with a log line naming the cause.
func (s *Server) proxyError(w http.ResponseWriter, r *http.Request, err error, t *routeTable) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away first; there is nobody to answer.
		s.logger.Debug().Str("path", r.URL.Path).Msg("client canceled request")
		return
	}
	status := http.StatusBadGateway
	cause := "upstream unreachable"
	if wsconn.IsTimeout(err) {
		status, cause = http.StatusGatewayTimeout, "upstream timed out"
	}
	s.metrics.upstreamErr.WithLabelValues(strconv.Itoa(status)).Inc()
	level := zerolog.WarnLevel
	if errors.Is(err, wsconn.ErrBackingOff) {
		level = zerolog.DebugLevel // the dial guard logs the burst
	}
	s.logger.WithLevel(level).Err(err).
		Str("method", r.Method).Str("path", r.URL.Path).
		Str("client_ip", t.trusted.clientIP(r)).
		Int("status", status).Msg(cause)
	http.Error(w, http.StatusText(status)+": "+cause, status)
}
