package wsconn

import (
	"strings"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// ClosedBy names what ended a connection; it is the closed_by log field and
// the label of the closed-connections metric.
type ClosedBy string

// The causes a connection can end with.
const (
	ClosedByClient      ClosedBy = "client"
	ClosedByUpstream    ClosedBy = "upstream"
	ClosedByIdleTimeout ClosedBy = "idle_timeout"
	ClosedByPingTimeout ClosedBy = "ping_timeout"
	ClosedByLifetime    ClosedBy = "lifetime"
	ClosedByShutdown    ClosedBy = "shutdown"
	ClosedByError       ClosedBy = "error"
)

// maxCloseReason is the longest close reason a close frame can carry: a
// control frame payload is at most 125 bytes, two of which hold the code
// (RFC 6455 section 5.5).
const maxCloseReason = 123

// CloseMessage formats a close frame payload with code and reason, cutting
// the reason to 123 bytes on a UTF-8 boundary. Codes that must never be sent
// on the wire (1005, 1006, 1015) yield an empty payload, which the peer
// reads as 1005 "no status".
func CloseMessage(code int, reason string) []byte {
	switch code {
	case websocket.CloseNoStatusReceived, websocket.CloseAbnormalClosure, websocket.CloseTLSHandshake:
		return []byte{}
	}
	return websocket.FormatCloseMessage(code, truncateReason(reason))
}

// truncateReason drops bytes that are not UTF-8 (a close reason must be
// UTF-8, or the peer fails the connection) and cuts s to at most
// maxCloseReason bytes without splitting a character.
func truncateReason(s string) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) <= maxCloseReason {
		return s
	}
	s = s[:maxCloseReason]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// closeFrame is a close code and reason to send on one leg.
type closeFrame struct {
	code   int
	reason string
}

// Close frames the relay sends when one leg ends abnormally (no close frame:
// a reset, a timeout, a protocol error) and the other leg must be told.
var (
	// upstreamLost goes to the client when the upstream leg died: 1011, the
	// server hit a condition it could not handle.
	upstreamLost = closeFrame{websocket.CloseInternalServerErr, "upstream connection lost"}
	// clientLost goes to the upstream when the client leg died: 1001, the
	// client is going away.
	clientLost = closeFrame{websocket.CloseGoingAway, "client connection lost"}
	// peerBroke goes to a leg whose peer broke a rule of the protocol (a
	// message too big, text that is not UTF-8, a bad frame) and was told
	// why: 1001, as that peer is going away.
	peerBroke = closeFrame{websocket.CloseGoingAway, "peer broke the protocol"}
)
