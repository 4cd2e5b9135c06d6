package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrLegClosing is returned by Leg.WriteMessage once the leg has started
// its closing handshake or was stopped.
var ErrLegClosing = errors.New("wsconn: leg is closing")

// Leg is one WebSocket connection kept alive on its own, for a leg that is
// not relayed to another WebSocket: the SSE bridge's upstream leg. It does
// for one connection what Relay does for each of its two: a read limit, a
// liveness deadline of PingInterval+PongTimeout extended by every frame
// (pongs, pings and data messages), pings every PingInterval from a runtime
// timer (no goroutine), a write deadline before every write, and a closing
// handshake bounded by CloseTimeout.
//
// Concurrency: one goroutine reads (ReadMessage) until it gets an error;
// WriteMessage may be called from any goroutine, and calls are serialised
// (gorilla allows one writer at a time); Close and Stop are safe from any
// goroutine, any number of times.
type Leg struct {
	conn *websocket.Conn
	opts Options
	rtt  prometheus.Observer

	wmu      sync.Mutex // serialises data writes
	writeErr atomic.Pointer[error]

	closing   atomic.Bool
	hardClose atomic.Pointer[time.Timer]

	tmu     sync.Mutex // serialises ping with Stop
	timer   *time.Timer
	stopped bool
}

// LegEnd describes how reading a Leg ended.
type LegEnd struct {
	// ClosedBy is the cause: the peer (a close frame, a reset), a ping
	// timeout, or an error of the connection (a protocol violation, an
	// oversized message, a write that timed out).
	ClosedBy ClosedBy
	// Code and Reason are the close code and reason received from the
	// peer, 1006 when the leg ended without a close frame, or the code
	// gorilla sent the peer for its violation (1002, 1009).
	Code   int
	Reason string
	// Err is the cause when the end was not a clean close handshake.
	Err error
}

// NewLeg takes over c, which must be open: it sets the read limit
// (Options.MaxMessageSize), the liveness deadline and the control frame
// handlers, and starts the ping timer. Only PingInterval, PongTimeout,
// MaxMessageSize, WriteTimeout, CloseTimeout and Metrics.UpstreamPingRTT
// are used: in streamgate a lone leg is always an upstream leg. Call Stop
// once the reader is done.
func NewLeg(c *websocket.Conn, opts Options) *Leg {
	opts = opts.withDefaults()
	l := &Leg{conn: c, opts: opts}
	if opts.Metrics != nil {
		l.rtt = opts.Metrics.UpstreamPingRTT
	}
	l.configure()
	if opts.PingInterval > 0 {
		l.tmu.Lock()
		l.timer = time.AfterFunc(opts.PingInterval, l.ping)
		l.tmu.Unlock()
	}
	return l
}

// Conn returns the underlying connection, for its Subprotocol and
// addresses. Reading and writing must go through the Leg.
func (l *Leg) Conn() *websocket.Conn { return l.conn }

// configure sets the read limit, the first liveness deadline and the
// ping/pong handlers, which run in the reading goroutine.
func (l *Leg) configure() {
	if l.opts.MaxMessageSize > 0 {
		l.conn.SetReadLimit(l.opts.MaxMessageSize)
	}
	l.extendDeadline()
	installHandlers(l.conn, l.extendDeadline, l.rtt)
}

// extendDeadline gives the peer another liveness window; without pings
// there is none. While closing, the hard close bounds the wait instead.
func (l *Leg) extendDeadline() {
	if l.opts.PingInterval > 0 && !l.closing.Load() {
		_ = l.conn.SetReadDeadline(time.Now().Add(l.opts.PingInterval + l.opts.PongTimeout))
	}
}

// maxSpare is how many unused bytes past a message ReadMessage lets its
// slice keep (beyond an eighth of the message) rather than copy it.
const maxSpare = 64

// ReadMessage reads the next data message, in a slice sized to it that
// the caller may keep. Each message extends the liveness deadline. After
// an error, stop reading and pass the error to End.
func (l *Leg) ReadMessage() (messageType int, p []byte, err error) {
	messageType, p, err = l.conn.ReadMessage()
	if err == nil {
		l.extendDeadline()
		if spare := cap(p) - len(p); spare > maxSpare && spare > len(p)/8 {
			// gorilla reads with io.ReadAll, whose buffer starts at 512
			// bytes and grows by half or more: a caller that keeps
			// messages (a replay log) would hold twice a 256-byte
			// message's size, 8 times a 64-byte one's.
			p = bytes.Clone(p)
		}
	}
	return messageType, p, err
}

// WriteMessage writes one data message within WriteTimeout. Calls from
// several goroutines are serialised in the order they get the lock. A
// failed write breaks the leg: the connection is closed, so the reader
// ends, and End reports the write error.
func (l *Leg) WriteMessage(messageType int, data []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closing.Load() {
		return ErrLegClosing
	}
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.opts.WriteTimeout))
	if err := l.conn.WriteMessage(messageType, data); err != nil {
		err = fmt.Errorf("write: %w", err)
		l.writeErr.CompareAndSwap(nil, &err)
		_ = l.conn.Close()
		return err
	}
	return nil
}

// Close starts the closing handshake: it sends a close frame with code and
// reason and closes the connection CloseTimeout later if the peer has not
// answered by then. The reader then gets the peer's close frame (or an
// error) and ends. Only the first call sends a frame.
func (l *Leg) Close(code int, reason string) {
	if !l.closing.CompareAndSwap(false, true) {
		return
	}
	l.hardClose.Store(time.AfterFunc(l.opts.CloseTimeout, func() { _ = l.conn.Close() }))
	_ = l.conn.WriteControl(websocket.CloseMessage, CloseMessage(code, reason), time.Now().Add(l.opts.CloseTimeout))
}

// Stop stops the ping timer and the hard close and closes the connection.
// Call it when the reader is done; it is idempotent.
func (l *Leg) Stop() {
	l.closing.Store(true)
	l.tmu.Lock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.tmu.Unlock()
	if t := l.hardClose.Load(); t != nil {
		t.Stop()
	}
	_ = l.conn.Close()
}

// ping runs on the leg's timer: it pings the peer and re-arms itself. A
// failed ping needs no action: the read deadline expires and the reader
// reports ping_timeout.
func (l *Leg) ping() {
	l.tmu.Lock()
	defer l.tmu.Unlock()
	if l.stopped || l.closing.Load() {
		return
	}
	now := time.Now()
	_ = l.conn.WriteControl(websocket.PingMessage, pingPayload(now), now.Add(l.opts.WriteTimeout))
	l.timer.Reset(l.opts.PingInterval)
}

// End classifies the error that ended reading: peer names the other end
// (ClosedByUpstream for an upstream leg) for the cases where it closed or
// dropped the connection.
func (l *Leg) End(err error, peer ClosedBy) LegEnd {
	e := LegEnd{ClosedBy: peer, Code: websocket.CloseAbnormalClosure}
	if werr := l.writeErr.Load(); werr != nil {
		e.Err = *werr
		var ne net.Error
		if errors.As(*werr, &ne) && ne.Timeout() {
			e.ClosedBy = ClosedByError
		}
		return e
	}
	re := classifyRead(err, string(peer), peer, l.opts)
	return LegEnd{ClosedBy: re.by, Code: re.code, Reason: re.reason, Err: re.err}
}
