// Package corporateproxy is a runnable recipe: a WebSocket-hostile,
// buffering nginx between a browser and streamgate, showing the SSE bridge
// and client.js getting the stream through anyway. See README.md; run.sh
// starts it, and the package's test checks it end to end.
package corporateproxy
