package proxy_test

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

const acmeDomain = "app.streamgate.test"

// startDNS serves A 127.0.0.1 for every name, over TCP on loopback, as the
// resolver Pebble's validation authority uses.
func startDNS(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{Listener: ln, Net: "tcp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		r := new(dns.Msg)
		r.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				rr, _ := dns.NewRR(question.Name + " 60 IN A 127.0.0.1")
				r.Answer = append(r.Answer, rr)
			}
		}
		_ = w.WriteMsg(r)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String()
}

// pebble is an in-process Pebble ACME server. Its listener is bound before
// the proxy exists (the proxy's config needs its URL) and it starts serving
// once the proxy's ports, which its validation authority must dial, are
// known.
type pebble struct {
	ln        net.Listener
	dirURL    string
	tlsCAFile string // trusts Pebble's own HTTPS listener: tls.ca_root
	roots     *ca.CAImpl
	orders    atomic.Int64 // new-order requests seen
	logs      io.Writer
}

func newPebble(t *testing.T) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	wfeCA := newTestCA(t)
	files := writeFiles(t, t.TempDir(), map[string][]byte{"pebble-ca.pem": wfeCA.pem})
	cert := wfeCA.tlsCert(t, "127.0.0.1")
	p := &pebble{ln: tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}}),
		dirURL: "https://" + ln.Addr().String() + "/dir", tlsCAFile: files["pebble-ca.pem"], logs: io.Discard}
	return p
}

// serve starts Pebble validating HTTP-01 on httpPort and TLS-ALPN-01 on
// tlsPort through resolver.
func (p *pebble) serve(t *testing.T, httpPort, tlsPort int, resolver string) {
	t.Helper()
	logger := log.New(p.logs, "pebble ", 0)
	store := db.NewMemoryStore()
	p.roots = ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	v := va.New(logger, httpPort, tlsPort, false, resolver, store)
	front := wfe.New(logger, store, v, p.roots, []string{"pebble.letsencrypt.org"}, false, false, 3, 5)
	h := front.Handler()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, ErrorLog: logger, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "order-plz") {
			p.orders.Add(1)
		}
		h.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(p.ln) }()
	t.Cleanup(func() { srv.Close() })
}

// issuedRoots trusts certificates Pebble issued.
func (p *pebble) issuedRoots(t *testing.T) *tls.Config {
	pool := newTestCA(t).pool() // an unrelated CA, so only Pebble's root matters
	if !pool.AppendCertsFromPEM(p.roots.GetRootCert(0).PEM()) {
		t.Fatal("pebble root not PEM")
	}
	return &tls.Config{RootCAs: pool, ServerName: acmeDomain}
}

// acmeProxy builds (without running) a proxy managing acmeDomain through p.
func acmeProxy(t *testing.T, p *pebble, upstream, storage string, logs *logLines) (*proxy.Server, *config.Config) {
	t.Helper()
	cfg := testConfig(upstream)
	cfg.TLS = &config.TLS{Listen: "127.0.0.1:0", Domains: []string{acmeDomain}, Email: "ops@streamgate.test",
		CA: p.dirURL, CARoot: p.tlsCAFile, Storage: storage, RedirectHTTP: true}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	_, logger := newLogLinesInto(t, logs)
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cfg
}

func portOf(a net.Addr) int { return a.(*net.TCPAddr).Port }

func TestACMEHTTP01ThenReuseOnRestart(t *testing.T) {
	resolver := startDNS(t)
	p := newPebble(t)
	be := wsBackend(t, nil, echo)
	storage := t.TempDir()
	logs := &logLines{}
	srv, _ := acmeProxy(t, p, be.URL, storage, logs)
	srv.DisableTLSALPN01() // Pebble must fetch the token from the plain listener
	p.serve(t, portOf(srv.Addr()), portOf(srv.TLSAddr()), resolver)
	stop := runServer(t, srv).Stop

	logs.wait(t, 60*time.Second, msgContains("certificate obtained"))
	tc := p.issuedRoots(t)
	waitHandshake(t, srv.TLSAddr().String(), tc) // certmagic caches it just after the event
	wssEcho(t, srv.TLSAddr().String(), tc)
	if n := p.orders.Load(); n != 1 {
		t.Errorf("%d orders placed, want 1", n)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A restart with the same storage serves the stored certificate
	// without a new order.
	srv2, _ := acmeProxy(t, p, be.URL, storage, &logLines{})
	runServer(t, srv2)
	waitHandshake(t, srv2.TLSAddr().String(), tc)
	wssEcho(t, srv2.TLSAddr().String(), tc)
	if n := p.orders.Load(); n != 1 {
		t.Errorf("restart placed a new order: %d orders", n)
	}
}

func TestACMETLSALPN01(t *testing.T) {
	resolver := startDNS(t)
	p := newPebble(t)
	be := wsBackend(t, nil, echo)
	logs := &logLines{}
	srv, _ := acmeProxy(t, p, be.URL, t.TempDir(), logs)
	srv.DisableHTTP01()
	p.serve(t, portOf(srv.Addr()), portOf(srv.TLSAddr()), resolver)
	runServer(t, srv)
	logs.wait(t, 60*time.Second, msgContains("certificate obtained"))
	waitHandshake(t, srv.TLSAddr().String(), p.issuedRoots(t))
	wssEcho(t, srv.TLSAddr().String(), p.issuedRoots(t))
}

// waitHandshake retries a TLS handshake until the proxy serves a
// certificate tc trusts (it loads stored ones asynchronously at start).
func waitHandshake(t *testing.T, addr string, tc *tls.Config) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var c *tls.Conn
		if c, err = tls.Dial("tcp", addr, tc); err == nil {
			c.Close()
			return
		}
	}
	t.Fatalf("no trusted certificate served: %v", err)
}

// wssEcho opens a wss:// WebSocket to addr verified by tc and checks an echo.
func wssEcho(t *testing.T, addr string, tc *tls.Config) {
	t.Helper()
	d := websocket.Dialer{TLSClientConfig: tc, NetDial: func(network, _ string) (net.Conn, error) {
		return net.Dial(network, addr)
	}}
	c, _, err := d.Dial("wss://"+acmeDomain+"/ws", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer c.Close()
	if err := c.WriteMessage(websocket.TextMessage, []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.ReadMessage(); err != nil || string(msg) != "over tls" {
		t.Fatalf("wss echo: %q %v", msg, err)
	}
}
