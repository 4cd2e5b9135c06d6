package wsconn

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
)

// handshakeConn is the upstream connection as gorilla's Dialer sees it. It
// hands gorilla the HTTP response header and not a byte more, keeping the
// frames an upstream sends right after its 101 (a greeting, say) for the
// frame relay, which reads the connection directly: bytes that went into
// gorilla's own buffer would be out of its reach. After the header it is a
// plain pass-through (a refusal's body reaches gorilla as usual).
//
// It also buffers what is written before the first read, which is the
// handshake request, and sends it in one write at that read. As it is an
// io.ByteWriter, net/http's Request.Write writes to it directly rather
// than through a 4 KiB bufio.Writer of its own, made and thrown away for
// every dial.
//
// Like any net.Conn it has one reader and one writer at a time. The
// request is written and then the response read, by gorilla's one
// goroutine, and takePending is called only once the dial has returned,
// after gorilla's last read, so its state needs no lock.
type handshakeConn struct {
	net.Conn

	request   *[]byte // what was written before the first read, from requestBuffers; nil after it
	sent      bool    // the first read has sent the request: writes pass through
	lines     int     // header lines ended so far
	lineBytes int     // bytes of the current line, CRs aside
	done      bool    // the header has been passed on
	pending   []byte  // bytes read past the header, not yet passed on
}

// requestBuffers lends handshakeConns the memory for a handshake request.
// One bigger than maxPooledRequest (a request with large cookies, say) is
// left to the garbage collector.
var requestBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

// maxPooledRequest bounds the request buffers kept for reuse.
const maxPooledRequest = 8 << 10

func newHandshakeConn(c net.Conn) *handshakeConn { return &handshakeConn{Conn: c} }

// Write buffers p until the first read, and then writes it through.
func (c *handshakeConn) Write(p []byte) (int, error) {
	if c.sent {
		return c.Conn.Write(p)
	}
	buf := c.requestBuffer()
	*buf = append(*buf, p...)
	return len(p), nil
}

// WriteString is Write of a string, without converting it; net/http's
// header writer uses it where a writer has it.
func (c *handshakeConn) WriteString(str string) (int, error) {
	if c.sent {
		return c.Conn.Write([]byte(str))
	}
	buf := c.requestBuffer()
	*buf = append(*buf, str...)
	return len(str), nil
}

// WriteByte is Write of one byte; it makes the conn an io.ByteWriter.
func (c *handshakeConn) WriteByte(b byte) error {
	if c.sent {
		_, err := c.Conn.Write([]byte{b})
		return err
	}
	buf := c.requestBuffer()
	*buf = append(*buf, b)
	return nil
}

// requestBuffer is the buffer of the request being written, taken from
// requestBuffers at the first write.
func (c *handshakeConn) requestBuffer() *[]byte {
	if c.request == nil {
		c.request = requestBuffers.Get().(*[]byte)
	}
	return c.request
}

// sendRequest writes what was buffered, once, and returns the buffer to
// its pool.
func (c *handshakeConn) sendRequest() error {
	c.sent = true
	if c.request == nil {
		return nil
	}
	b := c.request
	c.request = nil
	_, err := c.Conn.Write(*b)
	if cap(*b) <= maxPooledRequest {
		*b = (*b)[:0]
		requestBuffers.Put(b)
	}
	return err
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	if !c.sent {
		if err := c.sendRequest(); err != nil {
			return 0, err
		}
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if c.done || n == 0 {
		return n, err
	}
	if end := c.scan(p[:n]); end >= 0 {
		c.done = true
		c.pending = bytes.Clone(p[end:n])
		return end, err
	}
	return n, err
}

// scan looks for the end of the header in p, which follows what was read
// before: an empty line, ended by CRLF or, as Go's HTTP parser also
// accepts, by a bare LF. It returns the index just past it, or -1.
func (c *handshakeConn) scan(p []byte) int {
	for i, b := range p {
		switch b {
		case '\n':
			if c.lineBytes == 0 && c.lines > 0 {
				return i + 1
			}
			c.lines++
			c.lineBytes = 0
		case '\r':
		default:
			c.lineBytes++
		}
	}
	return -1
}

// takePending returns the bytes read past the header and forgets them.
func (c *handshakeConn) takePending() []byte {
	p := c.pending
	c.pending = nil
	return p
}

// CloseWrite shuts down the sending side when the connection underneath
// can.
func (c *handshakeConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// dialHandshakeConn returns dial functions for gorilla's Dialer that wrap
// each connection in a handshakeConn: plain for ws:// and with the TLS
// handshake done here for wss:// (so the wrapper sees the bytes above TLS),
// verified as gorilla would.
func dialHandshakeConn(dial func(ctx context.Context, network, addr string) (net.Conn, error), tlsConfig *tls.Config) (plain, secure func(ctx context.Context, network, addr string) (net.Conn, error)) {
	plain = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return newHandshakeConn(c), nil
	}
	secure = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cfg := &tls.Config{}
		if tlsConfig != nil {
			cfg = tlsConfig.Clone()
		}
		if cfg.ServerName == "" {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				host = addr
			}
			cfg.ServerName = host
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
		}
		return newHandshakeConn(tc), nil
	}
	return plain, secure
}
