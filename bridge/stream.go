package bridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// drainBatch is how many events a stream reads from the log at a time.
const drainBatch = 64

// stream is one SSE response attached to a session. Whatever concerns it
// (session news, the client leaving, the proxy ending it, its heartbeat
// and renewal timers) posts an event to its state word; a turn handles
// the events posted, one turn at a time (see post and turn). A stream
// that stays in its handler (HTTP/2, or no Poller) runs every turn there.
// One that has taken its HTTP/1 connection over (see hijack) outlives its
// handler, and each later turn runs on a goroutine started for it, which
// exits when no event is left: an idle stream holds no goroutine.
type stream struct {
	b        *Bridge
	w        http.ResponseWriter // nil once hijacked
	rc       *http.ResponseController
	r        *http.Request // nil once hijacked
	path     string        // the request's escaped path, for the session event
	sid      string
	protocol string // the upstream's subprotocol, known for new sessions
	sub      subscription
	ip       string
	start    time.Time

	// state holds the posted streamEvents and turnHeld. kick wakes the
	// handler of a stream that stays in it (nil once hijacked); done is
	// the caller's, called at the end of a hijacked stream.
	state atomic.Uint32
	kick  chan struct{}
	done  func()

	// The turn's own: the timer that posts evTimer, when the session's
	// TTL is next renewed, what ends the other event sources, when the
	// stream last wrote, and whether the client left.
	timer       *time.Timer
	renewAt     time.Time
	stops       []func() bool
	untrack     func()
	lastWrite   time.Time
	clientLeft  bool
	preambleErr error // the preamble's write failed: the first turn ends the stream

	resumed     bool      // attached with Last-Event-ID to a live session
	lostSession bool      // Last-Event-ID named a session the bridge no longer knows
	cursor      uint64    // seq of the last event written (or named by Last-Event-ID)
	read        bool      // the first Read is done
	liveFrom    uint64    // the session's head at the first Read: later events are live
	behindSince time.Time // since when it has been more than QueueLen behind; zero when it is not

	buf  []byte  // borrowed for a turn (see borrowBuf), else nil
	bufp *[]byte // the pool's box for buf
	evs  []Event

	// A hijacked stream writes conn itself: head is the response head,
	// sent with the first write (nil once sent); chunked says the body
	// is chunked (HTTP/1.1; an HTTP/1.0 body ends with the connection);
	// armed is when the write deadline was last set; unwatch ends the
	// watch that posts evGone.
	conn    net.Conn
	head    []byte
	chunked bool
	failed  bool // a write failed, perhaps mid-chunk
	armed   time.Time
	unwatch func()
	closing bool // closeConn has begun and the watch is over; guarded by b.mu

	bytes, events, replayed, lost int64
	msgsUp0, bytesUp0             int64 // the session's back-channel counts at the first Read
	msgsUp, bytesUp               int64 // ... and at the last
}

// streamEvent is a bit of a stream's state word: something for the
// stream's next turn to act on.
type streamEvent = uint32

const (
	evNews   streamEvent = 1 << iota // the session may have news: events, its close, a takeover, expiry
	evGone                           // the client left
	evEnd                            // the proxy or the Bridge ends the stream
	evTimer                          // the timer fired: a heartbeat or the TTL's renewal may be due
	turnHeld                         // a turn is running, or the stream has ended
)

// ending is how a stream ended.
type ending struct {
	by         wsconn.ClosedBy
	err        error
	clientCode int // the code sent in the close event
	upstream   int // the upstream's close code, when it closed
	slow       bool
	takenOver  bool
}

// serveStream serves GET with Accept: text/event-stream: it resumes the
// session named by Last-Event-ID or opens a new one, then streams until
// the client leaves, the upstream closes, the stream is taken over, or the
// proxy ends it. It reports whether the stream goes on after it returns
// (hijacked: see stream), calling done at its end.
func (b *Bridge) serveStream(w http.ResponseWriter, r *http.Request, done func()) bool {
	if !b.opts.CheckOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	if !acceptsEventStream(r) {
		http.Error(w, "this URL serves text/event-stream", http.StatusNotAcceptable)
		return false
	}
	if r.URL.Query().Get("sg_probe") == "1" {
		b.serveProbe(w, r)
		return false
	}
	if !b.enter() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return false
	}
	st := &stream{b: b, w: w, rc: http.NewResponseController(w), r: r, path: r.URL.EscapedPath(), ip: b.opts.ClientIP(r), start: time.Now()}
	st.state.Store(turnHeld) // events wait until the stream is set up
	if status, err := st.attach(); err != nil {
		b.refuse(w, r, status, err)
		b.wg.Done()
		return false
	}
	hijacked := st.hijack()
	if hijacked {
		st.done = done
	} else {
		st.kick = make(chan struct{}, 1)
		st.stops = append(st.stops, context.AfterFunc(r.Context(), func() { st.post(evGone) }))
	}
	st.begin()
	if hijacked {
		st.turn() // later turns start on their own goroutines
		return true
	}
	for !st.turn() {
		<-st.kick
	}
	return false
}

// begin registers the stream's other event sources and writes its
// preamble; the first turn reads the session.
func (st *stream) begin() {
	b := st.b
	st.untrack = func() {}
	if b.opts.Track != nil {
		st.untrack = b.opts.Track(func() { st.post(evEnd) })
	}
	b.opts.Metrics.streamStarted()
	st.renewAt = time.Now().Add(st.renewEvery())
	st.timer = time.AfterFunc(min(b.opts.Heartbeat, st.renewEvery()), func() { st.post(evTimer) })
	st.borrowBuf()
	if err := st.writePreamble(); err != nil {
		st.state.Or(evEnd) // the turn ends the stream
		st.preambleErr = err
	}
	st.returnBuf()
}

// wake is the stream's wake function for store.Attach.
func (st *stream) wake() { st.post(evNews) }

// renewEvery is how often an attached stream renews its session's TTL.
func (st *stream) renewEvery() time.Duration {
	return max(st.b.opts.SessionTTL/3, time.Millisecond)
}

// post records ev and makes sure a turn handles it: unless one is
// running (which takes ev before it ends), it starts one, in the
// handler's goroutine or a new one. It never blocks, so that the store
// (under its locks), the Poller's loop and timers can call it.
func (st *stream) post(ev streamEvent) {
	if st.state.Or(ev|turnHeld)&turnHeld != 0 {
		return
	}
	if st.kick != nil {
		st.kick <- struct{}{} // empty: its last token started the turn that ended
		return
	}
	go st.turn()
}

// turn handles the events posted until none is left, holding turnHeld,
// and reports whether the stream ended; then turnHeld stays set for
// good, so nothing starts another turn.
func (st *stream) turn() bool {
	for {
		evs := st.state.Load() &^ turnHeld
		if evs == 0 {
			if st.state.CompareAndSwap(turnHeld, 0) {
				return false
			}
			continue // an event came meanwhile
		}
		st.state.And(^evs)
		if e, over := st.handle(evs); over {
			st.finish(e)
			return true
		}
	}
}

// attach resumes the session named by Last-Event-ID, or opens a new
// session when there is none or the bridge no longer knows it. It returns
// the status to answer with when it cannot: 204 for a session its
// upstream closed (once the client has every event: until then it gets
// them and the close event again, so that a close event written to a
// connection that was already dead is not the end), or the dial's status.
func (st *stream) attach() (int, error) {
	b := st.b
	if sid, seq, ok := lastEventID(st.r); ok {
		sub, err := b.store.Attach(sid, st.ip, st.wake)
		switch {
		case err == nil:
			if news := sub.Read(nil, seq, 0); news.Closed != nil && seq >= news.Head {
				sub.Detach()
				return http.StatusNoContent, errSessionClosed
			}
			st.sid, st.sub, st.cursor, st.resumed = sid, sub, seq, true
			return 0, nil
		case errors.Is(err, errSessionClosed):
			return http.StatusNoContent, err
		}
		st.lostSession = true
	} else if st.r.Header.Get("Last-Event-ID") != "" || st.r.URL.Query().Get("lastEventId") != "" {
		// An id this bridge never wrote: continuity broke all the same.
		st.lostSession = true
	}
	sid, protocol, sub, status, err := b.startSession(st.r, st.ip, st.wake)
	if err != nil {
		return status, err
	}
	st.sid, st.protocol, st.sub = sid, protocol, sub
	return 0, nil
}

// serveProbe answers GET <path>?sg_probe=1 with the Last-Event-ID header
// or ?lastEventId= of a resume: the status that resume would get, without
// dialling the upstream, attaching to, renewing or creating a session. It
// is not in DESIGN.md's protocol: client.js's resume probe uses it to learn
// whether a resume that EventSource gave up on met a closed session (204,
// the logical connection is over) rather than a passing failure (it
// reconnects), where a real GET would take the session over or open a new
// one just to be thrown away. The answer carries no body: 204 for a
// session whose upstream closed and whose every event the client has,
// 503 while the bridge closes, else 200 (the resume would stream: the live
// session, or a fresh one, whose dial a probe cannot foresee).
func (b *Bridge) serveProbe(w http.ResponseWriter, r *http.Request) {
	status := http.StatusOK
	if b.isClosing() {
		status = http.StatusServiceUnavailable
	} else if sid, seq, ok := lastEventID(r); ok && errors.Is(b.store.Probe(sid, b.opts.ClientIP(r), seq), errSessionClosed) {
		status = http.StatusNoContent
	}
	b.setCORS(w, r)
	w.Header().Set("Cache-Control", "no-store")
	if status == http.StatusOK {
		w.Header().Set("Content-Length", "0")
	}
	w.WriteHeader(status)
}

// refuse answers a stream request that gets no stream. Upstream failures
// are logged (Warn) with a likely cause; the client gets the status and
// its text, never upstream addresses.
func (b *Bridge) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	var he *wsconn.HandshakeError
	switch {
	case status == http.StatusNoContent:
		b.setCORS(w, r)
		w.WriteHeader(status) // EventSource stops for good
		return
	case errors.Is(err, wsconn.ErrBackingOff):
		// The dial guard has logged the burst; one line per refused
		// client would flood the log while the app is down.
		b.log.Debug().Str("path", r.URL.Path).Err(err).Msg("sse upstream dial refused during backoff")
	case errors.As(err, &he):
		for _, k := range []string{"WWW-Authenticate", "Retry-After"} {
			if v := he.Header.Values(k); len(v) > 0 {
				w.Header()[k] = v
			}
		}
		fallthrough
	case status == http.StatusBadGateway || status == http.StatusGatewayTimeout:
		b.log.Warn().Str("client_ip", b.opts.ClientIP(r)).Str("path", r.URL.Path).Int("status", status).
			Str("likely_cause", likelyCause(status)).Err(err).Msg("sse upstream dial failed")
	}
	b.setCORS(w, r)
	http.Error(w, http.StatusText(status), status)
}

// likelyCause explains a failed upstream dial in a few words.
func likelyCause(status int) string {
	switch {
	case status == http.StatusGatewayTimeout:
		return "upstream did not answer in time"
	case status == http.StatusBadGateway:
		return "upstream unreachable, or it answered without switching to WebSocket"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "upstream refused the credentials or the origin forwarded"
	case status == http.StatusNotFound:
		return "no WebSocket endpoint at this path upstream"
	case status == http.StatusBadRequest || status == http.StatusUpgradeRequired:
		return "upstream rejected the handshake (subprotocol or version?)"
	}
	return "upstream refused the WebSocket handshake"
}

// handle acts on the events evs of one turn, and reports whether the
// stream is to end, and how.
func (st *stream) handle(evs streamEvent) (e ending, over bool) {
	st.borrowBuf()
	defer st.returnBuf()
	switch {
	case evs&evGone != 0:
		st.clientLeft = true
		return ending{by: wsconn.ClosedByClient}, true
	case st.preambleErr != nil:
		return st.writeFailed(st.preambleErr), true
	case evs&evEnd != 0:
		return st.shutdown(), true
	}
	if evs&evNews != 0 {
		if e, over := st.drain(); over {
			return e, true
		}
	}
	if evs&evTimer != 0 {
		if err := st.onTimer(); err != nil {
			return st.writeFailed(err), true
		}
	}
	return ending{}, false
}

// onTimer renews the session's TTL when that is due, and writes a
// heartbeat when the stream has been quiet for one, then sets the timer
// for whichever comes next. The timer is not moved on every write: it
// fires a heartbeat after the write before the last one at the latest,
// and finds out then.
func (st *stream) onTimer() error {
	now := time.Now()
	if !now.Before(st.renewAt) {
		st.sub.Renew()
		st.renewAt = now.Add(st.renewEvery())
	}
	hb := st.b.opts.Heartbeat
	if now.Sub(st.lastWrite) >= hb {
		if err := st.write(append(st.buf[:0], ": ping\n\n"...)); err != nil {
			return err
		}
	}
	next := st.lastWrite.Add(hb)
	if st.renewAt.Before(next) {
		next = st.renewAt
	}
	st.timer.Reset(next.Sub(now))
	return nil
}

// borrowBuf gives the turn a buffer to encode its writes in, from the
// Bridge's pool: a stream holds none between turns.
func (st *stream) borrowBuf() {
	st.bufp = st.b.getBuf()
	st.buf = *st.bufp
}

// returnBuf gives the turn's buffer back.
func (st *stream) returnBuf() {
	st.b.putBuf(st.bufp, st.buf)
	st.buf, st.bufp = nil, nil
}

// finish ends the stream: it stops its event sources, detaches from the
// session, logs the stream's line, and lets go of the proxy's registry
// and connection slot before it ends a hijacked response, so that a
// client that reconnects as soon as it sees the end finds its slot free.
func (st *stream) finish(e ending) {
	b := st.b
	st.timer.Stop()
	for _, stop := range st.stops {
		stop()
	}
	st.sub.Detach()
	b.opts.Metrics.streamEnded(e.by, e.slow)
	st.logEnd(e)
	st.untrack()
	if st.done != nil {
		st.done()
	}
	if st.conn != nil {
		st.closeConn(e.slow)
		b.forget(st)
	}
	b.wg.Done()
}

// writePreamble sends the headers, the padding comment, retry:, the
// session event, the gap event of a lost session and, for a new session,
// an id-only block "id: <session>.0" so that even a plain EventSource
// that reconnects before the first message resumes this session (an id
// field without data sets lastEventId and dispatches nothing).
func (st *stream) writePreamble() error {
	if st.conn == nil {
		st.setHeaders(st.w.Header())
		st.w.WriteHeader(http.StatusOK)
	}
	b := st.buf[:0]
	if n := st.b.opts.Padding; n > 0 {
		b = append(b, ':')
		for range n - 2 {
			b = append(b, ' ')
		}
		b = append(b, '\n')
	}
	b = appendRetry(b, st.b.opts.Retry)
	b = appendNamed(b, "session", sessionJSON(st.sid, st.path, st.protocol))
	if st.lostSession {
		b = appendNamed(b, "gap", gapJSON(-1))
		st.lost = -1
		st.b.opts.Metrics.gap(-1)
	}
	if !st.resumed {
		b = append(b, "id: "...)
		b = append(b, st.sid...)
		b = append(b, ".0\n\n"...)
	}
	st.buf = b
	return st.write(b)
}

// setHeaders sets the stream's response headers in h.
func (st *stream) setHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	st.b.setCORSHeaders(h, st.r)
}

func appendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}

// shutdown ends the stream for the proxy's shutdown with a retry: hint,
// jittered over [Retry, 2*Retry) so that reconnects do not all come at
// once.
func (st *stream) shutdown() ending {
	d := st.b.opts.Retry
	d += rand.N(d)
	_ = st.write(appendRetry(st.buf[:0], d))
	return ending{by: wsconn.ClosedByShutdown}
}

// drain writes what the session has for the stream: the events after the
// cursor, a gap event on resume if some were evicted, and the close event
// once the upstream has closed and every event is written. over is true
// when the stream must end.
func (st *stream) drain() (e ending, over bool) {
	for {
		news := st.sub.Read(st.evs[:0], st.cursor, drainBatch)
		st.msgsUp, st.bytesUp = news.MsgsUp, news.BytesUp
		if news.End != nil {
			return st.detached(news.End), true
		}
		if !st.read {
			st.read = true
			st.liveFrom = news.Head
			st.msgsUp0, st.bytesUp0 = news.MsgsUp, news.BytesUp
			if st.cursor > news.Head { // a Last-Event-ID from the future: replay nothing
				st.cursor = news.Head
			}
			if news.Lost > 0 {
				st.lost = int64(news.Lost)
				st.b.opts.Metrics.gap(st.lost)
				st.buf = appendNamed(st.buf[:0], "gap", gapJSON(st.lost))
				if err := st.write(st.buf); err != nil {
					return st.writeFailed(err), true
				}
			}
		} else if news.Lost > 0 {
			return st.tooSlow(fmt.Errorf("client too slow: %d events were dropped from the replay log before it read them", news.Lost)), true
		}
		if e, slow := st.fellBehind(news.Head); slow {
			return e, true
		}
		if len(news.Events) > 0 {
			if err := st.writeEvents(news.Events); err != nil {
				return st.writeFailed(err), true
			}
		}
		st.evs = news.Events[:0]
		if len(news.Events) == drainBatch {
			continue
		}
		if c := news.Closed; c != nil && st.cursor >= news.Head {
			return st.closeEvent(c), true
		}
		return ending{}, false
	}
}

// fellBehind reports whether the stream, reading its session at head, is
// too slow for it: it has been more than QueueLen live events behind for
// longer than WriteTimeout without catching up, or it is more than 1.5 ×
// QueueLen behind, close to what the replay log holds (Replay is 2 ×
// QueueLen by default). Either way it is dropped before the log evicts
// what it has not read, so that its resume misses nothing. A burst that
// the client takes as fast as it is written leaves it behind for a
// moment only: being behind is not, by itself, being slow.
func (st *stream) fellBehind(head uint64) (ending, bool) {
	behind, q := head-max(st.cursor, st.liveFrom), uint64(st.b.queueLen)
	switch {
	case behind <= q:
		st.behindSince = time.Time{}
		return ending{}, false
	case behind > q+q/2:
		return st.tooSlow(fmt.Errorf("client too slow: %d events behind", behind)), true
	}
	now := time.Now()
	switch {
	case st.behindSince.IsZero():
		st.behindSince = now
	case now.Sub(st.behindSince) > st.b.opts.WriteTimeout:
		return st.tooSlow(fmt.Errorf("client too slow: more than %d events behind for %s", q, now.Sub(st.behindSince).Round(time.Millisecond))), true
	}
	return ending{}, false
}

// maxWrite is the size past which encoded events are written (and
// flushed) rather than batched further: each write has its own deadline,
// so a slow client is measured on a few events, not on a whole batch.
const maxWrite = 32 << 10

// writeEvents writes evs, advancing the cursor after each write.
func (st *stream) writeEvents(evs []Event) error {
	b := st.buf[:0]
	replayed, from := 0, 0
	for i, ev := range evs {
		b = appendEvent(b, st.sid, ev)
		if st.resumed && ev.Seq <= st.liveFrom {
			replayed++ // a fresh stream's first events are its own, however early
		}
		if len(b) < maxWrite && i < len(evs)-1 {
			continue
		}
		err := st.write(b)
		st.buf, b = b, b[:0]
		if err != nil {
			return err
		}
		n := i + 1 - from
		st.cursor = ev.Seq
		st.events += int64(n)
		st.replayed += int64(replayed)
		st.b.opts.Metrics.eventsWritten(n, replayed)
		replayed, from = 0, i+1
	}
	return nil
}

// closeEvent writes the close event that ends a session the upstream
// closed.
func (st *stream) closeEvent(c *closeInfo) ending {
	e := ending{by: c.Leg.ClosedBy, err: c.Leg.Err, clientCode: c.Code, upstream: c.Leg.Code}
	if err := st.write(appendNamed(st.buf[:0], "close", closeJSON(c.Code, c.Reason))); err != nil {
		return st.writeFailed(err)
	}
	return e
}

// detached is the ending of a subscription the store ended.
func (st *stream) detached(err error) ending {
	switch {
	case errors.Is(err, errTakenOver):
		return ending{by: wsconn.ClosedByClient, takenOver: true}
	case st.b.isClosing():
		return st.shutdown()
	}
	return ending{by: wsconn.ClosedByError, err: err}
}

func (st *stream) tooSlow(err error) ending {
	return ending{by: wsconn.ClosedByError, err: err, slow: true}
}

// writeFailed is the ending after a failed write: a client that went away,
// or one too slow to take a write within WriteTimeout.
func (st *stream) writeFailed(err error) ending {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, http.ErrHandlerTimeout) {
		return st.tooSlow(fmt.Errorf("client too slow: a write took longer than %s", st.b.opts.WriteTimeout))
	}
	return ending{by: wsconn.ClosedByClient}
}

// write writes p within WriteTimeout and flushes it. The deadline is
// cleared afterwards: on HTTP/2 a deadline that passes resets the stream
// even when no write is waiting.
func (st *stream) write(p []byte) error {
	st.lastWrite = time.Now()
	if st.conn != nil {
		return st.writeConn(p)
	}
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.b.opts.WriteTimeout))
	_, err := st.w.Write(p)
	if err == nil {
		err = st.rc.Flush()
	}
	_ = st.rc.SetWriteDeadline(time.Time{})
	if err == nil {
		st.bytes += int64(len(p))
	}
	return err
}

// logEnd writes the stream's end-of-connection line.
func (st *stream) logEnd(e ending) {
	res := wsconn.Result{
		ClosedBy:     e.by,
		ClientCode:   e.clientCode,
		UpstreamCode: e.upstream,
		Err:          e.err,
		Duration:     time.Since(st.start),
		BytesUp:      st.bytesUp - st.bytesUp0,
		BytesDown:    st.bytes,
		MsgsUp:       st.msgsUp - st.msgsUp0,
		MsgsDown:     st.events,
	}
	id := logID(st.sid)
	info := wsconn.ConnInfo{ID: id + "/" + strconv.FormatUint(st.b.streamSeq.Add(1), 10), Kind: "sse", Route: st.b.opts.Route, ClientIP: st.ip}
	wsconn.LogEnd(st.b.endLog, info, res, func(ev *zerolog.Event) {
		ev.Str("session", id).Bool("resumed", st.resumed).Int64("replayed", st.replayed)
		switch {
		case st.lost < 0:
			ev.Str("lost", "unknown")
		case st.lost > 0:
			ev.Int64("lost", st.lost)
		}
		if e.takenOver {
			ev.Bool("taken_over", true)
		}
	})
}

// acceptsEventStream reports whether the request accepts text/event-stream.
func acceptsEventStream(r *http.Request) bool {
	return wsconn.HeaderListHas(r.Header, "Accept", "text/event-stream")
}

// lastEventID parses the Last-Event-ID header, or else the lastEventId
// query parameter (for a first connect), as "<session>.<seq>".
func lastEventID(r *http.Request) (sid string, seq uint64, ok bool) {
	v := r.Header.Get("Last-Event-ID")
	if v == "" {
		v = r.URL.Query().Get("lastEventId")
	}
	sid, s, found := strings.Cut(v, ".")
	if !found || !validSessionID(sid) {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return "", 0, false
	}
	return sid, seq, true
}
