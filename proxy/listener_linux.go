package proxy

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// refuseLinger bounds how long a refused connection is held open so that
// the client reads the answer before the close (closing with its request
// unread would reset the connection and could destroy the answer).
const refuseLinger = 200 * time.Millisecond

// pendingPoll is how long one wait for a pending connection lasts while
// descriptors are exhausted. It bounds how long Close waits for the wait
// to end, and how soon Accept notices that descriptors were freed.
const pendingPoll = 100 * time.Millisecond

// fdReserveListener keeps answering when the process runs out of file
// descriptors. Without it, accept fails with EMFILE, net/http retries in a
// loop, and clients wait in the kernel's backlog with no answer.
//
// It holds one spare descriptor. When accept fails with EMFILE it polls the
// listening socket, spare held, until a connection is actually pending (the
// kernel reports EMFILE before it looks at the queue, so the failure alone
// does not mean anyone is waiting). Then it frees the spare, accepts the
// connection with a non-blocking accept4, answers it (503 on the plain
// listener, a bare close on the TLS one) with raw system calls, and takes
// the spare back at once. Working on the raw descriptor matters:
// net.FileConn would need a second descriptor, and a blocking Accept after
// freeing the spare would let another goroutine's dial take it. It logs
// when descriptors run out and then at most once a second while it refuses.
type fdReserveListener struct {
	listenerConn
	raw    syscall.RawConn
	answer []byte
	logger zerolog.Logger

	mu    sync.Mutex // guards spare against Close
	spare *os.File

	// Used by the accepting goroutine only.
	exhausted bool
	refused   int
	logged    time.Time
}

// newFDReserveListener wraps ln; answer is written to each refused
// connection before it is closed (nil closes it at once). A listener that
// is not a TCP listener is returned as it is.
func newFDReserveListener(ln net.Listener, answer []byte, logger zerolog.Logger) net.Listener {
	lc, ok := ln.(listenerConn)
	if !ok {
		return ln
	}
	raw, err := lc.SyscallConn()
	if err != nil {
		return ln
	}
	l := &fdReserveListener{listenerConn: lc, raw: raw, answer: answer, logger: logger}
	l.spare, _ = os.Open(os.DevNull)
	return l
}

// Accept returns the next connection, refusing those that arrive while no
// descriptor is left for them.
func (l *fdReserveListener) Accept() (net.Conn, error) {
	for {
		c, err := l.listenerConn.Accept()
		if err == nil || !isFDExhaustion(err) {
			l.exhausted = false
			return c, err
		}
		if err := l.refusePending(err); err != nil {
			return nil, err
		}
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
	return l.listenerConn.Close()
}

// refusePending waits up to pendingPoll for a connection to be pending and
// refuses it. It returns when it has refused one, when none came (so that
// Accept tries again: descriptors may have been freed meanwhile), and with
// an error when the listener was closed.
func (l *fdReserveListener) refusePending(cause error) error {
	starved := false
	err := l.raw.Control(func(fd uintptr) {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(pendingPoll/time.Millisecond))
		if err != nil || n == 0 {
			return // nobody waiting (or a signal): let Accept try again
		}
		nfd, err := l.acceptWithSpare(int(fd))
		switch {
		case err == nil:
			l.refused++
			l.refuse(nfd)
		case !errors.Is(err, unix.EAGAIN):
			starved = true // another goroutine took the freed descriptor
		}
	})
	l.logRefusals(cause)
	if starved {
		time.Sleep(5 * time.Millisecond) // nothing could be freed: do not spin
	}
	return err
}

// acceptWithSpare frees the spare descriptor, accepts one pending
// connection without blocking and takes a spare back.
func (l *fdReserveListener) acceptWithSpare(fd int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.spare != nil {
		l.spare.Close()
		l.spare = nil
	}
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		l.spare, _ = os.Open(os.DevNull) // fails while nfd holds the last slot; retried next time
		return nfd, err
	}
}

// refuse writes the answer to a raw connection, shuts down its sending
// side and reads what the client sent until it closes or refuseLinger
// passes, then closes it.
func (l *fdReserveListener) refuse(fd int) {
	defer unix.Close(fd)
	if l.answer == nil {
		return
	}
	_, _ = unix.Write(fd, l.answer) // a few hundred bytes into an empty socket buffer
	_ = unix.Shutdown(fd, unix.SHUT_WR)
	var buf [1024]byte
	for deadline := time.Now().Add(refuseLinger); ; {
		wait := time.Until(deadline)
		if wait <= 0 {
			return
		}
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(wait.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		if r, err := unix.Read(fd, buf[:]); r <= 0 && !errors.Is(err, unix.EAGAIN) {
			return // the client closed (or reset): done
		}
	}
}

// logRefusals logs the exhaustion when it begins and then at most once a
// second while connections are refused, with their number since the last
// line.
func (l *fdReserveListener) logRefusals(cause error) {
	now := time.Now()
	if l.exhausted && (l.refused == 0 || now.Sub(l.logged) < time.Second) {
		return
	}
	l.logger.Error().Err(cause).Int("refused", l.refused).
		Msg("out of file descriptors: refusing new connections; raise the open-files limit (ulimit -n) or lower limits.max_connections")
	l.exhausted, l.logged, l.refused = true, now, 0
}

// isFDExhaustion reports whether err means the process (EMFILE) or the
// system (ENFILE) has no file descriptor left.
func isFDExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// listenerConn is the part of *net.TCPListener the reserve needs.
type listenerConn interface {
	net.Listener
	SyscallConn() (syscall.RawConn, error)
}
