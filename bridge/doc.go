// Package bridge re-exposes an upstream WebSocket endpoint as Server-Sent
// Events (SSE) plus an HTTP POST back-channel, with resume, for browsers
// whose network breaks WebSockets. The proxy makes one Bridge per route
// with sse: true and sends it, for that route's paths, GET requests that
// accept text/event-stream, and POST and OPTIONS requests that carry
// sg_session. ClientJS serves the browser client that picks a transport.
//
// # Wire protocol
//
// GET <path> with Accept: text/event-stream dials the upstream WebSocket at
// the same path and query (Options.Upstream maps it; the client's
// subprotocols come from its Sec-WebSocket-Protocol header or else from
// ?sg_protocols=a,b, since EventSource cannot set headers). A refused
// handshake is answered with the upstream's status, a dial timeout with
// 504, other dial failures with 502: never a 200 that dies. Then the
// response (Content-Type: text/event-stream, Cache-Control: no-cache,
// no-transform, X-Accel-Buffering: no) carries, on every connect:
//
//	:<spaces>                 a comment of Options.Padding bytes, newline included
//	retry: 2000               Options.Retry in milliseconds
//
//	event: session
//	data: {"session":"<id>","send":"<path>?sg_session=<id>"}
//
// The session event has no id. It names the session on resume too; it
// adds "protocol" when the upstream selected a subprotocol. A new session
// then gets an id-only block, "id: <id>.0" and a blank line, which sets
// EventSource's lastEventId without dispatching an event, so that even a
// plain EventSource that reconnects before the first message resumes its
// session. Then each upstream message is one event:
//
//	id: <id>.<seq>            seq counts from 1 per session
//	data: first line          text: one data line per line; LF, CR and
//	data: second line         CRLF all break lines, so no message can end
//	                          the event early or add fields
//
//	event: binary             binary: base64 (standard, padded) data
//	id: <id>.<seq>
//	data: AAEC/w==
//
// An idle stream gets ": ping" comments every Options.Heartbeat; the timer
// restarts after each event. When the upstream closes, the stream ends
// with
//
//	event: close
//	data: {"code":1000,"reason":"bye"}
//
// (1011 "upstream connection lost" when the upstream ended without a close
// frame; 1001 "peer broke the protocol" when it broke a rule streamgate
// checks itself and was told why: a message over MaxMessageSize (1009),
// text that is not UTF-8 (1007), a bad frame on an event-loop leg (1002).
// Either is what a proxied WebSocket client is told), and a reconnect for that session that has every event gets 204
// No Content, so EventSource stops. One that missed events (say, the
// close event went to a connection that was already dead) gets them and
// the close event again, as long as the session is kept (SessionTTL).
// After that, a tombstone still answers 204.
//
// # Resume
//
// A reconnect with Last-Event-ID: <id>.<seq> (EventSource sends it by
// itself; a first connect may pass ?lastEventId=<id>.<seq>) attaches to
// the live session and gets exactly the events after seq from the
// session's replay log (the last Options.Replay events, within
// Options.ReplayBytes), then live events. If some
// were evicted it first gets
//
//	event: gap
//	data: {"lost":3}
//
// A session the bridge no longer knows (expired, or another process)
// gives a fresh session whose session event is followed by
// {"lost":"unknown"} in a gap event. A session whose upstream closed gives
// 204 (the bridge keeps a bounded LRU of such tombstones). A session has
// one stream at a time: a second one takes over and the first ends. With
// Options.BindIP, only the session's client IP may resume it.
//
// # Resume probe (an extension of DESIGN.md)
//
// GET <path>?sg_probe=1 with Accept: text/event-stream and a
// Last-Event-ID header or ?lastEventId= answers, without a body, the
// status a resume with that id would get, and has no side effects: no
// upstream dial, no session attached, renewed or created. 204 means the
// upstream closed the session and the client has every event; 200 means a
// resume would stream (the session, or a fresh one: a probe cannot
// foresee the upstream's answer to a dial); 503 means the bridge is
// closing; 403 and 406 as for a stream. client.js uses it when
// EventSource gave up on a resume. The parameter is never forwarded
// upstream.
//
// # Back-channel
//
// POST <path>?sg_session=<id> sends its body upstream as one message: text
// for a text/* Content-Type, binary otherwise. It answers 202 only once the
// message is written to the upstream socket; 404 for an unknown session,
// 413 for a body over the leg's MaxMessageSize, 403 for a refused Origin
// (and, with Options.BindIP, a client IP other than the stream's). The
// session is looked up before the body is read: a POST to an unknown
// session gets its 404 without its body being read (on HTTP/1.x the
// connection then closes, so that the server does not read it either).
// OPTIONS
// answers CORS preflights for origins Options.CORSOrigin allows.
//
// # Sessions, goroutines and buffers
//
// A session id is 128 random bits (crypto/rand) in hex; the table is keyed
// by a hash of it and the id is compared in constant time. The session
// table is one LRU per Bridge (golang-lru/v2), bounded by
// Options.MaxSessions, whose entries expire SessionTTL after their last
// renewal: one timer per Bridge, armed for the oldest deadline, removes
// them, and no goroutine waits for it. The upstream stays open while no
// stream is attached for Options.SessionTTL, filling the replay log; then
// it gets a clean close (1001). Attached streams renew the TTL.
//
// Session state (the table, the replay logs, the back-channel) sits behind
// one narrow seam, the store interface (store.go): memStore keeps it in
// memory, and a store shared by replicas (Redis) can sit beside it without
// touching the streaming code.
//
// Each session's upstream leg (wsconn.Leg) is read by the Poller's event
// loop, or, without one or on a wss:// upstream, by a goroutine of the
// leg's own; the reader appends every message to the log and never waits
// for a stream. Pings come from the leg's timer; back-channel writes are
// serialised by the leg, and on the loop each waits until the socket has
// taken it, so at most one back-channel message per session is buffered.
// A stream is driven by events: the store's wake-up (news in the log, a
// takeover, expiry), the client leaving, the proxy ending it, its
// heartbeat and TTL-renewal timers. Each posts a bit to the stream's state word, and a turn handles what was
// posted, one turn at a time, so one goroutine at a time writes the
// stream. Its queue is a window on the replay log: a stream more than
// Options.QueueLen live events behind, or whose write (each with its own
// deadline, Options.WriteTimeout) does not complete, is dropped, and its
// client resumes from the log. The upstream is never blocked by a browser.
//
// Without Options.Poller, and always on HTTP/2, a stream's turns run in
// its HTTP handler, the only goroutine to write its ResponseWriter. With a
// Poller, a stream on an HTTP/1 connection takes the connection over
// (http.ResponseController.Hijack) once its session is attached, writes
// the response head and the chunked framing itself, and outlives its
// handler: net/http's goroutine, background reader and buffers are freed,
// and each later turn runs on a goroutine started for it that exits once
// nothing is left to do, so an idle stream holds no goroutine. The Poller
// watches the socket for the client's FIN or reset, which is how the
// stream learns that its client left. The connection is closed after the
// stream (the head says Connection: close). Serve hands such a stream the
// caller's done function.
//
// # Shutdown
//
// Options.Track registers every stream with the proxy's connection
// registry; the end function it gets ends the stream with a jittered
// retry: hint, leaving the session to be resumed. Bridge.Close ends every
// stream the same way, then every session (upstream 1001 "going away"),
// and waits for all the Bridge's goroutines.
//
// # Logs and metrics
//
// Each stream's end is one Info line, wsconn.LogEnd's fields with kind
// "sse": conn is "<session prefix>/<n>", up means the back-channel, down
// the events; closed_by is client, upstream, ping_timeout, shutdown or
// error (a slow client); extra fields are session (the id's first 8 hex
// digits: logs never hold a usable id), resumed, replayed, lost and
// taken_over. Metrics counts sessions, streams, events sent, replayed and
// lost, slow streams and back-channel POSTs.
package bridge
