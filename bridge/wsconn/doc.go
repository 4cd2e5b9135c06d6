// Package wsconn holds the WebSocket leg code shared by the proxy and the SSE
// bridge: dialling the upstream, accepting the client, keeping legs alive
// with pings, relaying messages between two legs, forwarding close codes, and
// the end-of-connection statistics line.
//
// gorilla does both handshakes. Unless the client leg compresses, the relay
// then works on frames, not messages: a data frame that fits the read buffer
// is forwarded as it arrived (client frames keep the client's mask, which
// the upstream requires anyway; upstream frames go out unmasked, as the
// client requires), header and payload in one write from the read buffer; a
// larger frame goes out as whole fragments. The size limit, UTF-8 and
// protocol checks are done on the way, with no allocation per message.
// Writes to a leg are serialised by a lock held for a whole frame, so the
// relay's own control frames (pongs, pings, close) never land inside one.
//
// A frame-relayed connection whose legs are both plain TCP runs on a
// Poller's event loops (Linux): edge-triggered epoll over the two sockets,
// one read and one write per message, non-blocking writes with a backlog
// bounded by one frame, and no goroutine or buffer held while the
// connection is idle. Any other connection (TLS on either leg, or a
// compressed client) costs two goroutines, one per direction, each reading
// one leg and writing the other; a compressed one is relayed message by
// message through gorilla, whose WriteControl may be called from any
// goroutine. Either way, pings, liveness and timeouts are driven by one
// runtime timer per connection rather than a goroutine.
//
// A leg that is not relayed to another WebSocket (the SSE bridge's upstream
// leg) is a Leg: the same read limit, liveness deadline, timer-driven pings,
// per-write deadlines and bounded closing handshake, for one connection
// whose reader and writers are the caller's.
package wsconn
