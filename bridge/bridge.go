package bridge

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// Defaults for zero Options fields, as in DESIGN.md's sample config.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultRetry        = 2 * time.Second
	DefaultSessionTTL   = 60 * time.Second
	DefaultReplay       = 1000
	DefaultReplayBytes  = 4 << 20
	DefaultMaxSessions  = 10000
	DefaultWriteTimeout = 10 * time.Second
	DefaultBodyTimeout  = 10 * time.Second
)

// Options configure a Bridge: one per route with sse: true. Zero values
// mean the documented defaults.
type Options struct {
	// Route is the route's path prefix, for logs.
	Route string
	// Heartbeat is the interval of ": ping" comments on an idle stream;
	// the timer restarts after every event. Zero means 15s.
	Heartbeat time.Duration
	// Retry is the reconnection delay sent to EventSource ("retry:"). Zero
	// means 2s.
	Retry time.Duration
	// SessionTTL is how long a session's upstream stays open with no SSE
	// stream attached. Zero means 60s.
	SessionTTL time.Duration
	// Padding is the size in bytes of the comment line sent first on every
	// stream, to push the headers through buffering proxies. Zero means
	// none; otherwise at least 2 (":" and the line end).
	Padding int
	// Replay is how many events each session keeps for resume. Zero means
	// 1000.
	Replay int
	// ReplayBytes bounds the payload bytes each session keeps for resume
	// (the newest event is always kept): an upstream sending large
	// messages cannot grow a session's memory past it. Zero means 4 MiB.
	ReplayBytes int
	// MaxSessions bounds the live sessions. When they are all there, a
	// new one takes the place of the least recently used session with no
	// stream attached; when every session has a stream, the new stream
	// gets 503 (and its upstream 1013). Zero means 10000.
	MaxSessions int
	// QueueLen is how many live events a stream may be behind its session
	// for longer than WriteTimeout, or 1.5 times that at any moment,
	// before it is dropped as too slow; its client then resumes from the
	// replay log, which is why it should be well below Replay. A burst
	// that the client takes as fast as it is written does not count, nor
	// does a replay. Zero means Replay/2, at least 1.
	QueueLen int
	// WriteTimeout bounds each write (an event, or the events waiting) to
	// an SSE client. Zero means 10s.
	WriteTimeout time.Duration
	// BodyTimeout bounds how long a back-channel POST body may take to
	// arrive; a slower one is cut off with 408. Zero means 10s.
	BodyTimeout time.Duration
	// BindIP accepts back-channel POSTs only from the client IP of the
	// session's stream, and resumes only from that IP (a resume from
	// another IP gets a fresh session, as for an unknown one). Clients
	// whose address changes (mobile networks) then lose their sessions.
	BindIP bool
	// Leg configures the upstream leg: PingInterval, PongTimeout,
	// MaxMessageSize (also the POST body limit; zero means 1 MiB),
	// WriteTimeout, CloseTimeout, Metrics.UpstreamPingRTT.
	Leg wsconn.Options
	// Dialer dials the upstream; nil means wsconn.NewDialer's defaults.
	Dialer *websocket.Dialer
	// Upstream maps an incoming request to the upstream WebSocket URL and
	// the headers to send with the handshake. It gets the request without
	// the bridge's own query parameters (sg_protocols, sg_session,
	// sg_probe, lastEventId). Subprotocols are the bridge's business: the client's
	// Sec-WebSocket-Protocol header, or else its ?sg_protocols=a,b query
	// (EventSource cannot set headers). Required.
	Upstream func(r *http.Request) (url string, header http.Header)
	// CheckOrigin returns false to refuse a request's Origin with 403
	// (streams, POSTs and preflights). Nil means the same-host rule: no
	// Origin, or one whose host is the request's Host.
	CheckOrigin func(r *http.Request) bool
	// CORSOrigin returns true when the request's Origin may use the bridge
	// cross-origin: preflights are answered and responses carry CORS
	// headers. Nil means never.
	CORSOrigin func(r *http.Request) bool
	// ClientIP returns the client's address as the proxy believes it. Nil
	// means the host of RemoteAddr.
	ClientIP func(r *http.Request) string
	// Track registers a live SSE stream with the proxy's connection
	// registry: end, called at most once, ends the stream with a retry:
	// hint so EventSource reconnects; the stream calls untrack when it
	// ends. Nil means no registry.
	Track func(end func()) (untrack func())
	// Poller, if not nil, lets event streams on HTTP/1 connections
	// outlive their handlers: the stream takes the connection over from
	// net/http, writes the response itself, and the Poller tells it when
	// the client leaves. net/http's goroutine, its background reader and
	// its buffers (about 20 KiB a stream) are then gone, and an idle
	// stream holds no goroutine. Nil keeps every
	// stream in its handler, as HTTP/2 streams always are. The Poller
	// must outlive the Bridge (close it after Close): a stream whose
	// watch ended with the Poller learns that its client left only when
	// a write fails. Unless Leg.Poller is set, the Poller also reads the
	// upstream legs it can (see wsconn.Leg): a session then holds no
	// goroutine either.
	Poller *wsconn.Poller
	// Logger receives the end-of-stream lines (Info) and session ends
	// (Debug). The zero Logger logs nothing.
	Logger zerolog.Logger
	// Metrics, if not nil, receives the bridge's counts.
	Metrics *Metrics
}

// Bridge re-exposes one route's upstream WebSocket endpoint as Server-Sent
// Events plus a POST back-channel (see the package doc for the wire
// protocol). Its methods are safe for concurrent use.
type Bridge struct {
	opts      Options
	queueLen  int
	store     store
	log       zerolog.Logger // with the route, for the bridge's own lines
	endLog    zerolog.Logger // without: the end-of-stream line names it itself
	streamSeq atomic.Uint64  // numbers streams in their log lines' conn

	ctx      context.Context
	cancel   context.CancelFunc // cancels ctx, which bounds upstream dials, when Close starts
	mu       sync.Mutex         // guards closing, hijacked, and wg.Add against Close's wg.Wait
	closing  bool
	wg       sync.WaitGroup // every session (until its leg has Ended) and every stream
	closeOne sync.Once

	bufs sync.Pool // *[]byte: streams encode their events and frame their writes in these

	up, down flow // message counters: back-channel, upstream

	hijacked map[*stream]struct{} // guarded by mu: for Abort
	aborted  atomic.Bool
}

// maxPooledBuf is the largest buffer that goes back to the Bridge's pool:
// a batch of events (maxWrite) and its framing.
const maxPooledBuf = maxWrite + 1<<10

// getBuf borrows a buffer from the Bridge's pool.
func (b *Bridge) getBuf() *[]byte {
	if bp, _ := b.bufs.Get().(*[]byte); bp != nil {
		return bp
	}
	return new([]byte)
}

// putBuf gives the pool back bp, holding buf (bp's buffer, perhaps grown),
// unless buf grew past maxPooledBuf.
func (b *Bridge) putBuf(bp *[]byte, buf []byte) {
	if cap(buf) <= maxPooledBuf {
		*bp = buf[:0]
		b.bufs.Put(bp)
	}
}

// New returns a Bridge for opts, with defaults filled in.
func New(opts Options) (*Bridge, error) {
	if opts.Upstream == nil {
		return nil, errors.New("bridge: Options.Upstream is required")
	}
	if opts.Padding < 0 || opts.Replay < 0 || opts.ReplayBytes < 0 || opts.MaxSessions < 0 || opts.QueueLen < 0 || opts.SessionTTL < 0 {
		return nil, errors.New("bridge: Padding, Replay, ReplayBytes, MaxSessions, QueueLen and SessionTTL must not be negative")
	}
	setDefault(&opts.Heartbeat, DefaultHeartbeat)
	setDefault(&opts.Retry, DefaultRetry)
	setDefault(&opts.SessionTTL, DefaultSessionTTL)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.BodyTimeout, DefaultBodyTimeout)
	setDefault(&opts.Replay, DefaultReplay)
	setDefault(&opts.ReplayBytes, DefaultReplayBytes)
	setDefault(&opts.MaxSessions, DefaultMaxSessions)
	setDefault(&opts.QueueLen, max(1, opts.Replay/2))
	setDefault(&opts.Leg.MaxMessageSize, 1<<20)
	if opts.Leg.Poller == nil {
		opts.Leg.Poller = opts.Poller
	}
	if opts.Padding == 1 {
		opts.Padding = 2
	}
	if opts.Dialer == nil {
		opts.Dialer = wsconn.NewDialer(wsconn.DialOptions{})
	}
	if opts.CheckOrigin == nil {
		opts.CheckOrigin = sameHost
	}
	if opts.CORSOrigin == nil {
		opts.CORSOrigin = func(*http.Request) bool { return false }
	}
	if opts.ClientIP == nil {
		opts.ClientIP = remoteIP
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Bridge{
		opts:     opts,
		up:       opts.Metrics.flow("up"),
		down:     opts.Metrics.flow("down"),
		queueLen: opts.QueueLen,
		store:    newMemStore(opts.MaxSessions, opts.Replay, opts.ReplayBytes, opts.SessionTTL, opts.BindIP),
		hijacked: make(map[*stream]struct{}),
		log:      opts.Logger.With().Str("component", "bridge").Str("route", opts.Route).Logger(),
		endLog:   opts.Logger.With().Str("component", "bridge").Logger(),
		ctx:      ctx,
		cancel:   cancel,
	}, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// ServeHTTP serves the bridge's URL: GET with Accept: text/event-stream
// streams, POST is the back-channel, OPTIONS a CORS preflight.
func (b *Bridge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.Serve(w, r, func() {})
}

// Serve is ServeHTTP for a caller that holds something for as long as the
// request lasts, such as the proxy's connection slot: done is called once
// the response is over, which for an event stream that outlives its
// handler (see Options.Poller) is after Serve has returned.
func (b *Bridge) Serve(w http.ResponseWriter, r *http.Request, done func()) {
	switch r.Method {
	case http.MethodGet:
		if b.serveStream(w, r, done) {
			return // done is the stream's now
		}
	case http.MethodPost:
		b.serveSend(w, r)
	case http.MethodOptions:
		b.servePreflight(w, r)
	default:
		w.Header().Set("Allow", "GET, POST, OPTIONS")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
	done()
}

// Close ends every stream (with a retry: hint) and every session (the
// upstream gets 1001 "going away"), and returns once all their goroutines
// have exited: within the leg's CloseTimeout plus the WriteTimeout. Later
// requests get 503. It is idempotent.
func (b *Bridge) Close() {
	b.closeOne.Do(func() {
		b.mu.Lock()
		b.closing = true
		b.mu.Unlock()
		b.cancel()
		b.store.Close()
	})
	b.wg.Wait()
}

// enter registers a goroutine with the Bridge unless it is closing.
func (b *Bridge) enter() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closing {
		return false
	}
	b.wg.Add(1)
	return true
}

func (b *Bridge) isClosing() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closing
}

// sameHost is the default origin rule: no Origin (not a browser), or one
// whose host (and port) is the request's Host.
func sameHost(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// remoteIP is the default ClientIP: the host of RemoteAddr.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// setCORS adds the CORS response headers when the request comes from an
// origin allowed cross-origin.
func (b *Bridge) setCORS(w http.ResponseWriter, r *http.Request) bool {
	return b.setCORSHeaders(w.Header(), r)
}

// setCORSHeaders is setCORS for a response's headers h.
func (b *Bridge) setCORSHeaders(h http.Header, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || !b.opts.CORSOrigin(r) {
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Add("Vary", "Origin")
	return true
}

// servePreflight answers a CORS preflight for the stream or the
// back-channel: 403 for a refused origin, 204 with the allowed methods
// and headers for an origin allowed cross-origin, else 204 without them
// (the browser then refuses the cross-origin request itself).
func (b *Bridge) servePreflight(w http.ResponseWriter, r *http.Request) {
	if !b.opts.CheckOrigin(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if b.setCORS(w, r) {
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Content-Type, Last-Event-ID")
		h.Set("Access-Control-Max-Age", "600")
	}
	w.Header().Set("Allow", "GET, POST, OPTIONS")
	w.WriteHeader(http.StatusNoContent)
}
