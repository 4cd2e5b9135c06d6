package bridge

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// BenchmarkSSEFanOut measures the bridge under many quiet sessions: N SSE
// clients, each bridged to its own upstream WebSocket that sends one
// ~100-byte message per second (at a random phase), over loopback. It
// reports, for the measuring window (STREAMGATE_FANOUT_SECONDS, 10 by
// default), the p50 and p99 delivery latency (upstream write to SSE client
// read), the process's resident and Go memory per session, and the
// process's CPU time per 100k events. The same-run baseline DirectWS has
// the same clients read the upstream WebSockets directly, without the
// bridge: the difference is the bridge's cost. Everything (upstream,
// bridge, clients) runs in this one process.
//
// Sizes: STREAMGATE_FANOUT_SESSIONS, a comma-separated list (default
// "1000,4000"; each session holds four sockets, mind ulimit -n).
//
//	go test ./bridge -run '^$' -bench SSEFanOut -benchtime 1x
func BenchmarkSSEFanOut(b *testing.B) {
	sizes := []int{1000, 4000}
	if v := os.Getenv("STREAMGATE_FANOUT_SESSIONS"); v != "" {
		sizes = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatal(err)
			}
			sizes = append(sizes, n)
		}
	}
	window := 10 * time.Second
	if v := os.Getenv("STREAMGATE_FANOUT_SECONDS"); v != "" {
		s, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		window = time.Duration(s) * time.Second
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("DirectWS_%d", n), func(b *testing.B) { fanOut(b, n, window, false) })
		b.Run(fmt.Sprintf("Sessions_%d", n), func(b *testing.B) { fanOut(b, n, window, true) })
	}
}

// fanOutStats collects the clients' latencies.
type fanOutStats struct {
	measuring atomic.Bool
	events    atomic.Int64
	mu        sync.Mutex
	lat       []time.Duration
}

func (s *fanOutStats) record(sent int64) {
	if !s.measuring.Load() {
		return
	}
	d := time.Duration(time.Now().UnixNano() - sent)
	s.events.Add(1)
	s.mu.Lock()
	s.lat = append(s.lat, d)
	s.mu.Unlock()
}

func fanOut(b *testing.B, n int, window time.Duration, bridged bool) {
	up := newTickUpstream(b)
	stats := &fanOutStats{}
	mem0, rss0 := memNow()

	var clients sync.WaitGroup
	var conns []net.Conn
	var br *Bridge
	var srv *httptest.Server
	if bridged {
		var err error
		br, err = New(Options{
			MaxSessions: n,
			Upstream: func(r *http.Request) (string, http.Header) {
				return "ws" + strings.TrimPrefix(up.srv.URL, "http") + r.URL.Path, nil
			},
		})
		if err != nil {
			b.Fatal(err)
		}
		srv = httptest.NewServer(br)
	}
	for i := range n {
		var c net.Conn
		var read func()
		if bridged {
			rs := openRaw(b, srv.Listener.Addr().String(), fmt.Sprintf("/t/%d", i))
			_ = rs.c.SetDeadline(time.Time{})
			c, read = rs.c, func() { readSSE(rs.sr, stats) }
		} else {
			ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(up.srv.URL, "http")+fmt.Sprintf("/t/%d", i), nil)
			if err != nil {
				b.Fatal(err)
			}
			c, read = ws.UnderlyingConn(), func() { readWS(ws, stats) }
		}
		conns = append(conns, c)
		clients.Go(read)
	}
	time.Sleep(1500 * time.Millisecond) // every upstream has sent its first message
	mem1, rss1 := memNow()

	var ru0, ru1 syscall.Rusage
	for b.Loop() {
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
		stats.measuring.Store(true)
		time.Sleep(window)
		stats.measuring.Store(false)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	}

	cpu := time.Duration(ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	events := stats.events.Load()
	slices.Sort(stats.lat)
	q := func(p float64) float64 {
		if len(stats.lat) == 0 {
			return 0
		}
		return float64(stats.lat[int(p*float64(len(stats.lat)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(rss1-rss0)/float64(n)/1024, "rss_KiB/session")
	b.ReportMetric(float64(mem1-mem0)/float64(n)/1024, "go_KiB/session")
	if events > 0 {
		b.ReportMetric(cpu.Seconds()*100000/float64(events), "cpu_s/100k_events")
	}
	b.ReportMetric(float64(events)/window.Seconds(), "events/s")

	if bridged {
		srv.CloseClientConnections()
		br.Close()
		srv.Close()
	}
	for _, c := range conns {
		c.Close()
	}
	clients.Wait()
	up.close()
}

func readSSE(r *bufio.Reader, stats *fanOutStats) {
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if p, ok := bytes.CutPrefix(line, []byte("data: ")); ok {
			recordPayload(p, stats)
		}
	}
}

func readWS(c *websocket.Conn, stats *fanOutStats) {
	for {
		_, p, err := c.ReadMessage()
		if err != nil {
			return
		}
		recordPayload(p, stats)
	}
}

// recordPayload reads the send time at the start of a tick message.
func recordPayload(p []byte, stats *fanOutStats) {
	ts, _, _ := bytes.Cut(p, []byte(" "))
	if sent, err := strconv.ParseInt(string(ts), 10, 64); err == nil {
		stats.record(sent)
	}
}

// memNow returns the Go runtime's memory in use (heap and stacks, after a
// GC) and the process's resident set size.
func memNow() (goMem, rss int64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	goMem = int64(ms.HeapInuse + ms.StackInuse)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return goMem, rss
}

// tickUpstream sends each WebSocket "<unix nanoseconds> <padding>" once
// a second, starting at a random phase.
type tickUpstream struct {
	srv  *httptest.Server
	done chan struct{}
	wg   sync.WaitGroup
}

func newTickUpstream(b *testing.B) *tickUpstream {
	u := &tickUpstream{done: make(chan struct{})}
	pad := strings.Repeat("x", 80)
	upgrader := websocket.Upgrader{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.wg.Add(1) // before close's Wait: the server is up until then
		defer u.wg.Done()
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		read := make(chan struct{})
		defer func() { c.Close(); <-read }()
		go func() { // the reader: pongs, close
			defer close(read)
			for {
				if _, _, err := c.NextReader(); err != nil {
					c.Close()
					return
				}
			}
		}()
		t := time.NewTimer(rand.N(time.Second))
		defer t.Stop()
		for {
			select {
			case <-u.done:
				return
			case <-t.C:
			}
			t.Reset(time.Second)
			msg := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
			msg = append(append(msg, ' '), pad...)
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				return
			}
		}
	}))
	return u
}

func (u *tickUpstream) close() {
	close(u.done)
	u.srv.CloseClientConnections()
	u.srv.Close()
	u.wg.Wait()
}
