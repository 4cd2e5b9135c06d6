// Package proxy is the streamgate server: its listeners, routing, plain HTTP
// proxying through httputil.ReverseProxy, WebSocket proxying (dial the
// upstream first, then upgrade the client), connection limits, the admin
// endpoints (/healthz, /readyz, /metrics) and the drain on shutdown.
//
// The route table is an immutable snapshot behind an atomic pointer: Reload
// swaps it, and a live connection keeps the snapshot it started with.
// Hijacked WebSockets and SSE streams are invisible to http.Server.Shutdown,
// so the server keeps its own registry of them and ends them, spread over
// the drain window, when it shuts down.
package proxy
