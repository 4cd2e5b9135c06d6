//go:build unix

package wsconn

import (
	"net"
	"syscall"
)

// readRawFrom makes fr read tc with readRaw: its buffer is then borrowed
// only while bytes are in flight.
func (fr *frameReader) readRawFrom(tc *net.TCPConn) {
	fr.raw, _ = tc.SyscallConn()
	fr.pooled = fr.raw != nil
	fr.readFn = fr.readReady
}

// readReady is the RawConn.Read callback of readRaw: it reads into the
// buffer (borrowing one if need be) and reports whether it got a result;
// on EAGAIN it gives an empty buffer back and asks to be called again once
// the socket is readable.
func (fr *frameReader) readReady(fd uintptr) bool {
	if fr.bp == nil {
		fr.borrow()
	}
	for {
		fr.n, fr.err = syscall.Read(int(fd), fr.buf[fr.w:])
		if fr.err != syscall.EINTR {
			break
		}
	}
	if fr.err == syscall.EAGAIN {
		if fr.r == fr.w {
			fr.release()
		}
		return false
	}
	fr.n = max(fr.n, 0)
	return true
}
