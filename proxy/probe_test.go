package proxy_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/streamgate/streamgate/proxy"
)

// probeWS is a WebSocket test server on loopback: handle runs for each
// accepted connection; a nil upgrader accepts any origin and selects no
// subprotocol. tlsOn serves wss:// with httptest's self-signed certificate.
func probeWS(t *testing.T, tlsOn bool, upgrader *websocket.Upgrader, respHeader http.Header, handle func(c *websocket.Conn)) *httptest.Server {
	t.Helper()
	if upgrader == nil {
		upgrader = &websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	}
	var wg sync.WaitGroup
	done, closeAll := context.WithCancel(context.Background())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, respHeader)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer c.Close()
		stop := context.AfterFunc(done, func() { c.Close() })
		defer stop()
		handle(c)
	})
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the point of some tests
	if tlsOn {
		s.StartTLS()
	} else {
		s.Start()
	}
	t.Cleanup(func() {
		closeAll() // hijacked connections are not closed by httptest
		s.Close()
		wg.Wait()
	})
	return s
}

// echoUntilClosed echoes messages until the connection ends.
func echoUntilClosed(c *websocket.Conn) {
	for {
		mt, p, err := c.ReadMessage()
		if err != nil || c.WriteMessage(mt, p) != nil {
			return
		}
	}
}

// wsTarget is the ws:// (or wss://) URL of a test server.
func wsTarget(s *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(s.URL, "http") + path
}

// probeOK runs Probe and fails the test on an error.
func probeOK(t *testing.T, target string, opts proxy.ProbeOptions) *proxy.ProbeReport {
	t.Helper()
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Second
	}
	rep, err := proxy.Probe(t.Context(), target, opts)
	if err != nil {
		t.Fatalf("Probe(%s): %v", target, err)
	}
	return rep
}

// checkDiagnosis checks the verdict and the first finding.
func checkDiagnosis(t *testing.T, rep *proxy.ProbeReport, wantOK bool, wantID, wantText string) {
	t.Helper()
	if rep.OK != wantOK {
		t.Errorf("OK = %v, want %v; findings %+v", rep.OK, wantOK, rep.Findings)
	}
	if len(rep.Findings) == 0 {
		t.Fatalf("no findings")
	}
	f := rep.Findings[0]
	if f.ID != wantID {
		t.Errorf("first finding %q (%s), want %q; all: %+v", f.ID, f.Message, wantID, rep.Findings)
	}
	if !strings.Contains(f.Message, wantText) {
		t.Errorf("finding message %q lacks %q", f.Message, wantText)
	}
	if !wantOK && rep.Cause != f.Message {
		t.Errorf("Cause %q, want the first finding %q", rep.Cause, f.Message)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), f.Message) {
		t.Errorf("text report lacks the finding:\n%s", text.String())
	}
}

func TestProbeWebSocketHealthy(t *testing.T) {
	up := &websocket.Upgrader{Subprotocols: []string{"v2.chat"}}
	s := probeWS(t, false, up, nil, func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"hello":"probe"}`))
		_ = c.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
		_ = c.WriteControl(websocket.PingMessage, []byte("hb"), time.Now().Add(time.Second))
		echoUntilClosed(c)
	})
	ignore := goleak.IgnoreCurrent()
	rep := probeOK(t, wsTarget(s, "/ws"), proxy.ProbeOptions{Subprotocols: []string{"v1.chat", "v2.chat"}, For: 200 * time.Millisecond})
	goleak.VerifyNone(t, ignore) // the probe's timer, reader and the server's handler are all done
	checkDiagnosis(t, rep, true, "healthy", "WebSocket opened")
	if rep.Status != http.StatusSwitchingProtocols || rep.Subprotocol != "v2.chat" {
		t.Errorf("status %d subprotocol %q, want 101 v2.chat", rep.Status, rep.Subprotocol)
	}
	if m := rep.Messages; m.Count != 2 || m.Text != 1 || m.Binary != 1 || m.Bytes != 20 || m.MinSize != 3 || m.MaxSize != 17 {
		t.Errorf("messages %+v, want 1 text of 17 B and 1 binary of 3 B", m)
	}
	if p := rep.Messages.Previews; len(p) != 2 || p[0].Preview != `{"hello":"probe"}` || p[1].Preview != "010203" {
		t.Errorf("previews %+v", p)
	}
	if rep.Pings.Count != 1 {
		t.Errorf("pings %+v, want 1", rep.Pings)
	}
	if e := rep.End; e == nil || e.By != proxy.ProbeEndProbe || !e.Echoed || e.Code != websocket.CloseNormalClosure {
		t.Errorf("end %+v, want the probe's close answered with 1000", rep.End)
	}
	if rep.Remote == "" || rep.Open <= 0 || rep.TLS != nil {
		t.Errorf("remote %q open %s tls %v", rep.Remote, rep.Open, rep.TLS)
	}
}

// TestProbeWebSocketSignatures reproduces each known failure with a
// misbehaving server and checks the probe names it.
func TestProbeWebSocketSignatures(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return "ws://" + addr + "/ws"
	}
	silent := func(t *testing.T) string { // accepts TCP, never answers
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var conns []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		return "ws://" + ln.Addr().String() + "/ws"
	}
	server := func(h http.HandlerFunc) func(t *testing.T) string {
		return func(t *testing.T) string {
			s := httptest.NewServer(h)
			t.Cleanup(s.Close)
			return wsTarget(s, "/ws")
		}
	}
	ws := func(up *websocket.Upgrader, respHeader http.Header, handle func(*websocket.Conn)) func(t *testing.T) string {
		return func(t *testing.T) string { return wsTarget(probeWS(t, false, up, respHeader, handle), "/ws") }
	}
	tests := []struct {
		name   string
		target func(t *testing.T) string
		opts   proxy.ProbeOptions
		id     string
		text   string
		by     string // End.By, for connections that opened
	}{
		{"no subprotocol selected", ws(nil, nil, echoUntilClosed), proxy.ProbeOptions{Subprotocols: []string{"graphql-ws"}},
			"no-subprotocol", "client offered subprotocols (graphql-ws) but the server selected none — browsers fail this connection", proxy.ProbeEndProbe},
		{"subprotocol not offered", ws(nil, http.Header{"Sec-Websocket-Protocol": {"mqtt"}}, echoUntilClosed), proxy.ProbeOptions{},
			"wrong-subprotocol", `selected subprotocol "mqtt", which was not offered`, proxy.ProbeEndProbe},
		{"plain 200", server(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>app</html>")) }), proxy.ProbeOptions{},
			"not-upgraded", "200 instead of 101: something in the path does not pass Upgrade", ""},
		{"401", server(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "login first", http.StatusUnauthorized) }), proxy.ProbeOptions{},
			"auth", "401 on handshake", ""},
		{"403 with origin", server(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "bad origin", http.StatusForbidden) }), proxy.ProbeOptions{Origin: "https://evil.example"},
			"auth", "origin https://evil.example is allowed", ""},
		{"404", server(http.NotFound), proxy.ProbeOptions{}, "not-found", "404", ""},
		{"502 from a proxy", server(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusBadGateway) }), proxy.ProbeOptions{},
			"server-error", "502", ""},
		{"cut after silence", ws(nil, nil, func(c *websocket.Conn) {
			<-time.After(300 * time.Millisecond) // the idle timeout being reproduced
			c.UnderlyingConn().Close()
		}), proxy.ProbeOptions{For: 5 * time.Second},
			"idle-cut", "of silence with no close frame: an intermediary's idle timeout; enable pings", proxy.ProbeEndCut},
		{"cut right after a message", ws(nil, nil, func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.TextMessage, []byte("last words"))
			c.UnderlyingConn().Close()
		}), proxy.ProbeOptions{For: 5 * time.Second},
			"cut", "connection cut with no close frame", proxy.ProbeEndCut},
		{"server closes 4001", ws(nil, nil, func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
			_, _, _ = c.ReadMessage()
		}), proxy.ProbeOptions{For: 5 * time.Second},
			"server-close", `the server closed with 4001 "bye"`, proxy.ProbeEndServer},
		{"connection refused", refused, proxy.ProbeOptions{}, "refused", "connection refused by 127.0.0.1", ""},
		{"handshake timeout", silent, proxy.ProbeOptions{Timeout: 300 * time.Millisecond}, "timeout", "no handshake response", ""},
		{"dns failure", func(*testing.T) string { return "ws://probe.invalid/ws" }, proxy.ProbeOptions{Resolver: failingResolver()},
			"dns", "DNS lookup of probe.invalid failed", ""},
		{"wss to a plain port", func(t *testing.T) string {
			return strings.Replace(wsTarget(probeWS(t, false, nil, nil, echoUntilClosed), "/ws"), "ws://", "wss://", 1)
		}, proxy.ProbeOptions{}, "tls-not-tls", "this port speaks HTTP, not TLS", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep := probeOK(t, tt.target(t), tt.opts)
			checkDiagnosis(t, rep, false, tt.id, tt.text)
			switch {
			case tt.by == "" && rep.End != nil:
				t.Errorf("end %+v: the connection should not have opened", rep.End)
			case tt.by != "" && (rep.End == nil || rep.End.By != tt.by):
				t.Errorf("end %+v, want by %q", rep.End, tt.by)
			}
		})
	}
}

// failingResolver is a resolver whose DNS server cannot be reached.
func failingResolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS server in this test")
	}}
}

func TestProbeWebSocketCloseDetails(t *testing.T) {
	s := probeWS(t, false, nil, nil, func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
		_, _, _ = c.ReadMessage()
	})
	rep := probeOK(t, wsTarget(s, "/"), proxy.ProbeOptions{For: 5 * time.Second})
	if e := rep.End; e.Code != 4001 || e.Reason != "bye" || e.Echoed {
		t.Errorf("end %+v, want 4001 bye from the server", e)
	}
	if !strings.Contains(rep.Cause, "application-defined") {
		t.Errorf("cause %q does not explain a 4xxx code", rep.Cause)
	}
}

func TestProbeTLS(t *testing.T) {
	s := probeWS(t, true, nil, nil, echoUntilClosed)
	target := wsTarget(s, "/ws")
	roots := x509.NewCertPool()
	roots.AddCert(s.Certificate())

	t.Run("untrusted", func(t *testing.T) {
		rep := probeOK(t, target, proxy.ProbeOptions{})
		checkDiagnosis(t, rep, false, "tls-untrusted", "TLS untrusted: the certificate is signed by an unknown authority")
		if rep.Stage != "tls" || rep.TLS == nil || len(rep.TLS.Chain) == 0 || rep.TLS.Verified {
			t.Fatalf("stage %q tls %+v: want the chain described and not verified", rep.Stage, rep.TLS)
		}
		if c := rep.TLS.Chain[0]; !strings.Contains(c.Issuer, "Acme Co") || c.NotAfter.IsZero() {
			t.Errorf("leaf %+v: want httptest's Acme Co issuer and an expiry", c)
		}
	})
	t.Run("trusted", func(t *testing.T) {
		rep := probeOK(t, target, proxy.ProbeOptions{TLSConfig: &tls.Config{RootCAs: roots}})
		checkDiagnosis(t, rep, true, "healthy", "WebSocket opened")
		if tl := rep.TLS; tl == nil || !tl.Verified || tl.Version == "" || tl.ALPN != "http/1.1" {
			t.Errorf("tls %+v: want verified, a version and ALPN http/1.1", rep.TLS)
		}
	})
	t.Run("wrong name", func(t *testing.T) {
		rep := probeOK(t, target, proxy.ProbeOptions{TLSConfig: &tls.Config{RootCAs: roots, ServerName: "app.internal"}})
		checkDiagnosis(t, rep, false, "tls-name", "not valid for app.internal")
	})
	t.Run("insecure goes on and warns", func(t *testing.T) {
		rep := probeOK(t, target, proxy.ProbeOptions{TLSConfig: &tls.Config{InsecureSkipVerify: true}})
		checkDiagnosis(t, rep, true, "healthy", "WebSocket opened")
		if len(rep.Findings) < 2 || rep.Findings[1].ID != "tls-untrusted" || rep.Findings[1].Level != proxy.ProbeWarn {
			t.Errorf("findings %+v: want a tls-untrusted warning", rep.Findings)
		}
	})
}

func TestProbeBadInput(t *testing.T) {
	for _, tt := range []struct {
		target string
		opts   proxy.ProbeOptions
		want   string
	}{
		{"ftp://example.com/", proxy.ProbeOptions{}, "not ws, wss, http or https"},
		{"ws://example.com/", proxy.ProbeOptions{SSE: true}, "not http or https"},
		{"/just/a/path", proxy.ProbeOptions{}, "no host"},
		{"ws://u:p@example.com/", proxy.ProbeOptions{}, "user info"},
		{"ws://example.com/", proxy.ProbeOptions{Header: http.Header{"Sec-Websocket-Protocol": {"x"}}}, "use -subprotocol"},
		{"ws://example.com/", proxy.ProbeOptions{For: -time.Second}, "negative"},
	} {
		_, err := proxy.Probe(t.Context(), tt.target, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Probe(%q): %v, want an error with %q", tt.target, err, tt.want)
		}
	}
}

// TestProbeResolvesNames checks a host name is looked up and its addresses
// tried in turn (localhost may resolve to ::1 first, where nothing listens).
func TestProbeResolvesNames(t *testing.T) {
	s := probeWS(t, false, nil, nil, echoUntilClosed)
	target := strings.Replace(wsTarget(s, "/ws"), "127.0.0.1", "localhost", 1)
	rep := probeOK(t, target, proxy.ProbeOptions{})
	checkDiagnosis(t, rep, true, "healthy", "WebSocket opened")
	if rep.Host != "localhost" || !slices.Contains(rep.Addrs, "127.0.0.1") || !strings.HasPrefix(rep.Remote, "127.0.0.1:") {
		t.Errorf("host %q addrs %v remote %q: want localhost resolved and 127.0.0.1 connected", rep.Host, rep.Addrs, rep.Remote)
	}
}
