package bridge

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
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
// closed at once (see closeNow).
func (st *stream) closeConn(slow bool) {
	st.unwatch()
	// From here on Abort closes the socket, whatever deadline the last
	// chunk or the linger (or TLS's close_notify) has armed.
	st.b.mu.Lock()
	st.closing = true
	aborted := st.b.aborted.Load()
	st.b.mu.Unlock()
	left := st.clientLeft || st.state.Load()&evGone != 0
	if left || slow || st.failed || aborted {
		closeNow(st.conn)
		return
	}
	if st.chunked && st.head == nil && st.writeConn(nil) != nil { // the last chunk
		closeNow(st.conn)
		return
	}
	st.linger()
	_ = st.conn.Close()
}

// closeNow closes c without a TLS close_notify, which crypto/tls writes
// under a 5 s deadline of its own: to a client that reads nothing, the
// close would take those 5 s.
func closeNow(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	_ = c.Close()
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
		if st.closing {
			// Its hangup watch is over, so nothing else uses the
			// descriptor; a deadline would not hold against the ones
			// closing arms.
			closeNow(st.conn)
		} else {
			_ = st.conn.SetDeadline(time.Now())
		}
	}
}
