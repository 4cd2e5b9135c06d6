package wsconn

import (
	"net"
	"os"
	"testing"
	"time"
)

// openFDs returns the process's open descriptors.
func openFDs(t *testing.T) map[string]bool {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[string]bool{}
	for _, e := range entries {
		fds[e.Name()] = true
	}
	return fds
}

// newFDs lists the descriptors open now that were not in before. (Counts
// would not do: earlier tests' connections may still be closing.)
func newFDs(t *testing.T, before map[string]bool) []string {
	t.Helper()
	var added []string
	for fd := range openFDs(t) {
		if !before[fd] {
			added = append(added, fd)
		}
	}
	return added
}

// TestWatchHangup: a watched socket's owner learns of its peer's FIN and
// of a reset, and of nothing else: not of bytes the peer sends, not after
// stop, not after the Poller closed. The watch opens no descriptor, and
// the owner's socket keeps working.
func TestWatchHangup(t *testing.T) {
	const quiet = 200 * time.Millisecond
	tests := []struct {
		name   string
		act    func(t *testing.T, peer *net.TCPConn, stop func(), p *Poller)
		called bool
	}{
		{"FIN", func(t *testing.T, peer *net.TCPConn, _ func(), _ *Poller) { _ = peer.CloseWrite() }, true},
		{"reset", func(t *testing.T, peer *net.TCPConn, _ func(), _ *Poller) {
			_ = peer.SetLinger(0)
			_ = peer.Close()
		}, true},
		{"bytes from the peer", func(t *testing.T, peer *net.TCPConn, _ func(), _ *Poller) {
			if _, err := peer.Write([]byte("GET / HTTP/1.1\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"FIN after stop", func(t *testing.T, peer *net.TCPConn, stop func(), _ *Poller) {
			stop()
			_ = peer.CloseWrite()
		}, false},
		{"FIN after Poller.Close", func(t *testing.T, peer *net.TCPConn, _ func(), p *Poller) {
			_ = p.Close()
			_ = peer.CloseWrite()
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPoller(1)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			peer, own := tcpPair(t)
			fds0 := openFDs(t)
			gone := make(chan struct{}, 2)
			stop, err := p.WatchHangup(own, func() { gone <- struct{}{} })
			if err != nil {
				t.Fatal(err)
			}
			if added := newFDs(t, fds0); len(added) > 0 {
				t.Errorf("the watch opened descriptors %v", added)
			}
			tc.act(t, peer, stop, p)
			select {
			case <-gone:
				if !tc.called {
					t.Fatal("gone was called")
				}
			case <-time.After(quiet):
				if tc.called {
					t.Fatalf("gone was not called within %s", quiet)
				}
			}
			stop() // idempotent, and harmless after gone
			select {
			case <-gone:
				t.Fatal("gone was called twice")
			default:
			}
			if tc.name != "reset" {
				// The owner's socket is its own: it still writes.
				if _, err := own.Write([]byte("x")); err != nil {
					t.Errorf("write on the watched socket after the watch: %v", err)
				}
			}
		})
	}
}

// TestWatchHangupRefusals: a closed Poller refuses new watches,
// and a watch of a connection that is not TCP is refused.
func TestWatchHangupRefusals(t *testing.T) {
	p, err := NewPoller(1)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := p.WatchHangup(a, func() {}); err == nil {
		t.Error("a net.Pipe was watched")
	}
	_ = p.Close()
	_, own := tcpPair(t)
	if _, err := p.WatchHangup(own, func() {}); err == nil {
		t.Error("a closed Poller took a watch")
	}
}
