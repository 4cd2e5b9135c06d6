package wsconn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestDialGuardBacksOff drives a guard with a fake clock and a dial that
// fails until told otherwise: during a backoff no dial reaches the network,
// the window doubles up to its cap, one line is logged per burst, and the
// first success resets it.
func TestDialGuardBacksOff(t *testing.T) {
	var (
		mu    sync.Mutex
		dials int
		down  = true
		now   = time.Unix(0, 0)
		logs  bytes.Buffer
	)
	g := NewDialGuard(&net.Dialer{}, zerolog.New(&logs))
	g.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	g.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		dials++
		if down {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused")}
		}
		c1, _ := net.Pipe()
		return c1, nil
	}
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()

	// A storm of 1000 attempts while the upstream is down and the clock
	// stands still: one real dial.
	for range 1000 {
		_, err := g.DialContext(ctx, "tcp", "app:80")
		if err == nil {
			t.Fatal("dial to a down upstream succeeded")
		}
	}
	if dials != 1 {
		t.Errorf("%d dials reached the network during the backoff, want 1", dials)
	}
	_, err := g.DialContext(ctx, "tcp", "app:80")
	if !errors.Is(err, ErrBackingOff) {
		t.Errorf("refused dial error %v does not wrap ErrBackingOff", err)
	}
	// The window doubles: 100ms, 200ms, 400ms ... capped at 5s.
	for i, window := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000} {
		advance(window*time.Millisecond - time.Millisecond)
		_, _ = g.DialContext(ctx, "tcp", "app:80")
		if dials != i+1 {
			t.Fatalf("step %d: dialled before the %dms window passed", i, window)
		}
		advance(time.Millisecond)
		_, _ = g.DialContext(ctx, "tcp", "app:80")
		if dials != i+2 {
			t.Fatalf("step %d: no probe after the %dms window", i, window)
		}
	}
	mu.Lock()
	down = false
	mu.Unlock()
	advance(5 * time.Second)
	c, err := g.DialContext(ctx, "tcp", "app:80")
	if err != nil {
		t.Fatalf("dial after recovery: %v", err)
	}
	c.Close()
	if _, err := g.DialContext(ctx, "tcp", "app:80"); err != nil {
		t.Fatalf("second dial after recovery: %v", err)
	}
	out := logs.String()
	if n := strings.Count(out, "upstream dial failed"); n != 1 {
		t.Errorf("%d failure lines for one burst, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "upstream reachable again") || !strings.Contains(out, `"refused_dials":1`) {
		t.Errorf("no recovery line with the refusal count:\n%s", out)
	}
}

// TestDialGuardKeepsTimeoutKind checks that dials refused during a backoff
// that a timeout started are timeouts too (callers answer 504, not 502).
func TestDialGuardKeepsTimeoutKind(t *testing.T) {
	g := NewDialGuard(&net.Dialer{}, zerolog.Nop())
	g.dial = func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: timeoutError{}}
	}
	_, _ = g.DialContext(context.Background(), "tcp", "app:80")
	_, err := g.DialContext(context.Background(), "tcp", "app:80")
	if !errors.Is(err, ErrBackingOff) || !IsTimeout(err) {
		t.Errorf("got %v (timeout %v), want a backoff that is a timeout", err, IsTimeout(err))
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
