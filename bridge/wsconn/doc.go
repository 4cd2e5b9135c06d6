// Package wsconn holds the WebSocket leg code shared by the proxy and the SSE
// bridge: dialling the upstream, accepting the client, keeping legs alive
// with pings, relaying messages between two legs, forwarding close codes, and
// the end-of-connection statistics line.
//
// A relayed connection costs two goroutines, one per direction: each reads
// one leg and writes the other, so every gorilla connection keeps its
// contract of one concurrent reader and one concurrent writer. Pings, close
// frames and timers go through WriteControl, which gorilla allows from any
// goroutine, and are driven by one runtime timer per connection rather than a
// goroutine, so an idle connection holds no ticker goroutine.
//
// A leg that is not relayed to another WebSocket (the SSE bridge's upstream
// leg) is a Leg: the same read limit, liveness deadline, timer-driven pings,
// per-write deadlines and bounded closing handshake, for one connection
// whose reader and writers are the caller's.
package wsconn
