package proxy

import (
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves /healthz (the process is up), /readyz (ready for
// traffic: not draining and the upstream accepts TCP connections) and
// /metrics (Prometheus), and Go's profiles under /debug/pprof/ (CPU,
// heap, goroutines; as Caddy serves them on its admin endpoint), so that an
// operator can see where a live proxy spends its time and memory. The
// admin listener is loopback-only by default and never public.
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		if err := s.table.Load().ready.check(r); err != nil {
			http.Error(w, "upstream unreachable: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index) // heap, goroutine, allocs, block, mutex, ...
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// readinessCacheFor is how long an upstream reachability result is reused,
// so that frequent probes do not each open a connection to the app.
const readinessCacheFor = time.Second

// readiness checks that the upstream accepts TCP connections, caching the
// answer briefly.
type readiness struct {
	addr    string
	timeout time.Duration

	mu      sync.Mutex
	checked time.Time
	err     error
}

func newReadiness(upstream string, timeout time.Duration) *readiness {
	u, _ := url.Parse(upstream)
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return &readiness{addr: net.JoinHostPort(u.Hostname(), port), timeout: min(timeout, 2*time.Second)}
}

func (c *readiness) check(r *http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < readinessCacheFor {
		return c.err
	}
	d := net.Dialer{Timeout: c.timeout}
	conn, err := d.DialContext(r.Context(), "tcp", c.addr)
	if err == nil {
		conn.Close()
	}
	c.checked, c.err = time.Now(), err
	return err
}
