package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Phases of a probe, as ProbeReport.Stage names the one that failed.
const (
	probeStageDNS       = "dns"
	probeStageConnect   = "connect"
	probeStageTLS       = "tls"
	probeStageHandshake = "handshake"
)

// probeDialer connects step by step, timing and recording each step in the
// report: DNS, then TCP to each address in turn, then TLS with the chain
// recorded and verified by hand, so that an untrusted certificate is
// described rather than only refused. It is used from one goroutine.
type probeDialer struct {
	rep      *ProbeReport
	opts     ProbeOptions
	alpn     []string
	stage    string // the phase in progress; the failed one after an error
	resolver *net.Resolver
}

func newProbeDialer(rep *ProbeReport, opts ProbeOptions) *probeDialer {
	r := opts.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return &probeDialer{rep: rep, opts: opts, alpn: []string{"http/1.1"}, resolver: r}
}

// dialTCP resolves addr's host and connects to its addresses in turn.
func (d *probeDialer) dialTCP(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	d.stage = probeStageDNS
	ips, err := d.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	d.stage = probeStageConnect
	start := time.Now()
	defer func() { d.rep.Connect = time.Since(start) }()
	var dialer net.Dialer
	var errs []error
	for _, ip := range ips {
		remote := net.JoinHostPort(ip, port)
		c, err := dialer.DialContext(ctx, "tcp", remote)
		if err == nil {
			d.rep.Remote = remote
			d.stage = probeStageHandshake
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// resolve returns the addresses of host: itself if it is an IP literal.
func (d *probeDialer) resolve(ctx context.Context, host string) ([]string, error) {
	if net.ParseIP(host) != nil {
		d.rep.Addrs = []string{host}
		return d.rep.Addrs, nil
	}
	start := time.Now()
	addrs, err := d.resolver.LookupHost(ctx, host)
	d.rep.DNS = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	d.rep.Addrs = addrs
	return addrs, nil
}

// dialTLS connects as dialTCP does, then runs the TLS handshake.
func (d *probeDialer) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	raw, err := d.dialTCP(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	d.stage = probeStageTLS
	cfg := d.tlsConfig(host)
	d.rep.TLS = &ProbeTLS{ServerName: cfg.ServerName}
	tc := tls.Client(raw, cfg)
	start := time.Now()
	err = tc.HandshakeContext(ctx)
	d.rep.TLS.Handshake = time.Since(start)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", addr, err)
	}
	d.stage = probeStageHandshake
	cs := tc.ConnectionState()
	d.rep.TLS.Version = tls.VersionName(cs.Version)
	d.rep.TLS.CipherSuite = tls.CipherSuiteName(cs.CipherSuite)
	d.rep.TLS.ALPN = cs.NegotiatedProtocol
	return tc, nil
}

// tlsConfig returns the caller's TLS config set up to record and verify the
// chain itself: crypto/tls would refuse an untrusted chain before the probe
// could describe it.
func (d *probeDialer) tlsConfig(host string) *tls.Config {
	cfg := &tls.Config{}
	if d.opts.TLSConfig != nil {
		cfg = d.opts.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	insecure := cfg.InsecureSkipVerify
	roots, name, now := cfg.RootCAs, cfg.ServerName, cfg.Time
	cfg.NextProtos = d.alpn
	cfg.InsecureSkipVerify = true // verified below, by hand
	cfg.VerifyPeerCertificate = nil
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		d.rep.TLS.Chain = probeChain(cs.PeerCertificates)
		err := verifyProbeChain(cs.PeerCertificates, roots, name, now)
		d.rep.verifyErr = err
		d.rep.TLS.Verified = err == nil
		if err != nil {
			d.rep.TLS.VerifyError = oneLine(err.Error())
			if !insecure {
				return err
			}
		}
		return nil
	}
	return cfg
}

// verifyProbeChain verifies certs (leaf first) for name as crypto/tls
// does; nil roots means the system roots.
func verifyProbeChain(certs []*x509.Certificate, roots *x509.CertPool, name string, now func() time.Time) error {
	if len(certs) == 0 {
		return errors.New("the server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	if now != nil {
		opts.CurrentTime = now()
	}
	for _, c := range certs[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := certs[0].Verify(opts)
	return err
}

// probeChain summarizes a certificate chain.
func probeChain(certs []*x509.Certificate) []ProbeCert {
	chain := make([]ProbeCert, 0, len(certs))
	for _, c := range certs {
		names := append([]string(nil), c.DNSNames...)
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
		chain = append(chain, ProbeCert{
			Subject:   c.Subject.String(),
			Issuer:    c.Issuer.String(),
			NotBefore: c.NotBefore,
			NotAfter:  c.NotAfter,
			Names:     names,
		})
	}
	return chain
}

// oneLine folds a multi-line message (errors.Join) onto one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
