package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// pingPayload is a ping's application data: its send time, so that the
// pong, which echoes it, gives the round trip.
func pingPayload(now time.Time) []byte {
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(now.UnixNano()))
	return p[:]
}

// installHandlers sets c's control frame handlers, which run in the
// goroutine reading c: every ping and pong calls extend (the liveness
// deadline), pings are answered, and pongs carrying our payload feed rtt
// (nil: none).
func installHandlers(c *websocket.Conn, extend func(), rtt prometheus.Observer) {
	replyPong := c.PingHandler()
	c.SetPingHandler(func(data string) error {
		extend()
		return replyPong(data)
	})
	c.SetPongHandler(func(data string) error {
		extend()
		observePong(rtt, []byte(data), time.Now())
		return nil
	})
}

// observePong feeds rtt (nil: none) the round trip of a pong that echoes
// one of our pings' payload.
func observePong(rtt prometheus.Observer, data []byte, now time.Time) {
	if rtt != nil && len(data) == 8 {
		sent := int64(binary.BigEndian.Uint64(data))
		if d := now.UnixNano() - sent; d >= 0 && d < int64(time.Hour) {
			rtt.Observe(time.Duration(d).Seconds())
		}
	}
}

// readEnd is how reading a leg ended.
type readEnd struct {
	by ClosedBy
	// code and reason are what the peer sent, 1006 for no close frame,
	// or what gorilla sent the peer for its violation (1002, 1009).
	code   int
	reason string
	// clean is true for a close handshake started by the peer.
	clean bool
	// tell is the close frame the peer must get for a rule it broke
	// (1009, 1007), nil otherwise.
	tell *closeFrame
	err  error
}

// classifyRead names the end of a leg whose reader failed with err; peer
// is the leg's name in messages and peerBy its ClosedBy.
func classifyRead(err error, peer string, peerBy ClosedBy, opts Options) readEnd {
	e := readEnd{by: peerBy, code: websocket.CloseAbnormalClosure}
	var ce *websocket.CloseError
	var ne net.Error
	var pe *protocolError
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		// The close frame has been echoed (by gorilla, or by the frame
		// relay).
		e.code, e.reason, e.clean = ce.Code, ce.Text, true
	case errors.As(err, &ce):
		e.err = fmt.Errorf("%s connection ended without a close frame", peer)
	case errors.Is(err, websocket.ErrReadLimit):
		e.by, e.code = ClosedByError, websocket.CloseMessageTooBig
		e.tell = &closeFrame{e.code, "message too big"}
		e.err = fmt.Errorf("%s sent a message larger than %d bytes", peer, opts.MaxMessageSize)
	case errors.Is(err, ErrInvalidUTF8):
		e.by, e.code = ClosedByError, websocket.CloseInvalidFramePayloadData
		e.tell = &closeFrame{e.code, "invalid UTF-8 in a text message"}
		e.err = fmt.Errorf("%s sent a text message that is not UTF-8", peer)
	case errors.As(err, &pe):
		e.by, e.code = ClosedByError, websocket.CloseProtocolError
		e.tell = &closeFrame{e.code, pe.Reason}
		e.err = fmt.Errorf("read %s: %w", peer, err)
	case errors.As(err, &ne) && ne.Timeout():
		e.by = ClosedByPingTimeout
		e.err = fmt.Errorf("%s sent no frame, not even a pong, for %s", peer, opts.PingInterval+opts.PongTimeout)
	case errors.As(err, &ne):
		e.err = fmt.Errorf("read %s: %w", peer, err)
	default:
		// A protocol violation; gorilla has sent 1002 to the peer.
		e.by, e.code = ClosedByError, websocket.CloseProtocolError
		e.err = fmt.Errorf("read %s: %w", peer, err)
	}
	return e
}
