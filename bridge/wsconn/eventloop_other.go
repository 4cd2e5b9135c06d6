//go:build !linux

package wsconn

import (
	"errors"
	"net"
	"time"

	"github.com/gorilla/websocket"
)

// Poller relays connections on event loops where the platform has them
// (Linux); elsewhere NewPoller fails and relays use goroutines.
type Poller struct{}

// NewPoller reports that this platform has no event loops.
func NewPoller(int) (*Poller, error) {
	return nil, errors.ErrUnsupported
}

// Close does nothing; a nil Poller may be closed.
func (p *Poller) Close() error { return nil }

func (p *Poller) attach(*Relay) bool { return false }

// eventLoop is never made here.
type eventLoop struct{}

type loopOp uint8

const cmdAdd, cmdClose, cmdReadTimeout loopOp = 0, 1, 2

type loopCmd struct {
	op loopOp
	r  *Relay
	s  side
}

func (l *eventLoop) post(loopCmd) bool { return false }

func (r *Relay) abandon() {}

func (w *frameWriter) writeNonblocking([]byte) error { return errors.ErrUnsupported }

// WatchHangup reports that this platform has no event loops to watch
// with.
func (p *Poller) WatchHangup(net.Conn, func()) (func(), error) {
	return nil, errors.ErrUnsupported
}

// loopLeg is never made here.
type loopLeg struct{ out *frameWriter }

func (p *Poller) attachLeg(*Leg, *websocket.Conn) bool { return false }

func (l *Leg) startOnLoop()                       {}
func (l *Leg) closeOnLoop()                       {}
func (l *Leg) dropOffLoop()                       {}
func (l *Leg) writeOnLoop(int, []byte) error      { return errors.ErrUnsupported }
func (l *Leg) tickOnLoop(time.Time) time.Duration { return time.Hour }
