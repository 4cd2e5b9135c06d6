package proxy_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"
)

// BenchmarkRelay measures closed-loop echo round trips through the proxy
// and, in the same run, directly against the same upstream, reporting
// round trips per second through the proxy and the proxy/direct ratio
// (x-direct, 1.0 = free). Client, proxy and upstream share this process
// and its cores, so allocs/op counts all three.
func BenchmarkRelay(b *testing.B) {
	for _, bc := range []struct{ conns, size int }{{1, 64}, {64, 1024}} {
		b.Run(fmt.Sprintf("%dx%dB", bc.conns, bc.size), func(b *testing.B) {
			benchRelay(b, bc.conns, bc.size)
		})
	}
}

func benchRelay(b *testing.B, conns, size int) {
	be := wsBackend(b, nil, echo)
	srv := startProxy(b, testConfig(be.URL), zerolog.Nop())
	proxied := dialMany(b, wsURL(srv, "/"), conns)
	direct := dialMany(b, "ws"+be.URL[len("http"):], conns)
	msg := make([]byte, size)

	b.ReportAllocs()
	b.SetBytes(int64(2 * size))
	b.ResetTimer()
	start := time.Now()
	roundTrips(b, proxied, b.N, msg)
	viaProxy := time.Since(start)
	b.StopTimer()
	start = time.Now()
	roundTrips(b, direct, b.N, msg)
	straight := time.Since(start)

	b.ReportMetric(float64(b.N)/viaProxy.Seconds(), "rt/s")
	b.ReportMetric(float64(b.N)/straight.Seconds(), "direct-rt/s")
	b.ReportMetric(straight.Seconds()/viaProxy.Seconds(), "x-direct")
}

func dialMany(b *testing.B, url string, n int) []*websocket.Conn {
	b.Helper()
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
	}
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// roundTrips sends total messages spread over conns, each connection
// waiting for its echo before sending the next.
func roundTrips(b *testing.B, conns []*websocket.Conn, total int, msg []byte) {
	var wg sync.WaitGroup
	for i, c := range conns {
		n := total / len(conns)
		if i < total%len(conns) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n {
				if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
					b.Error(err)
					return
				}
				if _, _, err := c.ReadMessage(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
