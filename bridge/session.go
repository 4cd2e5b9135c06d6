package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// session is the live side of a bridge session in this process: the
// upstream WebSocket leg, whose reader (an event loop, or a goroutine of
// the leg's) appends every message to the session's log. The store holds
// the rest of the session's state and calls back as its owner.
//
// Writes to the upstream are back-channel messages (Deliver, serialised by
// the leg), pings (the leg's timer) and the close frame (WriteControl), so
// the leg keeps gorilla's one-writer contract. The session ends when the
// upstream closes or fails (the store is told with Finish, and the streams
// get the close event) or when the store expires it (the upstream gets
// 1001).
type session struct {
	b     *Bridge
	id    string
	leg   *wsconn.Leg
	log   sessionLog
	start time.Time

	// over is set by whichever of Expire and Ended comes first, which
	// then closes done. After Expire, closeUpstream runs and closes
	// closed.
	over   atomic.Bool
	done   chan struct{}
	closed chan struct{}

	// writing holds a token while a back-channel message is written:
	// Deliver waits for it, or for its request to end, in line.
	writing chan struct{}
}

// newSession wraps the freshly dialled upstream connection c of session id.
func (b *Bridge) newSession(id string, c *websocket.Conn) *session {
	return &session{
		b:       b,
		id:      id,
		leg:     wsconn.NewLeg(c, b.opts.Leg),
		start:   time.Now(),
		done:    make(chan struct{}),
		closed:  make(chan struct{}),
		writing: make(chan struct{}, 1),
	}
}

// Deliver implements owner: it writes one back-channel message to the
// upstream within the leg's write timeout, once the messages before it
// are written. While it waits for them, ctx ending (the POST's client went
// away) or the session expiring gives up: the message is not written. A
// write that has started is not given up (half a frame would break the
// upstream connection); the leg's write timeout bounds it.
func (s *session) Deliver(ctx context.Context, m message) error {
	select {
	case s.writing <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("wait to write upstream: %w", context.Cause(ctx))
	case <-s.done:
		return wsconn.ErrLegClosing
	}
	defer func() { <-s.writing }()
	if err := ctx.Err(); err != nil { // the select may pick the token when both were ready
		return fmt.Errorf("wait to write upstream: %w", context.Cause(ctx))
	}
	mt := websocket.TextMessage
	if m.Binary {
		mt = websocket.BinaryMessage
	}
	return s.leg.WriteMessage(mt, m.Data)
}

// Expire implements owner. It runs under the store's locks, so the I/O
// is closeUpstream's, in a goroutine of its own. Once Ended has run it
// does nothing.
func (s *session) Expire() {
	if s.over.CompareAndSwap(false, true) {
		close(s.done)
		go s.closeUpstream()
	}
}

// closeUpstream starts the upstream's closing handshake once the session
// expired: 1001, as a browser leaving a page would send.
func (s *session) closeUpstream() {
	defer close(s.closed)
	reason := "sse session expired"
	if s.b.isClosing() {
		reason = "going away"
	}
	s.leg.Close(websocket.CloseGoingAway, reason)
}

// run reads the upstream (see wsconn.Leg.Start): on an event loop, or
// in a goroutine of the leg's own. Its caller registered the session with
// the Bridge's WaitGroup; Ended leaves it.
func (s *session) run() {
	s.b.opts.Metrics.sessionStarted()
	s.leg.Start(s)
}

// Message implements wsconn.LegHandler: it appends an upstream message to
// the session's log, and never waits for a stream.
func (s *session) Message(binary bool, p []byte) {
	s.log.Append(binary, p)
	s.b.down.add(len(p))
}

// Ended implements wsconn.LegHandler: the upstream has ended, and the
// streams get the close event unless the session expired first.
func (s *session) Ended(end wsconn.LegEnd) {
	defer s.b.wg.Done()
	expired := !s.over.CompareAndSwap(false, true) // Expire came first
	if expired {
		<-s.closed // closeUpstream ran or is running; let it finish
	} else {
		close(s.done)
		s.log.Finish(closeInfoOf(end))
	}
	s.b.opts.Metrics.sessionEnded()
	if e := s.b.log.Debug(); e.Enabled() {
		e.Str("session", logID(s.id)).
			Float64("duration", time.Since(s.start).Seconds()).
			Str("closed_by", string(end.ClosedBy)).
			Int("upstream_code", end.Code).
			Bool("expired", expired).
			Bool("on_loop", s.leg.OnLoop()).
			AnErr("error", end.Err).
			Msg("sse session ended")
	}
}

// closeInfoOf is what the close event tells the page about the upstream's
// end: the code and reason a proxied WebSocket client is told (see
// wsconn.LegEnd.ToClient), so that a page sees the same close on either
// transport.
func closeInfoOf(end wsconn.LegEnd) closeInfo {
	c := closeInfo{Leg: end}
	c.Code, c.Reason = end.ToClient()
	return c
}

// logID is the part of a session id that logs show: enough to correlate
// the lines of a session, too little to use it (the id is the key to its
// back-channel).
func logID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// once is a sync.Once-guarded close of a channel, for end signals that
// several parties may give.
type once struct {
	o sync.Once
	c chan struct{}
}

func newOnce() *once { return &once{c: make(chan struct{})} }

func (o *once) close() { o.o.Do(func() { close(o.c) }) }

// bridgeParams are the query parameters of the bridge's own, removed
// before the request is mapped to the upstream URL.
var bridgeParams = []string{"sg_protocols", "sg_session", "sg_probe", "lastEventId"}

// startSession dials the upstream for r, registers a new session and
// attaches the stream to it, with wake as in store.Attach. On failure it
// returns the status to answer with: the upstream's own for a refused handshake (502 if that was not
// an error status), 504 for a dial timeout, 502 otherwise, 503 when the
// table is full (checked before the dial too, so that a full table costs
// the upstream nothing; a table that filled during the dial sends the
// dialled upstream 1013 "try again later") or the bridge is closing (1001
// "going away").
func (b *Bridge) startSession(r *http.Request, clientIP string, wake func()) (sid, protocol string, sub subscription, status int, err error) {
	if err := b.store.CanCreate(); err != nil {
		return "", "", nil, http.StatusServiceUnavailable, fmt.Errorf("no room for a new session: %w", err)
	}
	u, header := b.opts.Upstream(withoutParams(r, bridgeParams))
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	defer context.AfterFunc(b.ctx, cancel)() // Close cuts a dial short
	t0 := time.Now()
	conn, _, err := wsconn.Dial(ctx, b.opts.Dialer, u, header, offeredProtocols(r))
	if err != nil {
		var he *wsconn.HandshakeError
		switch {
		case errors.As(err, &he) && he.StatusCode >= 400:
			return "", "", nil, he.StatusCode, err
		case wsconn.IsTimeout(err):
			return "", "", nil, http.StatusGatewayTimeout, err
		}
		return "", "", nil, http.StatusBadGateway, err
	}
	b.opts.Metrics.dialed(time.Since(t0).Seconds())
	sid = newSessionID()
	s := b.newSession(sid, conn)
	if s.log, err = b.store.Create(sid, s); err != nil {
		if errors.Is(err, errClosed) { // shut down while dialling: as Close tells every upstream
			s.leg.Close(websocket.CloseGoingAway, "going away")
		} else {
			s.leg.Close(websocket.CloseTryAgainLater, "too many sessions")
		}
		s.leg.Stop()
		return "", "", nil, http.StatusServiceUnavailable, err
	}
	b.wg.Add(1) // the calling stream holds the WaitGroup above zero
	s.run()
	if sub, err = b.store.Attach(sid, clientIP, wake); err != nil {
		return "", "", nil, http.StatusServiceUnavailable, err // evicted at once: the bridge is closing
	}
	return sid, conn.Subprotocol(), sub, 0, nil
}

// offeredProtocols is the client's subprotocol offer: its
// Sec-WebSocket-Protocol header, else the comma-separated ?sg_protocols=.
func offeredProtocols(r *http.Request) []string {
	var out []string
	add := func(v string) {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		add(v)
	}
	if len(out) == 0 {
		for _, v := range r.URL.Query()["sg_protocols"] {
			add(v)
		}
	}
	return out
}

// withoutParams returns r, or a shallow copy of it whose URL lacks the
// query parameters names; the other parameters keep their order and
// encoding.
func withoutParams(r *http.Request, names []string) *http.Request {
	q := r.URL.RawQuery
	if q == "" {
		return r
	}
	var kept []string
	dropped := false
	for part := range strings.SplitSeq(q, "&") {
		k, _, _ := strings.Cut(part, "=")
		if k, err := url.QueryUnescape(k); err == nil && slices.Contains(names, k) {
			dropped = true
			continue
		}
		kept = append(kept, part)
	}
	if !dropped {
		return r
	}
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = strings.Join(kept, "&")
	return r2
}
