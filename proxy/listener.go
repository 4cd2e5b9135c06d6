package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// fdReserveListener keeps accepting when the process runs out of file
// descriptors. Without it, accept fails with EMFILE, net/http retries in a
// loop, and clients wait in the kernel's backlog with no answer. It holds
// one spare descriptor: on EMFILE it frees the spare, accepts the waiting
// connection, refuses it (a 503 on the plain listener, a bare close on the
// TLS one), and takes the spare back. It logs at most once a second.
type fdReserveListener struct {
	net.Listener
	refuse func(net.Conn)
	logger zerolog.Logger

	mu      sync.Mutex
	spare   *os.File
	refused int
	logged  time.Time
}

func newFDReserveListener(ln net.Listener, refuse func(net.Conn), logger zerolog.Logger) *fdReserveListener {
	l := &fdReserveListener{Listener: ln, refuse: refuse, logger: logger}
	l.spare, _ = os.Open(os.DevNull)
	return l
}

// Accept returns the next connection, refusing those that arrive while no
// descriptor is left for them.
func (l *fdReserveListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil || !errors.Is(err, syscall.EMFILE) && !errors.Is(err, syscall.ENFILE) {
			return c, err
		}
		l.refuseOne(err)
	}
}

// Close closes the listener and releases the spare descriptor.
func (l *fdReserveListener) Close() error {
	l.mu.Lock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	l.mu.Unlock()
	return l.Listener.Close()
}

// refuseOne uses the spare descriptor to accept and refuse one connection.
func (l *fdReserveListener) refuseOne(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	c, err := l.Listener.Accept()
	if err == nil {
		l.refuse(c)
		l.refused++
	}
	l.spare, _ = os.Open(os.DevNull)
	if now := time.Now(); now.Sub(l.logged) >= time.Second {
		l.logger.Error().Err(cause).Int("refused", l.refused).
			Msg("out of file descriptors: refusing new connections with 503; raise the open-files limit (ulimit -n) or lower limits.max_connections")
		l.logged, l.refused = now, 0
	}
	if err != nil {
		time.Sleep(5 * time.Millisecond) // nothing could be freed: do not spin
	}
}

// refuseUnavailable answers a plain HTTP connection with 503 and closes it.
// It reads a little of the request first, with a short deadline, so that
// closing does not reset the connection before the client reads the answer.
func refuseUnavailable(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = c.Read(make([]byte, 1024))
	_, _ = io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
		"Connection: close\r\nRetry-After: 1\r\nContent-Length: 36\r\n\r\nstreamgate: out of file descriptors\n")
}

// refuseClose closes a connection at once (the TLS listener cannot answer
// before a handshake, which would need more resources).
func refuseClose(c net.Conn) { _ = c.Close() }
