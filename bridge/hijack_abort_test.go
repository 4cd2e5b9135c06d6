package bridge

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// hookConn is a hijacked stream's TCP connection with hooks that run
// Bridge.Abort at a chosen point of closeConn, as the proxy's shutdown
// goroutine may when its budget runs out while a stream is ending.
type hookConn struct {
	*net.TCPConn
	onSetWriteDeadline func()
	onWrite            func(p []byte)
}

func (c *hookConn) SetWriteDeadline(t time.Time) error {
	if f := c.onSetWriteDeadline; f != nil {
		c.onSetWriteDeadline = nil
		f()
	}
	return c.TCPConn.SetWriteDeadline(t)
}

func (c *hookConn) Write(p []byte) (int, error) {
	if f := c.onWrite; f != nil {
		f(p)
	}
	return c.TCPConn.Write(p)
}

// tcpPair returns the two ends of a loopback TCP connection whose client
// end has a receive buffer of rcvbuf bytes.
func tcpPair(t *testing.T, rcvbuf int) (server *net.TCPConn, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = smallRecvDialer(rcvbuf).Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*net.TCPConn), client
}

// TestAbortDuringCloseConn: Bridge.Abort makes "a write or linger in
// progress end at once", even when it lands while closeConn is arming the
// deadlines of the last chunk's write or of the linger, which must not
// overwrite Abort's: the last chunk would block for WriteTimeout, the
// linger wait its full 500 ms.
func TestAbortDuringCloseConn(t *testing.T) {
	t.Run("abort during the last chunk's write", func(t *testing.T) {
		b := newBareBridge(t)
		srv, _ := tcpPair(t, 1<<16) // the client neither reads nor closes
		hc := &hookConn{TCPConn: srv}
		hc.onWrite = func(p []byte) {
			if string(p) == "0\r\n\r\n" {
				b.Abort()
			}
		}
		st := &stream{b: b, conn: hc, chunked: true, unwatch: func() {}}
		b.remember(st)
		start := time.Now()
		st.closeConn(false)
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("closeConn took %v after Abort, want at once (the linger re-armed its read deadline over Abort's)", d)
		}
	})
	t.Run("abort as the last chunk's deadline is armed", func(t *testing.T) {
		b := newBareBridge(t)
		srv, _ := tightTCPPair(t) // the client neither reads nor closes
		// Fill the socket buffers so that the last chunk cannot go out,
		// down to writes as small as it.
		fillSocket(srv, 64<<10, 5)
		hc := &hookConn{TCPConn: srv, onSetWriteDeadline: b.Abort}
		st := &stream{b: b, conn: hc, chunked: true, unwatch: func() {}}
		b.remember(st)
		start := time.Now()
		st.closeConn(false)
		if d := time.Since(start); d > 200*time.Millisecond {
			t.Errorf("closeConn took %v after Abort, want at once (the last chunk's SetWriteDeadline overwrote Abort's deadline)", d)
		}
	})
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.test"}, DNSNames: []string{"example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestAbortCutsBlockedTLSStream: a hijacked stream over TLS whose client
// stopped reading is blocked in a write while its Bridge closes; Abort
// ends it, and Bridge.Close returns, at once.
func TestAbortCutsBlockedTLSStream(t *testing.T) {
	cfg := selfSignedTLS(t)
	h := newHarness(t, Options{Logger: zerolog.New(zerolog.NewTestWriter(t)), Padding: 16, WriteTimeout: 30 * time.Second, Replay: 10000, QueueLen: 5000, ReplayBytes: 256 << 20},
		func(srv *httptest.Server) { srv.Listener = tls.NewListener(srv.Listener, cfg) })
	c, err := tls.DialWithDialer(smallRecvDialer(4096), "tcp", h.srv.Listener.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(wait))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: example.test\r\nAccept: text/event-stream\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	readUntil(t, resp.Body, "event: session\n")
	up := h.up.next(t)
	big := strings.Repeat("x", 32<<10)
	for range 200 { // ~6.4 MB: far more than the socket buffers hold
		up.send(t, false, big)
	}
	time.Sleep(500 * time.Millisecond) // the stream is now blocked in a write
	closed := make(chan struct{})
	go func() { h.b.Close(); close(closed) }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	h.b.Abort()
	select {
	case <-closed:
		if d := time.Since(start); d > time.Second {
			t.Errorf("Bridge.Close returned %v after Abort, want at once", d)
		}
	case <-time.After(wait):
		t.Fatal("Bridge.Close did not return")
	}
}

// TestAbortedTLSStreamSkipsCloseNotify: an aborted (or slow) TLS stream is
// closed without close_notify, which tls.Conn.Close sends under a 5 s
// write deadline of its own: to a client that stopped reading (its send
// queue full) the close would block for those 5 s.
func TestAbortedTLSStreamSkipsCloseNotify(t *testing.T) {
	b := newBareBridge(t)
	raw, cli := tightTCPPair(t)
	srv := tlsServerOver(t, raw, cli)
	st := &stream{b: b, conn: srv, chunked: true, unwatch: func() {}}
	b.remember(st)
	// The client stops reading; the stream writes until it blocks.
	junk := make([]byte, 64<<10)
	_ = srv.SetWriteDeadline(time.Now().Add(30 * time.Second))
	go func() {
		for {
			if _, err := srv.Write(junk); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	b.Abort() // cuts the write
	time.Sleep(50 * time.Millisecond)
	// Fill what the kernel still takes in small pieces, as the stream's
	// next small write (a ping, a retry hint) may have done.
	fillSocket(raw, 5)
	start := time.Now()
	st.closeConn(true) // slow: no linger, just Close
	if d := time.Since(start); d > time.Second {
		t.Errorf("closeConn of an aborted TLS stream took %v, want at once (tls.Conn.Close's close_notify re-arms a 5 s deadline)", d)
	}
}

// tlsHookConn is the TCP connection under a TLS stream, with hooks on its
// deadlines and writes.
type tlsHookConn struct {
	*net.TCPConn
	onSetWriteDeadline func(t time.Time)
	afterWrite         func()
}

func (c *tlsHookConn) SetWriteDeadline(t time.Time) error {
	if f := c.onSetWriteDeadline; f != nil {
		f(t)
	}
	return c.TCPConn.SetWriteDeadline(t)
}

func (c *tlsHookConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	if f := c.afterWrite; f != nil {
		c.afterWrite = nil
		f()
	}
	return n, err
}

// TestAbortDuringTLSCloseNotify: an Abort that lands as a closing TLS
// stream's linger sends close_notify, which crypto/tls writes under a 5 s
// deadline of its own, armed after Abort's, still ends the stream at once
// when the client reads nothing.
func TestAbortDuringTLSCloseNotify(t *testing.T) {
	b := newBareBridge(t)
	raw, cli := tightTCPPair(t)
	hc := &tlsHookConn{TCPConn: raw}
	srv := tlsServerOver(t, hc, cli)
	st := &stream{b: b, conn: srv, chunked: true, unwatch: func() {}}
	b.remember(st)
	armed := false
	hc.onSetWriteDeadline = func(d time.Time) {
		if !armed { // closeConn's, for the last chunk
			armed = true
			hc.afterWrite = func() {
				// The last chunk went out; now the client's window fills.
				fillSocket(raw, 512, 5, 24, 1)
			}
			return
		}
		if time.Until(d) > 4*time.Second { // close_notify's own 5 s
			b.Abort()
		}
	}
	start := time.Now()
	st.closeConn(false)
	if d := time.Since(start); d > time.Second {
		t.Errorf("closeConn took %v with an Abort during close_notify, want at once", d)
	}
}

// newBareBridge returns a Bridge for tests that drive a stream's
// connection directly, with a 2 s write timeout.
func newBareBridge(t *testing.T) *Bridge {
	t.Helper()
	b, err := New(Options{WriteTimeout: 2 * time.Second, Upstream: func(*http.Request) (string, http.Header) { return "", nil }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// tightTCPPair returns the two ends of a loopback TCP connection whose
// buffers are 4 KiB on both sides, so that a few writes the client does
// not read fill it.
func tightTCPPair(t *testing.T) (server *net.TCPConn, client net.Conn) {
	t.Helper()
	server, client = tcpPair(t, 4096)
	_ = server.SetWriteBuffer(4096)
	return server, client
}

// tlsServerOver returns the server side of a TLS connection over conn,
// handshaken with a client over client that reads nothing after.
func tlsServerOver(t *testing.T, conn, client net.Conn) *tls.Conn {
	t.Helper()
	srv := tls.Server(conn, selfSignedTLS(t))
	cc := tls.Client(client, &tls.Config{InsecureSkipVerify: true})
	go func() { _ = cc.Handshake() }() // ends with the handshake, or when the test closes client
	if err := srv.Handshake(); err != nil {
		t.Fatal(err)
	}
	return srv
}

// fillSocket writes to c, which its peer does not read, until it takes no
// more: with writes of each of sizes in turn, each until one has waited
// 100 ms, so that the small ones fill what the large ones left.
func fillSocket(c *net.TCPConn, sizes ...int) {
	junk := make([]byte, slices.Max(sizes))
	for _, n := range sizes {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			if _, err := c.Write(junk[:n]); err != nil {
				break
			}
		}
	}
	_ = c.SetWriteDeadline(time.Time{})
}
