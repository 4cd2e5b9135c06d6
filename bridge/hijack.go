package bridge

import (
	"bytes"
	"crypto/tls"

	"net/http"
	"strconv"
	"time"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// hijack takes an HTTP/1 stream's connection over from net/http, when the
// bridge has a Poller, so that the stream can outlive its handler: it
// builds the response head (sent with the first write), and from then on
// writes the connection itself and learns from the Poller when the client
// leaves. Once the handler returns, net/http's goroutine, its background
// reader and its buffers are gone. It reports whether it took the
// connection; it does not when there is no Poller, on HTTP/2, or when the
// ResponseWriter cannot be hijacked.
func (st *stream) hijack() bool {
	p := st.b.opts.Poller
	if p == nil || st.r.ProtoMajor != 1 {
		return false
	}
	h := st.w.Header().Clone() // before the hijack: w must not be used after it
	st.setHeaders(h)
	conn, _, err := st.rc.Hijack()
	if err != nil {
		return false
	}
	// Bytes the client sent after its request (net/http's reader may
	// hold some) are never read: an event stream's client sends nothing.
	st.conn, st.chunked = conn, st.r.ProtoAtLeast(1, 1)
	st.head = responseHead(h, st.chunked)
	st.w, st.rc, st.r = nil, nil, nil // they hold net/http's connection state
	raw := conn
	if tc, ok := conn.(*tls.Conn); ok {
		raw = tc.NetConn() // the FIN and the reset come on the TCP connection
	}
	stop, err := p.WatchHangup(raw, func() { st.post(evGone) })
	if err != nil {
		// Not a TCP connection, or the Poller is closing: a reader
		// waits for the end instead.
		st.b.log.Debug().Err(err).Msg("sse stream watched by a reader goroutine")
		st.unwatch = func() {}
		go func() {
			defer st.post(evGone)
			var b [512]byte
			for {
				if _, err := conn.Read(b[:]); err != nil {
					return
				}
			}
		}()
		return true
	}
	st.unwatch = stop
	return true
}

// responseHead is the head of a 200 event stream response with the
// headers h: the body is chunked, or, for an HTTP/1.0 client, ends with
// the connection, which is closed after the stream either way.
func responseHead(h http.Header, chunked bool) []byte {
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if chunked {
		h.Set("Transfer-Encoding", "chunked")
	}
	h.Set("Connection", "close")
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b) // sorted, and a value's line breaks made spaces
	b.WriteString("\r\n")
	return b.Bytes()
}

// writeConn writes p to a hijacked stream's connection (after the response
// head, on the first call) as one chunk, within WriteTimeout. The deadline
// is set again only once a sixteenth of it has passed, so that a write
// always has at least 15/16 of it and a busy stream does not reset a
// runtime timer for every event; nothing but the stream writes this
// connection, so a deadline that passes between writes harms nothing.
func (st *stream) writeConn(p []byte) error {
	bp := st.b.getBuf()
	b := append((*bp)[:0], st.head...)
	st.head = nil
	if st.chunked {
		b = strconv.AppendUint(b, uint64(len(p)), 16)
		b = append(b, "\r\n"...)
		b = append(b, p...)
		b = append(b, "\r\n"...)
	} else {
		b = append(b, p...)
	}
	timeout := st.b.opts.WriteTimeout
	if now := time.Now(); now.Sub(st.armed) >= timeout/16 {
		_ = st.conn.SetWriteDeadline(now.Add(timeout))
		st.armed = now
	}
	_, err := st.conn.Write(b)
	st.b.putBuf(bp, b)
	if err != nil {
		st.failed = true
		return err
	}
	st.bytes += int64(len(p))
	return nil
}

// closeConn ends a hijacked stream's response with the last chunk, unless
// the client is gone, too slow to take it, or a write failed, and closes
// the connection.
func (st *stream) closeConn(e ending) {
	st.unwatch()
	if st.clientLeft || st.state.Load()&evGone != 0 {
		e.by = wsconn.ClosedByClient
	}
	if st.chunked && st.head == nil && !st.failed && e.by != wsconn.ClosedByClient && !e.slow {
		_ = st.conn.SetWriteDeadline(time.Now().Add(st.b.opts.WriteTimeout))
		_, _ = st.conn.Write([]byte("0\r\n\r\n"))
	}
	_ = st.conn.Close()
}
