//go:build !linux

package proxy

import (
	"net"

	"github.com/rs/zerolog"
)

// newFDReserveListener returns ln unchanged: the descriptor reserve uses
// Linux system calls (accept4 on the raw listener), and streamgate's
// production target is Linux. Elsewhere an exhausted process leaves new
// clients waiting in the backlog, as net/http does by default.
func newFDReserveListener(ln net.Listener, _ []byte, _ zerolog.Logger) net.Listener {
	return ln
}
