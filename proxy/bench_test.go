package proxy_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
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

// BenchmarkTLSHandshake opens a new TLS connection per request (ECDSA
// P-256 certificate, TLS 1.3) and fetches a small response, through
// streamgate's TLS listener and, in the same run, from a bare Go TLS server
// with the same certificate; x-bare is streamgate's rate over the bare one.
func BenchmarkTLSHandshake(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	be := httptest.NewServer(ok)
	b.Cleanup(be.Close)
	ca := newTestCA(b)
	c, k := ca.issue(b, 100, acmeDomain)
	files := writeFiles(b, b.TempDir(), map[string][]byte{"cert.pem": c, "key.pem": k})
	cfg := testConfig(be.URL)
	cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", CertFile: files["cert.pem"], KeyFile: files["key.pem"], Storage: b.TempDir()}
	srv := startProxy(b, cfg, zerolog.Nop())

	bare := httptest.NewUnstartedServer(ok)
	cert, _ := tls.X509KeyPair(c, k)
	bare.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	bare.StartTLS()
	b.Cleanup(bare.Close)

	fetch := func(addr string, n int) time.Duration {
		tr := &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: ca.pool(), ServerName: acmeDomain},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		defer tr.CloseIdleConnections()
		start := time.Now()
		for range n {
			resp, err := tr.RoundTrip(httptest.NewRequest(http.MethodGet, "https://"+acmeDomain+"/", nil).WithContext(context.Background()))
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return time.Since(start)
	}
	b.ReportAllocs()
	b.ResetTimer()
	via := fetch(srv.TLSAddr().String(), b.N)
	b.StopTimer()
	direct := fetch(bare.Listener.Addr().String(), b.N)
	b.ReportMetric(float64(b.N)/via.Seconds(), "conns/s")
	b.ReportMetric(float64(b.N)/direct.Seconds(), "bare-conns/s")
	b.ReportMetric(direct.Seconds()/via.Seconds(), "x-bare")
}

// BenchmarkFirstSSEEvent opens a bridged SSE stream on a new connection
// and waits for its first event (the session event, sent once the
// upstream WebSocket is dialled), over plain HTTP and over TLS in the same
// run; added-ms is what TLS adds to the time to the first event.
func BenchmarkFirstSSEEvent(b *testing.B) {
	be := wsBackend(b, nil, echo)
	ca := newTestCA(b)
	c, k := ca.issue(b, 100, acmeDomain)
	files := writeFiles(b, b.TempDir(), map[string][]byte{"cert.pem": c, "key.pem": k})
	cfg := testConfig(be.URL)
	cfg.Routes = []config.Route{{Path: "/live/", SSE: true}}
	cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", CertFile: files["cert.pem"], KeyFile: files["key.pem"], Storage: b.TempDir()}
	srv := startProxy(b, cfg, zerolog.Nop())

	first := func(scheme, addr string, n int) time.Duration {
		tr := &http.Transport{DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: ca.pool(), ServerName: acmeDomain},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			}}
		defer tr.CloseIdleConnections()
		var total time.Duration
		for range n {
			req, _ := http.NewRequest(http.MethodGet, scheme+"://"+acmeDomain+"/live/feed", nil)
			req.Header.Set("Accept", "text/event-stream")
			start := time.Now()
			resp, err := tr.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			rd := bufio.NewReader(resp.Body)
			for {
				line, err := rd.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(line, "data: ") {
					break
				}
			}
			total += time.Since(start)
			resp.Body.Close()
		}
		return total / time.Duration(n)
	}
	b.ResetTimer()
	viaTLS := first("https", srv.TLSAddr().String(), b.N)
	b.StopTimer()
	plain := first("http", srv.Addr().String(), b.N)
	b.ReportMetric(float64(plain.Microseconds())/1e3, "plain-ms")
	b.ReportMetric(float64(viaTLS.Microseconds())/1e3, "tls-ms")
	b.ReportMetric(float64((viaTLS-plain).Microseconds())/1e3, "added-ms")
}

// BenchmarkWebSocketConnect measures a proxied WebSocket's whole life per
// op: accept, upstream dial, both handshakes, one echoed message and the
// closing handshake; in the same run the same against the upstream
// directly. x-direct is the proxied rate over the direct one.
func BenchmarkWebSocketConnect(b *testing.B) {
	be := wsBackend(b, nil, echo)
	srv := startProxy(b, testConfig(be.URL), zerolog.Nop())
	msg := []byte("hello")
	connect := func(url string, n int) time.Duration {
		start := time.Now()
		for range n {
			c, _, err := websocket.DefaultDialer.Dial(url, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				b.Fatal(err)
			}
			if _, _, err := c.ReadMessage(); err != nil {
				b.Fatal(err)
			}
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for { // until the close echo, or the deadline
				if _, _, err := c.ReadMessage(); err != nil {
					break
				}
			}
			c.Close()
		}
		return time.Since(start)
	}
	b.ReportAllocs()
	b.ResetTimer()
	via := connect(wsURL(srv, "/"), b.N)
	b.StopTimer()
	direct := connect("ws"+be.URL[len("http"):], b.N)
	b.ReportMetric(float64(b.N)/via.Seconds(), "conns/s")
	b.ReportMetric(float64(b.N)/direct.Seconds(), "direct-conns/s")
	b.ReportMetric(direct.Seconds()/via.Seconds(), "x-direct")
}
