package wsconn

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// legPeer starts a WebSocket server that runs serve on each connection
// and returns a Leg dialled to it.
func legPeer(t *testing.T, opts Options, serve func(*websocket.Conn)) *Leg {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1) // the one connection
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}))
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := NewLeg(c, opts)
	t.Cleanup(func() {
		l.Stop()
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return l
}

// readAll reads l until it fails and returns the error.
func readAll(l *Leg) error {
	for {
		if _, _, err := l.ReadMessage(); err != nil {
			return err
		}
	}
}

func TestLegPingTimeout(t *testing.T) {
	release := make(chan struct{})
	l := legPeer(t, Options{PingInterval: 20 * time.Millisecond, PongTimeout: 20 * time.Millisecond}, func(c *websocket.Conn) {
		<-release // never reads, so never answers a ping
	})
	defer close(release)
	end := l.End(readAll(l), ClosedByUpstream)
	if end.ClosedBy != ClosedByPingTimeout || end.Code != websocket.CloseAbnormalClosure || end.Err == nil {
		t.Errorf("got %+v, want ping_timeout, 1006 and an error", end)
	}
}

type rttCounter struct{ n atomic.Int64 }

func (r *rttCounter) Observe(float64) { r.n.Add(1) }

func TestLegKeepalive(t *testing.T) {
	rtt := &rttCounter{}
	// The liveness window is 250ms; the peer stays silent for ten pings,
	// 500ms, answering pings only.
	opts := Options{PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond,
		Metrics: &Metrics{UpstreamPingRTT: prometheus.Observer(rtt)}}
	l := legPeer(t, opts, func(c *websocket.Conn) {
		pings := 0
		reply := c.PingHandler()
		done := make(chan struct{})
		c.SetPingHandler(func(data string) error {
			if pings++; pings == 10 {
				close(done)
			}
			return reply(data)
		})
		go func() {
			<-done
			_ = c.WriteMessage(websocket.TextMessage, []byte("still alive"))
		}()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	mt, p, err := l.ReadMessage()
	if err != nil || mt != websocket.TextMessage || string(p) != "still alive" {
		t.Fatalf("got %d %q %v, want the message after 10 pings", mt, p, err)
	}
	if rtt.n.Load() == 0 {
		t.Error("no ping RTT observed")
	}
}

func TestLegClose(t *testing.T) {
	got := make(chan string, 1)
	l := legPeer(t, Options{}, func(c *websocket.Conn) {
		c.SetCloseHandler(func(code int, text string) error {
			got <- text
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
		})
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	l.Close(websocket.CloseGoingAway, "bye")
	l.Close(websocket.CloseNormalClosure, "again") // only the first counts
	if err := l.WriteMessage(websocket.TextMessage, []byte("late")); !errors.Is(err, ErrLegClosing) {
		t.Errorf("write after Close: %v, want ErrLegClosing", err)
	}
	end := l.End(readAll(l), ClosedByUpstream)
	if end.Code != websocket.CloseGoingAway || end.Reason != "bye" || end.Err != nil {
		t.Errorf("got %+v, want the echo of 1001 bye", end)
	}
	if text := <-got; text != "bye" {
		t.Errorf("peer got reason %q", text)
	}
}

func TestLegReadLimit(t *testing.T) {
	l := legPeer(t, Options{MaxMessageSize: 8}, func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.BinaryMessage, []byte("123456789"))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	end := l.End(readAll(l), ClosedByUpstream)
	if end.ClosedBy != ClosedByError || end.Code != websocket.CloseMessageTooBig {
		t.Errorf("got %+v, want error, 1009", end)
	}
}

func TestLegConcurrentWrites(t *testing.T) {
	const writers, each = 8, 50
	got := make(chan int, 1)
	l := legPeer(t, Options{WriteTimeout: time.Second}, func(c *websocket.Conn) {
		n := 0
		for n < writers*each {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
			n++
		}
		got <- n
	})
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				if err := l.WriteMessage(websocket.TextMessage, []byte("m")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := <-got; n != writers*each {
		t.Errorf("peer got %d messages, want %d", n, writers*each)
	}
}

// TestLegReadMessageSizedToMessage checks that a message read from a leg
// holds little more memory than its own bytes, whatever gorilla's read
// buffer grew to: the bridge keeps every message for replay.
func TestLegReadMessageSizedToMessage(t *testing.T) {
	sizes := []int{0, 1, 64, 256, 300, 511, 512, 513, 5000, 70000}
	l := legPeer(t, Options{}, func(c *websocket.Conn) {
		for _, n := range sizes {
			if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, n)); err != nil {
				return
			}
		}
		_, _, _ = c.ReadMessage() // until the test ends
	})
	for _, n := range sizes {
		_, p, err := l.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		if len(p) != n {
			t.Fatalf("read %d bytes, want %d", len(p), n)
		}
		if limit := n + max(maxSpare, n/8); cap(p) > limit {
			t.Errorf("a %d-byte message holds %d bytes, want at most %d", n, cap(p), limit)
		}
	}
}
