package proxy

import (
	"errors"
	"net"
	"syscall"
)

// answerUnavailable is what a plain HTTP connection refused for want of
// file descriptors receives. It is written straight to the socket: there is
// no descriptor to spare for anything else.
var answerUnavailable = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Connection: close\r\nRetry-After: 1\r\nContent-Length: 36\r\n\r\nstreamgate: out of file descriptors\n")

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
