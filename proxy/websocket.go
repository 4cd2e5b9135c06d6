package proxy

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// serveWebSocket proxies one WebSocket: it checks the origin and the
// handshake, dials the upstream first (so that a refusal reaches the client
// as the upstream's own HTTP status, never as "open, then 1006"), upgrades
// the client with the subprotocol the upstream chose, then hands both legs
// to a relay goroutine. It reports whether it did; if so, that goroutine
// calls release when the connection ends.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, t *routeTable, rt *route, clientIP string, release func()) bool {
	log := s.requestLog("ws", rt, clientIP, r)
	if !rt.origins.allow(r, t.trusted) {
		s.reject(w, log, "origin", http.StatusForbidden, "origin not allowed", r.Header.Get("Origin"))
		return false
	}
	if status, why := checkHandshake(r); status != 0 {
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		s.reject(w, log, "handshake", status, why, "")
		return false
	}

	offered := websocket.Subprotocols(r)
	up, upHeader, ok := s.dialUpstream(w, r, t, rt, offered, log)
	if !ok {
		return false
	}
	chosen := up.Subprotocol()
	if len(offered) > 0 && chosen == "" {
		if rt.fallback {
			chosen = offered[0]
			log.Info().Strs("offered", offered).Str("selected", chosen).
				Msg("upstream selected no subprotocol; selecting the client's first offer (subprotocol_fallback)")
		} else {
			log.Warn().Strs("offered", offered).
				Msg("client offered subprotocols but the upstream selected none: browsers fail this connection (1006); make the app select one or set websocket.subprotocol_fallback: true")
		}
	}
	respHeader := http.Header{}
	for _, v := range upHeader.Values("Set-Cookie") {
		respHeader.Add("Set-Cookie", v)
	}
	if chosen != "" {
		respHeader.Set("Sec-WebSocket-Protocol", chosen)
	}
	c, err := rt.upgrader.Upgrade(w, r, respHeader)
	if err != nil {
		// Upgrade has answered the client with an HTTP error.
		_ = up.WriteControl(websocket.CloseMessage, wsconn.CloseMessage(websocket.CloseGoingAway, "client handshake failed"), time.Now().Add(time.Second))
		_ = up.Close()
		log.Warn().Err(err).Msg("client upgrade failed")
		return false
	}
	info := wsconn.ConnInfo{ID: newConnID(), Kind: "ws", Route: rt.path, ClientIP: clientIP}
	// The relay runs in the background so that this handler returns and
	// net/http frees the request, its response buffers and the handler's
	// grown stack: an idle proxied WebSocket then holds only its two legs
	// and, on the event loops, no goroutine at all.
	opts := rt.ws
	opts.ClientDeflate = wsconn.NegotiatesDeflate(rt.upgrader, r)
	opts.Poller = s.poller
	rel := wsconn.NewRelay(c, up, opts)
	untrack := s.conns.track("ws", rel.Shutdown)
	active := s.metrics.active.WithLabelValues("ws")
	active.Inc()
	rel.Start(context.Background(), func(res wsconn.Result) {
		defer release()
		defer untrack()
		active.Dec()
		s.metrics.closed.WithLabelValues("ws", string(res.ClosedBy)).Inc()
		wsconn.LogEnd(s.logger, info, res, nil)
	})
	return true
}

// dialUpstream opens the upstream leg. On failure it answers the client:
// the upstream's own status when it refused the handshake, 504 when the
// dial timed out, 502 when it could not connect.
func (s *Server) dialUpstream(w http.ResponseWriter, r *http.Request, t *routeTable, rt *route, offered []string, log zerolog.Logger) (*websocket.Conn, http.Header, bool) {
	target := upstreamWebSocketURL(rt.target, r.URL)
	header := upstreamHeader(r, t.trusted)
	ctx, cancel := context.WithTimeout(r.Context(), rt.dialWait)
	defer cancel()
	start := time.Now()
	up, resp, err := wsconn.Dial(ctx, rt.dialer, target, header, offered)
	elapsed := time.Since(start).Seconds()
	if err == nil {
		s.metrics.dial.WithLabelValues("ok").Observe(elapsed)
		return up, resp.Header, true
	}
	s.metrics.dial.WithLabelValues("error").Observe(elapsed)
	if he, ok := err.(*wsconn.HandshakeError); ok {
		log.Warn().Str("upstream", wsconn.WithoutQuery(target)).Int("upstream_status", he.StatusCode).
			Msg("upstream refused the WebSocket handshake: " + handshakeCause(he.StatusCode))
		copyRefusal(w, he)
		return nil, nil, false
	}
	status, cause := http.StatusBadGateway, "upstream unreachable"
	if wsconn.IsTimeout(err) {
		status, cause = http.StatusGatewayTimeout, "upstream dial timed out after "+rt.dialWait.String()
	}
	s.metrics.upstreamErr.WithLabelValues(strconv.Itoa(status)).Inc()
	level := zerolog.WarnLevel
	if errors.Is(err, wsconn.ErrBackingOff) {
		level = zerolog.DebugLevel // the dial guard logs the burst
	}
	log.WithLevel(level).Err(err).Str("upstream", wsconn.WithoutQuery(target)).Int("status", status).Msg(cause)
	http.Error(w, http.StatusText(status)+": "+cause, status)
	return nil, nil, false
}

// handshakeCause is the likely cause of an upstream refusing a handshake
// with status, for the log.
func handshakeCause(status int) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "the app rejected the credentials or the origin (cookies, Authorization and Origin are forwarded)"
	case status == http.StatusNotFound:
		return "the app has no WebSocket endpoint at this path"
	case status >= 200 && status < 300:
		return "the app answered " + strconv.Itoa(status) + " instead of 101: it does not speak WebSocket at this path, or something between does not pass Upgrade"
	case status == http.StatusBadRequest || status == http.StatusUpgradeRequired:
		return "the app rejected the handshake headers"
	case status >= 500:
		return "the app failed"
	default:
		return "unexpected status"
	}
}

// refusalHeaders are the upstream response headers a refused handshake
// passes on to the client.
var refusalHeaders = []string{"Content-Type", "WWW-Authenticate", "Set-Cookie", "Location", "Retry-After"}

// copyRefusal answers the client with the upstream's refusal: its status,
// the headers that matter to a client and the start of its body.
func copyRefusal(w http.ResponseWriter, he *wsconn.HandshakeError) {
	for _, k := range refusalHeaders {
		for _, v := range he.Header.Values(k) {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(he.Body)))
	w.WriteHeader(he.StatusCode)
	_, _ = w.Write(he.Body)
}

// checkHandshake validates the client's WebSocket handshake before the
// upstream is dialled, so garbage never costs an upstream connection. It
// returns 0 when the handshake is acceptable.
func checkHandshake(r *http.Request) (int, string) {
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "WebSocket handshake must be a GET"
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return http.StatusBadRequest, "WebSocket handshake must not carry a body"
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return http.StatusUpgradeRequired, "unsupported Sec-WebSocket-Version (want 13)"
	}
	key, err := base64.StdEncoding.DecodeString(r.Header.Get("Sec-WebSocket-Key"))
	if err != nil || len(key) != 16 {
		return http.StatusBadRequest, "missing or invalid Sec-WebSocket-Key"
	}
	return 0, ""
}

// handshakeHeaders are the request headers not copied to the upstream
// handshake: hop-by-hop headers, those the dial sets itself (Host and the
// Sec-WebSocket-* handshake), and the forwarding headers, which
// setForwarded writes (Forwarded, which a client could spoof, is dropped).
var handshakeHeaders = map[string]bool{
	"Host": true, "Connection": true, "Upgrade": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Trailer": true, "Transfer-Encoding": true, "Proxy-Authorization": true, "Proxy-Authenticate": true,
	"Sec-Websocket-Key": true, "Sec-Websocket-Version": true, "Sec-Websocket-Extensions": true,
	"Sec-Websocket-Protocol": true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "Forwarded": true,
}

// upstreamHeader is the header of the upstream handshake: the client's
// request headers (cookies, Authorization and Origin included) without
// hop-by-hop and handshake headers, plus X-Forwarded-*.
func upstreamHeader(r *http.Request, t trustedProxies) http.Header {
	h := make(http.Header, len(r.Header)+3)
	hop := map[string]bool{}
	for _, v := range r.Header.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			hop[http.CanonicalHeaderKey(strings.TrimSpace(tok))] = true
		}
	}
	for k, vs := range r.Header {
		if handshakeHeaders[k] || hop[k] {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	t.setForwarded(h, r)
	return h
}

// upstreamWebSocketURL is the upstream WebSocket URL for a request: the
// route's upstream with ws:// for http:// and wss:// for https://, its path
// joined with the request's, and both queries kept.
func upstreamWebSocketURL(target, req *url.URL) string {
	u := *target
	if u.Scheme == "https" {
		u.Scheme = "wss"
	} else {
		u.Scheme = "ws"
	}
	u.Path, u.RawPath = joinURLPath(target, req)
	switch {
	case target.RawQuery == "":
		u.RawQuery = req.RawQuery
	case req.RawQuery != "":
		u.RawQuery = target.RawQuery + "&" + req.RawQuery
	}
	u.Fragment = ""
	return u.String()
}

// joinURLPath joins a's and b's paths with exactly one slash, as
// httputil.ProxyRequest.SetURL does.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}
