package app

import (
	"embed"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// DefaultInterval is the counter period used when Options.Interval is zero.
const DefaultInterval = time.Second

//go:embed index.html
var static embed.FS

// Options configures an [App]. The zero value is ready to use.
type Options struct {
	// Interval is the period of the /ws/counter ticks.
	// Zero or negative means DefaultInterval (1s).
	Interval time.Duration

	// Subprotocols lists the WebSocket subprotocols the app supports. When a
	// client offers subprotocols, the first one it offers that is in this
	// list is selected (the client's order is its preference, RFC 6455
	// §4.1). Nil, the default, never selects any: the "legacy" behaviour of
	// an app that ignores Sec-WebSocket-Protocol.
	Subprotocols []string

	// Logger receives one debug line per closed WebSocket. The zero value
	// logs nothing.
	Logger zerolog.Logger
}

// App is the legacy demo backend. It implements http.Handler. All its
// methods are safe for concurrent use.
type App struct {
	interval     time.Duration
	subprotocols []string
	log          zerolog.Logger
	upgrader     websocket.Upgrader
	mux          *http.ServeMux
	counter      *hub
	chat         *hub

	done      chan struct{} // closed by Close: stop the ticker, close every WebSocket with 1001
	mu        sync.Mutex    // guards closed and wg.Add against Close's wg.Wait
	closed    bool
	wg        sync.WaitGroup // the ticker and every WebSocket handler
	closeOnce sync.Once
}

// New returns a running App: its counter ticker starts at once and runs
// until [App.Close].
func New(opts Options) *App {
	a := &App{
		interval:     opts.Interval,
		subprotocols: slices.Clone(opts.Subprotocols),
		log:          opts.Logger,
		mux:          http.NewServeMux(),
		counter:      newHub(),
		chat:         newHub(),
		done:         make(chan struct{}),
	}
	if a.interval <= 0 {
		a.interval = DefaultInterval
	}
	a.upgrader = websocket.Upgrader{
		// streamgate checks origins in front of the app.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	a.mux.Handle("GET /{$}", http.FileServerFS(static))
	a.mux.HandleFunc("GET /healthz", serveHealthz)
	a.mux.HandleFunc("/ws/counter", a.serveCounter)
	a.mux.HandleFunc("/ws/chat", a.serveChat)
	a.mux.HandleFunc("/ws/echo", a.serveEcho)

	a.wg.Add(1)
	go a.runCounter()
	return a
}

// ServeHTTP routes r to the page, the health check or a WebSocket endpoint.
func (a *App) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mux.ServeHTTP(w, r)
}

// Close stops the counter, sends a 1001 (going away) close frame to every
// connected WebSocket client and waits until every goroutine of the app has
// exited. A client that does not answer the close frame is disconnected
// after one second. Later WebSocket requests get 503. Close is idempotent.
func (a *App) Close() {
	a.closeOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		close(a.done)
		a.mu.Unlock()
	})
	a.wg.Wait()
}

// enter registers one WebSocket handler with a.wg, unless the app is
// closed. The caller must call a.wg.Done when it returns true.
func (a *App) enter() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return false
	}
	a.wg.Add(1)
	return true
}

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

// runCounter owns the shared ticker: each tick is one counter message
// broadcast to every /ws/counter client. It exits on Close.
func (a *App) runCounter() {
	defer a.wg.Done()
	ticker := time.NewTicker(a.interval)
	defer ticker.Stop()
	var n uint64
	for {
		select {
		case <-a.done:
			return
		case t := <-ticker.C:
			n++
			a.counter.broadcast(counterMessage(n, t))
		}
	}
}

func (a *App) serveCounter(w http.ResponseWriter, r *http.Request) {
	a.serveWebSocket(w, r, a.counter, nil) // incoming messages are ignored
}

func (a *App) serveChat(w http.ResponseWriter, r *http.Request) {
	a.serveWebSocket(w, r, a.chat, func(_ *client, m message) {
		a.chat.broadcast(m)
	})
}

func (a *App) serveEcho(w http.ResponseWriter, r *http.Request) {
	a.serveWebSocket(w, r, nil, func(c *client, m message) {
		c.queue(m, a.done)
	})
}

// serveWebSocket upgrades r and runs the connection until it ends: it joins
// h (if not nil), starts the writer and runs the reader, passing each
// message to onMessage (if not nil). It returns once both pumps are done.
func (a *App) serveWebSocket(w http.ResponseWriter, r *http.Request, h *hub, onMessage func(*client, message)) {
	if !websocket.IsWebSocketUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "this endpoint speaks WebSocket only", http.StatusUpgradeRequired)
		return
	}
	if !a.enter() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	defer a.wg.Done()

	conn, err := a.upgrader.Upgrade(w, r, a.subprotocolHeader(r))
	if err != nil {
		return // Upgrade has replied with an HTTP error.
	}
	start := time.Now()
	c := newClient(conn)
	if h != nil {
		h.add(c)
		defer h.remove(c)
	}
	readerDone := make(chan struct{})
	go c.writePump(a.done, readerDone)
	err = c.readPump(onMessage)
	close(readerDone)
	<-c.writerDone

	a.logEnd(r, c, start, err)
}

// subprotocolHeader returns the response header that selects the first
// subprotocol offered in r that the app supports, or nil if there is none.
func (a *App) subprotocolHeader(r *http.Request) http.Header {
	for _, p := range websocket.Subprotocols(r) {
		if slices.Contains(a.subprotocols, p) {
			return http.Header{"Sec-Websocket-Protocol": {p}}
		}
	}
	return nil
}

// logEnd writes the one line about a closed connection; readErr is what
// ended its reader.
func (a *App) logEnd(r *http.Request, c *client, start time.Time, readErr error) {
	e := a.log.Debug()
	if !e.Enabled() {
		return
	}
	e = e.Str("path", r.URL.Path).
		Str("client_ip", r.RemoteAddr).
		Dur("duration", time.Since(start))
	if code, reason, ok := c.sentClose(); ok {
		e = e.Int("server_code", code).Str("server_reason", reason)
	}
	var ce *websocket.CloseError
	switch {
	case errors.As(readErr, &ce):
		e = e.Int("client_code", ce.Code)
	case readErr != nil:
		e = e.Err(readErr)
	}
	e.Msg("websocket closed")
}
