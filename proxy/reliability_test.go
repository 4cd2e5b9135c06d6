package proxy_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/streamgate/streamgate/config"
)

// Fault tests: each kills, freezes or starves one side of a proxied
// WebSocket over real loopback sockets and checks that the proxy notices
// within its keepalive window, tells the other side with the right close
// code, logs the right closed_by and disturbs nothing else. Each logs the
// figure it measured; README's Reliability table quotes them.

// Short keepalive settings for the fault tests: a dead leg is noticed
// within pingInterval + pongTimeout.
const (
	pingInterval = 200 * time.Millisecond
	pongTimeout  = 100 * time.Millisecond
	// window is how long a test waits for something due within the
	// keepalive window, with slack for a loaded machine under -race.
	window = 5 * time.Second
)

func faultConfig(upstream string) *config.Config {
	cfg := testConfig(upstream)
	cfg.WebSocket.PingInterval = config.Duration(pingInterval)
	cfg.WebSocket.PongTimeout = config.Duration(pongTimeout)
	return cfg
}

// TestUpstreamResetMidStream kills the upstream while it streams: its
// socket is closed with SO_LINGER 0, so the proxy reads a TCP RST. The
// client must get 1011 at once, and the log must blame the upstream.
func TestUpstreamResetMidStream(t *testing.T) {
	kill := make(chan struct{})
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if c.WriteMessage(websocket.TextMessage, []byte("tick")) != nil {
					return
				}
			}
		}()
		<-kill
		resetConn(c.NetConn())
		<-done
	})
	logs, logger := newLogLines(t)
	srv := startProxy(t, faultConfig(be.URL), logger)
	c := dial(t, wsURL(srv, "/"), nil)
	// The stream is flowing.
	for range 100 {
		if _, _, err := c.ReadMessage(); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	close(kill)
	ce := readClose(t, c, window)
	elapsed := time.Since(start)
	if ce.Code != websocket.CloseInternalServerErr || ce.Text != "upstream connection lost" {
		t.Errorf("client got %d %q, want 1011 \"upstream connection lost\"", ce.Code, ce.Text)
	}
	line := logs.wait(t, window, closedLine)
	if line["closed_by"] != "upstream" || line["client_code"] != 1011.0 || line["upstream_code"] != 1006.0 || line["error"] == nil {
		t.Errorf("log: %v", line)
	}
	// elapsed includes reading the messages already relayed: the close
	// frame queues behind them.
	t.Logf("upstream reset mid-stream: client got 1011 %s after the RST (%v msgs down); error %q", elapsed, line["msgs_down"], line["error"])
}

// TestUpstreamBlackholed freezes the path to the upstream at the TCP level:
// a relay between proxy and upstream stops forwarding both ways and closes
// nothing, as a dead NAT or a partition does. Only pings can tell; the
// client must get 1011 within ping_interval + pong_timeout. (An upstream
// process that stops reading with its socket alive is
// TestKeepaliveDetectsFrozenUpstream.)
func TestUpstreamBlackholed(t *testing.T) {
	be := wsBackend(t, nil, echo)
	relay := newTCPRelay(t, strings.TrimPrefix(be.URL, "http://"))
	logs, logger := newLogLines(t)
	srv := startProxy(t, faultConfig("http://"+relay.Addr()), logger)
	c := dial(t, wsURL(srv, "/"), nil)
	mustEcho(t, c, "before")

	start := time.Now()
	relay.blackhole()
	ce := readClose(t, c, window) // reading answers the proxy's pings
	elapsed := time.Since(start)
	if ce.Code != websocket.CloseInternalServerErr {
		t.Errorf("client got %d %q, want 1011", ce.Code, ce.Text)
	}
	line := logs.wait(t, window, closedLine)
	if line["closed_by"] != "ping_timeout" || line["upstream_code"] != 1006.0 || line["client_code"] != 1011.0 {
		t.Errorf("log: %v", line)
	}
	t.Logf("black-holed upstream: client got 1011 %s after the path froze (ping_interval+pong_timeout = %s)", elapsed, pingInterval+pongTimeout)
}

// TestClientVanishesHalfOpen black-holes the path to the client: the
// connection is half-open, the proxy's writes still succeed, and nothing
// but pings can tell. The upstream must get 1001 within the keepalive
// window, and everything the connection held must be given back: its
// goroutines, its file descriptors and its limiter slot.
func TestClientVanishesHalfOpen(t *testing.T) {
	// Warm up the network poller, whose descriptors live as long as the
	// process, before counting.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	ignore := goleak.IgnoreCurrent()
	fdsBefore := openFDs(t)
	t.Run("blackhole", func(t *testing.T) {
		upstreamGot := make(chan int, 2)
		be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
			echo(c, r)
			code := 0
			if _, _, err := c.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
			}
			upstreamGot <- code
		})
		logs, logger := newLogLines(t)
		cfg := faultConfig(be.URL)
		cfg.Limits.MaxConnectionsPerIP = 1
		srv := startProxy(t, cfg, logger)
		relay := newTCPRelay(t, srv.Addr().String())
		c := dial(t, "ws://"+relay.Addr()+"/", nil)
		mustEcho(t, c, "before")

		start := time.Now()
		relay.blackhole()
		var code int
		select {
		case code = <-upstreamGot:
		case <-time.After(window):
			t.Fatalf("upstream not told within %s", window)
		}
		elapsed := time.Since(start)
		if code != websocket.CloseGoingAway {
			t.Errorf("upstream got %d, want 1001", code)
		}
		line := logs.wait(t, window, closedLine)
		if line["closed_by"] != "ping_timeout" || line["client_code"] != 1006.0 || line["upstream_code"] != 1001.0 {
			t.Errorf("log: %v", line)
		}
		// The slot of the vanished client is free again: with
		// max_connections_per_ip 1, a new connection from the same IP
		// gets in.
		next := dial(t, wsURL(srv, "/"), nil)
		mustEcho(t, next, "after")
		_ = next.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		readClose(t, next, window)
		t.Logf("vanished client: upstream got 1001 %s after the path froze (ping_interval+pong_timeout = %s)", elapsed, pingInterval+pongTimeout)
	})
	goleak.VerifyNone(t, ignore)
	var fdsAfter int
	if !eventually(window, func() bool { fdsAfter = openFDs(t); return fdsAfter <= fdsBefore }) {
		t.Errorf("file descriptors: %d before, %d after: leaked", fdsBefore, fdsAfter)
	}
	t.Logf("file descriptors: %d before, %d after", fdsBefore, fdsAfter)
}

// TestSlowReaderCutOff floods a client that stopped reading (but still
// writes, so its liveness deadline keeps moving). The proxy must not
// buffer for it: a write that cannot complete within the write timeout
// (ping_interval + pong_timeout) cuts it off with an error in the log,
// while 100 other clients on the same proxy keep echoing. The heap growth
// of the process (proxy, upstream and clients) is reported and bounded.
func TestSlowReaderCutOff(t *testing.T) {
	const others = 100
	const chunk = 64 << 10
	var flooded atomic.Int64
	told := make(chan time.Time, 1) // when the upstream heard of the cut
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/flood/") {
			echo(c, r)
			return
		}
		go func() { // discard what the client sends, answer its close
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) && ce.Code == websocket.CloseGoingAway {
						told <- time.Now()
					}
					c.Close()
					return
				}
			}
		}()
		msg := make([]byte, chunk)
		for c.WriteMessage(websocket.BinaryMessage, msg) == nil {
			flooded.Add(chunk)
		}
	})
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	// A wider window than the other fault tests: 100 clients echo
	// concurrently under -race on a small machine, and must not trip it.
	cfg.WebSocket.PingInterval = config.Duration(time.Second)
	cfg.WebSocket.PongTimeout = config.Duration(500 * time.Millisecond)
	cfg.Routes = []config.Route{{Path: "/flood/"}}
	srv := startProxy(t, cfg, logger)

	conns := make([]*websocket.Conn, others)
	for i := range conns {
		conns[i] = dial(t, wsURL(srv, "/echo"), nil)
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	// The echo clients run round trips for as long as the flood lasts.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var roundTrips atomic.Int64
	errs := make(chan error, others)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				_ = c.SetReadDeadline(time.Now().Add(window))
				if err := c.WriteMessage(websocket.TextMessage, []byte("hello")); err != nil {
					errs <- err
					return
				}
				if _, p, err := c.ReadMessage(); err != nil || string(p) != "hello" {
					errs <- err
					return
				}
				roundTrips.Add(1)
			}
		}()
	}
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() { // sample the heap while the flood is on
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapAlloc > peak.Load() {
					peak.Store(ms.HeapAlloc)
				}
			}
		}
	}()

	slow := dial(t, wsURL(srv, "/flood/x"), nil)
	start := time.Now()
	writerDone := make(chan struct{})
	go func() { // writes, never reads
		defer close(writerDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			_ = slow.SetWriteDeadline(time.Now().Add(time.Second))
			if slow.WriteMessage(websocket.TextMessage, []byte("still here")) != nil {
				return
			}
		}
	}()
	var cutAfter time.Duration
	select {
	case at := <-told:
		cutAfter = at.Sub(start)
	case <-time.After(30 * time.Second):
		t.Fatal("the slow reader was not cut off")
	}
	line := logs.wait(t, window, func(m map[string]any) bool {
		return closedLine(m) && m["route"] == "/flood/"
	})
	loggedAfter := time.Since(start)
	stop()
	wg.Wait()
	<-sampled
	slow.Close()
	<-writerDone

	close(errs)
	for err := range errs {
		t.Errorf("an echo client was disturbed: %v", err)
	}
	if line["closed_by"] != "error" || !strings.Contains(line["error"].(string), "write client") ||
		!strings.Contains(line["error"].(string), "timeout") || line["upstream_code"] != 1001.0 {
		t.Errorf("slow reader's log line: %v", line)
	}
	for _, c := range conns {
		mustEcho(t, c, "after")
	}
	for _, m := range logs.matching(closedLine) {
		if m["route"] != "/flood/" {
			t.Errorf("an echo connection was closed: %v", m)
		}
	}

	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	runtime.GC()
	var afterGC runtime.MemStats
	runtime.ReadMemStats(&afterGC)
	growth := int64(peak.Load()) - int64(before.HeapAlloc)
	const bound = 32 << 20
	if growth > bound {
		t.Errorf("heap grew by %d MiB while flooding a slow reader, want under %d MiB", growth>>20, bound>>20)
	}
	t.Logf("slow reader cut off %s after it stopped reading (write timeout %s; upstream told 1001 then, connection logged at %s) with %q",
		cutAfter.Round(time.Millisecond), cfg.WebSocket.PingInterval.Std()+cfg.WebSocket.PongTimeout.Std(),
		loggedAfter.Round(time.Millisecond), line["error"])
	t.Logf("the upstream wrote %d MiB before it blocked; %d MiB went into the slow client's socket buffers",
		flooded.Load()>>20, int64(line["bytes_down"].(float64))>>20)
	t.Logf("%d echo clients made %d round trips meanwhile, none disturbed", others, roundTrips.Load())
	t.Logf("heap (whole test process): %.1f MiB before, peak %.1f MiB during the flood (+%.1f MiB), %.1f MiB after GC",
		mib(before.HeapAlloc), mib(peak.Load()), float64(growth)/(1<<20), mib(afterGC.HeapAlloc))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// TestConnectStormMaxConnections fires 200 WebSocket handshakes at once at
// a proxy allowing 50 connections: exactly 50 get in and the other 150 get
// 503 with a log line naming the limit; when the 50 leave, a new one gets
// in.
func TestConnectStormMaxConnections(t *testing.T) {
	const limit, storm = 50, 200
	be := wsBackend(t, nil, echo)
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.Limits.MaxConnections = limit
	srv := startProxy(t, cfg, logger)

	var (
		mu       sync.Mutex
		open     []*websocket.Conn
		statuses = map[int]int{}
		wg       sync.WaitGroup
	)
	begin := make(chan struct{})
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for range storm {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			c, resp, err := d.Dial(wsURL(srv, "/"), nil)
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			mu.Lock()
			defer mu.Unlock()
			statuses[status]++
			if err == nil {
				open = append(open, c) // held until every dial is done
			}
		}()
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	elapsed := time.Since(start)
	if statuses[http.StatusSwitchingProtocols] != limit || statuses[http.StatusServiceUnavailable] != storm-limit {
		t.Errorf("statuses %v, want %d×101 and %d×503", statuses, limit, storm-limit)
	}
	for _, c := range open {
		mustEcho(t, c, "in")
	}
	refused := func(m map[string]any) bool { return m["message"] == "connection limit reached" }
	refusals := logs.waitCount(t, window, storm-limit, refused)
	for _, m := range logs.matching(refused) {
		if m["detail"] != "max_connections" || m["status"] != 503.0 {
			t.Errorf("refusal log line: %v", m)
		}
	}
	for _, c := range open {
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		readClose(t, c, window)
		c.Close()
	}
	logs.waitCount(t, window, len(open), closedLine)
	mustEcho(t, dial(t, wsURL(srv, "/"), nil), "after")
	t.Logf("connect storm: %d handshakes in %s, %v (101: admitted, 503: refused, logged %d× max_connections)", storm, elapsed, statuses, refusals)
}
