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
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

// staticTLSProxy runs a proxy with a static certificate for acmeDomain
// from a test CA, and returns it, the CA and the certificate paths.
func staticTLSProxy(t *testing.T, upstream string, edit func(*config.Config)) (*proxy.Server, *testCA, map[string]string, *logLines) {
	t.Helper()
	ca := newTestCA(t)
	c, k := ca.issue(t, 100, acmeDomain)
	files := writeFiles(t, t.TempDir(), map[string][]byte{"cert.pem": c, "key.pem": k})
	cfg := testConfig(upstream)
	cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", CertFile: files["cert.pem"], KeyFile: files["key.pem"],
		RedirectHTTP: true, HSTS: "max-age=31536000", Storage: t.TempDir()}
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	logs, logger := newLogLines(t)
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetCertReloadInterval(20 * time.Millisecond)
	runServer(t, srv)
	return srv, ca, files, logs
}

// httpsClient talks to the proxy's TLS listener as acmeDomain.
func httpsClient(srv *proxy.Server, tc *tls.Config) *http.Client {
	addr := srv.TLSAddr().String()
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   tc.Clone(), // the Transport adds h2 to NextProtos
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
}

func TestStaticTLS(t *testing.T) {
	be := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
			if err == nil {
				echo(c, r)
				c.Close()
			}
			return
		}
		fmt.Fprint(w, "hello over ", r.Header.Get("X-Forwarded-Proto"))
	}))
	srv, ca, _, _ := staticTLSProxy(t, be.URL, nil)
	tc := &tls.Config{RootCAs: ca.pool(), ServerName: acmeDomain}

	t.Run("HTTP/2 and HSTS", func(t *testing.T) {
		resp, err := httpsClient(srv, tc).Get("https://" + acmeDomain + "/x")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2", resp.Proto)
		}
		if string(body) != "hello over https" {
			t.Errorf("body %q", body)
		}
		if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
			t.Errorf("HSTS %q", got)
		}
	})
	t.Run("wss", func(t *testing.T) { wssEcho(t, srv.TLSAddr().String(), tc) })
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		old := tc.Clone()
		old.MaxVersion = tls.VersionTLS11
		if c, err := tls.Dial("tcp", srv.TLSAddr().String(), old); err == nil {
			c.Close()
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})
	t.Run("plain listener redirects", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+srv.Addr().String()+"/a?b=c", nil)
		req.Host = acmeDomain
		resp, err := (&http.Transport{}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := fmt.Sprintf("https://%s:%d/a?b=c", acmeDomain, portOf(srv.TLSAddr()))
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("got %d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		if code := wsStatus(t, "ws://"+srv.Addr().String()+"/ws"); code != http.StatusUpgradeRequired {
			t.Errorf("WebSocket on plain HTTP: %d, want 426", code)
		}
	})
}

func TestStaticCertificateRotationKeepsConnections(t *testing.T) {
	be := wsBackend(t, nil, echo)
	srv, ca, files, logs := staticTLSProxy(t, be.URL, nil)
	tc := &tls.Config{RootCAs: ca.pool(), ServerName: acmeDomain}
	addr := srv.TLSAddr().String()
	d := websocket.Dialer{TLSClientConfig: tc, NetDial: func(network, _ string) (net.Conn, error) { return net.Dial(network, addr) }}
	live, _, err := d.Dial("wss://"+acmeDomain+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()

	c, k := ca.issue(t, 200, acmeDomain)
	// Write the key first and the certificate last; the watcher loads
	// whatever pair is complete.
	os.WriteFile(files["key.pem"], k, 0o600)
	os.WriteFile(files["cert.pem"], c, 0o600)
	logs.wait(t, 10*time.Second, msgContains("certificate reloaded"))
	conn, err := tls.Dial("tcp", addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	serial := conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	conn.Close()
	if serial != 200 {
		t.Errorf("new handshake got serial %d, want 200", serial)
	}
	if err := live.WriteMessage(websocket.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, p, err := live.ReadMessage(); err != nil || string(p) != "still here" {
		t.Fatalf("open WebSocket dropped by rotation: %q %v", p, err)
	}
}

func TestHTTP2ManySSEStreamsOneConnection(t *testing.T) {
	// An app that already speaks SSE: ten streams through one TLS
	// connection must all flow (HTTP/1.1 browsers stall at six).
	be := newHTTPBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: %s\n\n", r.URL.Path)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	srv, ca, _, _ := staticTLSProxy(t, be.URL, nil)
	var dials int
	var mu sync.Mutex
	addr := srv.TLSAddr().String()
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: ca.pool(), ServerName: acmeDomain},
		ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	// Open one stream first so that the others share its connection.
	first, err := client.Get("https://" + acmeDomain + "/s0")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Body.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 1; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("https://%s/s%d", acmeDomain, i))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			if resp.ProtoMajor != 2 {
				errs <- fmt.Errorf("stream %d over %s", i, resp.Proto)
				return
			}
			line, err := bufio.NewReader(resp.Body).ReadString('\n')
			if want := fmt.Sprintf("data: /s%d\n", i); err != nil || line != want {
				errs <- fmt.Errorf("stream %d: got %q %v", i, line, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if dials != 1 {
		t.Errorf("%d TLS connections for 10 streams, want 1", dials)
	}
}

func TestUpstreamMutualTLS(t *testing.T) {
	ca := newTestCA(t)
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if websocket.IsWebSocketUpgrade(r) {
			c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
			if err == nil {
				echo(c, r)
				c.Close()
			}
			return
		}
		fmt.Fprint(w, "client ", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	be.TLS = &tls.Config{Certificates: []tls.Certificate{ca.tlsCert(t, "127.0.0.1")}, ClientCAs: ca.pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	be.StartTLS()
	t.Cleanup(be.Close)
	clientCert, clientKey := ca.issue(t, 3, "streamgate-client")
	files := writeFiles(t, t.TempDir(), map[string][]byte{"ca.pem": ca.pem, "c.pem": clientCert, "k.pem": clientKey})

	t.Run("trusted", func(t *testing.T) {
		cfg := testConfig(be.URL)
		cfg.UpstreamTLS = config.UpstreamTLS{CAFile: files["ca.pem"], CertFile: files["c.pem"], KeyFile: files["k.pem"]}
		_, logger := newLogLines(t)
		srv := startProxy(t, cfg, logger)
		code, body := get(t, httpURL(srv, "/"))
		if code != http.StatusOK || body != "client streamgate-client" {
			t.Errorf("got %d %q", code, body)
		}
		c := dial(t, wsURL(srv, "/"), nil)
		_ = c.WriteMessage(websocket.TextMessage, []byte("m"))
		if _, p, err := c.ReadMessage(); err != nil || string(p) != "m" {
			t.Errorf("wss upstream echo: %q %v", p, err)
		}
	})
	t.Run("untrusted upstream", func(t *testing.T) {
		cfg := testConfig(be.URL)
		cfg.UpstreamTLS = config.UpstreamTLS{CertFile: files["c.pem"], KeyFile: files["k.pem"]}
		logs, logger := newLogLines(t)
		srv := startProxy(t, cfg, logger)
		if code, _ := get(t, httpURL(srv, "/")); code != http.StatusBadGateway {
			t.Errorf("got %d, want 502", code)
		}
		line := logs.wait(t, 5*time.Second, msgContains("upstream unreachable"))
		if e, _ := line["error"].(string); !strings.Contains(e, "certificate") {
			t.Errorf("log does not name the certificate problem: %v", line)
		}
	})
}

func TestTLSErrorsNameTheCause(t *testing.T) {
	t.Run("key does not match certificate", func(t *testing.T) {
		ca := newTestCA(t)
		c, _ := ca.issue(t, 1, acmeDomain)
		_, otherKey := ca.issue(t, 2, acmeDomain)
		files := writeFiles(t, t.TempDir(), map[string][]byte{"c.pem": c, "k.pem": otherKey})
		cfg := testConfig("http://127.0.0.1:1")
		cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", CertFile: files["c.pem"], KeyFile: files["k.pem"], Storage: t.TempDir()}
		_, logger := newLogLines(t)
		_, err := proxy.New(cfg, logger)
		if err == nil || !strings.Contains(err.Error(), "private key does not match public key") || !strings.Contains(err.Error(), files["c.pem"]) {
			t.Errorf("got %v, want a mismatch error naming the file", err)
		}
	})
	t.Run("ACME server unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := "https://" + ln.Addr().String() + "/dir"
		ln.Close()
		cfg := testConfig("http://127.0.0.1:1")
		cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", Domains: []string{acmeDomain}, CA: dead, Storage: t.TempDir()}
		logs := &logLines{}
		_, logger := newLogLinesInto(t, logs)
		srv, err := proxy.New(cfg, logger)
		if err != nil {
			t.Fatal(err)
		}
		runServer(t, srv)
		line := logs.wait(t, 30*time.Second, msgContains("certificate not obtained"))
		if msg := line["message"].(string); !strings.Contains(msg, "ACME server is unreachable") {
			t.Errorf("hint: %q", msg)
		}
	})
}
