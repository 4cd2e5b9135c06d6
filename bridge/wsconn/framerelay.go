package wsconn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// frameBufferSize is the read buffer of each direction of a frame-relayed
// plain TCP connection on Unix, borrowed only while bytes are in flight.
// A frame that fits is forwarded whole with one write straight from it; a
// larger one is forwarded as fragments of about this size.
const frameBufferSize = 16 << 10

// heldFrameBufferSize is the read buffer of a direction that must hold
// one for its whole life: TLS, where the read happens inside crypto/tls,
// and plain TCP where there are no raw non-blocking reads (Windows).
const heldFrameBufferSize = 4 << 10

// frameBuffers lends read buffers to frame relays.
var frameBuffers = sync.Pool{New: func() any { b := make([]byte, frameBufferSize); return &b }}

// errCloseSent is returned for a write to a leg that has been sent a close
// frame (RFC 6455 allows no data frame after it).
var errCloseSent = errors.New("websocket: close frame already sent")

// errLegBroken is returned for a control frame to a leg whose last write
// failed, perhaps in the middle of a frame.
var errLegBroken = errors.New("websocket: an earlier write to this leg failed")

// frameWriter serialises the writes to one leg of a frame relay: forwarded
// data frames from the other leg's reader, and the control frames (pongs,
// pings, close) the relay sends itself. A frame is written whole under the
// lock, so control frames never land inside one.
type frameWriter struct {
	conn    net.Conn
	timeout time.Duration // per-write deadline

	mu    sync.Mutex
	armed time.Time // when the write deadline was last set; zero: not set
	ctl   []byte    // scratch for the frames writeOwn makes

	// On an event loop (see Poller) the leg's socket is non-blocking and
	// written directly: fd is its descriptor (-1 once closed), pending
	// what it has not taken yet, since when that has waited, stall the
	// timer that enforces the write timeout on it (made at the first
	// backlog) and tells relay that its leg side is stuck (or leg, for a
	// lone leg, that it is), and shutAfter (below) a shutdown of the
	// sending side that waits for the backlog to go out.
	fd      int
	pending []byte
	since   time.Time
	stall   *time.Timer
	relay   *Relay
	leg     *Leg

	// The small fields sit together, so that the struct stays in a
	// 192-byte size class: a proxied WebSocket holds two.
	side        side
	mask        bool // this side is the client on this leg: our frames are masked
	nonblocking bool
	closeSent   bool // under mu
	broken      bool // under mu; a write failed, perhaps mid-frame: nothing more may follow
	shutAfter   bool

	// backlog is set while pending holds bytes; forwarding into the leg
	// waits for it to drain.
	backlog atomic.Bool
}

// blocked reports whether frames for this leg must wait for its backlog.
func (w *frameWriter) blocked() bool { return w.backlog.Load() }

// armDeadline sets the write deadline to now+timeout unless it was set less
// than a sixteenth of the timeout ago: a write then always has at least
// 15/16 of the timeout, and a busy leg does not reset a runtime timer for
// every frame. Callers hold mu.
func (w *frameWriter) armDeadline(now time.Time) {
	if now.Sub(w.armed) >= w.timeout/16 {
		_ = w.conn.SetWriteDeadline(now.Add(w.timeout))
		w.armed = now
	}
}

// writeOwn writes one frame the relay or leg makes itself rather than
// forwards: a control frame, or a lone leg's data message. A close frame
// is written at most once, with its own deadline; nothing is written after
// it, and a write to a leg that was sent one (errCloseSent) or broken
// (errLegBroken) is refused. On an event loop the deadline is not used:
// the write timeout bounds the backlog instead.
func (w *frameWriter) writeOwn(op byte, payload []byte, deadline time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.closeSent:
		return errCloseSent
	case w.broken:
		return errLegBroken
	}
	if op == opClose {
		w.closeSent = true
	}
	w.ctl = appendFrame(w.ctl[:0], op, payload, w.mask)
	var err error
	if w.nonblocking {
		err = w.writeNonblocking(w.ctl)
	} else {
		_ = w.conn.SetWriteDeadline(deadline)
		w.armed = time.Time{}
		_, err = w.conn.Write(w.ctl)
	}
	if cap(w.ctl) > maxFrameHeader+maxControlPayload {
		w.ctl = nil // a leg's data message: keep no scratch of its size
	}
	if err != nil {
		w.broken = true // perhaps cut mid-frame: nothing more may follow
	}
	return err
}

// headroom is kept free at the start of a read buffer, so that a fragment
// header always fits in front of the payload bytes it announces, and a
// fragment goes out in one write.
const headroom = maxFrameHeader

// frameReader buffers one leg's incoming bytes and parses frames. On a
// plain TCP connection on Unix it holds its buffer only while bytes are in
// flight: when the buffer is empty and the socket has nothing to read, the
// buffer goes back to the pool before the goroutine parks, so an idle
// direction holds no buffer. (Go's own Read would have to park holding
// one.) On other connections (TLS, and plain TCP elsewhere) it keeps its
// buffer.
type frameReader struct {
	conn   net.Conn
	raw    syscall.RawConn // nil: read through conn (or by an event loop)
	pooled bool            // the buffer is borrowed only while bytes are in flight
	bp     *[]byte         // the borrowed buffer; nil while idle
	buf    []byte
	r, w   int // unread bytes are buf[r:w]

	// readFn is readReady as a func value, made once: a closure made per
	// read would be an allocation per read. n and err are its results.
	readFn func(fd uintptr) bool
	n      int
	err    error
}

// newFrameReader returns a reader of c, which may be a handshakeConn with
// bytes already read past the handshake.
func newFrameReader(c net.Conn) *frameReader {
	fr := &frameReader{conn: c, r: headroom, w: headroom}
	var pending []byte
	if hc, ok := c.(*handshakeConn); ok {
		pending = hc.takePending()
		c = hc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		fr.readRawFrom(tc)
	}
	if len(pending) > 0 {
		fr.borrow()
		if headroom+2*len(pending) > len(fr.buf) {
			// gorilla's handshake buffer (readBufferSize) is smaller
			// than ours; room to read on is kept should that change.
			b := make([]byte, headroom+2*len(pending))
			fr.bp, fr.buf = &b, b
		}
		fr.r = headroom
		fr.w = headroom + copy(fr.buf[headroom:], pending)
	}
	return fr
}

// borrow takes a buffer from the pool, or makes the reader's own when it
// cannot give one back while idle.
func (fr *frameReader) borrow() {
	if !fr.pooled {
		b := make([]byte, heldFrameBufferSize)
		fr.bp, fr.buf = &b, b
		return
	}
	fr.bp = frameBuffers.Get().(*[]byte)
	fr.buf = *fr.bp
}

// release returns a pooled buffer, and any unread bytes in it with it (a
// held buffer, one a TLS leg keeps for good, stays).
func (fr *frameReader) release() {
	if fr.bp != nil && fr.pooled {
		frameBuffers.Put(fr.bp)
		fr.bp, fr.buf, fr.r, fr.w = nil, nil, headroom, headroom
	}
}

// makeRoom prepares the buffer for a read: an empty buffer starts again
// after the headroom, and unread bytes move there when fewer than need
// bytes would fit from the read position.
func (fr *frameReader) makeRoom(need int) {
	if fr.r == fr.w {
		fr.r, fr.w = headroom, headroom
	} else if len(fr.buf)-fr.r < need {
		fr.w = headroom + copy(fr.buf[headroom:], fr.buf[fr.r:fr.w])
		fr.r = headroom
	}
}

// fill reads more bytes, blocking until some arrive, after making room for
// need bytes from the read position.
func (fr *frameReader) fill(need int) error {
	fr.makeRoom(need)
	var n int
	var err error
	if fr.raw != nil {
		n, err = fr.readRaw()
	} else {
		if fr.bp == nil {
			fr.borrow()
		}
		n, err = fr.conn.Read(fr.buf[fr.w:])
	}
	fr.w += n
	if n > 0 {
		return nil
	}
	if err == nil || err == io.EOF {
		err = errUnexpectedEOF()
	}
	return err
}

// errUnexpectedEOF is how a leg that ended TCP without a close frame ends.
func errUnexpectedEOF() error {
	return &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}
}

// readRaw reads from the socket without the netpoller's blocking Read: it
// tries a read, and when there is nothing to read it releases an empty
// buffer and lets the poller park the goroutine until there is. The read
// deadline applies as for Read.
func (fr *frameReader) readRaw() (int, error) {
	if err := fr.raw.Read(fr.readFn); err != nil {
		return 0, err
	}
	if fr.err != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: fr.conn.LocalAddr(), Addr: fr.conn.RemoteAddr(), Err: os.NewSyscallError("read", fr.err)}
	}
	return fr.n, nil
}

// unread returns the bytes read and not consumed yet.
func (fr *frameReader) unread() []byte {
	if fr.buf == nil {
		return nil // idle: the buffer went back to the pool
	}
	return fr.buf[fr.r:fr.w]
}

// message is the state of the data message a frame relay is forwarding.
type message struct {
	open bool  // a fragmented message has started and not finished
	text bool  // it is a text message: its bytes are checked as UTF-8
	size int64 // payload bytes so far
	utf8 utf8Checker
}

// parseState says what the unread bytes of a direction start with.
type parseState uint8

const (
	atHeader    parseState = iota // a frame header
	inControl                     // control frame h, header included
	inWhole                       // data frame h, header included, which fits the buffer
	inFragments                   // the rest of data frame h's payload, larger than the buffer
	inDiscard                     // the rest of data frame h's payload, to be dropped
	inMessage                     // a Leg's: the rest of data frame h's payload, for the message
)

// direction is one direction of a frame relay: the reader of leg from, the
// frame it is in the middle of and the message that frame belongs to. Its
// state lives here rather than on a goroutine's stack so that either a
// goroutine blocked in reads or an event loop can drive it (see advance).
type direction struct {
	from  side
	fr    *frameReader
	msg   message
	state parseState
	h     frameHeader // the frame in progress, unless state is atHeader
	at    time.Time   // when h's header arrived
	op    byte        // inFragments: the opcode of the next fragment
	pos   int64       // inFragments, inDiscard: payload bytes of h done

	// Event loop only (see eventloop_linux.go).
	paused    bool // waiting for a leg's backlog to drain
	hup       bool // the peer's FIN or an error was reported: read to the end
	queued    bool // on the loop's list of directions waiting for a turn
	done      bool // reading has ended
	lingering bool // reading and dropping what a refused sender still sends
}

// pumpFrames reads frames from leg from in this goroutine and forwards
// them (see advance) until reading ends.
func (r *Relay) pumpFrames(from side) {
	d := &direction{from: from, fr: newFrameReader(r.conns[from])}
	var err error
	for err == nil {
		var need int
		if need, err = r.advance(d); err == nil {
			err = d.fr.fill(need)
		}
	}
	d.fr.release()
	r.readFailed(from, err)
	r.lingerAfterRefusal(r.conns[from], err)
}

// advance forwards the frames read into d's buffer so far, as far as they
// go, and returns how many bytes from the read position the buffer must
// hold for the next step: read at least one more before calling again. It
// returns 0 when the next step must wait for a leg's backlog to drain
// (only a non-blocking writer has one), and an error when reading leg
// d.from must end.
//
// Each data frame goes to the other leg without being unmasked: client
// frames arrive masked and the upstream must get masked frames, upstream
// frames arrive unmasked and the client must get them unmasked. A frame
// that fits the read buffer is forwarded whole once all of it is in, with
// one write. A larger one goes out as fragments, each as much as the
// buffer holds (the last one, the rest), which RFC 6455 section 5.4 allows
// an intermediary when no extension is in use: each fragment keeps the
// client's masking key, rotated to the fragment's offset, so its bytes go
// out untouched. Every frame written is complete: if the sender dies or
// breaks a rule mid-frame, the receiver holds an unfinished message, never
// a cut frame, and still gets a clean close.
//
// Control frames are answered on their own leg. It enforces what the
// message relay does: the size limit (1009, decided from the frame header
// before a byte of the frame is forwarded), UTF-8 in text messages (1007,
// checked before the bytes are written), and the protocol rules gorilla
// would (1002).
func (r *Relay) advance(d *direction) (int, error) {
	fr, dst := d.fr, r.out[1-d.from]
	for {
		switch d.state {
		case atHeader:
			h, complete, err := parseFrameHeader(fr.unread())
			if err != nil {
				return 0, err
			}
			if !complete {
				return maxFrameHeader, nil
			}
			if h.masked != (d.from == client) { // frames from the client must be masked, from the upstream must not
				return 0, &protocolError{"bad MASK"}
			}
			d.h, d.at, d.pos = h, time.Now(), 0
			r.extendDeadlineFrom(d.from, d.at, h.isControl())
			if h.isControl() {
				d.state = inControl
				continue
			}
			if err := d.msg.checkFrame(&h, r.opts.MaxMessageSize); err != nil {
				return 0, err
			}
			switch {
			case r.ended.Load():
				d.state = inDiscard // closing: drain until the peer's close frame
				fr.r += h.size
				continue
			case h.length <= int64(len(fr.buf)-headroom-h.size):
				d.state = inWhole
			default:
				d.state, d.op = inFragments, h.op
				fr.r += h.size
			}
			r.lastData.Store(d.at.UnixNano())

		case inControl:
			total := d.h.size + int(d.h.length)
			if fr.w-fr.r < total {
				return total, nil
			}
			if r.out[d.from].blocked() {
				return 0, nil // the answer (a pong) would queue behind a backlog
			}
			// Unmasked in place: the frame is consumed here, and control
			// copies what it keeps.
			p := fr.buf[fr.r+d.h.size : fr.r+total]
			if d.h.masked {
				maskBytes(d.h.key, 0, p)
			}
			fr.r += total
			d.state = atHeader
			if err := r.control(d.from, d.h.op, p, d.at); err != nil {
				return 0, err
			}

		case inWhole:
			whole := d.h.size + int(d.h.length)
			if fr.w-fr.r < whole {
				return whole, nil
			}
			if dst.blocked() {
				return 0, nil
			}
			payload := fr.buf[fr.r+d.h.size : fr.r+whole]
			if d.msg.text && !checkText(&d.msg.utf8, &d.h, 0, payload, d.h.fin) {
				return 0, ErrInvalidUTF8
			}
			err := dst.write(fr.buf[fr.r:fr.r+whole], d.at)
			fr.r += whole
			if err != nil {
				return 0, err
			}
			r.forwarded(d)

		case inFragments:
			// Gather a fragment: the rest of the frame, or a full buffer.
			left := d.h.length - d.pos
			if fr.r == fr.w || int64(fr.w-fr.r) < left && fr.w < len(fr.buf) {
				return 1, nil
			}
			if dst.blocked() {
				return 0, nil
			}
			n := int(min(int64(fr.w-fr.r), left))
			chunk := fr.buf[fr.r : fr.r+n]
			last := int64(n) == left
			if d.msg.text && !checkText(&d.msg.utf8, &d.h, int(d.pos), chunk, d.h.fin && last) {
				return 0, ErrInvalidUTF8
			}
			start := fr.r - putFragmentHeader(fr.buf[:fr.r], d.op, d.h.fin && last, &d.h, int(d.pos), n)
			err := dst.write(fr.buf[start:fr.r+n], time.Now())
			fr.r += n
			d.op, d.pos = opContinuation, d.pos+int64(n)
			if err != nil {
				return 0, err
			}
			if last {
				r.forwarded(d)
			}

		case inDiscard:
			n := min(int64(fr.w-fr.r), d.h.length-d.pos)
			fr.r += int(n)
			d.pos += n
			if d.pos < d.h.length {
				return 1, nil
			}
			d.state = atHeader
		}
	}
}

// forwarded counts the data frame d has just finished forwarding.
func (r *Relay) forwarded(d *direction) {
	r.bytes[d.from].Add(d.h.length)
	if d.h.fin {
		r.msgs[d.from].Add(1)
	}
	d.state = atHeader
}

// checkFrame checks the data frame h against the message in progress and
// the size limit, and starts a new message when h is a first frame. The
// sums cannot overflow: a length is below 2^63, and each is compared
// before it is added.
func (m *message) checkFrame(h *frameHeader, limit int64) error {
	switch {
	case h.op == opContinuation && !m.open:
		return &protocolError{"continuation after FIN"}
	case h.op != opContinuation && m.open:
		return &protocolError{"data before FIN"}
	case h.op != opContinuation:
		m.text, m.size, m.utf8 = h.op == opText, 0, utf8Checker{}
	}
	switch {
	case limit > 0 && h.length > limit-m.size:
		return websocket.ErrReadLimit
	case h.length > math.MaxInt64-m.size:
		return &protocolError{"bad length"} // no limit, and the message outgrew int64
	}
	m.size += h.length
	m.open = !h.fin
	return nil
}

// putFragmentHeader writes, at the end of b, the header of a fragment of
// frame h: n payload bytes from offset pos, with opcode op and FIN fin, and
// h's masking key rotated to pos. It returns the header's length.
func putFragmentHeader(b []byte, op byte, fin bool, h *frameHeader, pos, n int) int {
	var hdr [maxFrameHeader]byte
	hdr[0] = op
	if fin {
		hdr[0] |= finBit
	}
	size := 2
	switch {
	case n <= 125:
		hdr[1] = byte(n)
	case n <= 0xFFFF:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
		size = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
		size = 10
	}
	if h.masked {
		hdr[1] |= maskBit
		for i := range 4 {
			hdr[size+i] = h.key[(pos+i)&3]
		}
		size += 4
	}
	copy(b[len(b)-size:], hdr[:size])
	return size
}

// write writes one whole frame, unless a close frame has gone out (the
// relay is ending: the frame is dropped) or a write failed before.
func (w *frameWriter) write(frame []byte, now time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closeSent || w.broken {
		return nil
	}
	var err error
	if w.nonblocking {
		err = w.writeNonblocking(frame)
	} else {
		w.armDeadline(now)
		_, err = w.conn.Write(frame)
	}
	if err != nil {
		w.broken = true // perhaps cut mid-frame: nothing more may follow
		return &writeError{err}
	}
	return nil
}

// checkText feeds a chunk of a text message's payload, at position pos of
// frame h, to the UTF-8 check; last is set for the message's final bytes.
// A masked chunk is unmasked for the check and masked again.
func checkText(u *utf8Checker, h *frameHeader, pos int, chunk []byte, last bool) bool {
	if h.masked {
		maskBytes(h.key, pos, chunk)
		defer maskBytes(h.key, pos, chunk)
	}
	return u.check(chunk) && (!last || u.pending == 0)
}

// writeError marks a failed write to the destination leg, so that the
// relay blames that leg rather than the one it was reading.
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// control handles a control frame from leg s (see answerControl).
func (r *Relay) control(s side, op byte, p []byte, now time.Time) error {
	return answerControl(r.out[s], op, p, now, r.rttObserver(s), &r.opts)
}

// answerControl handles a control frame that came from the leg w writes
// to: a ping is answered, a pong carrying our payload gives rtt (nil:
// none) the round trip, and a close frame is echoed and ends the reading
// of the leg, as a *websocket.CloseError. p lies in the leg's read buffer
// and is valid only during the call.
func answerControl(w *frameWriter, op byte, p []byte, now time.Time, rtt prometheus.Observer, opts *Options) error {
	switch op {
	case opPing:
		err := w.writeOwn(opPong, p, now.Add(opts.WriteTimeout))
		if err != nil && !errors.Is(err, errCloseSent) && !errors.Is(err, errLegBroken) {
			return &writeError{err}
		}
	case opPong:
		observePong(rtt, p, now)
	case opClose:
		code, reason, err := parseClosePayload(p)
		if err != nil {
			return err
		}
		// Echo the code, as gorilla's default close handler does; when
		// our own close went first this is the echo and nothing is sent.
		_ = w.writeOwn(opClose, CloseMessage(code, ""), now.Add(opts.CloseTimeout))
		return &websocket.CloseError{Code: code, Text: reason}
	}
	return nil
}

// parseClosePayload reads a close frame's code and reason, with the checks
// of RFC 6455 section 7.4: no payload means 1005; otherwise the code must
// be one a peer may send and the reason UTF-8.
func parseClosePayload(p []byte) (int, string, error) {
	switch {
	case len(p) == 0:
		return websocket.CloseNoStatusReceived, "", nil
	case len(p) == 1:
		return 0, "", &protocolError{"close frame with a one-byte payload"}
	}
	code := int(p[0])<<8 | int(p[1])
	if !validReceivedCloseCode(code) {
		return 0, "", &protocolError{fmt.Sprintf("bad close code %d", code)}
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &protocolError{"invalid utf8 payload in close frame"}
	}
	return code, string(p[2:]), nil
}

// validReceivedCloseCode reports whether a peer may send code (RFC 6455
// section 7.4.1 and the IANA registry).
func validReceivedCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}
