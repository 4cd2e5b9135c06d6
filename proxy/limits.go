package proxy

import "sync"

// limiter counts the requests and connections in flight, in total and per
// client IP, against limits.max_connections and max_connections_per_ip. Its
// counts outlive reloads; the limits come from the current route table.
type limiter struct {
	mu    sync.Mutex
	total int
	perIP map[string]int
}

func newLimiter() *limiter { return &limiter{perIP: make(map[string]int)} }

// acquire takes one slot for ip unless a limit (0 = none) is reached. It
// returns a release function, or ok false and which limit refused.
func (l *limiter) acquire(ip string, maxTotal, maxPerIP int) (release func(), refused string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if maxTotal > 0 && l.total >= maxTotal {
		return nil, "max_connections"
	}
	if maxPerIP > 0 && l.perIP[ip] >= maxPerIP {
		return nil, "max_connections_per_ip"
	}
	l.total++
	l.perIP[ip]++
	var once sync.Once
	return func() { once.Do(func() { l.release(ip) }) }, ""
}

func (l *limiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.perIP[ip] - 1; n > 0 {
		l.perIP[ip] = n
	} else {
		delete(l.perIP, ip)
	}
}
