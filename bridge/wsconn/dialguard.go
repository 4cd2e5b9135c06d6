package wsconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Backoff of dials to an upstream that refuses them: after a failed dial,
// further dials fail at once for a window that doubles with each failure
// in a row, from dialBackoffMin up to dialBackoffMax.
const (
	dialBackoffMin = 100 * time.Millisecond
	dialBackoffMax = 5 * time.Second
)

// ErrBackingOff is returned, wrapped, for dials a DialGuard refused during
// a backoff. Callers answer them like any unreachable upstream (502) but
// need not log each one: the guard logs the burst.
var ErrBackingOff = errors.New("upstream unreachable, backing off")

// DialGuard stands between streamgate and an upstream that is down, so that
// a crowd of reconnecting clients does not turn into a storm of connection
// attempts: after a dial fails, dials to that address fail fast until the
// backoff window passes, then one is let through to probe. It logs once
// per burst of failures, and once when the upstream answers again. The
// HTTP transport, the WebSocket dialer and the SSE bridges all dial
// through it.
type DialGuard struct {
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	logger zerolog.Logger
	now    func() time.Time

	mu    sync.Mutex
	addrs map[string]*dialState
}

// dialState is one address's run of failures.
type dialState struct {
	failures int       // failed dials in a row
	refused  int       // dials refused during backoff in this burst
	until    time.Time // dials fail fast before this
	timeout  bool      // the last failure was a timeout
}

// backoffError is a dial refused during a backoff. It is a timeout when the
// failure that started the backoff was one, so callers answer 504 then and
// 502 otherwise, as they would have for the dial itself.
type backoffError struct {
	wait    time.Duration
	timeout bool
}

func (e *backoffError) Error() string {
	return fmt.Sprintf("%v for %s", ErrBackingOff, e.wait.Round(time.Millisecond))
}
func (e *backoffError) Unwrap() error   { return ErrBackingOff }
func (e *backoffError) Timeout() bool   { return e.timeout }
func (e *backoffError) Temporary() bool { return true }

// NewDialGuard returns a guard dialling with d and logging to logger.
func NewDialGuard(d *net.Dialer, logger zerolog.Logger) *DialGuard {
	return &DialGuard{dial: d.DialContext, logger: logger, now: time.Now, addrs: map[string]*dialState{}}
}

// DialContext dials addr unless it is backing off. It is safe for
// concurrent use.
func (g *DialGuard) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if wait, timeout := g.backingOff(addr); wait > 0 {
		return nil, &net.OpError{Op: "dial", Net: network, Err: &backoffError{wait: wait, timeout: timeout}}
	}
	c, err := g.dial(ctx, network, addr)
	if err != nil && ctx.Err() == nil {
		g.failed(addr, err)
	} else if err == nil {
		g.succeeded(addr)
	}
	return c, err
}

// backingOff returns how long dials to addr still fail fast, counting the
// refusal. Once the window has passed, the first caller goes through as a
// probe and the window is set again for the others until it reports.
func (g *DialGuard) backingOff(addr string) (wait time.Duration, timeout bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.addrs[addr]
	if !ok {
		return 0, false
	}
	now := g.now()
	if wait := st.until.Sub(now); wait > 0 {
		st.refused++
		return wait, st.timeout
	}
	st.until = now.Add(backoffFor(st.failures))
	return 0, false
}

// backoffFor is the fail-fast window after n failed dials in a row.
func backoffFor(n int) time.Duration {
	return min(dialBackoffMin<<min(n-1, 16), dialBackoffMax)
}

func (g *DialGuard) failed(addr string, err error) {
	g.mu.Lock()
	st, ok := g.addrs[addr]
	if !ok {
		st = &dialState{}
		g.addrs[addr] = st
	}
	st.failures++
	st.until = g.now().Add(backoffFor(st.failures))
	var ne net.Error
	st.timeout = errors.As(err, &ne) && ne.Timeout()
	first := st.failures == 1
	g.mu.Unlock()
	if first {
		g.logger.Warn().Err(err).Str("upstream", addr).
			Msg("upstream dial failed; further dials back off (up to 5s) and are not logged until it answers")
	}
}

func (g *DialGuard) succeeded(addr string) {
	g.mu.Lock()
	st, ok := g.addrs[addr]
	delete(g.addrs, addr)
	g.mu.Unlock()
	if ok {
		g.logger.Info().Str("upstream", addr).Int("failed_dials", st.failures).Int("refused_dials", st.refused).
			Msg("upstream reachable again")
	}
}
