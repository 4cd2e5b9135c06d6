package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProbeFinding is one diagnosis of a probe: a known failure signature named
// in one line, with its likely cause. docs/troubleshooting.md has a section
// per ID saying what to change.
type ProbeFinding struct {
	// ID names the signature, e.g. "no-subprotocol" or "idle-cut".
	ID string `json:"id"`
	// Level is ProbeFail, ProbeWarn or ProbeInfo.
	Level string `json:"level"`
	// Message says what was seen and its likely cause, on one line.
	Message string `json:"message"`
}

// Levels of a ProbeFinding.
const (
	// ProbeFail: the connection failed, or a browser would fail it.
	ProbeFail = "fail"
	// ProbeWarn: it works, but something is likely to bite.
	ProbeWarn = "warn"
	// ProbeInfo: worth knowing.
	ProbeInfo = "info"
)

// IDs of the findings; each is a section of docs/troubleshooting.md.
const (
	findDNS             = "dns"
	findRefused         = "refused"
	findTimeout         = "timeout"
	findUnreachable     = "unreachable"
	findTLSUntrusted    = "tls-untrusted"
	findTLSName         = "tls-name"
	findTLSExpired      = "tls-expired"
	findTLSExpiring     = "tls-expiring"
	findTLSNotTLS       = "tls-not-tls"
	findTLSHandshake    = "tls-handshake"
	findNoResponse      = "no-response"
	findNotUpgraded     = "not-upgraded"
	findBadAccept       = "bad-accept"
	findAuth            = "auth"
	findNotFound        = "not-found"
	findRedirect        = "redirect"
	findBadRequest      = "bad-request"
	findServerError     = "server-error"
	findStatus          = "status"
	findNoSubprotocol   = "no-subprotocol"
	findWrongProtocol   = "wrong-subprotocol"
	findWrongExtension  = "wrong-extension"
	findIdleCut         = "idle-cut"
	findCut             = "cut"
	findServerClose     = "server-close"
	findNoCloseEcho     = "no-close-echo"
	findNoMessages      = "no-messages"
	findInterrupted     = "interrupted"
	findSSENoContent    = "sse-no-content"
	findSSEContentType  = "sse-content-type"
	findSSEBuffered     = "sse-buffered"
	findSSECompressed   = "sse-compressed"
	findSSECache        = "sse-cache"
	findSSEQuiet        = "sse-quiet"
	findSSEEnded        = "sse-ended"
	findHealthy         = "healthy"
	probeIdleMin        = 100 * time.Millisecond // shorter silences before a cut are not an idle timeout
	probeExpiringWithin = 14 * 24 * time.Hour
)

// probeFindingIDs lists every finding ID, for the documentation test.
var probeFindingIDs = []string{
	findDNS, findRefused, findTimeout, findUnreachable, findTLSUntrusted, findTLSName,
	findTLSExpired, findTLSExpiring, findTLSNotTLS, findTLSHandshake, findNoResponse,
	findNotUpgraded, findBadAccept, findAuth, findNotFound, findRedirect, findBadRequest,
	findServerError, findStatus, findNoSubprotocol, findWrongProtocol, findWrongExtension,
	findIdleCut, findCut, findServerClose, findNoCloseEcho, findNoMessages, findInterrupted,
	findSSENoContent, findSSEContentType, findSSEBuffered, findSSECompressed, findSSECache,
	findSSEQuiet, findSSEEnded, findHealthy,
}

// findings collects the diagnoses of one report.
type findings []ProbeFinding

func (f *findings) add(id, level, format string, args ...any) {
	*f = append(*f, ProbeFinding{ID: id, Level: level, Message: fmt.Sprintf(format, args...)})
}

// diagnose fills r.Findings, r.OK and r.Cause from what r recorded.
func diagnose(r *ProbeReport) {
	var f findings
	diagnoseTLS(r, &f)
	switch {
	case r.Stage != "":
		diagnoseFailure(r, &f)
	case r.Kind == "sse":
		diagnoseSSE(r, &f)
	default:
		diagnoseWebSocket(r, &f)
	}
	rank := map[string]int{ProbeFail: 0, ProbeWarn: 1, ProbeInfo: 2}
	slices.SortStableFunc(f, func(a, b ProbeFinding) int { return rank[a.Level] - rank[b.Level] })
	if len(f) == 0 || f[0].Level != ProbeFail {
		what := "WebSocket opened"
		if r.Kind == "sse" {
			what = "event stream opened"
		}
		f = append(findings{{ID: findHealthy, Level: ProbeInfo, Message: what + " and behaved"}}, f...)
	}
	r.Findings = f
	r.OK = f[0].Level != ProbeFail
	if !r.OK {
		r.Cause = f[0].Message
	}
}

// diagnoseFailure names why the connection never opened.
func diagnoseFailure(r *ProbeReport, f *findings) {
	err := r.err
	switch r.Stage {
	case probeStageDNS:
		var de *net.DNSError
		if errors.As(err, &de) && de.IsTimeout {
			f.add(findDNS, ProbeFail, "DNS lookup of %s timed out: no DNS server answered", r.Host)
			return
		}
		f.add(findDNS, ProbeFail, "DNS lookup of %s failed (%s): the name does not resolve from here (a typo, or an internal name probed from outside)", r.Host, r.Error)
	case probeStageConnect:
		addr := strings.Join(r.Addrs, ", ")
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			f.add(findRefused, ProbeFail, "connection refused by %s: nothing listens on that port (server down, wrong port, or listening on another interface)", addr)
		case isTimeout(err):
			f.add(findTimeout, ProbeFail, "timeout: no TCP connection to %s within the timeout: a firewall drops the packets, or the host is down", addr)
		default:
			f.add(findUnreachable, ProbeFail, "cannot reach %s (%s): no route to it from here", addr, r.Error)
		}
	case probeStageTLS:
		diagnoseTLSFailure(r, f)
	default:
		if r.Status != 0 {
			diagnoseStatus(r, f)
			return
		}
		switch {
		case isTimeout(err) && r.Kind == "sse":
			f.add(findTimeout, ProbeFail, "timeout: no response headers within the timeout: the server is stalled, or a buffering proxy holds even the headers (send X-Accel-Buffering: no / padding)")
		case isTimeout(err):
			f.add(findTimeout, ProbeFail, "timeout: no handshake response within the timeout: the server accepted TCP but never answered (a TLS port probed with ws://, or a stalled server)")
		default:
			f.add(findNoResponse, ProbeFail, "the server closed the connection without answering (%s): a TLS port probed without TLS, or a proxy refusing the request", r.Error)
		}
	}
}

// diagnoseTLSFailure names a failed TLS handshake.
func diagnoseTLSFailure(r *ProbeReport, f *findings) {
	var rhe tls.RecordHeaderError
	switch {
	case r.verifyErr != nil:
		id, msg := certProblem(r.verifyErr, r.TLS)
		f.add(id, ProbeFail, "%s", msg)
	case errors.As(r.err, &rhe):
		f.add(findTLSNotTLS, ProbeFail, "the server answered the TLS handshake with plain text: this port speaks HTTP, not TLS (use ws:// or http://)")
	case isTimeout(r.err):
		f.add(findTimeout, ProbeFail, "timeout: the TLS handshake did not finish within the timeout")
	default:
		f.add(findTLSHandshake, ProbeFail, "TLS handshake failed (%s): no common version or cipher, a client certificate required, or a middlebox interfering", r.Error)
	}
}

// diagnoseTLS reports certificate problems the probe got past (with
// InsecureSkipVerify) and a leaf that expires soon.
func diagnoseTLS(r *ProbeReport, f *findings) {
	if r.TLS == nil || len(r.TLS.Chain) == 0 || r.Stage == probeStageTLS {
		return
	}
	if r.verifyErr != nil {
		id, msg := certProblem(r.verifyErr, r.TLS)
		f.add(id, ProbeWarn, "%s (ignored: insecure)", msg)
		return
	}
	if left := time.Until(r.TLS.Chain[0].NotAfter); left < probeExpiringWithin {
		f.add(findTLSExpiring, ProbeWarn, "TLS certificate expires in %s (%s): renew it", probeDur(left.Round(time.Hour)), r.TLS.Chain[0].NotAfter.Format(time.DateOnly))
	}
}

// certProblem names a certificate verification error.
func certProblem(err error, t *ProbeTLS) (id, msg string) {
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &ua):
		return findTLSUntrusted, fmt.Sprintf("TLS untrusted: the certificate is signed by an unknown authority (issuer %q): self-signed or a private CA; clients need that CA, or serve a publicly trusted chain", issuerOf(t))
	case errors.As(err, &he):
		return findTLSName, fmt.Sprintf("TLS certificate is not valid for %s (%s): the wrong certificate, or the wrong host name", he.Host, oneLine(err.Error()))
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return findTLSExpired, fmt.Sprintf("TLS certificate expired or not yet valid (%s): renew it, or check the clock", oneLine(err.Error()))
	}
	return findTLSUntrusted, fmt.Sprintf("TLS untrusted: %s", oneLine(err.Error()))
}

func issuerOf(t *ProbeTLS) string {
	if t == nil || len(t.Chain) == 0 {
		return ""
	}
	return t.Chain[len(t.Chain)-1].Issuer
}

// diagnoseStatus names a refused handshake (WebSocket) or a stream that is
// not one (SSE) by its status.
func diagnoseStatus(r *ProbeReport, f *findings) {
	s, ws := r.Status, r.Kind == "websocket"
	status := strconv.Itoa(s)
	switch {
	case ws && s == http.StatusSwitchingProtocols:
		f.add(findBadAccept, ProbeFail, "101 without a valid Upgrade, Connection or Sec-WebSocket-Accept header: an intermediary rewrote the handshake")
	case ws && s >= 200 && s < 300:
		f.add(findNotUpgraded, ProbeFail, "%s instead of 101: something in the path does not pass Upgrade (or there is no WebSocket endpoint at this path)", status)
	case s == http.StatusNoContent:
		f.add(findSSENoContent, ProbeFail, "204 No Content: the server tells EventSource to stop reconnecting (streamgate: the session has ended)")
	case s == http.StatusUnauthorized || s == http.StatusForbidden:
		f.add(findAuth, ProbeFail, "%s on handshake: the server refused the credentials or the origin (%s)", status, authHint(r))
	case s == http.StatusNotFound:
		f.add(findNotFound, ProbeFail, "404: nothing at this path (a wrong path, or a route the proxy in front does not forward)")
	case s >= 300 && s < 400 && ws:
		f.add(findRedirect, ProbeFail, "%s redirect to %q: WebSocket clients do not follow redirects; probe the final URL", status, r.Header.Get("Location"))
	case s >= 300 && s < 400:
		f.add(findRedirect, ProbeFail, "%s redirect to %q: EventSource follows it, the probe does not; probe the final URL", status, r.Header.Get("Location"))
	case !ws && s == http.StatusUpgradeRequired:
		f.add(findBadRequest, ProbeFail, "426 Upgrade Required: the server speaks only WebSocket at this path (streamgate: set sse: true on the route to bridge it)")
	case s == http.StatusBadRequest || s == http.StatusUpgradeRequired || s == http.StatusMethodNotAllowed:
		f.add(findBadRequest, ProbeFail, "%s: the server rejected the request itself (a WebSocket handshake where it expects plain HTTP, or the reverse)", status)
	case s >= 500:
		f.add(findServerError, ProbeFail, "%s: the server, or a proxy in front of it, failed (502/503/504 from a proxy: its upstream is down, overloaded or slow)", status)
	default:
		f.add(findStatus, ProbeFail, "unexpected status %s", status)
	}
}

func authHint(r *ProbeReport) string {
	if r.Origin == "" {
		return "send cookies or Authorization with -header, and the Origin a browser would send with -origin"
	}
	return "check the cookies or Authorization sent, and that origin " + r.Origin + " is allowed"
}

// diagnoseWebSocket judges an opened WebSocket: the negotiation, then how
// it ended.
func diagnoseWebSocket(r *ProbeReport, f *findings) {
	switch {
	case len(r.Offered) > 0 && r.Subprotocol == "":
		f.add(findNoSubprotocol, ProbeFail, "client offered subprotocols (%s) but the server selected none — browsers fail this connection", strings.Join(r.Offered, ", "))
	case r.Subprotocol != "" && !slices.Contains(r.Offered, r.Subprotocol):
		f.add(findWrongProtocol, ProbeFail, "the server selected subprotocol %q, which was not offered — browsers fail this connection", r.Subprotocol)
	}
	if r.Extensions != "" && !r.offeredExt {
		f.add(findWrongExtension, ProbeFail, "the server selected extension %q, which was not offered — browsers fail this connection", r.Extensions)
	}
	e := r.End
	switch e.By {
	case ProbeEndServer:
		if e.Code == 1000 {
			f.add(findServerClose, ProbeInfo, "the server closed normally (1000 %q) after %s", e.Reason, probeDur(e.After))
		} else {
			f.add(findServerClose, ProbeFail, "the server closed with %d %q after %s: %s", e.Code, e.Reason, probeDur(e.After), closeMeaning(e.Code))
		}
	case ProbeEndCut:
		diagnoseCut(r, f, "connection cut", "with no close frame", "enable pings (an interval below that timeout)")
	case ProbeEndProbe:
		diagnoseProbeEnd(r, f)
	}
	if r.Messages.Count == 0 && r.Watch > 0 && e.By == ProbeEndProbe {
		f.add(findNoMessages, ProbeInfo, "no messages in %s: the endpoint may wait for the client to speak first", probeDur(r.Watch))
	}
}

// diagnoseProbeEnd notes a watch that ended oddly although the probe ended it.
func diagnoseProbeEnd(r *ProbeReport, f *findings) {
	e := r.End
	switch {
	case strings.HasPrefix(e.Error, "interrupted"):
		f.add(findInterrupted, ProbeWarn, "the probe was interrupted after %s", probeDur(e.After))
	case r.Kind == "websocket" && !e.Echoed:
		why := "no answer within " + probeDur(probeCloseWait)
		if e.Error != "" && !strings.Contains(e.Error, "timeout") {
			why = e.Error
		}
		f.add(findNoCloseEcho, ProbeWarn, "the server did not answer the probe's close frame (%s): it cuts connections instead of closing them", why)
	}
}

// diagnoseCut names a connection cut without a close: after a long
// silence, an idle timeout somewhere in the path.
func diagnoseCut(r *ProbeReport, f *findings, what, how, remedy string) {
	e := r.End
	if e.Silence >= probeIdleMin && e.Silence > 2*r.quietest {
		f.add(findIdleCut, ProbeFail, "%s after %s of silence %s: an intermediary's idle timeout; %s", what, probeDur(e.Silence), how, remedy)
		return
	}
	f.add(findCut, ProbeFail, "%s %s after %s (%s): the server crashed or something in the path dropped it; browsers see 1006", what, how, probeDur(e.After), e.Error)
}

// closeMeaning is the usual meaning of a close code.
func closeMeaning(code int) string {
	switch {
	case code == 1001:
		return "going away: the server is restarting or shutting down (a deploy), or a proxy's lifetime limit"
	case code == 1002 || code == 1003 || code == 1007:
		return "the server rejected what it received (protocol error or bad data)"
	case code == 1005:
		return "a close frame without a code"
	case code == 1008:
		return "policy violation: often authentication, an origin check or rate limiting"
	case code == 1009:
		return "a message was larger than the server accepts"
	case code == 1011:
		return "the server failed (streamgate: the upstream connection was lost)"
	case code == 1012 || code == 1013:
		return "the server is restarting or overloaded: reconnect later"
	case code == 1014:
		return "a gateway could not reach its upstream"
	case code >= 4000 && code <= 4999:
		return "an application-defined code: see the app's meaning of it"
	case code >= 3000 && code <= 3999:
		return "a code registered by a library or framework"
	}
	return "see RFC 6455 section 7.4"
}

// diagnoseSSE judges an SSE response and stream.
func diagnoseSSE(r *ProbeReport, f *findings) {
	if r.Status != http.StatusOK {
		diagnoseStatus(r, f)
		return
	}
	if ct := r.Header.Get("Content-Type"); !sseContentType(ct) {
		f.add(findSSEContentType, ProbeFail, "Content-Type is %q, not text/event-stream: EventSource fails the connection", ct)
		return
	}
	s, e := r.SSE, r.End
	if buffered, in, items := sseBuffered(s); buffered {
		b := s.Bursts[0]
		f.add(findSSEBuffered, ProbeFail, "SSE events arriving in bursts (%d of %d events and heartbeats came in %d burst(s), e.g. %d within %s after %s of nothing): a buffering proxy (send X-Accel-Buffering: no / padding)",
			in, items, len(s.Bursts), b.Items, probeDur(b.Span), probeDur(b.Gap))
	}
	if ce := r.Header.Get("Content-Encoding"); ce != "" && ce != "identity" {
		f.add(findSSECompressed, ProbeWarn, "the stream is compressed (Content-Encoding: %s): compressing proxies buffer; exclude text/event-stream from compression", ce)
	}
	if cc := strings.ToLower(r.Header.Get("Cache-Control")); !strings.Contains(cc, "no-cache") && !strings.Contains(cc, "no-store") {
		f.add(findSSECache, ProbeWarn, "Cache-Control is %q: a cache may hold the stream; send Cache-Control: no-cache", r.Header.Get("Cache-Control"))
	}
	switch {
	case e.By == ProbeEndCut:
		diagnoseCut(r, f, "stream cut", "without its end", "send heartbeat comments (an interval below that timeout)")
	case e.By == ProbeEndServer && s.Types["close"] > 0:
		f.add(findSSEEnded, ProbeInfo, "the server ended the stream after %s with a close event (a streamgate bridge whose app closed the WebSocket): a reconnect for this session gets 204, and EventSource stops", probeDur(e.After))
	case e.By == ProbeEndServer:
		f.add(findSSEEnded, ProbeInfo, "the server ended the stream after %s: EventSource reconnects after retry (%s)", probeDur(e.After), retryOrDefault(s.Retry))
	case e.By == ProbeEndProbe:
		diagnoseProbeEnd(r, f)
		if r.Messages.Count == 0 && s.Heartbeats.Count == 0 && r.Watch > 0 && e.Error == "" {
			f.add(findSSEQuiet, ProbeWarn, "nothing (no event, no heartbeat) in %s: a quiet stream, or a buffering proxy holding it (watch longer with -for; send X-Accel-Buffering: no / padding)", probeDur(r.Watch))
		}
	}
}

// sseBuffered reports whether bursts hold at least half of the events and
// heartbeats, and how many they hold of how many.
func sseBuffered(s *ProbeSSE) (buffered bool, inBursts, items int) {
	for _, b := range s.Bursts {
		inBursts += b.Items
	}
	items = len(s.arrivals)
	return len(s.Bursts) > 0 && 2*inBursts >= items, inBursts, items
}

func sseContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

func retryOrDefault(retry string) string {
	if retry == "" {
		return "the browser's default, about 3s"
	}
	return retry + "ms"
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
