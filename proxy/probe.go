package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Probe defaults, used where ProbeOptions leaves a field zero.
const (
	// DefaultProbeTimeout bounds DNS, TCP, TLS and the handshake together.
	DefaultProbeTimeout = 10 * time.Second
	// DefaultProbePreviews is how many messages or events keep a preview.
	DefaultProbePreviews = 5
)

// Probe tuning that is not worth an option.
const (
	// probeCloseWait is how long the probe waits for the server to answer
	// its close frame once the watch is over.
	probeCloseWait = time.Second
	// probePreviewBytes is how much of each previewed message is kept.
	probePreviewBytes = 72
	// probeMaxArrivals caps the arrival times kept for burst detection.
	probeMaxArrivals = 10000
	// probeUserAgent is sent unless the caller sets a User-Agent header.
	probeUserAgent = "streamgate-probe"
)

// ProbeOptions configure Probe. The zero value probes a WebSocket with no
// subprotocols, the system roots and DefaultProbeTimeout, and closes it as
// soon as it opens.
type ProbeOptions struct {
	// SSE probes a Server-Sent Events URL (GET with Accept:
	// text/event-stream) instead of a WebSocket.
	SSE bool
	// Subprotocols are offered in Sec-WebSocket-Protocol, in order.
	Subprotocols []string
	// Header is sent with the request (cookies, Authorization, Host...).
	Header http.Header
	// Origin, when not empty, is sent as the Origin header, as a browser
	// on that page would.
	Origin string
	// For is how long to watch the connection once it is open; at the end
	// the probe closes it (1000) and waits for the server's answer. Zero
	// closes it as soon as it opens.
	For time.Duration
	// Timeout bounds DNS, TCP, TLS and the handshake (for SSE: until the
	// response headers) together. Zero means DefaultProbeTimeout.
	Timeout time.Duration
	// TLSConfig supplies roots (RootCAs), client certificates and
	// ServerName for wss:// and https://; nil means the system roots. The
	// chain is always reported and verified; with InsecureSkipVerify a
	// verification failure is reported but the probe goes on.
	TLSConfig *tls.Config
	// Compression offers permessage-deflate, as browsers do.
	Compression bool
	// Previews is how many messages or events keep a preview; zero means
	// DefaultProbePreviews.
	Previews int
	// Resolver looks up host names; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// ProbeReport is what Probe saw, phase by phase, and what it makes of it.
// Durations are time.Duration (nanoseconds in JSON). Fields of phases that
// were not reached are zero or nil.
type ProbeReport struct {
	// Target is the URL probed; Kind is "websocket" or "sse".
	Target string `json:"target"`
	Kind   string `json:"kind"`
	// Watch is ProbeOptions.For.
	Watch time.Duration `json:"watch_ns"`
	// Started is when the probe began; Open and the At fields count from
	// the moment the connection opened.
	Started time.Time `json:"started"`

	// Host is the URL's host; Addrs what DNS returned for it (or the IP
	// literal itself); DNS how long the lookup took (0 for an IP).
	Host  string        `json:"host"`
	Addrs []string      `json:"addrs,omitempty"`
	DNS   time.Duration `json:"dns_ns"`
	// Remote is the address connected to, Connect how long TCP took.
	Remote  string        `json:"remote,omitempty"`
	Connect time.Duration `json:"connect_ns"`
	// TLS is the TLS handshake, nil for ws:// and http://.
	TLS *ProbeTLS `json:"tls,omitempty"`

	// Offered are the subprotocols sent; Origin the Origin header sent.
	Offered []string `json:"offered,omitempty"`
	Origin  string   `json:"origin,omitempty"`
	// Status, Proto and Header are the handshake (or SSE) response; Body
	// holds the start of the body of a refused handshake.
	Status int         `json:"status,omitempty"`
	Proto  string      `json:"proto,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   string      `json:"body,omitempty"`
	// Open is the time from Started until the WebSocket opened (101
	// checked) or the SSE response headers arrived.
	Open time.Duration `json:"open_ns"`
	// Subprotocol and Extensions are what the server selected.
	Subprotocol string `json:"subprotocol,omitempty"`
	Extensions  string `json:"extensions,omitempty"`

	// Messages are the WebSocket messages or SSE events received.
	Messages ProbeMessages `json:"messages"`
	// Pings are the WebSocket pings the server sent (each answered).
	Pings ProbeSpacing `json:"pings"`
	// SSE holds what is particular to an SSE stream.
	SSE *ProbeSSE `json:"sse,omitempty"`
	// End is how the connection ended, once it was open.
	End *ProbeEnd `json:"end,omitempty"`

	// Stage names the phase that failed before the connection opened
	// ("dns", "connect", "tls", "handshake"), and Error its error.
	Stage string `json:"stage,omitempty"`
	Error string `json:"error,omitempty"`

	// Findings are the diagnoses, most important first. OK is true when
	// none of them is a failure; Cause is the first failure's message.
	Findings []ProbeFinding `json:"findings"`
	OK       bool           `json:"ok"`
	Cause    string         `json:"cause,omitempty"`

	err        error         // the error behind Stage/Error, for errors.Is/As
	verifyErr  error         // the certificate verification error, if any
	quietest   time.Duration // the longest gap between server frames before the last
	offeredExt bool          // permessage-deflate was offered
}

// ProbeTLS describes a TLS handshake.
type ProbeTLS struct {
	// Version ("TLS 1.3"), CipherSuite and ALPN (the negotiated protocol)
	// of the handshake; Handshake is how long it took.
	Version     string        `json:"version,omitempty"`
	CipherSuite string        `json:"cipher_suite,omitempty"`
	ALPN        string        `json:"alpn,omitempty"`
	ServerName  string        `json:"server_name"`
	Handshake   time.Duration `json:"handshake_ns"`
	// Chain is the certificates the server sent, leaf first.
	Chain []ProbeCert `json:"chain"`
	// Verified is true when the chain verified for ServerName against the
	// roots; VerifyError says why not.
	Verified    bool   `json:"verified"`
	VerifyError string `json:"verify_error,omitempty"`
}

// ProbeCert summarizes one certificate of a chain.
type ProbeCert struct {
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	// Names are the DNS names and IP addresses the certificate is for.
	Names []string `json:"names,omitempty"`
}

// ProbeMessages counts the WebSocket messages or SSE events received.
type ProbeMessages struct {
	Count int   `json:"count"`
	Bytes int64 `json:"bytes"`
	// Text and Binary count WebSocket messages by type.
	Text   int `json:"text,omitempty"`
	Binary int `json:"binary,omitempty"`
	// MinSize and MaxSize are in bytes (for SSE: of the data).
	MinSize int `json:"min_size"`
	MaxSize int `json:"max_size"`
	// First is when the first one arrived, counted from the open.
	First time.Duration `json:"first_ns"`
	// Previews are the first few.
	Previews []ProbeMessage `json:"previews,omitempty"`
}

// ProbeMessage is a preview of one message or event.
type ProbeMessage struct {
	// At is when it arrived, counted from the open.
	At time.Duration `json:"at_ns"`
	// Type is "text" or "binary" for WebSocket, the event type for SSE.
	Type string `json:"type"`
	// ID is the SSE event id, if any.
	ID   string `json:"id,omitempty"`
	Size int    `json:"size"`
	// Preview is the start of the payload (hex for binary).
	Preview string `json:"preview"`
}

// ProbeSpacing summarizes a series of spaced arrivals (pings, heartbeats):
// how many, and the gaps between consecutive ones.
type ProbeSpacing struct {
	Count int           `json:"count"`
	Min   time.Duration `json:"min_gap_ns,omitempty"`
	Mean  time.Duration `json:"mean_gap_ns,omitempty"`
	Max   time.Duration `json:"max_gap_ns,omitempty"`
}

// ProbeSSE is what Probe saw of an SSE stream beyond the events.
type ProbeSSE struct {
	// FirstByte is the time from the request being sent to the first byte
	// of the response; FirstEvent to the first event (0: none).
	FirstByte  time.Duration `json:"first_byte_ns"`
	FirstEvent time.Duration `json:"first_event_ns"`
	// Types counts events by type; IDs are the first few event ids and
	// LastID the last one; Retry is the last retry: field.
	Types  map[string]int `json:"types,omitempty"`
	IDs    []string       `json:"ids,omitempty"`
	LastID string         `json:"last_id,omitempty"`
	Retry  string         `json:"retry,omitempty"`
	// Heartbeats are short comment lines (": ping"); Padding is the bytes
	// of long comment lines (sent to flush buffering proxies).
	Heartbeats ProbeSpacing `json:"heartbeats"`
	Padding    int          `json:"padding"`
	// Bursts are groups of events and heartbeats that arrived together
	// after a quiet gap: the mark of a buffering proxy.
	Bursts []ProbeBurst `json:"bursts,omitempty"`

	// arrivals of events and heartbeats, counted from the request sent.
	arrivals []time.Duration
}

// ProbeBurst is a group of SSE events and heartbeats that arrived within
// a few milliseconds of each other after a quiet gap.
type ProbeBurst struct {
	// At is when it arrived, counted from the request being sent; Gap is
	// the quiet time before it; Items how many events and heartbeats it
	// held; Span the time from its first to its last.
	At    time.Duration `json:"at_ns"`
	Gap   time.Duration `json:"gap_ns"`
	Items int           `json:"items"`
	Span  time.Duration `json:"span_ns"`
}

// Who ended a probed connection (ProbeEnd.By).
const (
	// ProbeEndServer: the server sent a close frame, or ended the SSE
	// stream cleanly.
	ProbeEndServer = "server"
	// ProbeEndCut: the connection was cut with no close frame (an SSE
	// stream: without its end).
	ProbeEndCut = "cut"
	// ProbeEndProbe: the probe ended it after For (or was interrupted).
	ProbeEndProbe = "probe"
)

// ProbeEnd says how an open connection ended.
type ProbeEnd struct {
	// By is one of the ProbeEnd* constants; After counts from the open.
	By    string        `json:"by"`
	After time.Duration `json:"after_ns"`
	// Code and Reason are the close frame received from the server (0: none).
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Echoed is true when the probe ended it and the server answered the
	// close frame.
	Echoed bool `json:"echoed,omitempty"`
	// Silence is how long the server had sent nothing before the end.
	Silence time.Duration `json:"silence_ns"`
	// Error is the read error that ended it, if any.
	Error string `json:"error,omitempty"`
}

// newProbeReport starts the report of either kind of probe.
func newProbeReport(u *url.URL, kind string, opts ProbeOptions) *ProbeReport {
	return &ProbeReport{
		Target:  u.String(),
		Kind:    kind,
		Watch:   opts.For,
		Started: time.Now(),
		Host:    u.Hostname(),
		Offered: opts.Subprotocols,
		Origin:  opts.Origin,
	}
}

// Probe connects to target as a client would and reports every phase: DNS,
// TCP, TLS, the WebSocket handshake (or, with opts.SSE, the SSE response),
// the traffic seen during opts.For and how the connection ended, followed
// by the diagnoses (Findings, OK, Cause).
//
// A WebSocket target is ws:// or wss:// (http:// and https:// are taken as
// ws:// and wss://); an SSE target is http:// or https://. Probe returns an
// error only for a target or options it cannot use; a failing endpoint is
// a report whose OK is false. Canceling ctx ends the probe early. It never
// uses an HTTP proxy from the environment: it measures the direct path.
func Probe(ctx context.Context, target string, opts ProbeOptions) (*ProbeReport, error) {
	u, err := probeURL(target, opts.SSE)
	if err != nil {
		return nil, err
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultProbeTimeout
	}
	if opts.Previews <= 0 {
		opts.Previews = DefaultProbePreviews
	}
	if opts.For < 0 {
		return nil, fmt.Errorf("probe %s: negative watch time %s", target, opts.For)
	}
	if opts.SSE {
		rep := newProbeReport(u, "sse", opts)
		probeSSE(ctx, u, opts, rep)
		diagnose(rep)
		return rep, nil
	}
	if err := checkProbeHeader(opts.Header); err != nil {
		return nil, fmt.Errorf("probe %s: %w", target, err)
	}
	rep := newProbeReport(u, "websocket", opts)
	rep.offeredExt = opts.Compression
	probeWebSocket(ctx, u, opts, rep)
	diagnose(rep)
	return rep, nil
}

// probeURL parses target and checks its scheme for the kind of probe.
func probeURL(target string, sse bool) (*url.URL, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("probe %q: %w", target, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("probe %q: no host; want a URL such as ws://127.0.0.1:8080/ws/", target)
	}
	if u.User != nil {
		return nil, fmt.Errorf("probe %q: user info in the URL; send credentials with a header", target)
	}
	switch {
	case sse && (u.Scheme == "http" || u.Scheme == "https"):
	case sse:
		return nil, fmt.Errorf("probe %q: scheme %q is not http or https (an SSE URL)", target, u.Scheme)
	case u.Scheme == "ws" || u.Scheme == "wss":
	case u.Scheme == "http":
		u.Scheme = "ws"
	case u.Scheme == "https":
		u.Scheme = "wss"
	default:
		return nil, fmt.Errorf("probe %q: scheme %q is not ws, wss, http or https", target, u.Scheme)
	}
	return u, nil
}

// probeHeader returns the request headers: the caller's, Origin, and a
// User-Agent unless the caller set one.
func probeHeader(opts ProbeOptions) http.Header {
	h := opts.Header.Clone()
	if h == nil {
		h = http.Header{}
	}
	if opts.Origin != "" {
		h.Set("Origin", opts.Origin)
	}
	if h.Get("User-Agent") == "" {
		h.Set("User-Agent", probeUserAgent)
	}
	return h
}

// failed records the phase that failed before the connection opened.
func (r *ProbeReport) failed(stage string, err error) {
	r.Stage = stage
	r.err = err
	r.Error = oneLine(err.Error())
}
