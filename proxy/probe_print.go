package proxy

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sseHeaders are the response headers that matter to an event stream,
// printed even when absent.
var sseHeaders = []string{"Content-Type", "Cache-Control", "X-Accel-Buffering"}

// WriteText writes the report for humans: one line per phase, then the
// diagnoses and the result.
func (r *ProbeReport) WriteText(w io.Writer) error {
	p := &probePrinter{w: bufio.NewWriter(w)}
	watch := "closing once open"
	if r.Watch > 0 {
		watch = "watching " + probeDur(r.Watch)
	}
	p.printf("probe %s (%s, %s)\n\n", r.Target, r.Kind, watch)
	r.printConnection(p)
	if r.Status != 0 {
		r.printResponse(p)
	}
	if r.End != nil {
		r.printTraffic(p)
		p.line("end", r.endText())
	}
	p.printf("\ndiagnosis\n")
	for _, f := range r.Findings {
		p.printf("  %-4s  %s\n", strings.ToUpper(f.Level), f.Message)
	}
	if r.OK {
		p.printf("\nresult: healthy\n")
	} else {
		p.printf("\nresult: FAILED\n")
	}
	return p.w.Flush()
}

// probePrinter writes aligned "label  value" lines.
type probePrinter struct{ w *bufio.Writer }

func (p *probePrinter) printf(format string, args ...any) { fmt.Fprintf(p.w, format, args...) }

// line writes a labelled line; more lines are indented under it.
func (p *probePrinter) line(label, value string, more ...string) {
	p.printf("  %-12s %s\n", label, value)
	for _, m := range more {
		p.printf("  %-12s %s\n", "", m)
	}
}

// printConnection prints DNS, TCP and TLS.
func (r *ProbeReport) printConnection(p *probePrinter) {
	switch {
	case len(r.Addrs) == 0 && r.Stage == probeStageDNS:
		p.line("dns", r.Host+": failed after "+probeDur(r.DNS))
		return
	case r.DNS == 0 && len(r.Addrs) == 1 && r.Addrs[0] == r.Host:
		p.line("dns", r.Host+" (an IP address: no lookup)")
	default:
		p.line("dns", fmt.Sprintf("%s -> %s in %s", r.Host, strings.Join(r.Addrs, ", "), probeDur(r.DNS)))
	}
	if r.Remote == "" {
		p.line("connect", "failed after "+probeDur(r.Connect))
		return
	}
	p.line("connect", r.Remote+" in "+probeDur(r.Connect))
	if t := r.TLS; t != nil {
		r.printTLS(p, t)
	}
	var req []string
	if len(r.Offered) > 0 {
		req = append(req, "offered subprotocols: "+strings.Join(r.Offered, ", "))
	}
	if r.Origin != "" {
		req = append(req, "origin: "+r.Origin)
	}
	if len(req) > 0 {
		p.line("request", strings.Join(req, "; "))
	}
}

func (r *ProbeReport) printTLS(p *probePrinter, t *ProbeTLS) {
	head := "handshake failed"
	if t.Version != "" {
		alpn := t.ALPN
		if alpn == "" {
			alpn = "none"
		}
		head = fmt.Sprintf("%s, %s, ALPN %s, in %s", t.Version, t.CipherSuite, alpn, probeDur(t.Handshake))
	}
	var more []string
	switch {
	case t.Verified:
		more = append(more, "certificate verified for "+t.ServerName)
	case t.VerifyError != "":
		more = append(more, "certificate NOT trusted for "+t.ServerName+": "+t.VerifyError)
	}
	for i, c := range t.Chain {
		more = append(more, fmt.Sprintf("[%d] %s, issued by %s, %s", i, c.Subject, c.Issuer, expiryText(c.NotAfter)))
		if i == 0 && len(c.Names) > 0 {
			more = append(more, "    for "+strings.Join(c.Names, ", "))
		}
	}
	p.line("tls", head, more...)
}

func expiryText(t time.Time) string {
	left := time.Until(t)
	if left < 0 {
		return "EXPIRED " + t.Format(time.DateOnly)
	}
	return fmt.Sprintf("expires %s (in %d days)", t.Format(time.DateOnly), int(left.Hours()/24))
}

// printResponse prints the status line and headers.
func (r *ProbeReport) printResponse(p *probePrinter) {
	status := fmt.Sprintf("%s %d %s, %s after the start", r.Proto, r.Status, http.StatusText(r.Status), probeDur(r.Open))
	if r.SSE != nil {
		status += fmt.Sprintf(" (first byte %s after the request)", probeDur(r.SSE.FirstByte))
	}
	var hdr []string
	for _, k := range slices.Sorted(maps.Keys(r.Header)) {
		for _, v := range r.Header[k] {
			hdr = append(hdr, k+": "+v)
		}
	}
	if r.Kind == "sse" {
		for _, k := range sseHeaders {
			if r.Header.Get(k) == "" {
				hdr = append(hdr, k+": (not sent)")
			}
		}
	}
	p.line("response", status, hdr...)
	if r.Body != "" {
		p.line("body", probePreview([]byte(r.Body), len(r.Body), false))
	}
	if r.Kind == "websocket" && r.Status == http.StatusSwitchingProtocols && r.Stage == "" {
		p.line("subprotocol", orNone(r.Subprotocol))
		p.line("extensions", orNone(r.Extensions))
	}
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// printTraffic prints what arrived during the watch.
func (r *ProbeReport) printTraffic(p *probePrinter) {
	m := r.Messages
	label, unit := "messages", "message"
	if r.Kind == "sse" {
		label, unit = "events", "event"
		defer r.printStream(p)
	}
	if m.Count == 0 {
		p.line(label, "none")
	} else {
		head := fmt.Sprintf("%d %s(s), %d B (%d-%d B each); first %s after open", m.Count, unit, m.Bytes, m.MinSize, m.MaxSize, probeDur(m.First))
		if r.Kind == "websocket" {
			head = fmt.Sprintf("%d (%d text, %d binary), %d B (%d-%d B each); first %s after open", m.Count, m.Text, m.Binary, m.Bytes, m.MinSize, m.MaxSize, probeDur(m.First))
		}
		var more []string
		for _, msg := range m.Previews {
			id := ""
			if msg.ID != "" {
				id = " id " + msg.ID
			}
			more = append(more, fmt.Sprintf("+%-8s %s%s, %d B: %s", probeDur(msg.At), msg.Type, id, msg.Size, msg.Preview))
		}
		if m.Count > len(m.Previews) {
			more = append(more, fmt.Sprintf("... and %d more", m.Count-len(m.Previews)))
		}
		p.line(label, head, more...)
	}
	if r.Kind == "websocket" {
		p.line("pings", spacingText(r.Pings, "from the server"))
	}
}

// printStream prints what is particular to an event stream.
func (r *ProbeReport) printStream(p *probePrinter) {
	s := r.SSE
	var parts []string
	if s.FirstEvent > 0 {
		parts = append(parts, "first event "+probeDur(s.FirstEvent)+" after the request")
	}
	if s.Retry != "" {
		parts = append(parts, "retry "+s.Retry+"ms")
	}
	parts = append(parts, fmt.Sprintf("padding %d B", s.Padding))
	p.line("stream", strings.Join(parts, "; "))
	if len(s.Types) > 0 {
		var types []string
		for _, t := range slices.Sorted(maps.Keys(s.Types)) {
			types = append(types, t+" "+strconv.Itoa(s.Types[t]))
		}
		p.line("event types", strings.Join(types, ", "))
	}
	if len(s.IDs) > 0 {
		ids := s.IDs[:min(len(s.IDs), 3)]
		p.line("ids", strings.Join(ids, ", ")+" ... last "+s.LastID)
	}
	p.line("heartbeats", spacingText(s.Heartbeats, "comment line(s)"))
	if len(s.Bursts) == 0 {
		p.line("bursts", "none")
		return
	}
	var more []string
	for _, b := range s.Bursts {
		more = append(more, fmt.Sprintf("%d within %s at %s, after %s of nothing", b.Items, probeDur(b.Span), probeDur(b.At), probeDur(b.Gap)))
	}
	p.line("bursts", more[0], more[1:]...)
}

func spacingText(s ProbeSpacing, what string) string {
	switch s.Count {
	case 0:
		return "none"
	case 1:
		return "1 " + strings.TrimSuffix(what, "(s)")
	}
	return fmt.Sprintf("%d %s, every %s (%s-%s)", s.Count, what, probeDur(s.Mean), probeDur(s.Min), probeDur(s.Max))
}

// endText says how the connection ended.
func (r *ProbeReport) endText() string {
	e := r.End
	after := probeDur(e.After)
	switch e.By {
	case ProbeEndServer:
		if r.Kind == "sse" {
			return "the server ended the stream after " + after
		}
		return fmt.Sprintf("the server closed after %s: %d %q", after, e.Code, e.Reason)
	case ProbeEndCut:
		return fmt.Sprintf("cut without a close after %s, %s after the last frame (%s)", after, probeDur(e.Silence), e.Error)
	}
	switch {
	case e.Error != "" && strings.HasPrefix(e.Error, "interrupted"):
		return "the probe was " + e.Error + " after " + after
	case r.Kind == "sse":
		return "the probe ended it after " + after
	case e.Echoed:
		return fmt.Sprintf("the probe closed after %s; the server answered %d %q", after, e.Code, e.Reason)
	}
	return fmt.Sprintf("the probe closed after %s; the server did not answer the close (%s)", after, orNone(e.Error))
}

// probeDur formats a duration for people: 0.21ms, 12ms, 1.5s, 2m30s.
func probeDur(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	}
	return d.Round(time.Second).String()
}
