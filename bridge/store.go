package bridge

import (
	"context"
	"errors"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// store is the one seam between the streaming code (stream.go, send.go,
// session.go) and session state: the session table (ids, TTL,
// max_sessions, tombstones of closed sessions), each session's replay log,
// and the back-channel queue. memStore (sessions.go) keeps it all in this
// process. A store shared by replicas (Redis: a hash per session with a
// TTL, a capped stream per log, a list per back-channel, pub/sub for
// wake-ups and takeovers) can sit beside it without touching the streaming
// code, because that code never sees more than these four small
// interfaces:
//
//   - store: the table, used by the handlers;
//   - sessionLog: what the process holding a session's upstream leg
//     writes (upstream messages, and how the upstream ended);
//   - owner: what the store asks of that process (write a back-channel
//     message upstream; the session expired);
//   - subscription: what one attached SSE stream reads.
//
// A session lives in the table from Create until it expires (SessionTTL
// with no stream attached, or evicted to make room) or the store closes,
// even after its upstream closed, so that a client that missed events
// still gets them and the close event. A session whose upstream closed
// leaves a tombstone, so a late resume is told 204 rather than given a
// fresh session.
type store interface {
	// Create adds session id, whose upstream leg o holds in this process,
	// and returns the log its upstream reader appends to. A full table
	// makes room by evicting its least recently used session with no
	// stream attached; errFull when every session has one; errClosed
	// after Close. The new session counts as attached until its first
	// Attach, which its creator makes next: it cannot expire or be
	// evicted before its first stream has it.
	Create(id string, o owner) (sessionLog, error)
	// CanCreate reports what a Create would now meet, without changing
	// anything: errFull, errClosed, or nil. A new stream asks it before
	// it dials the upstream, so that a full table costs the app no
	// connection; Create checks again.
	CanCreate() error
	// Attach attaches a new SSE stream from clientIP to session id and
	// renews its TTL; wake is called whenever there may be something new
	// to Read (events, the upstream's close, a takeover, expiry), first
	// at once. wake must not block: it may run under the store's locks.
	// The stream attached before, if any, is ended (its next Read says
	// errTakenOver). errNoSession for an id the store does
	// not know (or, binding sessions to IPs, one of another IP),
	// errSessionClosed for one whose upstream closed it.
	Attach(id, clientIP string, wake func()) (subscription, error)
	// Probe reports what Attach(id, clientIP) by a client that has the
	// events up to seq after would lead to, without attaching, renewing
	// or creating anything: nil when it would resume the session,
	// errSessionClosed when the upstream closed the session and the
	// client has every event (204), errNoSession when it would get a
	// fresh session.
	Probe(id, clientIP string, after uint64) error
	// Send hands one back-channel message to session id's owner and
	// returns once it was written to the upstream (acknowledged =
	// written), or once ctx ended before the write started (the
	// message is then not written). Messages are written one at a time, in the order their
	// Sends reach the owner. errNoSession, errWrongIP (m.From is set and
	// is not the attached stream's IP), errBusy (too many messages
	// waiting), or the owner's write error.
	Send(ctx context.Context, id string, m message) error
	// CanSend reports what a Send to session id from the client IP from
	// (empty unless sessions are bound to IPs) would now meet before its
	// delivery: errNoSession, errWrongIP, or nil. The back-channel asks
	// it before it reads a body; Send checks again.
	CanSend(id, from string) error
	// Close removes every session, telling each owner to expire and
	// waking each attached stream, whose next Read says errExpired (so the
	// Bridge's streams end with it); later Creates fail with errClosed.
	Close()
}

// sessionLog is the writing side of a session's state, used by the one
// reader of its upstream leg (an event loop or a goroutine), one message
// at a time.
type sessionLog interface {
	// Append adds an upstream message as the session's next event, wakes
	// the attached stream and returns the event's seq. It never waits for
	// a stream.
	Append(binary bool, data []byte) uint64
	// Finish records that the upstream ended the session with c. The log
	// stays readable, so that the attached stream, or a resuming one,
	// still gets the events and then the close event.
	Finish(c closeInfo)
}

// owner is the process-local holder of a session's upstream leg, as the
// store sees it.
type owner interface {
	// Deliver writes one back-channel message to the upstream. It gives
	// up, writing nothing, if ctx ends before the write starts.
	Deliver(ctx context.Context, m message) error
	// Expire tells the owner the session left the table. It must only
	// signal: it may run under the store's locks.
	Expire()
}

// subscription is one SSE stream's attachment to a session. It is used
// by one goroutine at a time: the one running the stream's turn.
type subscription interface {
	// Read appends to dst at most limit events with a seq above after,
	// oldest first, with the session's state.
	Read(dst []Event, after uint64, limit int) batch
	// Renew restarts the session's TTL; an attached stream calls it more
	// often than the TTL.
	Renew()
	// Detach ends the attachment and restarts the TTL, which now runs
	// until a stream attaches again.
	Detach()
}

// batch is what a subscription's Read returns.
type batch struct {
	// Events are the events read.
	Events []Event
	// Lost counts events above after that the log no longer holds.
	Lost uint64
	// Head is the seq of the session's newest event.
	Head uint64
	// Closed is set once the upstream ended the session: no event will
	// follow Head.
	Closed *closeInfo
	// End is set when this subscription is over (errTakenOver,
	// errExpired); nothing else is then set.
	End error
	// MsgsUp and BytesUp count the back-channel messages the session has
	// delivered so far.
	MsgsUp, BytesUp int64
}

// message is one back-channel message.
type message struct {
	// Binary selects a binary WebSocket message; false means text.
	Binary bool
	Data   []byte
	// From is the sender's client IP when Options.BindIP is set, else
	// empty.
	From string
}

// closeInfo says how the upstream ended a session.
type closeInfo struct {
	// Code and Reason are sent in the close event.
	Code   int
	Reason string
	// Leg is how the upstream leg ended, for the log line.
	Leg wsconn.LegEnd
}

// Errors of the store.
var (
	errNoSession     = errors.New("no such session")
	errSessionClosed = errors.New("session closed by the upstream")
	errFull          = errors.New("too many sessions with streams attached")
	errClosed        = errors.New("bridge closed")
	errWrongIP       = errors.New("back-channel message from an IP other than the stream's")
	errBusy          = errors.New("too many back-channel messages waiting")
	errTakenOver     = errors.New("another stream took over the session")
	errExpired       = errors.New("session expired")
)
