package wsconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// writeBufferPool lends write buffers to connections only while a message
// is being written, so an idle connection holds none. It is shared by every
// Dialer and Upgrader built here.
type writeBufferPool struct{ pool sync.Pool }

func (p *writeBufferPool) Get() any  { return p.pool.Get() }
func (p *writeBufferPool) Put(v any) { p.pool.Put(v) }

// DialOptions configure a Dialer.
type DialOptions struct {
	// Timeout bounds the TCP connect, TLS and WebSocket handshake together.
	// Zero means 10 seconds.
	Timeout time.Duration
	// TLSConfig is used for wss:// upstreams; nil means Go's defaults.
	TLSConfig *tls.Config
	// BufferPool, when set, is shared with Upgraders so idle connections
	// hold no write buffer. Nil gives the Dialer a pool of its own.
	BufferPool websocket.BufferPool
	// NetDialContext, when set, opens the TCP connections (a DialGuard's
	// DialContext, say); it must honour its context's deadline. Nil means
	// a plain net.Dialer with Timeout.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// ReadBufferSize is the read buffer each connection holds for its
	// whole life; zero means 2 KiB. Payloads larger than the buffer
	// bypass it, so a small one costs reads only when many small
	// messages arrive at once.
	ReadBufferSize int
}

// readBufferSize is each leg's read buffer, held for the connection's whole
// life. A message up to about 2 KiB arrives in one read; larger payloads
// bypass the buffer and are read straight into the write buffer of the
// other leg, so a bigger buffer would cost every idle connection memory
// without saving reads.
const readBufferSize = 2048

// NewBufferPool returns a write buffer pool to share between a Dialer and an
// Upgrader.
func NewBufferPool() websocket.BufferPool { return &writeBufferPool{} }

// NewDialer returns a gorilla Dialer for upstream legs. It never uses an
// environment HTTP proxy: a sidecar talks to its app directly.
func NewDialer(opts DialOptions) *websocket.Dialer {
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	pool := opts.BufferPool
	if pool == nil {
		pool = NewBufferPool()
	}
	dial := opts.NetDialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	}
	plain, secure := dialHandshakeConn(dial, opts.TLSConfig)
	size := opts.ReadBufferSize
	if size <= 0 {
		size = readBufferSize
	}
	return &websocket.Dialer{
		NetDialContext:    plain,
		NetDialTLSContext: secure,
		HandshakeTimeout:  timeout,
		TLSClientConfig:   opts.TLSConfig,
		ReadBufferSize:    size,
		WriteBufferPool:   pool,
	}
}

// NewUpgrader returns a gorilla Upgrader for client legs. Origins are not
// checked here: the caller decides before upgrading, so that a refusal is a
// 403 with a log line. Write buffers come from pool (nil: a pool of its
// own).
//
// Without compression every connection is frame-relayed, and the Relay
// drops the gorilla connection after the handshake; gorilla then reuses
// net/http's hijacked reader rather than allocating a read buffer nobody
// reads. With compression, connections relayed message by message get a
// fresh read buffer instead: the hijacked reader would keep net/http's whole
// connection state alive, including a 4 KiB write buffer, for as long as the
// WebSocket lives.
func NewUpgrader(compression bool, pool websocket.BufferPool) *websocket.Upgrader {
	if pool == nil {
		pool = NewBufferPool()
	}
	u := &websocket.Upgrader{
		HandshakeTimeout:  10 * time.Second,
		WriteBufferPool:   pool,
		EnableCompression: compression,
		CheckOrigin:       func(*http.Request) bool { return true },
	}
	if compression {
		u.ReadBufferSize = readBufferSize
	}
	return u
}

// NegotiatesDeflate reports whether u accepts permessage-deflate for the
// handshake request r, by gorilla's rule: compression is enabled and the
// client offers the extension.
func NegotiatesDeflate(u *websocket.Upgrader, r *http.Request) bool {
	return u.EnableCompression && HeaderListHas(r.Header, "Sec-WebSocket-Extensions", "permessage-deflate")
}

// HeaderListHas reports whether the comma-separated list header key of h
// (every line of it) has an element whose token, before any ";"
// parameters, is token, compared case-insensitively: an extension in
// Sec-WebSocket-Extensions, a media type in Accept.
func HeaderListHas(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for elem := range strings.SplitSeq(v, ",") {
			name, _, _ := strings.Cut(elem, ";")
			if strings.EqualFold(strings.TrimSpace(name), token) {
				return true
			}
		}
	}
	return false
}

// HandshakeError reports an upstream that answered the WebSocket handshake
// with something other than 101 Switching Protocols.
type HandshakeError struct {
	// URL is the upstream URL dialled.
	URL string
	// StatusCode and Header are the upstream's response.
	StatusCode int
	Header     http.Header
	// Body is the start of the response body (at most 4 KiB).
	Body []byte
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("upstream %s refused the WebSocket handshake with status %d", WithoutQuery(e.URL), e.StatusCode)
}

// WithoutQuery is url for errors and logs: its query may carry a token.
func WithoutQuery(url string) string {
	url, _, _ = strings.Cut(url, "?")
	return url
}

// maxHandshakeBody bounds how much of a refused handshake's body is kept.
const maxHandshakeBody = 4 << 10

// Dial opens the upstream leg at url, sending header and offering
// subprotocols. A refused handshake returns a *HandshakeError; other errors
// are network errors wrapped with the URL (see IsTimeout).
func Dial(ctx context.Context, d *websocket.Dialer, url string, header http.Header, subprotocols []string) (*websocket.Conn, *http.Response, error) {
	dd := *d
	dd.Subprotocols = subprotocols
	conn, resp, err := dd.DialContext(ctx, url, header)
	if err == nil {
		return conn, resp, nil
	}
	if resp != nil && errors.Is(err, websocket.ErrBadHandshake) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxHandshakeBody))
		resp.Body.Close()
		return nil, resp, &HandshakeError{URL: url, StatusCode: resp.StatusCode, Header: resp.Header, Body: body}
	}
	return nil, resp, fmt.Errorf("dial upstream %s: %w", WithoutQuery(url), err)
}

// IsTimeout reports whether err is a timeout, such as a dial that did not
// complete within DialOptions.Timeout.
func IsTimeout(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}
