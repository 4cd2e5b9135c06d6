//go:build !unix

package wsconn

import "net"

// readRawFrom leaves fr reading tc through its Read where non-blocking
// reads of the socket are not written (Windows): fr then holds its buffer
// for the connection's life.
func (fr *frameReader) readRawFrom(*net.TCPConn) {}
