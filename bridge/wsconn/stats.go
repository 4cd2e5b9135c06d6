package wsconn

import "github.com/rs/zerolog"

// ConnInfo identifies a connection in its end-of-connection log line.
type ConnInfo struct {
	// ID is the connection's id (the session id for SSE).
	ID string
	// Kind is "ws" or "sse".
	Kind string
	// Route is the path prefix of the route that served the connection.
	Route string
	// ClientIP is the client's address as the proxy believes it.
	ClientIP string
}

// LogEnd writes the one Info line that ends every connection, with the
// fields DESIGN.md names: conn, kind, route, client_ip, duration (seconds),
// bytes_up, bytes_down, msgs_up, msgs_down, client_code, upstream_code,
// closed_by and, when there was one, error. extra, if not nil, adds fields
// of the caller's (the SSE bridge adds the session's replay counts).
func LogEnd(l zerolog.Logger, info ConnInfo, res Result, extra func(*zerolog.Event)) {
	e := l.Info()
	if !e.Enabled() {
		return
	}
	e = e.Str("conn", info.ID).
		Str("kind", info.Kind).
		Str("route", info.Route).
		Str("client_ip", info.ClientIP).
		Float64("duration", res.Duration.Seconds()).
		Int64("bytes_up", res.BytesUp).
		Int64("bytes_down", res.BytesDown).
		Int64("msgs_up", res.MsgsUp).
		Int64("msgs_down", res.MsgsDown).
		Int("client_code", res.ClientCode).
		Int("upstream_code", res.UpstreamCode).
		Str("closed_by", string(res.ClosedBy))
	if res.Err != nil {
		e = e.Str("error", res.Err.Error())
	}
	if extra != nil {
		e = e.Func(extra)
	}
	e.Msg("connection closed")
}
