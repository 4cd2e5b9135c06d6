package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// trustedProxies is the parsed trusted_proxies list.
type trustedProxies []netip.Prefix

// parseTrusted parses CIDRs and single addresses; config has validated them.
func parseTrusted(list []string) trustedProxies {
	var t trustedProxies
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			t = append(t, p.Masked())
		} else if a, err := netip.ParseAddr(s); err == nil {
			t = append(t, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return t
}

func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// remoteAddr is the address of the TCP peer of r.
func remoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		a, _ := netip.ParseAddr(host)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// fromTrusted reports whether r came from a trusted proxy, whose
// X-Forwarded-* headers are believed.
func (t trustedProxies) fromTrusted(r *http.Request) bool {
	return len(t) > 0 && t.contains(remoteAddr(r))
}

// clientIP is the client's address: the TCP peer, or, when the peer is a
// trusted proxy, the right-most address of X-Forwarded-For that is not
// itself a trusted proxy.
func (t trustedProxies) clientIP(r *http.Request) string {
	peer := remoteAddr(r)
	if !t.contains(peer) {
		return peer.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		if !t.contains(a) {
			return a.Unmap().String()
		}
	}
	return peer.String()
}

// scheme is the scheme the client used: https over TLS, or whatever a
// trusted proxy says in X-Forwarded-Proto.
func (t trustedProxies) scheme(r *http.Request) string {
	if t.fromTrusted(r) {
		if p := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); p == "http" || p == "https" {
			return p
		}
	}
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// host is the host the client asked for: Host, or a trusted proxy's
// X-Forwarded-Host.
func (t trustedProxies) host(r *http.Request) string {
	if t.fromTrusted(r) {
		if h := r.Header.Get("X-Forwarded-Host"); h != "" {
			return h
		}
	}
	return r.Host
}

// setForwarded writes X-Forwarded-For, -Host and -Proto for the upstream
// into h: a trusted proxy's chain is extended, anyone else's is replaced.
func (t trustedProxies) setForwarded(h http.Header, r *http.Request) {
	xff := remoteAddr(r).String()
	if prior := r.Header.Values("X-Forwarded-For"); len(prior) > 0 && t.fromTrusted(r) {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	h.Set("X-Forwarded-For", xff)
	h.Set("X-Forwarded-Host", t.host(r))
	h.Set("X-Forwarded-Proto", t.scheme(r))
}

// originPolicy decides which Origin headers are allowed: an empty list
// means the request's own host only, "*" means any.
type originPolicy struct {
	any     bool
	allowed map[string]bool // normalised origins
}

func newOriginPolicy(list []string) originPolicy {
	p := originPolicy{allowed: make(map[string]bool)}
	for _, o := range list {
		if o == "*" {
			p.any = true
			continue
		}
		if n, ok := normalizeOrigin(o); ok {
			p.allowed[n] = true
		}
	}
	return p
}

// allow reports whether r's Origin may use the route. A request without
// Origin (not a browser) is allowed.
func (p originPolicy) allow(r *http.Request, t trustedProxies) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.any {
		return true
	}
	n, ok := normalizeOrigin(origin)
	if !ok {
		return false
	}
	if len(p.allowed) > 0 {
		return p.allowed[n]
	}
	self, ok := normalizeOrigin(t.scheme(r) + "://" + t.host(r))
	return ok && n == self
}

// crossOrigin reports whether the policy lets other sites in, so CORS
// preflights should be answered.
func (p originPolicy) crossOrigin() bool { return p.any || len(p.allowed) > 0 }

// normalizeOrigin lower-cases an origin and drops its scheme's default port.
func normalizeOrigin(s string) (string, bool) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (u.Scheme == "http" && port == "80") || (u.Scheme == "https" && port == "443") {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return u.Scheme + "://" + host, true
}
