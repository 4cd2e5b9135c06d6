//go:build linux

package wsconn

import (
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// loopLeg is the part of a Leg an event loop serves: the loop, the leg's
// token there, its non-blocking writer and its reader, the message being
// assembled, and when the peer was last heard from (the leg's timer
// judges the liveness window by it, where a goroutine reader has a read
// deadline).
type loopLeg struct {
	loop     *eventLoop
	id       uint64 // the epoll token: an id | legBit
	out      *frameWriter
	dir      *direction
	addrs    [2]netip.AddrPort // local, remote
	data     []byte            // the message read so far; the loop's own
	heard    atomic.Int64
	nextPing time.Time // guarded by Leg.tmu

	// dmu guards what a writer waiting for its message to leave the
	// backlog (see waitDrain) needs: the channel drain closes, made by the
	// first writer to wait, and whether the leg has ended.
	dmu      sync.Mutex
	drained  chan struct{}
	finished bool
}

// maxMessageStart bounds the memory a message is given up front, from the
// length its first frame announces; past that it grows as bytes come.
const maxMessageStart = 64 << 10

// attachLeg puts the new leg l, whose connection is c, on one of the
// loops if c is a plain TCP connection whose bytes past the handshake a
// Dialer from NewDialer kept (a handshakeConn): those in gorilla's own
// buffer would be out of the loop's reach. It reports whether it did. The
// loop reads and closes the socket from then on; c and its buffers are
// dropped.
func (p *Poller) attachLeg(l *Leg, c *websocket.Conn) bool {
	nc := c.NetConn()
	hc, ok := nc.(*handshakeConn)
	if !ok {
		return false
	}
	if _, ok := hc.Conn.(*net.TCPConn); !ok {
		return false // TLS: the loop would need crypto/tls's records
	}
	fd, err := dupSocket(nc)
	if err != nil {
		return false
	}
	loop := p.loops[int(p.next.Add(1))%len(p.loops)]
	if loop.isStopped() {
		_ = unix.Close(fd)
		return false
	}
	dir := &direction{from: upstream, fr: newFrameReader(nc)}
	dir.fr.conn, dir.fr.raw, dir.fr.readFn = nil, nil, nil // read by the loop
	dir.fr.pooled = true
	lp := &loopLeg{
		loop:  loop,
		out:   &frameWriter{mask: true, timeout: l.opts.WriteTimeout, nonblocking: true, fd: fd, side: upstream, leg: l},
		dir:   dir,
		addrs: [2]netip.AddrPort{addrPort(nc.LocalAddr()), addrPort(nc.RemoteAddr())},
	}
	now := time.Now()
	lp.heard.Store(now.UnixNano())
	lp.nextPing = now.Add(l.opts.PingInterval)
	_ = nc.Close() // leaves Go's netpoller; the duplicate keeps the socket open
	l.lp = lp
	return true
}

// startOnLoop hands the leg to its loop.
func (l *Leg) startOnLoop() {
	if !l.lp.loop.post(loopCmd{op: cmdLegAdd, g: l}) {
		// The Poller is closing: end as its Close ends the legs it has.
		l.dropOffLoop()
		l.stopTimers()
		end, _ := l.end(l.lp.opError(upstream, "read", net.ErrClosed))
		l.lp.markFinished()
		l.reportEnd(end)
	}
}

// dropOffLoop closes the socket of a leg that no loop has taken.
func (l *Leg) dropOffLoop() { l.lp.out.closeSocket(-1) }

// closeOnLoop asks the loop to close the leg's connection now.
func (l *Leg) closeOnLoop() {
	l.lp.loop.post(loopCmd{op: cmdLegClose, g: l})
}

// runLegCmd runs a command for a leg.
func (l *eventLoop) runLegCmd(c loopCmd) {
	g := c.g
	lp := g.lp
	if c.op != cmdLegAdd && l.legs[lp.id] != g {
		return // already ended
	}
	switch c.op {
	case cmdLegAdd:
		l.addLeg(g)
	case cmdLegClose:
		g.finish(lp.opError(upstream, "read", net.ErrClosed))
	case cmdLegReadTimeout:
		if g.silent(time.Now()) {
			g.finish(lp.opError(upstream, "read", os.ErrDeadlineExceeded))
		}
	case cmdLegWriteTimeout:
		err := lp.opError(upstream, "write", os.ErrDeadlineExceeded)
		g.writeFailed(err)
		lp.out.breakLeg()
		g.finish(err)
	}
}

// addLeg registers g's socket and reads what came with the handshake or
// since (the edges for it may be gone).
func (l *eventLoop) addLeg(g *Leg) {
	tok := g.lp.id
	l.legs[tok] = g
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(tok)), Pad: int32(uint32(tok >> 32))}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, g.lp.out.fd, &ev); err != nil {
		g.finish(os.NewSyscallError("epoll_ctl", err))
		return
	}
	g.readable(false)
}

// ready handles an epoll event of the leg's socket.
func (l *Leg) ready(events uint32) {
	if events&unix.EPOLLOUT != 0 {
		l.writable()
	}
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		l.readable(events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0)
	}
}

// readable reads the leg for one turn (see readTurn); hup says the event
// reported the peer's FIN or an error.
func (l *Leg) readable(hup bool) {
	d := l.lp.dir
	d.hup = d.hup || hup
	if d.done || d.paused {
		return
	}
	more, err := readTurn(l, d, l.lp.out.fd)
	switch {
	case err != nil:
		l.finish(err)
	case more:
		l.lp.loop.queueTurn(d, readyDirection{g: l})
	}
}

// writable writes the backlog, if there is one; once it is gone, the
// writer waiting for it and the reading (which waits to answer a ping)
// go on.
func (l *Leg) writable() {
	lp := l.lp
	drained, err := lp.out.flush()
	if err != nil {
		l.writeFailed(err)
		l.finish(err)
		return
	}
	if !drained {
		return
	}
	lp.heard.Store(time.Now().UnixNano()) // nothing could be judged while the backlog waited
	lp.dmu.Lock()
	if lp.drained != nil {
		close(lp.drained)
		lp.drained = nil
	}
	lp.dmu.Unlock()
	if d := lp.dir; d.paused {
		d.paused = false
		l.readable(false)
	}
}

// advance consumes the frames in d's buffer: control frames are answered
// (see answerControl), and data frames are gathered into messages, which
// go to the handler whole. It returns what Relay.advance does: the bytes
// the buffer must hold for the next step, 0 to wait for the backlog (a
// ping's answer would queue behind it), or the error that ends reading.
// It enforces what gorilla would for a leg read through it: unmasked
// frames, the size limit (1009, from the frame header), fragmentation
// rules (1002), and UTF-8 in text messages (1007).
func (l *Leg) advance(d *direction) (int, error) {
	lp, fr := l.lp, d.fr
	for {
		switch d.state {
		case atHeader:
			h, complete, err := parseFrameHeader(fr.unread())
			switch {
			case err != nil:
				return 0, err
			case !complete:
				return maxFrameHeader, nil
			case h.masked: // a server's frames must not be masked
				return 0, &protocolError{"bad MASK"}
			}
			d.h, d.at, d.pos = h, time.Now(), 0
			lp.heard.Store(d.at.UnixNano())
			if h.isControl() {
				d.state = inControl
				continue
			}
			if err := d.msg.checkFrame(&h, l.opts.MaxMessageSize); err != nil {
				return 0, err
			}
			if h.op != opContinuation {
				lp.data = make([]byte, 0, min(h.length, maxMessageStart))
			}
			fr.r += h.size
			d.state = inMessage

		case inControl:
			total := d.h.size + int(d.h.length)
			if fr.w-fr.r < total {
				return total, nil
			}
			if lp.out.blocked() {
				return 0, nil
			}
			p := fr.buf[fr.r+d.h.size : fr.r+total]
			fr.r += total
			d.state = atHeader
			if err := answerControl(lp.out, d.h.op, p, d.at, l.rtt, &l.opts); err != nil {
				return 0, err
			}

		case inMessage:
			if n := int(min(int64(fr.w-fr.r), d.h.length-d.pos)); n > 0 { // an idle reader has no buffer
				lp.data = append(lp.data, fr.buf[fr.r:fr.r+n]...)
				fr.r += n
				d.pos += int64(n)
			}
			if d.pos < d.h.length {
				return 1, nil
			}
			d.state = atHeader
			if !d.h.fin {
				continue
			}
			p := lp.data
			lp.data = nil
			if d.msg.text && !utf8.Valid(p) {
				return 0, ErrInvalidUTF8
			}
			l.h.Message(!d.msg.text, sizedToMessage(p))
		}
	}
}

// opError is err on the leg's connection as net.Conn's methods would
// report it.
func (lp *loopLeg) opError(_ side, op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: net.TCPAddrFromAddrPort(lp.addrs[0]), Addr: net.TCPAddrFromAddrPort(lp.addrs[1]), Err: err}
}

// opError is lp's (see frameConsumer).
func (l *Leg) opError(s side, op string, err error) error { return l.lp.opError(s, op, err) }

// finish ends the leg on its loop: the peer is told of a rule it broke,
// the socket is closed, a waiting writer is let go, and the handler hears
// how reading ended, from err.
func (l *Leg) finish(err error) {
	lp := l.lp
	delete(lp.loop.legs, lp.id)
	end, tell := l.end(err)
	if tell != nil {
		_ = lp.out.writeOwn(opClose, CloseMessage(tell.code, tell.reason), time.Time{})
	}
	l.closing.Store(true)
	lp.out.closeSocket(lp.loop.ep)
	lp.dir.done = true
	lp.dir.fr.release()
	lp.data = nil
	l.stopTimers()
	lp.markFinished()
	l.reportEnd(end)
}

// markFinished records that the leg has ended and wakes a writer waiting
// for its backlog to drain.
func (lp *loopLeg) markFinished() {
	lp.dmu.Lock()
	lp.finished = true
	if lp.drained != nil {
		close(lp.drained)
		lp.drained = nil
	}
	lp.dmu.Unlock()
}

// reportEnd hands end to the handler in a goroutine of its own, so that
// the loop never waits on it; Poller.Close waits for it.
func (l *Leg) reportEnd(end LegEnd) {
	dones := l.lp.loop.dones
	dones.Add(1)
	go func() {
		defer dones.Done()
		l.h.Ended(end)
	}()
}

// writeOnLoop writes one data message and waits until the socket has
// taken all of it: so the backlog holds at most one message (and the
// control frames behind it), and a writer that outruns the peer waits
// rather than piling up memory. The write timeout bounds the wait: a
// backlog that outlasts it ends the leg. Callers hold wmu.
func (l *Leg) writeOnLoop(messageType int, data []byte) error {
	op := byte(opText)
	if messageType == websocket.BinaryMessage {
		op = opBinary
	}
	lp := l.lp
	switch err := lp.out.writeOwn(op, data, time.Time{}); {
	case err == errCloseSent:
		return ErrLegClosing
	case err == errLegBroken:
		return l.errEnded()
	case err != nil:
		l.writeFailed(err)
		l.closeOnLoop()
		return l.errEnded()
	}
	lp.dmu.Lock()
	if lp.finished || !lp.out.blocked() {
		lp.dmu.Unlock()
		return nil
	}
	if lp.drained == nil {
		lp.drained = make(chan struct{})
	}
	drained := lp.drained
	lp.dmu.Unlock()
	<-drained
	lp.dmu.Lock()
	finished := lp.finished
	lp.dmu.Unlock()
	if finished { // perhaps after the socket took the message: no one can tell
		return l.errEnded()
	}
	return nil
}

// errEnded is what a write to a leg that has broken or ended returns: the
// write error that broke it, or ErrLegClosing.
func (l *Leg) errEnded() error {
	if err := l.writeErr.Load(); err != nil {
		return *err
	}
	return ErrLegClosing
}

// silent reports whether the peer has been silent past the liveness
// window at now. Silence is not judged while a backlog waits: the peer
// cannot answer the pings queued in it, and the write timeout bounds that
// time instead.
func (l *Leg) silent(now time.Time) bool {
	return l.opts.PingInterval > 0 && !l.lp.out.blocked() &&
		now.UnixNano()-l.lp.heard.Load() >= int64(l.opts.PingInterval+l.opts.PongTimeout)
}

// tickOnLoop is the timer's work for a leg on a loop: it tells the loop
// of a peer silent past the liveness window, pings when a ping is due,
// and returns when to run again. Callers hold tmu.
func (l *Leg) tickOnLoop(now time.Time) time.Duration {
	lp := l.lp
	if l.silent(now) {
		lp.loop.post(loopCmd{op: cmdLegReadTimeout, g: l})
		return time.Millisecond // until the loop has ended the leg
	}
	if !now.Before(lp.nextPing) {
		_ = lp.out.writeOwn(opPing, pingPayload(now), time.Time{})
		lp.nextPing = now.Add(l.opts.PingInterval)
	}
	next := lp.nextPing
	if !lp.out.blocked() {
		if t := time.Unix(0, lp.heard.Load()).Add(l.opts.PingInterval + l.opts.PongTimeout); t.Before(next) {
			next = t
		}
	}
	return max(next.Sub(now), time.Millisecond)
}
