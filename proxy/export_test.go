package proxy

import "time"

// SetCertReloadInterval makes static certificate files be checked for
// changes every d instead of every few seconds. Call it before Run.
func (s *Server) SetCertReloadInterval(d time.Duration) { s.tls.reloadEvery = d }

// DisableHTTP01 leaves TLS-ALPN-01 as the only ACME challenge. Call it
// before Run.
func (s *Server) DisableHTTP01() { s.tls.issuer.DisableHTTPChallenge = true }

// DisableTLSALPN01 leaves HTTP-01 as the only ACME challenge. Call it
// before Run.
func (s *Server) DisableTLSALPN01() { s.tls.issuer.DisableTLSALPNChallenge = true }
