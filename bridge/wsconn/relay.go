package wsconn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure keepalive, limits and timeouts of a relayed connection.
// The zero value relays without pings, timeouts or size limit.
type Options struct {
	// PingInterval is how often each leg is pinged. Zero disables pings and
	// the liveness deadline.
	PingInterval time.Duration
	// PongTimeout is how long past a ping interval a leg may stay silent
	// (no pong, no frame at all) before it is declared dead: a leg is dead
	// after PingInterval+PongTimeout without a ping or pong and without
	// data for a sixteenth of that.
	PongTimeout time.Duration
	// IdleTimeout closes the connection after this long without a data
	// message in either direction. Zero means never.
	IdleTimeout time.Duration
	// MaxLifetime closes the connection this long after it opened. Zero
	// means never.
	MaxLifetime time.Duration
	// MaxMessageSize is the largest message accepted from either leg; a
	// larger one closes its sender with 1009. Zero means no limit.
	MaxMessageSize int64
	// WriteTimeout bounds each write to a leg. Zero means
	// PingInterval+PongTimeout, or 30 seconds without pings.
	WriteTimeout time.Duration
	// CloseTimeout bounds the closing handshake: after it, both legs are
	// closed whether or not the peers answered. Zero means 3 seconds.
	CloseTimeout time.Duration
	// Metrics, if set, receives message and byte counts while the
	// connection runs (flushed at each keepalive tick and at the end) and
	// ping round-trip times.
	Metrics *Metrics
	// Poller, if set, relays a frame-relayed connection whose legs are both
	// plain TCP on its event loops, with no goroutine per connection (see
	// Poller). Other connections, and every connection where the platform
	// has no Poller, are relayed by two goroutines.
	Poller *Poller
	// ClientDeflate reports that the client leg negotiated
	// permessage-deflate (see NegotiatesDeflate). Such a connection is
	// relayed message by message through gorilla, which inflates and
	// deflates; any other is relayed frame by frame.
	ClientDeflate bool
}

// withDefaults fills in the zero CloseTimeout and WriteTimeout as their
// docs say.
func (o Options) withDefaults() Options {
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = 3 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
		if o.PingInterval > 0 {
			o.WriteTimeout = o.PingInterval + o.PongTimeout
		}
	}
	return o
}

// Metrics are the collectors a relay feeds. Nil fields are skipped.
type Metrics struct {
	MsgsUp, MsgsDown, BytesUp, BytesDown prometheus.Counter
	// PingRTT observes ping round-trip times in seconds, per leg.
	ClientPingRTT, UpstreamPingRTT prometheus.Observer
}

// Result describes how a relayed connection ended. Up means client to
// upstream.
type Result struct {
	ClosedBy ClosedBy
	// ClientCode and UpstreamCode are the close codes each leg ended with,
	// received from or sent to that peer; 1006 when the leg ended with no
	// close frame.
	ClientCode, UpstreamCode int
	// Err is the cause when the end was not a clean close handshake.
	Err                                  error
	Duration                             time.Duration
	BytesUp, BytesDown, MsgsUp, MsgsDown int64
}

// side indexes the two legs of a relay.
type side uint8

const (
	client side = iota
	upstream
)

func (s side) String() string {
	if s == client {
		return "client"
	}
	return "upstream"
}

func (s side) closedBy() ClosedBy {
	if s == client {
		return ClosedByClient
	}
	return ClosedByUpstream
}

// lost is the close frame the other leg gets when leg s died abnormally.
func (s side) lost() *closeFrame {
	if s == client {
		return &clientLost
	}
	return &upstreamLost
}

// ending is the decision of how a relay ends: the cause, the code each leg
// ends with and the close frame, if any, to send to each leg.
type ending struct {
	by    ClosedBy
	err   error
	codes [2]int
	send  [2]*closeFrame
}

// Relay copies messages between a client leg and an upstream leg, keeps
// both alive with pings and closes both when either ends. Run it once.
//
// It relays frame by frame unless the client leg compresses: a data frame
// that fits the read buffer goes to the other leg as it arrived, header and
// payload, in one write from the buffer, with no allocation; a larger one
// goes as buffer-sized fragments. Only the gorilla connections' handshakes
// are used then; their buffers are dropped. A compressed connection is
// relayed message by message through gorilla.
type Relay struct {
	conns  [2]net.Conn
	legs   [2]*websocket.Conn // message relay only
	out    [2]*frameWriter    // frame relay only
	opts   Options
	window time.Duration // liveness window: PingInterval+PongTimeout
	// extended is when each leg's read deadline was last moved; each is
	// touched by that leg's reading goroutine only (and before it starts).
	extended [2]time.Time

	start    time.Time
	lastData atomic.Int64 // unix nanoseconds of the last data message
	msgs     [2]atomic.Int64
	bytes    [2]atomic.Int64

	ended     atomic.Bool
	hardClose atomic.Pointer[time.Timer]
	mu        sync.Mutex // guards res
	res       ending

	// On an event loop (see Poller): the loop, the relay's id there, the
	// state of each direction, the function to call with the Result, and
	// when each leg last moved its liveness deadline (the loop's timer
	// checks it, where a goroutine reader has a read deadline).
	loop    *eventLoop
	addrs   [2][2]netip.AddrPort // each leg's local and remote address; conns are dropped
	id      uint64
	dirs    [2]*direction
	onDone  func(Result)
	heard   [2]atomic.Int64
	stopCtx func() bool
	// closeAsked is set once closeLegs has run, which may be before the
	// loop has taken the relay.
	closeAsked atomic.Bool

	tickMu   sync.Mutex // serialises tick with the end of Run
	timer    *time.Timer
	stopped  bool
	nextPing time.Time
	flushed  [4]int64 // counts already added to Metrics
}

// NewRelay returns a relay between the client leg c and the upstream leg u,
// which must both be open. The relay owns both connections from now on.
func NewRelay(c, u *websocket.Conn, opts Options) *Relay {
	if !opts.ClientDeflate {
		return newFrameRelay(c.NetConn(), u.NetConn(), opts)
	}
	r := newRelay(c.NetConn(), u.NetConn(), opts)
	r.legs = [2]*websocket.Conn{c, u}
	return r
}

// newFrameRelay returns a relay that works on the frames of c, the server
// side of a client's WebSocket, and u, the client side of the upstream's.
func newFrameRelay(c, u net.Conn, opts Options) *Relay {
	r := newRelay(c, u, opts)
	r.out[client] = &frameWriter{conn: c, timeout: r.opts.WriteTimeout}
	r.out[upstream] = &frameWriter{conn: u, mask: true, timeout: r.opts.WriteTimeout}
	if opts.Poller != nil {
		opts.Poller.attach(r) // before anyone else can see r
	}
	return r
}

func newRelay(c, u net.Conn, opts Options) *Relay {
	r := &Relay{conns: [2]net.Conn{c, u}, opts: opts.withDefaults()}
	if opts.PingInterval > 0 {
		r.window = opts.PingInterval + opts.PongTimeout
	}
	return r
}

// Run relays until the connection ends and returns how it ended. It
// returns after both legs are closed and both directions have stopped.
// Cancelling ctx closes both legs with 1001 "going away" (see Shutdown).
func (r *Relay) Run(ctx context.Context) Result {
	if r.loop != nil {
		ended := make(chan Result, 1)
		r.startOnLoop(ctx, func(res Result) { ended <- res })
		return <-ended
	}
	return r.runPumps(ctx)
}

// Start relays in the background and calls done, in a goroutine of its
// own, with how the connection ended, once both legs are closed and both
// directions have stopped. On an event loop (see Options.Poller) no
// goroutine is held while the connection runs. Cancelling ctx closes both
// legs with 1001 "going away" (see Shutdown).
func (r *Relay) Start(ctx context.Context, done func(Result)) {
	if r.loop != nil {
		r.startOnLoop(ctx, done)
		return
	}
	go func() { done(r.runPumps(ctx)) }()
}

// startOnLoop starts the relay on the loop it is attached to.
func (r *Relay) startOnLoop(ctx context.Context, done func(Result)) {
	r.onDone = done
	r.begin(ctx)
	if !r.loop.post(loopCmd{op: cmdAdd, r: r}) {
		r.abandon() // the Poller is closing
	}
}

// begin starts the clock, the liveness deadlines, the timer and the
// watch on ctx.
func (r *Relay) begin(ctx context.Context) {
	r.start = time.Now()
	r.lastData.Store(r.start.UnixNano())
	r.configure(client)
	r.configure(upstream)

	r.tickMu.Lock()
	r.nextPing = r.start.Add(r.opts.PingInterval)
	r.timer = time.AfterFunc(r.nextWake(r.start), r.tick)
	r.tickMu.Unlock()
	if ctx.Done() != nil {
		r.stopCtx = context.AfterFunc(ctx, r.Shutdown)
	}
}

// runPumps relays with a goroutine per direction (this one reads the
// upstream) and returns how the connection ended.
func (r *Relay) runPumps(ctx context.Context) Result {
	r.begin(ctx)
	pump := r.pump
	if r.framed() {
		pump = r.pumpFrames
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		pump(client)
	}()
	pump(upstream)
	<-done
	res := r.stop()
	r.closeLegs()
	return res
}

// stop ends the watch on ctx and the timers, flushes the metrics and
// returns how the connection ended. Both directions have stopped.
func (r *Relay) stop() Result {
	if r.stopCtx != nil {
		r.stopCtx()
	}
	r.tickMu.Lock()
	r.stopped = true
	r.timer.Stop()
	r.flushMetrics()
	r.tickMu.Unlock()
	if t := r.hardClose.Load(); t != nil {
		t.Stop()
	}
	return r.result()
}

// Shutdown ends the connection with 1001 "going away" on both legs, as for a
// proxy shutdown. It is safe to call from any goroutine, any number of times.
func (r *Relay) Shutdown() {
	r.endBoth(ClosedByShutdown, "going away")
}

// endBoth ends the relay for a reason of the proxy's own, telling both legs
// with 1001 and reason.
func (r *Relay) endBoth(by ClosedBy, reason string) {
	f := &closeFrame{websocket.CloseGoingAway, reason}
	r.end(ending{by: by, codes: [2]int{f.code, f.code}, send: [2]*closeFrame{f, f}})
}

func (r *Relay) result() Result {
	r.mu.Lock()
	e := r.res
	r.mu.Unlock()
	return Result{
		ClosedBy:     e.by,
		ClientCode:   e.codes[client],
		UpstreamCode: e.codes[upstream],
		Err:          e.err,
		Duration:     time.Since(r.start),
		MsgsUp:       r.msgs[client].Load(),
		MsgsDown:     r.msgs[upstream].Load(),
		BytesUp:      r.bytes[client].Load(),
		BytesDown:    r.bytes[upstream].Load(),
	}
}

// configure sets leg s's liveness deadline and, for the message relay, its
// read limit and control frame handlers. Handlers run in the goroutine
// reading s.
func (r *Relay) configure(s side) {
	r.extendDeadlineFrom(s, r.start, true)
	if r.framed() {
		return
	}
	c := r.legs[s]
	if r.opts.MaxMessageSize > 0 {
		c.SetReadLimit(r.opts.MaxMessageSize)
	}
	installHandlers(c, func() { r.extendDeadlineFrom(s, time.Now(), true) }, r.rttObserver(s))
}

// framed reports whether the relay works on frames (see Relay).
func (r *Relay) framed() bool { return r.out[client] != nil }

// writeControl sends a control frame to leg s from any goroutine.
func (r *Relay) writeControl(s side, op int, payload []byte, deadline time.Time) error {
	if r.framed() {
		return r.out[s].writeOwn(byte(op), payload, deadline)
	}
	return r.legs[s].WriteControl(op, payload, deadline)
}

func (r *Relay) rttObserver(s side) prometheus.Observer {
	if r.opts.Metrics == nil {
		return nil
	}
	if s == client {
		return r.opts.Metrics.ClientPingRTT
	}
	return r.opts.Metrics.UpstreamPingRTT
}

// extendDeadlineFrom gives leg s another liveness window from now, the time
// a frame arrived; without pings there is none. A ping or pong (control)
// always moves the deadline. A data frame moves it only when a sixteenth
// of the window has passed since it last moved, so that a busy leg does
// not reset a runtime timer per message; the pongs that answer our pings
// then keep the full window: a leg is dead after the window passes with
// neither a control frame nor data for a sixteenth of it.
func (r *Relay) extendDeadlineFrom(s side, now time.Time, control bool) {
	if r.window <= 0 || r.ended.Load() || !control && now.Sub(r.extended[s]) < r.window/16 {
		return
	}
	r.extended[s] = now
	if r.loop != nil {
		r.heard[s].Store(now.UnixNano())
		return
	}
	_ = r.conns[s].SetReadDeadline(now.Add(r.window))
}

// pump reads messages from leg from and writes each to the other leg,
// streaming it frame by frame, until either leg fails or the relay ends.
func (r *Relay) pump(from side) {
	src, dst := r.legs[from], r.legs[1-from]
	er := &messageReader{limit: r.opts.MaxMessageSize}
	for {
		mt, rd, err := src.NextReader()
		if err != nil {
			r.readFailed(from, err)
			r.lingerAfterRefusal(r.conns[from], err)
			return
		}
		if r.ended.Load() {
			continue // closing: drain until the peer's close frame
		}
		now := time.Now()
		r.lastData.Store(now.UnixNano())
		r.extendDeadlineFrom(from, now, false) // one clock read per message
		_ = dst.SetWriteDeadline(now.Add(r.opts.WriteTimeout))
		w, err := dst.NextWriter(mt)
		if err != nil {
			r.writeFailed(1-from, err)
			return
		}
		er.reset(rd, mt)
		n, err := io.Copy(w, er)
		if err == nil {
			err = w.Close()
		}
		if err != nil {
			if er.err != nil {
				r.readFailed(from, er.err)
				r.lingerAfterRefusal(r.conns[from], er.err)
			} else {
				r.writeFailed(1-from, err)
			}
			return
		}
		r.msgs[from].Add(1)
		r.bytes[from].Add(n)
	}
}

// readFailed decides how the relay ends when reading leg s failed with err.
func (r *Relay) readFailed(s side, err error) {
	var we *writeError
	if errors.As(err, &we) {
		r.writeFailed(1-s, we.err)
		return
	}
	if r.ended.Load() {
		return // our own close: the echo, a reset or the hard close
	}
	re := classifyRead(err, s.String(), s.closedBy(), r.opts)
	e := ending{by: re.by, err: re.err}
	e.codes[s] = re.code
	switch {
	case re.clean:
		// Pass the peer's code and reason on.
		e.send[1-s] = &closeFrame{re.code, re.reason}
	case re.tell != nil:
		// The sender broke a rule (size, UTF-8, protocol): tell it why.
		// gorilla has sent 1009 itself for some oversize frames; a second
		// close frame is never sent.
		_ = r.writeControl(s, websocket.CloseMessage, CloseMessage(re.tell.code, re.tell.reason), time.Now().Add(r.opts.CloseTimeout))
		e.send[1-s] = &peerBroke
	default:
		e.send[1-s] = s.lost()
	}
	e.codes[1-s] = e.send[1-s].code
	r.end(e)
}

// lingerTimeout bounds how long the rest of a refused message is read and
// dropped after its sender was told why.
const lingerTimeout = time.Second

// lingerAfterRefusal reads and drops what the sender of a refused message
// (too big, or not UTF-8) is still sending, so that closing the connection
// does not reset it: a TCP close with unread data sends RST, and the peer
// may then lose the close frame before reading it. The write side is shut
// first (the close frame is out): a peer that follows RFC 6455 waits for
// the server to end TCP, and then ends its own side, which ends the read.
func (r *Relay) lingerAfterRefusal(nc net.Conn, err error) {
	if !refused(err) {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(min(lingerTimeout, r.opts.CloseTimeout)))
	_, _ = io.Copy(io.Discard, nc)
}

// refused reports whether reading a leg ended because the relay refused a
// message it sent (too big, or not UTF-8).
func refused(err error) bool {
	return errors.Is(err, websocket.ErrReadLimit) || errors.Is(err, ErrInvalidUTF8)
}

// writeFailed ends the relay after writing to leg s failed with err: the
// leg is broken (reset, or too slow to take a message within WriteTimeout).
func (r *Relay) writeFailed(s side, err error) {
	if r.ended.Load() {
		return
	}
	e := ending{by: s.closedBy(), err: fmt.Errorf("write %s: %w", s, err)}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		e.by = ClosedByError
	}
	e.codes[s] = websocket.CloseAbnormalClosure
	e.send[1-s] = s.lost()
	e.codes[1-s] = e.send[1-s].code
	r.end(e)
}

// end records the first ending, sends its close frames and arms the hard
// close that bounds the closing handshake. Later calls do nothing.
func (r *Relay) end(e ending) {
	if !r.ended.CompareAndSwap(false, true) {
		return
	}

	r.mu.Lock()
	r.res = e
	r.mu.Unlock()
	r.hardClose.Store(time.AfterFunc(r.opts.CloseTimeout, r.closeLegs))
	deadline := time.Now().Add(r.opts.CloseTimeout)
	for s, f := range e.send {
		if f != nil {
			_ = r.writeControl(side(s), websocket.CloseMessage, CloseMessage(f.code, f.reason), deadline)
		}
	}
}

func (r *Relay) closeLegs() {
	if r.loop != nil {
		r.closeAsked.Store(true)
		r.loop.post(loopCmd{op: cmdClose, r: r})
		return
	}
	_ = r.conns[client].Close()
	_ = r.conns[upstream].Close()
}

// tick runs on the relay's timer: it enforces the lifetime and idle
// timeouts, pings both legs when due, flushes metrics and re-arms itself.
func (r *Relay) tick() {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	if r.stopped || r.ended.Load() {
		return
	}
	now := time.Now()
	r.flushMetrics()
	if r.opts.MaxLifetime > 0 && now.Sub(r.start) >= r.opts.MaxLifetime {
		r.endBoth(ClosedByLifetime, "max lifetime reached")
		return
	}
	if r.opts.IdleTimeout > 0 && now.Sub(time.Unix(0, r.lastData.Load())) >= r.opts.IdleTimeout {
		r.endBoth(ClosedByIdleTimeout, "idle timeout")
		return
	}
	if r.loop != nil && r.pastDeadlines(now) {
		return
	}
	if r.opts.PingInterval > 0 && !now.Before(r.nextPing) {
		payload := pingPayload(now)
		deadline := now.Add(r.opts.WriteTimeout)
		// A failed ping needs no action here: the leg's read deadline
		// expires and the reader reports ping_timeout.
		_ = r.writeControl(client, websocket.PingMessage, payload, deadline)
		_ = r.writeControl(upstream, websocket.PingMessage, payload, deadline)
		r.nextPing = time.Now().Add(r.opts.PingInterval)
	}
	r.timer.Reset(r.nextWake(time.Now()))
}

// pastDeadlines tells the loop of a leg past its liveness window, as a
// read deadline would, and reports whether there was one. Callers hold
// tickMu.
func (r *Relay) pastDeadlines(now time.Time) bool {
	t, s, ok := r.liveness()
	if !ok || now.Before(t) {
		return false
	}
	r.loop.post(loopCmd{op: cmdReadTimeout, r: r, s: s})
	r.timer.Reset(time.Millisecond) // until the loop has ended the relay
	return true
}

// liveness returns the earlier of the legs' liveness deadlines on an event
// loop, and whose it is; ok is false when none is judged. While a leg has
// a backlog, silence says nothing: the other leg is not being read (its
// direction waits), and this one cannot answer pings that wait in the
// backlog. The backlog's own write timeout bounds that time instead (see
// frameWriter.stall).
func (r *Relay) liveness() (t time.Time, s side, ok bool) {
	if r.window <= 0 || r.out[client].blocked() || r.out[upstream].blocked() {
		return time.Time{}, 0, false
	}
	s = client
	if r.heard[upstream].Load() < r.heard[client].Load() {
		s = upstream
	}
	return time.Unix(0, r.heard[s].Load()).Add(r.window), s, true
}

// metricsFlushInterval bounds how stale the message counters can be when
// nothing else wakes a relay.
const metricsFlushInterval = 30 * time.Second

// nextWake is how long from now the next tick is due.
func (r *Relay) nextWake(now time.Time) time.Duration {
	next := now.Add(metricsFlushInterval)
	if r.opts.PingInterval > 0 && r.nextPing.Before(next) {
		next = r.nextPing
	}
	if r.opts.MaxLifetime > 0 {
		if t := r.start.Add(r.opts.MaxLifetime); t.Before(next) {
			next = t
		}
	}
	if r.opts.IdleTimeout > 0 {
		if t := time.Unix(0, r.lastData.Load()).Add(r.opts.IdleTimeout); t.Before(next) {
			next = t
		}
	}
	if r.loop != nil {
		if t, _, ok := r.liveness(); ok && t.Before(next) {
			next = t
		}
	}
	return max(next.Sub(now), time.Millisecond)
}

// flushMetrics adds the counts since the last flush to Metrics. Callers
// hold tickMu.
func (r *Relay) flushMetrics() {
	m := r.opts.Metrics
	if m == nil {
		return
	}
	now := [4]int64{r.msgs[client].Load(), r.msgs[upstream].Load(), r.bytes[client].Load(), r.bytes[upstream].Load()}
	counters := [4]prometheus.Counter{m.MsgsUp, m.MsgsDown, m.BytesUp, m.BytesDown}
	for i, c := range counters {
		if d := now[i] - r.flushed[i]; d > 0 && c != nil {
			c.Add(float64(d))
		}
	}
	r.flushed = now
}
