package bridge

import (
	"bytes"
	"crypto/sha256"
	_ "embed" // client.js
	"encoding/hex"
	"net/http"
	"time"
)

// clientJS is the browser client, a classic script (no modules, no
// dependencies, 9.5 KiB unminified, 3.2 KiB gzipped) that defines
// window.StreamgateSocket:
//
//	var s = new StreamgateSocket(url, protocols?, options?)
//
// with the WebSocket API: readyState (and the CONNECTING..CLOSED
// constants), url, protocol, extensions, binaryType, bufferedAmount,
// onopen, onmessage (event.data, a string, or a Blob or ArrayBuffer per
// binaryType), onclose (code, reason, wasClean), onerror, send, close and
// addEventListener. It adds a "gap" event (event.detail.lost: a count, or
// "unknown" when continuity broke because a fresh upstream connection had
// to be made).
//
// It tries a WebSocket first and falls back to SSE + POST when the
// WebSocket fails before opening, stalls (not open within
// options.openTimeout, 5s), or closes with 1006 within options.shortLived
// (3s) of opening (what was sent meanwhile is sent again over SSE, and a
// gap event tells of the new upstream connection); the transport that
// worked is remembered for the page's lifetime. Reconnects use jittered
// exponential backoff (options.minDelay
// 500ms to options.maxDelay 30s, giving up after options.maxRetries, 20,
// failures in a row) and resume with Last-Event-ID. The page sees one
// open and one close: onclose fires when the upstream closed the
// connection, close() was called, or reconnecting gave up. Close codes in
// options.retryCodes reconnect instead: 1001 (a proxy or server going away,
// as in a rolling deploy), 1006, 1011 (the upstream was lost, as when the
// app restarts), 1012, 1013 and 1014. send() queues
// while a reconnect or a POST is in progress; POSTs go one at a time, so
// messages keep their order. options.transport forces "websocket" or
// "sse"; options.withCredentials sends cookies cross-origin. close() on
// the SSE transport drops the stream; the server closes the upstream when
// the session expires (sse.session_ttl).
//
//go:embed client.js
var clientJS []byte

// ClientJS returns the handler for GET /.streamgate/client.js. It serves
// the embedded client with Content-Type application/javascript, an ETag
// (conditional requests get 304) and Cache-Control: public, max-age=300,
// so browsers revalidate within minutes of an upgrade.
func ClientJS() http.Handler {
	sum := sha256.Sum256(clientJS)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/javascript; charset=utf-8")
		h.Set("Cache-Control", "public, max-age=300")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "client.js", time.Time{}, bytes.NewReader(clientJS))
	})
}
