//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// watchBit marks the epoll tokens of hangup watches; a relay's sockets
// carry id<<1|side.
const watchBit = 1 << 63

// errPollerClosed is returned for a watch asked of a closed Poller.
var errPollerClosed = errors.New("wsconn: poller is closed")

// hangupWatch is a socket that a loop watches for its peer's end only: its
// owner writes the socket itself and reads nothing from it.
type hangupWatch struct {
	fd   int // the owner's descriptor of the socket, in the loop's epoll set too
	gone func()
}

// WatchHangup calls gone, once, when the peer of c (a TCP connection) ends
// it: a FIN, a reset, or a socket error. It is for a connection its owner
// only writes, such as a hijacked event stream, which would otherwise
// need a goroutine blocked in a read to learn that its client left. Bytes
// the peer sends are left unread and wake nobody. gone runs on an event
// loop's goroutine, so it must not block; closing a channel is the
// intended use. The watch costs no descriptor: the loop's epoll set holds
// c's own, next to Go's netpoller, which goes on serving c's writes. stop
// ends the watch (gone is then not called, unless it already has been);
// it must be called before c is closed, as the loop uses c's descriptor
// until then. A watch ends without calling gone when the Poller closes.
func (p *Poller) WatchHangup(c net.Conn, gone func()) (stop func(), err error) {
	if p == nil {
		return nil, errors.ErrUnsupported
	}
	fd, err := socketFD(c)
	if err != nil {
		return nil, fmt.Errorf("watch hangup: %w", err)
	}
	l := p.loops[int(p.next.Add(1))%len(p.loops)]
	w := &hangupWatch{fd: fd, gone: gone}
	tok, err := l.watch(w)
	if err != nil {
		return nil, fmt.Errorf("watch hangup: %w", err)
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.watches[tok] == w {
			l.unwatchLocked(tok, w)
		}
	}, nil
}

// watch adds w to the loop's epoll set, under the lock, so that the
// loop, which takes the lock to look a watch up, cannot see its event
// first. A socket that has already been ended reports it at once.
func (l *eventLoop) watch(w *hangupWatch) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return 0, errPollerClosed
	}
	tok := l.nextID | watchBit
	l.nextID++
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, w.fd, &ev); err != nil {
		return 0, fmt.Errorf("epoll_ctl: %w", err)
	}
	l.watches[tok] = w
	return tok, nil
}

// hangup ends the watch of tok, whose peer has ended its connection, and
// tells its owner.
func (l *eventLoop) hangup(tok uint64) {
	l.mu.Lock()
	w := l.watches[tok]
	if w != nil {
		l.unwatchLocked(tok, w)
	}
	l.mu.Unlock()
	if w != nil {
		w.gone()
	}
}

// unwatchLocked removes w from the epoll set; its owner closes the
// socket. Callers hold mu.
func (l *eventLoop) unwatchLocked(tok uint64, w *hangupWatch) {
	delete(l.watches, tok)
	_ = unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, w.fd, nil)
}

// socketFD returns the descriptor of c, a TCP connection. It stays c's:
// valid until c is closed.
func socketFD(c net.Conn) (int, error) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, err
	}
	return fd, nil
}
