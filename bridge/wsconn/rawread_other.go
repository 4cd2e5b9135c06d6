//go:build !unix

package wsconn

import "net"

// readRawFrom leaves fr reading through its conn: raw non-blocking reads
// of the socket are written for Unix only, so on Windows (and plan9, js,
// wasip1) a plain TCP direction holds its buffer for the connection's
// life, as a TLS one does.
func (fr *frameReader) readRawFrom(*net.TCPConn) {}
