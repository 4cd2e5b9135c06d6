package bridge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
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
	// hold some) are not read until the stream ends (see linger).
	st.conn, st.chunked = conn, st.r.ProtoAtLeast(1, 1)
	st.head = responseHead(h, st.chunked)
	st.w, st.rc, st.r = nil, nil, nil // they hold net/http's connection state
	st.b.remember(st)
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
	var err error
	if st.b.aborted.Load() { // checked after arming: see Bridge.Abort
		err = errAborted
	} else {
		_, err = st.conn.Write(b)
	}
	st.b.putBuf(bp, b)
	if err != nil {
		st.failed = true
		return err
	}
	st.bytes += int64(len(p))
	return nil
}

// closeConn ends a hijacked stream's response and closes its connection.
// Unless the client left, the Bridge was aborted, or the client was too
// slow (slow) or a write failed, perhaps mid-chunk, a chunked body gets
// its last chunk, and the connection lingers: it is half-closed, and what
// the client sent is read and dropped until it closes its side, for up
// to lingerTimeout. Closing a socket that holds unread bytes resets it,
// and a reset throws away what is still queued for the client: the last
// events, the close event, the last chunk. Otherwise the connection is
// closed at once, TLS's close_notify (which would wait up to 5 s on a
// client that reads nothing) included.
func (st *stream) closeConn(slow bool) {
	st.unwatch()
	st.b.mu.Lock()
	st.closing = true // Abort may now close the socket under us
	st.b.mu.Unlock()
	left := st.clientLeft || st.state.Load()&evGone != 0
	graceful := !left && !slow && !st.failed
	if graceful && st.chunked && st.head == nil {
		_ = st.conn.SetWriteDeadline(time.Now().Add(st.b.opts.WriteTimeout))
		// Checked after arming, as writeConn does: an Abort from now on
		// cuts the write.
		if graceful = !st.b.aborted.Load(); graceful {
			_, err := st.conn.Write([]byte("0\r\n\r\n"))
			graceful = err == nil
		}
	}
	if graceful && !st.b.aborted.Load() {
		st.linger()
		_ = st.conn.Close()
		return
	}
	if tc, ok := st.conn.(*tls.Conn); ok {
		_ = tc.NetConn().Close()
		return
	}
	_ = st.conn.Close()
}

// lingerTimeout bounds how long a stream's connection waits for its
// client to close its side, and lingerMax how much it reads meanwhile.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerMax     = 64 << 10
)

// linger half-closes the connection (after TLS's close_notify, the TCP
// connection's FIN) and reads until the client closes its side, up to
// lingerTimeout and lingerMax, or until the Bridge is aborted.
func (st *stream) linger() {
	type closeWriter interface{ CloseWrite() error }
	cw, ok := st.conn.(closeWriter)
	if !ok || cw.CloseWrite() != nil {
		return
	}
	if tc, ok := st.conn.(*tls.Conn); ok {
		if raw, ok := tc.NetConn().(closeWriter); ok {
			_ = raw.CloseWrite()
		}
	}
	_ = st.conn.SetReadDeadline(time.Now().Add(lingerTimeout))
	if st.b.aborted.Load() { // checked after arming, as in closeConn
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(st.conn, lingerMax))
}

// errAborted is a hijacked stream's write after Bridge.Abort.
var errAborted = errors.New("bridge aborted: write given up")

// remember registers a hijacked stream for Abort; an aborted Bridge cuts
// it short at once.
func (b *Bridge) remember(st *stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hijacked[st] = struct{}{}
	if b.aborted.Load() {
		_ = st.conn.SetDeadline(time.Now())
	}
}

// forget drops a hijacked stream whose connection is closed.
func (b *Bridge) forget(st *stream) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.hijacked, st)
}

// Abort makes the Bridge's hijacked streams give up on their clients: a
// write or linger in progress ends at once, later writes fail without
// waiting, and no last chunk is sent, so that Close returns without
// waiting out write timeouts. A proxy calls it when its shutdown budget
// has run out, as http.Server.Close cuts the connections it still
// tracks (hijacked ones it no longer does).
func (b *Bridge) Abort() {
	b.aborted.Store(true) // before the deadlines: a writer arms its own, then checks this
	b.mu.Lock()
	defer b.mu.Unlock()
	for st := range b.hijacked {
		_ = st.conn.SetDeadline(time.Now())
		if tc, ok := st.conn.(*tls.Conn); ok && st.closing {
			// TLS's close_notify, which a closing stream may be sending,
			// arms a deadline of its own; closing the socket ends it.
			// Before closing, the stream's hangup watch may still be
			// using the descriptor.
			_ = tc.NetConn().Close()
		}
	}
}
