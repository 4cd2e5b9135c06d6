package proxy

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// registry tracks the long-lived connections that http.Server.Shutdown
// cannot see (hijacked WebSockets) or would wait on forever (SSE streams),
// so the drain can end each of them.
type registry struct {
	mu     sync.Mutex
	conns  map[*tracked]struct{}
	closed chan struct{} // signalled when conns becomes empty
}

// tracked is one registered connection: its kind for the drain summary and
// the function that ends it gracefully (1001 for WebSockets, a retry hint
// for SSE). end must be bounded: it starts a close, it does not wait.
type tracked struct {
	kind string
	end  func()
}

func newRegistry() *registry {
	return &registry{conns: make(map[*tracked]struct{}), closed: make(chan struct{}, 1)}
}

// track registers a connection; the returned function unregisters it and
// must be called once when the connection has ended.
func (g *registry) track(kind string, end func()) (untrack func()) {
	c := &tracked{kind: kind, end: end}
	g.mu.Lock()
	g.conns[c] = struct{}{}
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		delete(g.conns, c)
		empty := len(g.conns) == 0
		g.mu.Unlock()
		if empty {
			select {
			case g.closed <- struct{}{}:
			default:
			}
		}
	}
}

// drainStats summarises a drain for its log line.
type drainStats struct {
	ended  map[string]int // connections told to close, by kind
	forced int            // still open when the budget ran out
}

// drain ends every tracked connection, spreading the ends over window in a
// random order so that clients do not reconnect in one stampede, then
// waits until all are gone or ctx ends. Connections that arrive during the
// drain (the listener may still be open) are ended too.
func (g *registry) drain(ctx context.Context, window time.Duration) drainStats {
	st := drainStats{ended: map[string]int{}}
	done := map[*tracked]bool{}
	for {
		pending := g.pending(done)
		if len(pending) == 0 {
			break
		}
		rand.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
		step := window / time.Duration(len(pending))
		start := time.Now()
		for i, c := range pending {
			if wait := time.Until(start.Add(time.Duration(i) * step)); wait > 0 {
				sleepCtx(ctx, wait) // out of time: the rest end at once
			}
			done[c] = true
			st.ended[c.kind]++
			c.end()
		}
		window = 0 // late arrivals are ended at once
	}
	for {
		g.mu.Lock()
		n := len(g.conns)
		g.mu.Unlock()
		if n == 0 {
			return st
		}
		select {
		case <-g.closed:
		case <-ctx.Done():
			st.forced = n
			return st
		}
	}
}

// pending lists tracked connections not yet in done.
func (g *registry) pending(done map[*tracked]bool) []*tracked {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*tracked
	for c := range g.conns {
		if !done[c] {
			out = append(out, c)
		}
	}
	return out
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
