package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FieldError is one problem of a configuration: where it is (File, Line,
// Key) and what is wrong (Msg).
type FieldError struct {
	// File is the config file path, "env STREAMGATE_X" for a value from the
	// environment, or "" for a Config built in code.
	File string
	// Line is the 1-based line in File; 0 when unknown (a key left unset, an
	// environment variable).
	Line int
	// Key is the dotted key path, e.g. "routes[1].websocket.pong_timeout";
	// "" for problems of the whole file, such as a YAML syntax error.
	Key string
	// Msg says what is wrong.
	Msg string

	err error // the underlying error, if any (e.g. *fs.PathError)
}

// Error formats e as "file:line: key: msg", leaving out the parts that are
// empty or zero: "proxy.yaml:12: websocket.pong_timeout: ...".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying error, such as the *fs.PathError of a file
// that cannot be read, or nil.
func (e *FieldError) Unwrap() error { return e.err }

// Errors is every problem found in a configuration. Parse, Load and Validate
// return it (as error) when there is at least one; use errors.As to get it,
// or to get its first *FieldError.
type Errors []*FieldError

// Error returns one problem per line, sorted by line.
func (e Errors) Error() string {
	lines := make([]string, 0, len(e))
	for _, fe := range sorted(e) {
		lines = append(lines, fe.Error())
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, for errors.Is and errors.As.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, fe := range e {
		errs[i] = fe
	}
	return errs
}

// sorted returns a copy of errs ordered by line, then file, then key.
func sorted(errs Errors) Errors {
	s := slices.Clone(errs)
	slices.SortStableFunc(s, func(a, b *FieldError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return s
}

// asError returns errs sorted as an error, or nil when there are none.
func asError(errs Errors) error {
	if len(errs) == 0 {
		return nil
	}
	return sorted(errs)
}

// Validate checks c and returns every problem as Errors, or nil. Problems
// carry c.File but no line numbers; Load and Parse add those. Validate reads
// the files that c names as the proxy will when it starts: a CA bundle must
// hold a PEM certificate, and a certificate and key must load as a pair (a
// key that does not match its certificate is a problem, and so is an
// expired tls.cert_file). Relative paths are taken from the working
// directory, as the proxy will open them.
func (c *Config) Validate() error {
	v := &validator{file: c.File}
	v.config(c)
	return asError(v.errs)
}

// validator collects the problems of one Config and places them.
type validator struct {
	file  string
	index *lineIndex        // nil for a Config built in code
	env   map[string]string // key path -> environment variable that set it
	errs  Errors
}

func (v *validator) add(key string, err error) {
	fe := &FieldError{Key: key, Msg: err.Error(), err: errors.Unwrap(err)}
	fe.File, fe.Line = v.locate(key)
	v.errs = append(v.errs, fe)
}

func (v *validator) addf(key, format string, args ...any) {
	v.add(key, fmt.Errorf(format, args...))
}

// locate returns where key was set: an environment variable, its line in the
// file, or the line of its nearest ancestor that is in the file (a key left
// at its default).
func (v *validator) locate(key string) (string, int) {
	if name, ok := v.env[key]; ok {
		return "env " + name, 0
	}
	if !v.index.has(key) {
		for _, path := range slices.Sorted(maps.Keys(v.env)) {
			if strings.HasPrefix(path, key+".") {
				return "env " + v.env[path], 0
			}
		}
	}
	return v.file, v.index.line(key)
}

// explicit reports whether key was set by the file or the environment.
func (v *validator) explicit(key string) bool {
	_, ok := v.env[key]
	return ok || v.index.has(key)
}

func (v *validator) config(c *Config) {
	v.required("listen", c.Listen, checkHostPort)
	v.required("upstream", c.Upstream, checkUpstream)
	if c.Admin != "" && v.check("admin", checkHostPort(c.Admin)) && sameListener(c.Admin, c.Listen) {
		v.addf("admin", "%q collides with listen %q: the admin endpoints must never be on the public listener", c.Admin, c.Listen)
	}
	v.tls(c)
	v.upstreamTLS(c.UpstreamTLS)
	v.timeouts(c.Timeouts)
	v.websocket("websocket", c.WebSocket, func(string) bool { return true })
	v.sse(c.SSE)
	v.routes(c)
	v.limits(c.Limits)
	for i, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				v.addf(fmt.Sprintf("trusted_proxies[%d]", i), "%q is neither a CIDR nor an IP address", p)
			}
		}
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "console")
}

// check records err, if any, under key and reports whether there was none.
func (v *validator) check(key string, err error) bool {
	if err != nil {
		v.add(key, err)
	}
	return err == nil
}

// required checks that value is set and passes check.
func (v *validator) required(key, value string, check func(string) error) bool {
	if value == "" {
		v.addf(key, "required")
		return false
	}
	return v.check(key, check(value))
}

func (v *validator) oneOf(key, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.addf(key, "%q: want one of %s", value, strings.Join(allowed, ", "))
	}
}

// duration checks that d is not negative and, if positive is set, not 0.
func (v *validator) duration(key string, d Duration, positive bool, why string) bool {
	switch {
	case d < 0:
		v.addf(key, "%s: must not be negative", d)
	case positive && d == 0:
		v.addf(key, "must be greater than 0%s", why)
	default:
		return true
	}
	return false
}

// intRange checks min <= n <= max.
func (v *validator) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		v.addf(key, "%d: must be between %d and %d", n, lo, hi)
	}
}

// read returns the contents of the file at path, or records under key why
// it cannot be read. It returns false, recording nothing, for an empty path.
func (v *validator) read(key, path string) ([]byte, bool) {
	if path == "" {
		return nil, false
	}
	data, err := readFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		v.add(key, fmt.Errorf("cannot read %q: %w", path, err))
		return nil, false
	}
	return data, true
}

// maxReadFile bounds the certificate, key and CA files validation reads.
const maxReadFile = 16 << 20

// readFile reads the file at path, which must be a regular file of at most
// maxReadFile bytes (not a directory, nor a device that never ends).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, err
	case st.IsDir():
		return nil, errors.New("is a directory")
	case !st.Mode().IsRegular():
		return nil, errors.New("not a regular file")
	case st.Size() > maxReadFile:
		return nil, fmt.Errorf("larger than %d MiB", maxReadFile>>20)
	}
	return io.ReadAll(io.LimitReader(f, maxReadFile))
}

// roots checks that the CA bundle at path, if set, can be read and holds at
// least one PEM certificate, as the proxy requires.
func (v *validator) roots(key, path string) {
	if data, ok := v.read(key, path); ok && !x509.NewCertPool().AppendCertsFromPEM(data) {
		v.addf(key, "%q holds no PEM certificate", path)
	}
}

// keyPair checks that the cert_file and key_file under prefix, where set,
// can be read and, when both are, load together as crypto/tls loads them
// when the proxy starts. A pair that does not load is reported on cert_file
// when its first certificate does not parse, and on key_file otherwise.
// With expiry set, an expired certificate is a problem too.
func (v *validator) keyPair(prefix, certFile, keyFile string, expiry bool) {
	certPEM, certOK := v.read(prefix+".cert_file", certFile)
	keyPEM, keyOK := v.read(prefix+".key_file", keyFile)
	if !certOK || !keyOK {
		return
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err != nil && !hasLeaf(certPEM):
		v.add(prefix+".cert_file", fmt.Errorf("%q holds no certificate: %w", certFile, err))
	case err != nil:
		v.add(prefix+".key_file", fmt.Errorf("%q is not the key of cert_file %q: %w", keyFile, certFile, err))
	case expiry && cert.Leaf != nil && time.Now().After(cert.Leaf.NotAfter):
		v.addf(prefix+".cert_file", "%q: certificate expired on %s", certFile, cert.Leaf.NotAfter.Format(time.RFC3339))
	}
}

// hasLeaf reports whether the first CERTIFICATE block of a PEM chain, the
// one tls.X509KeyPair matches the key against, parses.
func hasLeaf(chain []byte) bool {
	for {
		var b *pem.Block
		if b, chain = pem.Decode(chain); b == nil {
			return false
		}
		if b.Type == "CERTIFICATE" {
			_, err := x509.ParseCertificate(b.Bytes)
			return err == nil
		}
	}
}

// pair checks that cert_file and key_file under prefix are set together.
func (v *validator) pair(prefix, cert, key string) {
	switch {
	case cert != "" && key == "":
		v.addf(prefix+".key_file", "required when cert_file is set")
	case cert == "" && key != "":
		v.addf(prefix+".cert_file", "required when key_file is set")
	}
}

func (v *validator) tls(c *Config) {
	t := c.TLS
	if t == nil {
		return
	}
	if v.required("tls.listen", t.Listen, checkHostPort) {
		if sameListener(t.Listen, c.Listen) {
			v.addf("tls.listen", "%q collides with listen %q", t.Listen, c.Listen)
		}
		if c.Admin != "" && checkHostPort(c.Admin) == nil && sameListener(c.Admin, t.Listen) {
			v.addf("admin", "%q collides with tls.listen %q: the admin endpoints must never be on the public listener", c.Admin, t.Listen)
		}
	}
	static := t.CertFile != "" || t.KeyFile != ""
	switch {
	case len(t.Domains) == 0 && !static:
		v.addf("tls", "tls needs domains (ACME) or cert_file and key_file")
	case len(t.Domains) > 0 && static:
		v.addf("tls", "set domains (ACME) or cert_file and key_file, not both")
	}
	v.pair("tls", t.CertFile, t.KeyFile)
	for i, d := range t.Domains {
		v.check(fmt.Sprintf("tls.domains[%d]", i), checkDomain(d))
	}
	if t.CA != "" {
		v.check("tls.ca", checkHTTPURL(t.CA))
	}
	if static {
		v.read("tls.ca_root", t.CARoot) // unused with static certificates, but named
	} else {
		v.roots("tls.ca_root", t.CARoot)
	}
	v.keyPair("tls", t.CertFile, t.KeyFile, true)
}

func (v *validator) upstreamTLS(u UpstreamTLS) {
	v.pair("upstream_tls", u.CertFile, u.KeyFile)
	v.roots("upstream_tls.ca_file", u.CAFile)
	v.keyPair("upstream_tls", u.CertFile, u.KeyFile, false)
}

func (v *validator) timeouts(t Timeouts) {
	v.duration("timeouts.read_header", t.ReadHeader, true,
		": without it a client can hold a connection by never finishing its headers")
	v.duration("timeouts.http_idle", t.HTTPIdle, false, "")
	v.duration("timeouts.upstream_dial", t.UpstreamDial, true, "")
	shutdown := v.duration("timeouts.shutdown", t.Shutdown, false, "")
	drain := v.duration("timeouts.drain_delay", t.DrainDelay, false, "")
	if shutdown && drain && t.Shutdown <= t.DrainDelay {
		v.addf("timeouts.shutdown", "%s must be greater than drain_delay (%s): the drain delay is spent inside the shutdown budget",
			t.Shutdown, t.DrainDelay)
	}
}

// websocket checks ws, whose keys sit under prefix. For a route, ws is the
// merged result and own reports which keys the route itself sets; a rule is
// checked only when one of its keys is the route's own, so a bad top-level
// value is reported once, at the top level.
func (v *validator) websocket(prefix string, ws WebSocket, own func(key string) bool) {
	key := func(k string) string { return prefix + "." + k }
	ok := true
	for _, f := range []struct {
		name string
		d    Duration
	}{{"ping_interval", ws.PingInterval}, {"pong_timeout", ws.PongTimeout}, {"idle_timeout", ws.IdleTimeout}, {"max_lifetime", ws.MaxLifetime}} {
		if own(f.name) && !v.duration(key(f.name), f.d, false, "") {
			ok = false
		}
	}
	if ok && ws.PingInterval > 0 && (own("ping_interval") || own("pong_timeout")) {
		const why = "the pong must come back before the next ping is due"
		switch {
		case ws.PongTimeout == 0:
			v.addf(key("pong_timeout"), "must be greater than 0 while pings are on (ping_interval %s): %s", ws.PingInterval, why)
		case ws.PongTimeout < ws.PingInterval:
		case v.explicit(key("pong_timeout")) || !v.explicit(key("ping_interval")):
			v.addf(key("pong_timeout"), "%s must be less than ping_interval (%s): %s", ws.PongTimeout, ws.PingInterval, why)
		default:
			v.addf(key("ping_interval"), "%s must be greater than pong_timeout (%s): %s", ws.PingInterval, ws.PongTimeout, why)
		}
	}
	if own("max_message_size") && (ws.MaxMessageSize <= 0 || ws.MaxMessageSize > GiB) {
		v.addf(key("max_message_size"), "%s: must be greater than 0 and at most 1GiB", ws.MaxMessageSize)
	}
	if own("allowed_origins") {
		v.origins(key("allowed_origins"), ws.AllowedOrigins)
	}
}

func (v *validator) origins(key string, origins []string) {
	if slices.Contains(origins, "*") && len(origins) > 1 {
		v.addf(key, `"*" allows any origin and cannot be mixed with other origins`)
	}
	for i, o := range origins {
		if o != "*" {
			v.check(fmt.Sprintf("%s[%d]", key, i), checkOrigin(o))
		}
	}
}

func (v *validator) sse(s SSE) {
	v.duration("sse.heartbeat", s.Heartbeat, true, "")
	v.duration("sse.retry", s.Retry, true, "")
	v.intRange("sse.padding", s.Padding, 0, 65536)
	v.intRange("sse.replay", s.Replay, 0, 1_000_000)
	v.duration("sse.session_ttl", s.SessionTTL, false, "")
	if s.MaxSessions <= 0 {
		v.addf("sse.max_sessions", "%d: must be greater than 0", s.MaxSessions)
	}
	v.oneOf("sse.binary", s.Binary, "base64")
}

func (v *validator) routes(c *Config) {
	for i, r := range c.Routes {
		key := fmt.Sprintf("routes[%d]", i)
		if v.required(key+".path", r.Path, checkRoutePath) {
			v.shadowed(key+".path", c.Routes[:i], r.Path)
		}
		if r.Upstream != "" {
			v.check(key+".upstream", checkUpstream(r.Upstream))
		}
		v.websocket(key+".websocket", r.WebSocket.Apply(c.WebSocket), r.WebSocket.overrides)
	}
}

// shadowed reports a route path that an earlier route always matches first.
func (v *validator) shadowed(key string, earlier []Route, path string) {
	for j, e := range earlier {
		if checkRoutePath(e.Path) != nil || !strings.HasPrefix(path, e.Path) {
			continue
		}
		if e.Path == path {
			v.addf(key, "never matched: duplicate of routes[%d] path %q, which matches first", j, e.Path)
		} else {
			v.addf(key, "never matched: routes[%d] path %q matches first", j, e.Path)
		}
		return
	}
}

func (v *validator) limits(l Limits) {
	if l.MaxConnections < 0 {
		v.addf("limits.max_connections", "%d: must not be negative (0 means unlimited)", l.MaxConnections)
	}
	if l.MaxConnectionsPerIP < 0 {
		v.addf("limits.max_connections_per_ip", "%d: must not be negative (0 means unlimited)", l.MaxConnectionsPerIP)
	}
	if l.MaxConnections > 0 && l.MaxConnectionsPerIP > l.MaxConnections {
		v.addf("limits.max_connections_per_ip", "%d must not exceed max_connections (%d)", l.MaxConnectionsPerIP, l.MaxConnections)
	}
}

// checkHostPort checks a listen address: "host:port", host optional, port
// numeric (0 picks a free port).
func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. \":8080\" or \"127.0.0.1:8080\")", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number from 0 to 65535", addr, port)
	}
	return nil
}

// sameListener reports whether two valid listen addresses would bind the same
// port on overlapping interfaces.
func sameListener(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	if pa != pb || pa == "0" {
		return false
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wildcard(ha) || wildcard(hb)
}

// checkUpstream checks an upstream base URL: http or https, a host, no query
// or fragment.
func checkUpstream(s string) error {
	if !strings.Contains(s, "://") {
		return fmt.Errorf("%q needs a scheme: http:// or https://", s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %v", s, errors.Unwrap(err))
	}
	switch u.Scheme {
	case "http", "https":
	case "ws", "wss":
		return fmt.Errorf("%q: use http:// or https://; ws:// and wss:// are derived from it", s)
	default:
		return fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return fmt.Errorf("%q must not have a query or fragment", s)
	}
	return nil
}

// checkHTTPURL checks an http or https URL with a host, such as an ACME
// directory.
func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", s)
	}
	return nil
}

// checkOrigin checks a browser origin: scheme://host[:port], http or https,
// nothing after the host.
func checkOrigin(s string) error {
	u, err := url.Parse(s)
	bad := err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil
	if !bad && u.Port() != "" {
		n, err := strconv.Atoi(u.Port())
		bad = err != nil || n < 1 || n > 65535
	}
	if bad {
		return fmt.Errorf("%q is not an origin: want \"*\" or scheme://host[:port] with scheme http or https and no path", s)
	}
	return nil
}

// checkDomain checks an ACME domain: a host name, with no scheme, port or
// wildcard.
func checkDomain(d string) error {
	switch {
	case strings.Contains(d, "://"):
		return fmt.Errorf("%q: a domain has no scheme", d)
	case strings.Contains(d, ":"):
		return fmt.Errorf("%q: a domain has no port", d)
	case strings.HasPrefix(d, "*."):
		return fmt.Errorf("%q: wildcard certificates need the DNS-01 challenge, which streamgate does not configure", d)
	}
	h := strings.TrimSuffix(d, ".")
	if h == "" || len(h) > 253 {
		return fmt.Errorf("%q is not a valid host name", d)
	}
	for _, label := range strings.Split(h, ".") {
		if !validLabel(label) {
			return fmt.Errorf("%q is not a valid host name", d)
		}
	}
	return nil
}

// validLabel reports whether label is a DNS label (RFC 1123): 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen.
func validLabel(label string) bool {
	if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
		return false
	}
	for _, r := range label {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

// checkRoutePath checks a route path prefix.
func checkRoutePath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must start with \"/\"", p)
	case strings.ContainsAny(p, "?#"):
		return fmt.Errorf("%q must be a path, with no query or fragment", p)
	}
	return nil
}
