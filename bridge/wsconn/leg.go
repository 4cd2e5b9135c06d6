package wsconn

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrLegClosing is returned by Leg.WriteMessage once the leg has started
// its closing handshake or was stopped.
var ErrLegClosing = errors.New("wsconn: leg is closing")

// Leg is one WebSocket connection kept alive on its own, for a leg that is
// not relayed to another WebSocket: the SSE bridge's upstream leg. It does
// for one connection what Relay does for each of its two: a read limit,
// UTF-8 checks of text messages, a liveness window of
// PingInterval+PongTimeout renewed by every frame (pongs, pings and data),
// pings every PingInterval from a runtime timer, a write timeout on every
// write, and a closing handshake bounded by CloseTimeout.
//
// What it reads goes to a LegHandler (see Start). With Options.Poller, a
// leg on a plain TCP connection dialled by a Dialer from NewDialer is read
// by an event loop: it then holds no goroutine, and no read buffer while
// idle. Any other leg is read by a goroutine of its own, through gorilla.
//
// Concurrency: WriteMessage may be called from any goroutine, and calls
// are serialised (a message is written whole before the next); Close and
// Stop are safe from any goroutine, any number of times.
type Leg struct {
	conn *websocket.Conn // read by a goroutine; nil on an event loop
	lp   *loopLeg        // on an event loop; nil otherwise
	h    LegHandler
	opts Options
	rtt  prometheus.Observer

	wmu      sync.Mutex // serialises data writes
	writeErr atomic.Pointer[error]

	started   atomic.Bool
	closing   atomic.Bool
	hardClose atomic.Pointer[time.Timer]

	tmu     sync.Mutex // serialises ping with Stop
	timer   *time.Timer
	stopped bool
}

// LegHandler receives what a Leg reads.
type LegHandler interface {
	// Message is called for each data message, in order and never
	// concurrently; p is the handler's to keep, sized to the message. On
	// an event loop it runs on the loop's goroutine, so it must not
	// block.
	Message(binary bool, p []byte)
	// Ended is called once, after the last Message, with how reading
	// ended; the connection is closed by then. It runs in a goroutine of
	// its own.
	Ended(LegEnd)
}

// LegEnd describes how reading a Leg ended.
type LegEnd struct {
	// ClosedBy is the cause: the peer (a close frame, a reset), a ping
	// timeout, or an error of the connection (a protocol violation, an
	// oversized message, a write that timed out).
	ClosedBy ClosedBy
	// Code and Reason are the close code and reason received from the
	// peer, 1006 when the leg ended without a close frame, or the code
	// sent to the peer for its violation (1002, 1007, 1009).
	Code   int
	Reason string
	// Err is the cause when the end was not a clean close handshake.
	Err error
	// brokeRule is set when the peer broke a rule of the protocol and
	// was told so with Code.
	brokeRule bool
}

// ToClient is the close code and reason a client proxied to this leg is
// told of its end, as a Relay tells a WebSocket client: the peer's own
// after a clean close, 1001 "peer broke the protocol" when the peer broke
// a rule, and 1011 "upstream connection lost" otherwise.
func (e LegEnd) ToClient() (code int, reason string) {
	switch {
	case e.brokeRule:
		return peerBroke.code, peerBroke.reason
	case e.Err != nil:
		return upstreamLost.code, upstreamLost.reason
	}
	return e.Code, e.Reason
}

// NewLeg takes over c, which must be open, and starts its ping timer.
// Only PingInterval, PongTimeout, MaxMessageSize, WriteTimeout,
// CloseTimeout, Poller and Metrics.UpstreamPingRTT are used: in
// streamgate a lone leg is always an upstream leg. Call Start to read it,
// or Stop to drop it unread.
func NewLeg(c *websocket.Conn, opts Options) *Leg {
	opts = opts.withDefaults()
	l := &Leg{opts: opts}
	if opts.Metrics != nil {
		l.rtt = opts.Metrics.UpstreamPingRTT
	}
	if opts.Poller == nil || !opts.Poller.attachLeg(l, c) {
		l.conn = c
		l.configure()
	}
	if opts.PingInterval > 0 {
		l.tmu.Lock()
		l.timer = time.AfterFunc(opts.PingInterval, l.ping)
		l.tmu.Unlock()
	}
	return l
}

// OnLoop reports whether an event loop reads the leg (see Leg).
func (l *Leg) OnLoop() bool { return l.lp != nil }

// Start reads the leg until it ends, handing each data message to h and
// then how it ended. Call it once.
func (l *Leg) Start(h LegHandler) {
	l.h = h
	l.started.Store(true)
	if l.lp != nil {
		l.startOnLoop()
		return
	}
	go l.readAll()
}

// readAll is the reading goroutine of a leg that is not on an event loop.
func (l *Leg) readAll() {
	var err error
	for {
		var mt int
		var p []byte
		if mt, p, err = l.readMessage(); err != nil {
			break
		}
		l.h.Message(mt == websocket.BinaryMessage, p)
	}
	end, tell := l.end(err)
	if tell != nil {
		_ = l.conn.WriteControl(websocket.CloseMessage, CloseMessage(tell.code, tell.reason), time.Now().Add(l.opts.CloseTimeout))
	}
	l.Stop()
	l.h.Ended(end)
}

// configure sets the read limit, the first liveness deadline and the
// ping/pong handlers of a leg read through gorilla, which run in the
// reading goroutine.
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

// maxSpare is how many unused bytes past a message a leg lets its slice
// keep (beyond an eighth of the message) rather than copy it.
const maxSpare = 64

// sizedToMessage returns p, or a copy of it when p's array is much larger
// than the message: a caller that keeps messages (a replay log) would
// otherwise hold, for a message read with io.ReadAll (whose buffer starts
// at 512 bytes and grows by half or more) twice a 256-byte message's size,
// 8 times a 64-byte one's.
func sizedToMessage(p []byte) []byte {
	if spare := cap(p) - len(p); spare > maxSpare && spare > len(p)/8 {
		return bytes.Clone(p)
	}
	return p
}

// readMessage reads the next data message through gorilla. Each message
// extends the liveness deadline; a text message must be UTF-8.
func (l *Leg) readMessage() (messageType int, p []byte, err error) {
	messageType, p, err = l.conn.ReadMessage()
	if err != nil {
		return 0, nil, err
	}
	if messageType == websocket.TextMessage && !utf8.Valid(p) {
		return 0, nil, ErrInvalidUTF8
	}
	l.extendDeadline()
	return messageType, sizedToMessage(p), nil
}

// WriteMessage writes one data message (websocket.TextMessage or
// BinaryMessage) within WriteTimeout. Calls from several goroutines are
// serialised in the order they get the lock. On an event loop it returns
// once the socket has taken the whole message. A failed write breaks the
// leg: the connection is closed, so reading ends, and the end reports the
// write error.
func (l *Leg) WriteMessage(messageType int, data []byte) error {
	if messageType != websocket.TextMessage && messageType != websocket.BinaryMessage {
		return fmt.Errorf("write: message type %d is not a data message", messageType)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closing.Load() {
		return ErrLegClosing
	}
	if l.lp != nil {
		return l.writeOnLoop(messageType, data)
	}
	_ = l.conn.SetWriteDeadline(time.Now().Add(l.opts.WriteTimeout))
	if err := l.conn.WriteMessage(messageType, data); err != nil {
		l.writeFailed(err)
		_ = l.conn.Close()
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// writeFailed records the write error that broke the leg; the first one
// is what its end reports.
func (l *Leg) writeFailed(err error) {
	err = fmt.Errorf("write: %w", err)
	l.writeErr.CompareAndSwap(nil, &err)
}

// Close starts the closing handshake: it sends a close frame with code and
// reason and closes the connection CloseTimeout later if the peer has not
// answered by then. Reading then gets the peer's close frame (or an error)
// and ends. Only the first call sends a frame.
func (l *Leg) Close(code int, reason string) {
	if !l.closing.CompareAndSwap(false, true) {
		return
	}
	payload := CloseMessage(code, reason)
	if l.lp != nil {
		l.hardClose.Store(time.AfterFunc(l.opts.CloseTimeout, l.closeOnLoop))
		_ = l.lp.out.writeOwn(opClose, payload, time.Time{})
		return
	}
	l.hardClose.Store(time.AfterFunc(l.opts.CloseTimeout, func() { _ = l.conn.Close() }))
	_ = l.conn.WriteControl(websocket.CloseMessage, payload, time.Now().Add(l.opts.CloseTimeout))
}

// Stop closes the connection at once, without a closing handshake, and
// stops the leg's timers. A started leg then ends (its handler hears of
// it); one never started is just dropped. It is idempotent.
func (l *Leg) Stop() {
	l.closing.Store(true)
	l.stopTimers()
	switch {
	case l.lp == nil:
		_ = l.conn.Close()
	case l.started.Load():
		l.closeOnLoop()
	default:
		l.dropOffLoop()
	}
}

// stopTimers stops the ping timer and the hard close.
func (l *Leg) stopTimers() {
	l.tmu.Lock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.tmu.Unlock()
	if t := l.hardClose.Load(); t != nil {
		t.Stop()
	}
}

// ping runs on the leg's timer: it pings the peer and re-arms itself (on
// an event loop it also judges the liveness window). A failed ping needs
// no action: the liveness window runs out and the leg ends with
// ping_timeout.
func (l *Leg) ping() {
	l.tmu.Lock()
	defer l.tmu.Unlock()
	if l.stopped || l.closing.Load() {
		return
	}
	now := time.Now()
	if l.lp != nil {
		l.timer.Reset(l.tickOnLoop(now))
		return
	}
	_ = l.conn.WriteControl(websocket.PingMessage, pingPayload(now), now.Add(l.opts.WriteTimeout))
	l.timer.Reset(l.opts.PingInterval)
}

// end classifies the error that ended reading, and returns the close
// frame the peer is still to be told for a rule it broke (nil if none).
func (l *Leg) end(err error) (LegEnd, *closeFrame) {
	e := LegEnd{ClosedBy: ClosedByUpstream, Code: websocket.CloseAbnormalClosure}
	if werr := l.writeErr.Load(); werr != nil {
		e.Err = *werr
		var ne net.Error
		if errors.As(*werr, &ne) && ne.Timeout() {
			e.ClosedBy = ClosedByError
		}
		return e, nil
	}
	re := classifyRead(err, "upstream", ClosedByUpstream, l.opts)
	return LegEnd{ClosedBy: re.by, Code: re.code, Reason: re.reason, Err: re.err, brokeRule: re.tell != nil}, re.tell
}
