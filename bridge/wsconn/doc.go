// Package wsconn holds the WebSocket leg code shared by the proxy and the SSE
// bridge: dialling the upstream, accepting the client, keeping legs alive
// with pings, relaying messages between two legs, forwarding close codes, and
// the end-of-connection statistics line.
//
// gorilla does both handshakes. A relayed connection then costs two
// goroutines, one per direction, each reading one leg and writing the other.
// Unless the client leg compresses, the relay works on frames, not messages:
// a data frame that fits the read buffer is forwarded as it arrived (client
// frames keep the client's mask, which the upstream requires anyway;
// upstream frames go out unmasked, as the client requires), header and
// payload in one write from the read buffer; a larger frame goes out as
// whole fragments. The size limit, UTF-8 and protocol checks are done on the
// way, with no allocation per message. Writes to a leg are serialised by a
// lock held for a whole frame, so the relay's own control frames (pongs,
// pings, close) never land inside one. A compressed connection is relayed
// message by message through gorilla, whose WriteControl may be called from
// any goroutine. Pings and timers are driven by one runtime timer per
// connection rather than a goroutine, so an idle connection holds no ticker
// goroutine.
//
// A leg that is not relayed to another WebSocket (the SSE bridge's upstream
// leg) is a Leg: the same read limit, liveness deadline, timer-driven pings,
// per-write deadlines and bounded closing handshake, for one connection
// whose reader and writers are the caller's.
package wsconn
