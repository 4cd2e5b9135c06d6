//go:build linux

package wsconn

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// Poller is a set of event loops that relay frame-relayed connections whose
// legs are both plain TCP, without a goroutine per connection. Each loop
// is one goroutine waiting in its own epoll set, edge-triggered, for all of
// its connections' sockets. A loop reads a socket until a read comes back
// short (the kernel reports new bytes, and the peer's FIN, with a new
// edge), so that a message costs one read and one write, where a goroutine
// reader needs a second read that finds nothing (Go's netpoller forgets
// readiness before each wait). An idle connection holds no goroutine and no
// buffer: two descriptors, and its Relay.
//
// Writes are non-blocking. What a leg cannot take at once waits in its
// backlog, and the direction feeding it stops reading until the socket
// drains, so the backlog is bounded by one frame plus the relay's own
// control frames. Where a goroutine relay has socket deadlines, the
// relay's timer enforces the liveness window and a timer per backlog the
// write timeout.
//
// Relays are given to a Poller through Options.Poller. A Poller is safe for
// use by many goroutines.
type Poller struct {
	loops []*eventLoop
	next  atomic.Uint32
	wg    sync.WaitGroup // the loops
	dones sync.WaitGroup // the relays' done functions
}

// NewPoller starts n event loops; n <= 0 means one per GOMAXPROCS. Close
// stops them.
func NewPoller(n int) (*Poller, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Poller{}
	for range n {
		l, err := newEventLoop(&p.dones)
		if err != nil {
			_ = p.Close()
			return nil, err
		}
		p.loops = append(p.loops, l)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			l.run()
		}()
	}
	return p, nil
}

// Close closes the connections still on the loops, with 1001 to both legs
// where a socket takes it at once, and returns once every loop has stopped
// and every relay's done function has returned. Relays made after Close
// use goroutines; one made while Close runs may be closed with 1001 at its
// start.
func (p *Poller) Close() error {
	if p == nil {
		return nil
	}
	for _, l := range p.loops {
		l.post(loopCmd{op: cmdStop})
	}
	p.wg.Wait()
	p.dones.Wait()
	return nil
}

// attach moves the new relay r onto one of the loops, if both its legs are
// plain TCP connections; it reports whether it did. From then on the loop
// owns the legs' sockets: it alone reads and closes them.
func (p *Poller) attach(r *Relay) bool {
	var fds [2]int
	for s, c := range r.conns {
		fd, err := dupSocket(c)
		if err != nil {
			for _, fd := range fds[:s] {
				_ = unix.Close(fd)
			}
			return false
		}
		fds[s] = fd
	}
	l := p.loops[int(p.next.Add(1))%len(p.loops)]
	if l.isStopped() {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return false
	}
	r.loop = l
	for s := range r.conns {
		r.dirs[s] = &direction{from: side(s), fr: newFrameReader(r.conns[s])}
		fr := r.dirs[s].fr
		fr.conn, fr.raw, fr.readFn = nil, nil, nil // read by the loop, not through the netpoller
		fr.pooled = true
		w := r.out[s]
		w.nonblocking, w.fd = true, fds[s]
		w.conn = nil // written by fd; the conn, closed below, would keep its netFD and addresses alive
		w.relay, w.side = r, side(s)
		c := r.conns[s]
		_ = c.Close() // leaves Go's netpoller; the duplicate keeps the socket open
		r.addrs[s] = [2]netip.AddrPort{addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())}
		r.conns[s] = nil // only its addresses are needed now
	}
	return true
}

// isStopped reports whether the loop takes no more relays.
func (l *eventLoop) isStopped() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// dupSocket returns a duplicate of the descriptor of c, which must be a
// TCP connection (perhaps behind a handshakeConn). The duplicate shares the
// socket and its non-blocking mode.
func dupSocket(c net.Conn) (int, error) {
	if hc, ok := c.(*handshakeConn); ok {
		c = hc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return -1, errors.New("not a TCP connection")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	return nfd, err
}

// eventLoop is one goroutine waiting in one epoll set for the sockets of
// the relays on it.
type eventLoop struct {
	ep     int      // the epoll set
	file   *os.File // ep, as a file in Go's netpoller
	ended  bool     // serve has run cmdStop
	wake   int      // an eventfd in the set: a write wakes the loop for its queue
	events []unix.EpollEvent
	relays map[uint64]*Relay // by id; the loop goroutine's own
	legs   map[uint64]*Leg   // by id; the loop goroutine's own
	// ready are directions with bytes left to read after their turn;
	// spare is the last list's memory.
	ready, spare []readyDirection
	dones        *sync.WaitGroup // the relays' done functions, for Close

	mu      sync.Mutex
	queue   []loopCmd
	nextID  uint64
	stopped bool // no more relays are taken
	// watches are the hangup watches, by token; under mu, as they are
	// added and dropped by other goroutines.
	watches map[uint64]*hangupWatch
}

// readyDirection is a direction waiting for another turn: side s of
// relay r, or the reading of leg g.
type readyDirection struct {
	r *Relay
	s side
	g *Leg
}

// turnReads bounds the reads one direction gets per turn, so that a sender
// that keeps a socket full does not hold up the loop's other connections.
const turnReads = 4

// loopOp is what a loopCmd asks of a loop.
type loopOp uint8

const (
	cmdAdd          loopOp = iota // start relaying r
	cmdClose                      // close both legs of r now
	cmdReadTimeout                // leg s of r has been silent past the liveness window
	cmdWriteTimeout               // leg s of r has not taken its backlog within the write timeout
	cmdEndLinger                  // stop reading what the refused sender s of r still sends
	cmdStop                       // close every relay and end the loop

	// Commands for a Leg (loopCmd.g).
	cmdLegAdd          // start reading g
	cmdLegClose        // close g's connection now
	cmdLegReadTimeout  // g has been silent past the liveness window
	cmdLegWriteTimeout // g has not taken its backlog within the write timeout
)

// loopCmd is a request to a loop from another goroutine: the relay's timer,
// Shutdown, or the goroutine that attached it.
type loopCmd struct {
	op loopOp
	r  *Relay
	s  side
	g  *Leg
}

// wakeToken is the epoll data of the loop's eventfd; a relay's sockets
// carry id<<1|side, and ids start at 1. Legs and hangup watches have
// tokens of their own (legBit, watchBit).
const wakeToken = 0

// legBit marks the epoll tokens of legs: id|legBit.
const legBit = 1 << 62

func newEventLoop(dones *sync.WaitGroup) (*eventLoop, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(ep)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		_ = unix.Close(ep)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl eventfd: %w", err)
	}
	// os.NewFile puts a non-blocking descriptor in the netpoller.
	if err := unix.SetNonblock(ep, true); err != nil {
		_ = unix.Close(ep)
		_ = unix.Close(wake)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	return &eventLoop{ep: ep, file: os.NewFile(uintptr(ep), "epoll"), wake: wake, dones: dones, events: make([]unix.EpollEvent, 256), relays: map[uint64]*Relay{}, legs: map[uint64]*Leg{}, watches: map[uint64]*hangupWatch{}, nextID: 1}, nil
}

// post queues c for the loop and wakes it. It reports false when the loop
// has stopped, for cmdAdd (the caller relays by goroutines then); other
// commands for a stopped loop are dropped, its relays being closed.
func (l *eventLoop) post(c loopCmd) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	switch c.op {
	case cmdAdd:
		c.r.id = l.nextID
		l.nextID++
	case cmdLegAdd:
		c.g.lp.id = l.nextID | legBit
		l.nextID++
	}
	if c.op == cmdStop {
		l.stopped = true
	}
	if len(l.queue) == 0 { // otherwise a wake-up is on its way
		// Under the lock: the loop closes the eventfd only after it has
		// stopped taking commands.
		one := [8]byte{1}
		_, _ = unix.Write(l.wake, one[:])
	}
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	return true
}

// run waits for events and handles them until the loop is stopped and has
// closed its relays. It never blocks in a system call: the epoll set is
// itself a pollable descriptor, readable while it holds events, so the
// loop parks in Go's netpoller like any goroutine waiting on a socket, and
// harvests events with non-blocking waits once woken. A loop blocked in
// epoll_wait would make the runtime hand its P to another thread on every
// wait and take one back on every wake-up.
func (l *eventLoop) run() {
	defer func() {
		_ = unix.Close(l.wake)
		_ = l.file.Close()
	}()
	rc, err := l.file.SyscallConn()
	if err == nil {
		err = rc.Read(l.serve)
	}
	if err != nil || !l.ended {
		// Only a broken epoll set fails here; its relays cannot be
		// served, so they are closed, with those still queued.
		l.mu.Lock()
		l.stopped = true
		q := l.queue
		l.queue = nil
		l.mu.Unlock()
		for _, c := range q {
			switch c.op {
			case cmdAdd:
				l.relays[c.r.id] = c.r
			case cmdLegAdd:
				l.legs[c.g.lp.id] = c.g
			}
		}
		l.stopAll()
	}
}

// serve handles events until none is ready, and reports whether the loop
// has ended. It runs as a RawConn.Read callback: false parks the loop
// until the epoll set is readable again; as that readiness is reset before
// each call, an event that comes after the last non-blocking wait still
// wakes it.
func (l *eventLoop) serve(uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.ep), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case e != 0:
			return true // run closes the relays
		case n == 0 && len(l.ready) == 0:
			return false
		}
		l.serveReady()
		for _, ev := range l.events[:n] {
			tok := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if tok == wakeToken {
				if l.runQueue() {
					l.ended = true
					return true
				}
				continue
			}
			if tok&watchBit != 0 {
				l.hangup(tok)
				continue
			}
			if tok&legBit != 0 {
				if g := l.legs[tok]; g != nil {
					g.ready(ev.Events)
				}
				continue
			}
			r := l.relays[tok>>1]
			if r == nil {
				continue // closed earlier in this batch
			}
			s := side(tok & 1)
			if ev.Events&unix.EPOLLOUT != 0 {
				r.writable(s)
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				r.readable(s, ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
			}
		}
		if int(n) < len(l.events) && len(l.ready) == 0 {
			// Every ready event was taken: one that comes now makes the
			// set readable again, so a last wait that would find nothing
			// can be skipped.
			return false
		}
	}
}

// serveReady gives the directions that used up their turn (see readable)
// another one, after the events that came meanwhile.
func (l *eventLoop) serveReady() {
	ready := l.ready
	l.ready = l.spare[:0]
	for _, d := range ready {
		if d.g != nil {
			d.g.lp.dir.queued = false
			d.g.readable(false)
			continue
		}
		d.r.dirs[d.s].queued = false
		d.r.readable(d.s, false)
	}
	l.spare = ready[:0]
}

// runQueue runs the queued commands. It reports whether the loop is to end.
func (l *eventLoop) runQueue() bool {
	var b [8]byte
	_, _ = unix.Read(l.wake, b[:])
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	end := false
	for _, c := range q {
		if c.g != nil {
			l.runLegCmd(c)
			continue
		}
		r := c.r
		if c.op != cmdAdd && c.op != cmdStop && l.relays[r.id] != r {
			continue // already closed
		}
		switch c.op {
		case cmdAdd:
			l.add(r)
		case cmdClose:
			l.finish(r)
		case cmdReadTimeout:
			if d := r.dirs[c.s]; !d.done && !d.lingering {
				r.stopReading(d, r.opError(c.s, "read", os.ErrDeadlineExceeded))
			}
		case cmdWriteTimeout:
			r.writeFailed(c.s, r.opError(c.s, "write", os.ErrDeadlineExceeded))
			r.out[c.s].breakLeg()
			r.resume()
		case cmdEndLinger:
			if d := r.dirs[c.s]; d.lingering {
				d.lingering, d.done = false, true
				r.finishIfDone()
			}
		case cmdStop:
			end = true
		}
	}
	if end {
		l.stopAll()
	}
	return end
}

// add registers r's sockets and forwards what its legs sent before.
func (l *eventLoop) add(r *Relay) {
	for s := range r.out {
		tok := r.id<<1 | uint64(s)
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, r.out[s].fd, &ev); err != nil {
			f := &closeFrame{websocket.CloseInternalServerErr, "proxy error"}
			r.end(ending{by: ClosedByError, err: fmt.Errorf("epoll_ctl: %w", err), codes: [2]int{f.code, f.code}, send: [2]*closeFrame{f, f}})
			l.relays[r.id] = r
			l.finish(r)
			return
		}
	}
	l.relays[r.id] = r
	if r.closeAsked.Load() {
		l.finish(r) // the hard close came first
		return
	}
	// Bytes may have come with the handshake or since; the edges for
	// them may be gone.
	r.readable(client, false)
	r.readable(upstream, false)
}

// stopAll closes every relay and leg on the loop, as a proxy shutdown
// would, and drops its hangup watches.
func (l *eventLoop) stopAll() {
	for _, r := range l.relays {
		r.Shutdown()
		l.finish(r)
	}
	for _, g := range l.legs {
		g.Close(websocket.CloseGoingAway, "going away")
		g.finish(g.lp.opError(upstream, "read", net.ErrClosed))
	}
	l.mu.Lock()
	for tok, w := range l.watches {
		l.unwatchLocked(tok, w)
	}
	l.mu.Unlock()
}

// finish closes both legs of r and reports its Result.
func (l *eventLoop) finish(r *Relay) {
	delete(l.relays, r.id)
	for s := range r.out {
		r.out[s].closeSocket(l.ep)
		r.dirs[s].done = true
		r.dirs[s].fr.release()
	}
	r.report()
}

// abandon ends a relay its loop would not take (the Poller is closing):
// both legs get 1001 where the socket takes it at once, and are closed.
func (r *Relay) abandon() {
	r.Shutdown()
	for _, w := range r.out {
		w.closeSocket(-1)
	}
	r.report()
}

// report stops r's timers and hands its Result to its done function, in a
// goroutine of its own so that the loop never waits on a logger; Close
// waits for it.
func (r *Relay) report() {
	res := r.stop()
	r.loop.dones.Add(1)
	go func() {
		defer r.loop.dones.Done()
		r.onDone(res)
	}()
}

// readable reads leg s and forwards what it sent, for one turn (see
// readTurn); hup says the event reported the peer's FIN or an error.
func (r *Relay) readable(s side, hup bool) {
	d := r.dirs[s]
	d.hup = d.hup || hup // the FIN's edge comes once: keep it for after a pause
	switch {
	case d.done || d.paused:
		return
	case d.lingering:
		r.discardRefused(d, r.out[s].fd)
		return
	}
	more, err := readTurn(r, d, r.out[s].fd)
	switch {
	case err != nil:
		r.stopReading(d, err)
	case more:
		r.loop.queueTurn(d, readyDirection{r: r, s: s})
	}
}

// frameConsumer is what an event loop reads frames for: a Relay, which
// forwards them, or a Leg, which assembles messages.
type frameConsumer interface {
	// advance consumes what d's buffer holds, as Relay.advance does.
	advance(d *direction) (int, error)
	// opError is err on leg s as net.Conn's methods would report it.
	opError(s side, op string, err error) error
}

// readTurn reads d's socket fd and lets c consume what came, until a read
// comes back short (the kernel reports new bytes with a new edge), c must
// wait for a backlog (d.paused is set), or reading must end (err). A turn
// has at most turnReads reads, so that a sender that keeps a socket full
// does not hold up the loop's other connections: more reports that d
// wants another turn. A short read does not end the turn once d.hup is
// set: the rest is read up to EOF.
func readTurn(c frameConsumer, d *direction, fd int) (more bool, err error) {
	fr := d.fr
	drained := false
	for reads := 0; ; reads++ {
		need, err := c.advance(d)
		switch {
		case err != nil:
			return false, err
		case need == 0:
			d.paused = true
			return false, nil
		case drained:
			if fr.r == fr.w {
				fr.release()
			}
			return false, nil
		case reads == turnReads:
			return true, nil
		}
		if fr.bp == nil {
			fr.borrow()
		}
		fr.makeRoom(need)
		space := len(fr.buf) - fr.w
		n, errno := recvRaw(fd, fr.buf[fr.w:])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			if fr.r == fr.w {
				fr.release()
			}
			return false, nil
		case errno != 0:
			return false, c.opError(d.from, "read", os.NewSyscallError("read", errno))
		case n == 0:
			return false, errUnexpectedEOF()
		}
		fr.w += n
		drained = n < space && !d.hup
	}
}

// queueTurn puts d, described by rd, on the list of directions that get
// another turn after the events that came meanwhile.
func (l *eventLoop) queueTurn(d *direction, rd readyDirection) {
	if !d.queued {
		d.queued = true
		l.ready = append(l.ready, rd)
	}
}

// opError is err on leg s as net.Conn's methods would report it.
func (r *Relay) opError(s side, op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: net.TCPAddrFromAddrPort(r.addrs[s][0]), Addr: net.TCPAddrFromAddrPort(r.addrs[s][1]), Err: err}
}

// addrPort is a TCP address as a value, which holds no memory of its own.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

// discardRefused reads and drops what the refused sender d still sends,
// until it ends TCP (see lingerAfterRefusal).
func (r *Relay) discardRefused(d *direction, fd int) {
	var b [4096]byte
	for {
		n, errno := recvRaw(fd, b[:])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return
		case errno != 0 || n == 0:
			d.lingering, d.done = false, true
			r.finishIfDone()
			return
		}
	}
}

// stopReading ends the reading of d with err, as a goroutine reader's
// return does, and closes the relay once both directions have ended.
func (r *Relay) stopReading(d *direction, err error) {
	d.done = true
	d.fr.release()
	r.readFailed(d.from, err)
	if refused(err) {
		// As lingerAfterRefusal: the close frame is out, so end our side
		// of TCP and drop what still comes, for a bounded time.
		r.out[d.from].shutdownWrite()
		d.done, d.lingering = false, true
		s := d.from
		time.AfterFunc(min(lingerTimeout, r.opts.CloseTimeout), func() { r.loop.post(loopCmd{op: cmdEndLinger, r: r, s: s}) })
		r.discardRefused(d, r.out[d.from].fd)
		return
	}
	r.finishIfDone()
}

// finishIfDone closes the relay once neither direction reads any more.
func (r *Relay) finishIfDone() {
	if r.dirs[client].done && r.dirs[upstream].done {
		r.loop.finish(r)
	}
}

// writable writes leg s's backlog, if it has one, and lets the directions
// waiting for it go on once it is gone.
func (r *Relay) writable(s side) {
	w := r.out[s]
	drained, err := w.flush()
	if err != nil {
		r.writeFailed(s, err)
	}
	if drained {
		// The liveness window starts again: neither leg could be heard
		// while the backlog waited (see pastDeadlines).
		now := time.Now().UnixNano()
		r.heard[client].Store(now)
		r.heard[upstream].Store(now)
		r.resume()
	}
}

// resume carries on with the directions that waited for a backlog.
func (r *Relay) resume() {
	for _, d := range r.dirs {
		if d.paused {
			d.paused = false
			r.readable(d.from, false)
		}
	}
}

// recvRaw reads from a non-blocking socket. It is recvfrom rather than
// read, which skips the file layer the kernel walks for a read, and is
// made without the scheduler's bookkeeping for a call that might block:
// it never does.
func recvRaw(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), 0, 0, 0)
	return int(n), e
}

// sendRaw writes to a non-blocking socket, as recvRaw reads; MSG_NOSIGNAL
// spares a reset peer's socket the SIGPIPE a write would raise.
func sendRaw(fd int, b []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)), unix.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

// writeNonblocking writes frame to the leg's socket without waiting: what
// the socket does not take goes to the backlog, as does everything while
// a backlog is waiting. Callers hold w.mu.
func (w *frameWriter) writeNonblocking(frame []byte) error {
	if w.fd < 0 {
		return net.ErrClosed
	}
	if len(w.pending) > 0 {
		w.pending = append(w.pending, frame...)
		return nil
	}
	n := 0
	for n < len(frame) {
		m, errno := sendRaw(w.fd, frame[n:])
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			w.pending = append(w.pending, frame[n:]...)
			w.since = time.Now()
			w.backlog.Store(true)
			if w.stall == nil {
				w.stall = time.AfterFunc(w.timeout, w.checkStall)
			} else {
				w.stall.Reset(w.timeout)
			}
			return nil
		case errno != 0:
			w.broken = true
			return os.NewSyscallError("write", errno)
		}
		n += m
	}
	return nil
}

// flush writes as much of the backlog as the socket takes, under the
// lock: a writer off the loop may be making a backlog as the socket's
// EPOLLOUT comes. It reports whether it wrote the last of one.
func (w *frameWriter) flush() (bool, error) {
	if !w.backlog.Load() {
		// Most EPOLLOUTs come with data to read, not for a backlog. One a
		// writer makes after this check got EAGAIN, so its EPOLLOUT is yet
		// to come.
		return false, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) == 0 {
		return false, nil
	}
	for len(w.pending) > 0 && !w.broken && w.fd >= 0 {
		m, errno := sendRaw(w.fd, w.pending)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.EAGAIN:
			return false, nil
		case errno != 0:
			w.breakLocked()
			return true, os.NewSyscallError("write", errno)
		}
		w.pending = w.pending[m:]
	}
	w.pending = nil // its memory too: backlogs are rare and short
	w.backlog.Store(false)
	w.stall.Stop()
	if w.shutAfter && w.fd >= 0 {
		_ = unix.Shutdown(w.fd, unix.SHUT_WR)
	}
	return true, nil
}

// checkStall runs on the stall timer: a backlog that has waited the write
// timeout ends the leg, as a write deadline would.
func (w *frameWriter) checkStall() {
	w.mu.Lock()
	waited, stuck := time.Since(w.since), len(w.pending) > 0 && !w.broken
	if stuck && waited < w.timeout {
		w.stall.Reset(w.timeout - waited) // a later backlog
	}
	w.mu.Unlock()
	switch {
	case !stuck || waited < w.timeout:
	case w.leg != nil:
		w.leg.lp.loop.post(loopCmd{op: cmdLegWriteTimeout, g: w.leg})
	default:
		w.relay.loop.post(loopCmd{op: cmdWriteTimeout, r: w.relay, s: w.side})
	}
}

// shutdownWrite ends the sending side of the leg's TCP once what is in its
// backlog (a close frame, say) has gone out.
func (w *frameWriter) shutdownWrite() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending) > 0 {
		w.shutAfter = true
		return
	}
	if w.fd >= 0 {
		_ = unix.Shutdown(w.fd, unix.SHUT_WR)
	}
}

// breakLeg marks the leg broken, as a failed write does, dropping its
// backlog: nothing more is written to it.
func (w *frameWriter) breakLeg() {
	w.mu.Lock()
	w.breakLocked()
	w.mu.Unlock()
}

func (w *frameWriter) breakLocked() {
	w.broken = true
	w.pending = nil
	w.backlog.Store(false)
	if w.stall != nil {
		w.stall.Stop()
	}
}

// closeSocket removes the leg's socket from the epoll set ep, if ep is
// one, and closes it.
func (w *frameWriter) closeSocket(ep int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fd < 0 {
		return
	}
	if ep >= 0 {
		_ = unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, w.fd, nil)
	}
	_ = unix.Close(w.fd)
	w.fd = -1
	w.breakLocked()
}
