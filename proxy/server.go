package proxy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/bridge"
	"github.com/streamgate/streamgate/bridge/wsconn"
	"github.com/streamgate/streamgate/config"
)

// Server is a running streamgate: the public listener, the admin listener
// and everything they serve. Build it with New, run it with Run, or
// release it with Close if it is not to run.
type Server struct {
	logger       zerolog.Logger
	registry     *prometheus.Registry
	metrics      *metrics
	relayMetrics *wsconn.Metrics
	bufferPool   websocket.BufferPool
	poller       *wsconn.Poller // nil where the platform has none

	// SSE bridges of the current table by settings key, those of the
	// table being built (see bridgeFor), and those a reload replaced that
	// are still closing; guarded by reloadMu.
	reloadMu         sync.Mutex
	bridges          map[string]*bridge.Bridge
	nextBridges      map[string]*bridge.Bridge
	retired          map[*bridge.Bridge]struct{}
	retiring         sync.WaitGroup // the goroutines closing the retired bridges
	down             bool           // closeBridges has run: no table may make more
	bridgeMetrics    *bridge.Metrics
	bridgeLegMetrics *wsconn.Metrics

	clientJS http.Handler
	started  atomic.Bool // Run or Close has been called
	table    atomic.Pointer[routeTable]
	conns    *registry
	limiter  *limiter
	draining atomic.Bool

	public, secure, admin       *http.Server
	publicLn, secureLn, adminLn net.Listener
	tls                         *tlsFront // nil without a tls block
}

// New builds a server from a validated config and binds its listeners, so
// that an address in use fails here, before anything runs.
func New(cfg *config.Config, logger zerolog.Logger) (*Server, error) {
	s := &Server{
		logger:     logger,
		registry:   prometheus.NewRegistry(),
		bufferPool: wsconn.NewBufferPool(),
		conns:      newRegistry(),
		limiter:    newLimiter(),
		clientJS:   bridge.ClientJS(),
	}
	s.metrics = newMetrics(s.registry)
	s.relayMetrics = s.metrics.relayMetrics()
	s.bridgeMetrics, s.bridgeLegMetrics = s.metrics.bridgeMetrics(s.registry)
	var err error
	if s.poller, err = wsconn.NewPoller(0); err != nil {
		if !errors.Is(err, errors.ErrUnsupported) {
			return nil, fmt.Errorf("start event loops: %w", err)
		}
		s.poller = nil // WebSockets are relayed by goroutines, streams stay in their handlers
	}
	if _, err := s.swapTable(cfg); err != nil {
		_ = s.poller.Close()
		return nil, err
	}
	if err := s.listen(cfg); err != nil {
		_ = s.release()
		return nil, err
	}
	return s, nil
}

// listen binds every listener and builds its server. The public and TLS
// servers have no WriteTimeout: it would cut every WebSocket and SSE stream.
func (s *Server) listen(cfg *config.Config) error {
	var err error
	if s.publicLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	s.publicLn = newFDReserveListener(s.publicLn, []byte(answerUnavailable), s.logger)
	s.public = s.newHTTPServer(cfg, s, "http server")
	if cfg.TLS != nil {
		if s.secureLn, err = net.Listen("tcp", cfg.TLS.Listen); err != nil {
			return fmt.Errorf("listen tls %s: %w", cfg.TLS.Listen, err)
		}
		s.secureLn = newFDReserveListener(s.secureLn, nil, s.logger)
		tlsPort := s.secureLn.Addr().(*net.TCPAddr).Port
		s.tls, err = newTLSFront(cfg.TLS, s.publicLn.Addr().(*net.TCPAddr).Port, tlsPort, s.logger)
		if err != nil {
			return err
		}
		s.public.Handler = s.tls.plainHandler(s, tlsPort)
		s.secure = s.newHTTPServer(cfg, s.tls.secureHandler(s), "https server")
		s.secure.TLSConfig = s.tls.tlsConfig()
	}
	if cfg.Admin != "" {
		if s.adminLn, err = net.Listen("tcp", cfg.Admin); err != nil {
			return fmt.Errorf("listen admin %s: %w", cfg.Admin, err)
		}
		s.admin = &http.Server{Handler: s.adminHandler(), ReadHeaderTimeout: 5 * time.Second, ErrorLog: newStdLogger(s.logger, "admin server")}
	}
	return nil
}

func (s *Server) newHTTPServer(cfg *config.Config, h http.Handler, name string) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader.Std(),
		IdleTimeout:       cfg.Timeouts.HTTPIdle.Std(),
		ErrorLog:          newStdLogger(s.logger, name),
	}
}

func (s *Server) closeListeners() {
	for _, ln := range []net.Listener{s.publicLn, s.secureLn, s.adminLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if s.tls != nil {
		s.tls.stop()
	}
}

// TLSAddr is the address of the TLS listener, or nil without TLS.
func (s *Server) TLSAddr() net.Addr {
	if s.secureLn == nil {
		return nil
	}
	return s.secureLn.Addr()
}

// swapTable builds the route table of cfg and makes it current, returning
// the previous one (nil at the first call). Bridges the new table no
// longer uses are closed.
func (s *Server) swapTable(cfg *config.Config) (*routeTable, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if s.down {
		return nil, errors.New("proxy: the server has shut down")
	}
	s.nextBridges = map[string]*bridge.Bridge{}
	t, err := s.buildTable(cfg)
	if err != nil {
		for key, b := range s.nextBridges {
			if s.bridges[key] != b {
				b.Close()
			}
		}
		return nil, err
	}
	replaced := s.bridges
	s.bridges = s.nextBridges
	old := s.table.Swap(t)
	for key, b := range replaced {
		if s.bridges[key] != b {
			s.retire(b)
		}
	}
	return old, nil
}

// retire closes b, which a reload replaced, in the background. Close is
// bounded (it ends b's streams with a retry hint, each within its write
// timeout); shutdown waits for it, and aborts b at its deadline as it
// aborts the current bridges. The caller holds reloadMu.
func (s *Server) retire(b *bridge.Bridge) {
	if s.retired == nil {
		s.retired = map[*bridge.Bridge]struct{}{}
	}
	s.retired[b] = struct{}{}
	s.retiring.Go(func() {
		b.Close()
		s.reloadMu.Lock() // after closeBridges, which waits for Close itself
		delete(s.retired, b)
		s.reloadMu.Unlock()
	})
}

// closeBridges closes every bridge of the current table, and waits for
// them and for those a reload replaced that are still closing; at
// deadline, it aborts those not yet closed (Bridge.Abort), whose hijacked
// streams are then cut short.
func (s *Server) closeBridges(deadline time.Time) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	s.down = true
	bridges := slices.AppendSeq(slices.Collect(maps.Values(s.bridges)), maps.Keys(s.retired))
	var wg sync.WaitGroup
	for _, b := range bridges {
		wg.Go(b.Close) // a second Close of a retired bridge waits for the first
	}
	closed := make(chan struct{})
	go func() {
		wg.Wait()
		close(closed)
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-closed:
		return
	case <-t.C:
	}
	for _, b := range bridges {
		b.Abort()
	}
	<-closed
}

// Addr is the address the public listener is bound to.
func (s *Server) Addr() net.Addr { return s.publicLn.Addr() }

// AdminAddr is the address of the admin listener, or nil when there is none.
func (s *Server) AdminAddr() net.Addr {
	if s.adminLn == nil {
		return nil
	}
	return s.adminLn.Addr()
}

// Reload swaps in the routes, timeouts and limits of cfg, which must be
// validated, and re-reads static certificate files. Live connections keep
// the settings they started with; new ones get cfg's. Listener addresses,
// the tls block (other than the files' contents) and the server-level
// read_header and http_idle timeouts are not changed by a reload. Once
// the Server has shut down (Run has drained it, or Close released it),
// Reload returns an error.
func (s *Server) Reload(cfg *config.Config) error {
	if s.tls != nil {
		if err := s.tls.reload(); err != nil {
			return err
		}
	}
	old, err := s.swapTable(cfg)
	if err != nil {
		return err
	}
	old.transport.CloseIdleConnections()
	return nil
}

// errStarted is the error of a second Run or Close.
var errStarted = errors.New("proxy: server already run or closed")

// Close releases what New acquired for a Server that is not to be Run:
// its listeners, its SSE bridges and its event loops. Run releases them
// itself as it returns, so Close of a Server that has been Run (or a
// second Close) does nothing but return an error; to stop a running
// Server, cancel Run's context.
func (s *Server) Close() error {
	if !s.started.CompareAndSwap(false, true) {
		return errStarted
	}
	return s.release()
}

// release closes what New acquired, for a Server that has not served:
// its listeners, its bridges (no stream has started, so at once), and
// its event loops.
func (s *Server) release() error {
	s.closeListeners()
	s.closeBridges(time.Now())
	s.retiring.Wait()
	return s.poller.Close()
}

// Run serves until ctx is cancelled, then drains (see DESIGN.md, Shutdown)
// and returns when everything is closed or timeouts.shutdown has passed.
// A Server runs once: Run after Run or Close returns an error at once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errStarted
	}
	errc := make(chan error, 3)
	serve := func(srv *http.Server, ln net.Listener, name string) {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve %s %s: %w", name, ln.Addr(), err)
		}
	}
	go serve(s.public, s.publicLn, "public")
	if s.admin != nil {
		go serve(s.admin, s.adminLn, "admin")
	}
	tlsDone := make(chan struct{})
	tlsCtx, stopTLS := context.WithCancel(context.Background())
	if s.tls != nil {
		go func() {
			if err := s.secure.ServeTLS(s.secureLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve tls %s: %w", s.secureLn.Addr(), err)
			}
		}()
		go func() {
			defer close(tlsDone)
			s.tls.run(tlsCtx)
		}()
	} else {
		close(tlsDone)
	}
	s.logger.Info().Str("listen", s.publicLn.Addr().String()).Str("tls", addrString(s.TLSAddr())).
		Str("admin", addrString(s.AdminAddr())).Msg("streamgate serving")
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	s.shutdown()
	stopTLS()
	<-tlsDone
	if s.tls != nil {
		s.tls.stop()
	}
	return runErr
}

// shutdown drains: /readyz turns 503, drain_delay passes, listeners close,
// long-lived connections are ended spread over the window, and whatever is
// left when timeouts.shutdown runs out is closed by force.
func (s *Server) shutdown() {
	t := s.table.Load()
	budget := t.timeouts.Shutdown.Std()
	deadline := time.Now().Add(budget)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	s.draining.Store(true)
	s.logger.Info().Float64("budget", budget.Seconds()).Msg("draining") // seconds, as every duration in the logs
	sleepCtx(ctx, t.timeouts.DrainDelay.Std())

	servers := []*http.Server{s.public}
	if s.secure != nil {
		servers = append(servers, s.secure)
	}
	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if srv.Shutdown(ctx) != nil {
					_ = srv.Close()
				}
			}()
		}
		wg.Wait()
	}()
	// Ends are spread over half of what is left, so the closing handshakes
	// of the last ones still fit in the budget.
	window := max(time.Until(deadline)/2-time.Second, 0)
	st := s.conns.drain(ctx, window)
	// The bridges close before the Poller, which tells their hijacked
	// streams that a client left; streams still writing when the budget
	// runs out are cut short, as http.Server.Close cuts what it tracks.
	s.closeBridges(deadline)
	_ = s.poller.Close() // what the budget left open
	<-shutdownDone
	s.retiring.Wait() // the retiring goroutines, whose Close calls have returned
	if s.admin != nil {
		_ = s.admin.Close()
	}
	t.transport.CloseIdleConnections()
	s.logger.Info().Int("ws_closed", st.ended["ws"]).Int("sse_closed", st.ended["sse"]).
		Int("forced", st.forced).Msg("drained")
}

// ServeHTTP routes one request on the public listener: WebSocket upgrades
// to the WebSocket proxy, everything else to the route's HTTP proxy.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := s.table.Load()
	rt := t.match(r.URL.Path)
	clientIP := t.trusted.clientIP(r)
	release, refused := s.limiter.acquire(clientIP, t.limits.MaxConnections, t.limits.MaxConnectionsPerIP)
	if refused != "" {
		log := s.logger.With().Str("client_ip", clientIP).Str("path", r.URL.Path).Logger()
		s.reject(w, log, "limit", http.StatusServiceUnavailable, "connection limit reached", refused)
		return
	}
	if r.URL.Path == clientJSPath {
		s.clientJS.ServeHTTP(w, r)
		release()
		return
	}
	if websocket.IsWebSocketUpgrade(r) {
		// A proxied WebSocket outlives this handler (see relay), and
		// owns release from the upgrade on.
		if !s.serveWebSocket(w, r, t, rt, clientIP, release) {
			release()
		}
		return
	}
	if rt.bridge != nil && isBridgeRequest(r) {
		if !rt.origins.allow(r, t.trusted) {
			// The bridge would refuse it too; here it is logged and
			// counted as a refused WebSocket origin is.
			release()
			if r.ProtoMajor == 1 && r.ContentLength != 0 {
				w.Header().Set("Connection", "close") // its body unread: see bridge's serveSend
			}
			s.reject(w, s.requestLog("sse", rt, clientIP, r), "origin", http.StatusForbidden, "origin not allowed", r.Header.Get("Origin"))
			return
		}
		rt.bridge.Serve(w, r, release) // a stream may outlive this handler
		return
	}
	defer release()
	rt.http.ServeHTTP(w, r)
}

// clientJSPath serves the browser client that falls back from WebSocket to
// SSE by itself (DESIGN.md).
const clientJSPath = "/.streamgate/client.js"

// isBridgeRequest reports whether r is for the SSE bridge of an sse route:
// an event stream, or a back-channel POST (or its CORS preflight) naming a
// session. Everything else on the route goes to the app as plain HTTP.
func isBridgeRequest(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		for _, v := range r.Header.Values("Accept") {
			if strings.Contains(v, "text/event-stream") {
				return true
			}
		}
		return false
	case http.MethodPost, http.MethodOptions:
		return r.URL.Query().Has("sg_session")
	}
	return false
}

// requestLog is the logger for a long-lived request of kind (ws, sse) on
// route rt, naming the route, the client and the path.
func (s *Server) requestLog(kind string, rt *route, clientIP string, r *http.Request) zerolog.Logger {
	return s.logger.With().Str("kind", kind).Str("route", rt.path).Str("client_ip", clientIP).Str("path", r.URL.Path).Logger()
}

// reject refuses a request before proxying, with status, a metric and a
// log line naming why.
func (s *Server) reject(w http.ResponseWriter, log zerolog.Logger, reason string, status int, msg, detail string) {
	s.metrics.rejected.WithLabelValues(reason).Inc()
	e := log.Warn().Int("status", status)
	if detail != "" {
		e = e.Str("detail", detail)
	}
	e.Msg(msg)
	http.Error(w, msg, status)
}

// newConnID returns a short random id naming a connection in logs.
func newConnID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// stdLogWriter turns the standard library's log lines (http.Server and
// httputil errors) into zerolog warnings.
type stdLogWriter struct {
	logger    zerolog.Logger
	component string
}

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.logger.Warn().Str("component", w.component).Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newStdLogger(l zerolog.Logger, component string) *log.Logger {
	return log.New(stdLogWriter{l, component}, "", 0)
}
