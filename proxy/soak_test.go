package proxy_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
	"go.uber.org/goleak"
)

// TestChurnSoak opens, uses and ends WebSockets through one proxy many
// times over: 20,000 cycles (100,000 with STREAMGATE_SOAK=1, 2,000 with
// -short), each a
// connect, one echoed message and an end that is in turn a clean close
// (1000), a TCP close without a close frame, or a TCP reset. Every end
// must be logged exactly once, with closed_by client, nothing may be left
// open for the drain, and no goroutine may outlive the server.
func TestChurnSoak(t *testing.T) {
	cycles := 20000
	switch {
	case os.Getenv("STREAMGATE_SOAK") == "1":
		cycles = 100000
	case testing.Short():
		cycles = 2000
	}
	const workers = 16
	ignore := goleak.IgnoreCurrent()
	counter := newCloseCounter()
	var (
		start, end int
		ms         runtime.MemStats
		heapStart  uint64
		heapEnd    uint64
		elapsed    time.Duration
		drained    = make(chan string, 1)
	)
	t.Run("cycles", func(t *testing.T) {
		be := churnBackend(t)
		logger := zerolog.New(zerolog.MultiLevelWriter(counter, drainWatch{drained})).Level(zerolog.InfoLevel)
		cfg := testConfig(be.URL)
		cfg.Admin = ""
		srv := launchProxy(t, cfg, logger) // stopped (and drained) when the subtest ends

		start = rssKiB()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heapStart = ms.HeapAlloc
		began := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < cycles; i += workers {
					if err := churnOnce(wsURL(srv, "/"), i%3); err != nil {
						t.Errorf("cycle %d: %v", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if got := counter.waitTotal(cycles, 30*time.Second); got != cycles {
			t.Fatalf("%d connections logged as closed, want %d", got, cycles)
		}
		elapsed = time.Since(began)
		end = rssKiB()
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heapEnd = ms.HeapAlloc
	})
	// Every connection had been logged before the drain: it may still
	// find the last few, between their log line and their unregistering,
	// but must force none.
	select {
	case line := <-drained:
		if !strings.Contains(line, `"forced":0`) {
			t.Errorf("drain: %s", line)
		}
	default:
		if !t.Failed() {
			t.Error("no drain summary logged")
		}
	}
	goleak.VerifyNone(t, ignore)

	counter.mu.Lock()
	defer counter.mu.Unlock()
	if counter.total != cycles {
		t.Errorf("%d close lines, want exactly %d", counter.total, cycles)
	}
	if len(counter.byConn) != cycles {
		t.Errorf("%d distinct connection ids logged, want %d", len(counter.byConn), cycles)
	}
	for id, n := range counter.byConn {
		if n != 1 {
			t.Errorf("connection %s logged %d times", id, n)
		}
	}
	if counter.byCause["client"] != cycles {
		t.Errorf("closed_by counts %v, want client for all %d", counter.byCause, cycles)
	}
	clean := (cycles + 2) / 3
	if counter.byCode[websocket.CloseNormalClosure] != clean || counter.byCode[websocket.CloseAbnormalClosure] != cycles-clean {
		t.Errorf("client codes %v, want %d×1000 and %d×1006", counter.byCode, clean, cycles-clean)
	}
	for _, w := range counter.warnings {
		t.Errorf("unexpected warning: %s", w)
	}
	t.Logf("churn: %d cycles (1/3 clean close, 1/3 FIN without close frame, 1/3 RST) in %s, %.0f/s; every close logged once; no goroutine left",
		cycles, elapsed.Round(time.Millisecond), float64(cycles)/elapsed.Seconds())
	t.Logf("memory (whole test process): RSS %d MiB at start, %d MiB at end; heap after GC %.1f MiB at start, %.1f MiB at end",
		start>>10, end>>10, mib(heapStart), mib(heapEnd))
}

// churnOnce runs one cycle: connect, echo one message, then end the way
// kind says: 0 a clean close handshake, 1 a TCP close without a close
// frame, 2 a TCP reset.
func churnOnce(url string, kind int) error {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		return err
	}
	if _, _, err := c.ReadMessage(); err != nil {
		return err
	}
	switch kind {
	case 0:
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		for { // until the proxy's echo of the close
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
	case 2:
		resetConn(c.NetConn())
	}
	return nil
}

// drainWatch keeps the drain summary line, which says how many
// connections the drain found still open.
type drainWatch struct{ drained chan string }

func (d drainWatch) Write(p []byte) (int, error) {
	if strings.Contains(string(p), `"message":"drained"`) {
		select {
		case d.drained <- strings.TrimSpace(string(p)):
		default:
		}
	}
	return len(p), nil
}

// churnBackend is an echo upstream for the soak. Unlike wsBackend it
// forgets each connection when it ends, so that the heap measured at the
// end is the proxy's, not a list of 20,000 finished test connections.
func churnBackend(t *testing.T) *httptest.Server {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[*websocket.Conn]bool{}
	)
	up := websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		echo(c, r)
		mu.Lock()
		delete(conns, c)
		mu.Unlock()
		c.Close()
	}))
	t.Cleanup(func() {
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		s.Close()
		wg.Wait()
	})
	return s
}
