package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
)

// staticReloadInterval is how often static certificate files are checked
// for changes; SIGHUP reloads them at once.
const staticReloadInterval = 5 * time.Second

// tlsFront is the TLS side of the server: where certificates come from
// (ACME through certmagic, or static files), and what the plain listener
// does when TLS is on (answer HTTP-01 challenges, redirect to https).
type tlsFront struct {
	logger   zerolog.Logger
	domains  []string
	redirect bool
	hsts     string
	// reloadEvery is how often static files are checked for changes.
	reloadEvery time.Duration

	// ACME, when domains are managed.
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer

	// Static certificate files otherwise.
	static *staticCert
}

// newTLSFront builds the TLS side from a validated tls block. plainPort and
// tlsPort are the ports the listeners are bound to: certmagic is told them
// so that it answers challenges through our listeners instead of binding
// ports 80 and 443 itself.
func newTLSFront(c *config.TLS, plainPort, tlsPort int, logger zerolog.Logger) (*tlsFront, error) {
	f := &tlsFront{
		logger:      logger.With().Str("component", "tls").Logger(),
		domains:     c.Domains,
		redirect:    c.RedirectHTTP,
		hsts:        c.HSTS,
		reloadEvery: staticReloadInterval,
	}
	if c.CertFile != "" {
		f.static = &staticCert{certFile: c.CertFile, keyFile: c.KeyFile}
		if err := f.static.load(); err != nil {
			return nil, err
		}
		return f, nil
	}
	var roots *x509.CertPool
	if c.CARoot != "" {
		pem, err := os.ReadFile(c.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_root %s: no PEM certificate found", c.CARoot)
		}
	}
	zl := newZapLogger(logger)
	f.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return f.magic, nil },
		Logger:           zl,
	})
	f.magic = certmagic.New(f.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: c.Storage},
		Logger:  zl,
		OnEvent: f.onEvent,
	})
	ca := c.CA
	if ca == "" {
		ca = certmagic.LetsEncryptProductionCA
	}
	f.issuer = certmagic.NewACMEIssuer(f.magic, certmagic.ACMEIssuer{
		CA:             ca,
		Email:          c.Email,
		Agreed:         true,
		TrustedRoots:   roots,
		AltHTTPPort:    plainPort,
		AltTLSALPNPort: tlsPort,
		Logger:         zl,
	})
	f.magic.Issuers = []certmagic.Issuer{f.issuer}
	return f, nil
}

// tlsConfig is the TLS listener's configuration: TLS 1.2 at least, Go's
// modern cipher defaults, and ALPN for h2 and http/1.1 ahead of the ACME
// TLS-ALPN-01 protocol, which must stay for that challenge to work.
func (f *tlsFront) tlsConfig() *tls.Config {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
	if f.static != nil {
		tc.GetCertificate = f.static.getCertificate
		return tc
	}
	tc.GetCertificate = f.magic.GetCertificate
	tc.NextProtos = append(tc.NextProtos, acmez.ACMETLS1Protocol)
	return tc
}

// run obtains or watches certificates until ctx ends. ACME work starts
// without blocking the listeners: until a certificate is there, TLS
// handshakes for the domain fail and the log says why.
func (f *tlsFront) run(ctx context.Context) {
	if f.static != nil {
		f.static.watch(ctx, f.reloadEvery, f.logger)
		return
	}
	if err := f.magic.ManageAsync(ctx, f.domains); err != nil {
		f.logger.Error().Err(err).Strs("domains", f.domains).Msg("certificate management did not start")
	}
	<-ctx.Done()
}

// stop releases certmagic's cache goroutines; call it after run returned.
func (f *tlsFront) stop() {
	if f.cache != nil {
		f.cache.Stop()
	}
}

// reload re-reads static certificate files (SIGHUP). ACME certificates
// are renewed by certmagic and need nothing.
func (f *tlsFront) reload() error {
	if f.static == nil {
		return nil
	}
	return f.static.load()
}

// plainHandler is the handler of the plain listener when TLS is on: ACME
// HTTP-01 challenges are answered first; then, with redirect_http, every
// request is sent to https (WebSocket upgrades get a clear 426 instead, as
// WebSocket clients do not follow redirects).
func (f *tlsFront) plainHandler(app http.Handler, tlsPort int) http.Handler {
	next := app
	if f.redirect {
		next = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			target := "https://" + hostWithPort(r.Host, tlsPort) + r.URL.RequestURI()
			if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
				f.logger.Warn().Str("path", r.URL.Path).Str("client_ip", remoteAddr(r).String()).
					Msg("WebSocket over plain HTTP refused: TLS is on; use wss://")
				w.Header().Set("Upgrade", "TLS/1.2, HTTP/1.1")
				http.Error(w, "WebSocket over plain HTTP is not served here; connect to wss://"+hostWithPort(r.Host, tlsPort)+r.URL.RequestURI(), http.StatusUpgradeRequired)
				return
			}
			http.Redirect(w, r, target, http.StatusPermanentRedirect)
		})
	}
	if f.issuer != nil {
		return f.issuer.HTTPChallengeHandler(next)
	}
	return next
}

// secureHandler adds the HSTS header, when configured, to responses on
// the TLS listener.
func (f *tlsFront) secureHandler(app http.Handler) http.Handler {
	if f.hsts == "" {
		return app
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", f.hsts)
		app.ServeHTTP(w, r)
	})
}

// hostWithPort replaces the port of host with port, leaving it out when
// it is 443.
func hostWithPort(host string, port int) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port == 443 {
		return host
	}
	return fmt.Sprintf("%s:%d", host, port)
}

// onEvent turns certmagic's failures into a log line with what to check.
func (f *tlsFront) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		f.logger.Info().Interface("identifier", data["identifier"]).Msg("certificate obtained")
	case "cert_failed":
		err, _ := data["error"].(error)
		f.logger.Error().Err(err).Interface("identifier", data["identifier"]).
			Msg("certificate not obtained: " + acmeHint(err))
	}
	return nil
}

// acmeHint names what to check for a failed certificate order.
func acmeHint(err error) string {
	if err == nil {
		return "unknown cause"
	}
	msg := strings.ToLower(err.Error())
	var dnsErr *net.DNSError
	switch {
	case strings.Contains(msg, "ratelimited") || strings.Contains(msg, "rate limit"):
		return "the ACME server's rate limit was hit; wait, or use its staging CA (tls.ca) while testing"
	case strings.Contains(msg, "invalidcontact") || strings.Contains(msg, "contact"):
		return "the ACME server rejected tls.email; use a real, deliverable address"
	case strings.Contains(msg, "unauthorized") || strings.Contains(msg, "connection refused") && strings.Contains(msg, "challenge"):
		return "the CA could not reach this proxy for the challenge: the domain must resolve here and ports 80/443 (listen, tls.listen) must be reachable from the internet"
	case errors.As(err, &dnsErr) || strings.Contains(msg, "nxdomain") || strings.Contains(msg, "no such host"):
		return "a name does not resolve: check the domain's DNS, and tls.ca's host"
	case strings.Contains(msg, "x509") || strings.Contains(msg, "certificate signed by unknown authority"):
		return "the ACME server's certificate is not trusted: set tls.ca_root for a private CA"
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "timeout") || strings.Contains(msg, "no route"):
		return "the ACME server is unreachable: check tls.ca and outbound network access"
	}
	return "see the error"
}

// staticCert serves a certificate from files, reloaded when they change.
type staticCert struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
	stamp             atomic.Value // string: both files' size and mtime
}

// load reads and checks the pair, and swaps it in. Live connections keep
// the certificate they were made with.
func (s *staticCert) load() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("tls.cert_file %s / tls.key_file %s: %w", s.certFile, s.keyFile, err)
	}
	if cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter) {
		return fmt.Errorf("tls.cert_file %s: certificate expired on %s", s.certFile, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	s.cert.Store(&cert)
	s.stamp.Store(s.fileStamp())
	return nil
}

func (s *staticCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cert.Load(), nil
}

// fileStamp summarises both files so that a change to either is noticed.
func (s *staticCert) fileStamp() string {
	var b strings.Builder
	for _, name := range []string{s.certFile, s.keyFile} {
		if fi, err := os.Stat(name); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return b.String()
}

// watch reloads the pair whenever the files change, until ctx ends. A
// half-written or mismatched pair is logged and the old one kept; the
// next change is tried again.
func (s *staticCert) watch(ctx context.Context, every time.Duration, logger zerolog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stamp := s.fileStamp()
		if prev, _ := s.stamp.Load().(string); stamp == prev {
			continue
		}
		if err := s.load(); err != nil {
			s.stamp.Store(stamp)
			logger.Error().Err(err).Msg("certificate files changed but cannot be used; keeping the previous certificate")
			continue
		}
		logger.Info().Str("cert_file", s.certFile).Msg("certificate reloaded")
	}
}
