// Package app is the "legacy" demo backend that streamgate is shown in
// front of. It speaks only plain HTTP and WebSockets and knows nothing of
// Server-Sent Events: streamgate re-exposes its WebSocket endpoints as SSE.
//
// Endpoints:
//
//	GET /            the embedded dashboard page (index.html)
//	GET /healthz     200 "ok"
//	    /ws/counter  a JSON tick {"n":<counter>,"t":"<RFC 3339 time>"} every Options.Interval
//	    /ws/chat     every message from any client is broadcast to all clients
//	    /ws/echo     every message is sent back to its sender
//
// A plain (non-upgrade) request to a WebSocket endpoint gets 426 Upgrade
// Required; any other path gets 404.
//
// Each WebSocket has one reader (the handler goroutine) and one writer
// goroutine, as in the gorilla/websocket chat example. The writer owns every
// data, ping and close frame, sets a write deadline on each, and sends pings
// every 25s; pongs and data frames extend the read deadline. Messages to a
// client go through a bounded queue of 64: a broadcast never waits on a slow
// client, it drops it with close code 1008 "too slow". /ws/echo instead
// applies back-pressure: the reader waits for room in its own queue.
//
// [App.Close] stops the counter, closes every WebSocket with 1001 and waits
// for all goroutines to exit. http.Server.Shutdown does not do this for
// hijacked connections, so callers should call both.
package app
