package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// SSE probe tuning.
const (
	// probeMaxLine is the longest SSE line the probe reads.
	probeMaxLine = 1 << 20
	// probeHeartbeatMax is the longest comment line counted as a heartbeat;
	// longer ones are padding.
	probeHeartbeatMax = 64
	// probeMaxIDs is how many event ids the report keeps.
	probeMaxIDs = 5
	// A burst is at least probeBurstMin events and heartbeats, each within
	// probeBurstGap of the one before, after at least probeBurstQuiet of
	// nothing. A server that writes and flushes events as they happen
	// does not produce one, except to replay a backlog at once.
	probeBurstGap   = 10 * time.Millisecond
	probeBurstMin   = 3
	probeBurstQuiet = 100 * time.Millisecond
)

// probeSSE sends GET with Accept: text/event-stream over HTTP/1.1, records
// the response, then reads the stream for opts.For.
func probeSSE(ctx context.Context, u *url.URL, opts ProbeOptions, rep *ProbeReport) {
	d := newProbeDialer(rep, opts)
	dctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	dial := d.dialTCP
	if u.Scheme == "https" {
		dial = d.dialTLS
	}
	conn, err := dial(dctx, "tcp", probeHostPort(u))
	if err != nil {
		rep.failed(d.stage, err)
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	deadline, _ := dctx.Deadline()
	_ = conn.SetDeadline(deadline)

	req := sseRequest(ctx, u, opts)
	if err := req.Write(conn); err != nil {
		rep.failed(probeStageHandshake, err)
		return
	}
	sent := time.Now()
	br := bufio.NewReader(conn)
	_, _ = br.Peek(1)
	firstByte := time.Since(sent)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		rep.failed(probeStageHandshake, err)
		return
	}
	defer resp.Body.Close()
	rep.Open = time.Since(rep.Started)
	rep.Status, rep.Proto, rep.Header = resp.StatusCode, resp.Proto, resp.Header
	rep.SSE = &ProbeSSE{FirstByte: firstByte, Types: map[string]int{}}
	if !sseAccepted(resp) {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		rep.Body = string(body)
		return
	}
	w := &sseWatch{rep: rep, sse: rep.SSE, sent: sent, opened: time.Now(), previews: opts.Previews}
	w.last = w.opened
	_ = conn.SetDeadline(time.Time{})
	_ = conn.SetReadDeadline(w.opened.Add(opts.For))
	w.watch(ctx, resp)
}

// sseRequest is the GET an EventSource sends, with the caller's headers.
func sseRequest(ctx context.Context, u *url.URL, opts ProbeOptions) *http.Request {
	req := (&http.Request{Method: http.MethodGet, URL: u, Host: u.Host, Header: probeHeader(opts)}).WithContext(ctx)
	req.Header.Set("Accept", "text/event-stream")
	if req.Header.Get("Cache-Control") == "" {
		req.Header.Set("Cache-Control", "no-cache")
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
		req.Header.Del("Host")
	}
	return req
}

// sseAccepted reports whether resp is an event stream to read.
func sseAccepted(resp *http.Response) bool {
	return resp.StatusCode == http.StatusOK && sseContentType(resp.Header.Get("Content-Type"))
}

// probeHostPort is u's host:port, with the scheme's default port.
func probeHostPort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return net.JoinHostPort(u.Hostname(), p)
	}
	if u.Scheme == "https" || u.Scheme == "wss" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// sseWatch parses an event stream as EventSource does and records when
// each event and comment arrived. It is used from one goroutine.
type sseWatch struct {
	rep          *ProbeReport
	sse          *ProbeSSE
	sent, opened time.Time
	last         time.Time // the last line from the server (or the open)
	heartbeats   []time.Duration
	previews     int

	// the event being read
	typ, id string
	data    previewWriter
	hasData bool
}

// watch reads the stream until it ends or the read deadline (For) passes.
func (w *sseWatch) watch(ctx context.Context, resp *http.Response) {
	var body io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		body = &lazyGzip{r: resp.Body}
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 0, 4096), probeMaxLine)
	sc.Split(scanSSELines)
	for sc.Scan() {
		w.line(sc.Bytes(), time.Now())
	}
	w.end(ctx, sc.Err())
	w.sse.Bursts = findBursts(w.sse.arrivals)
}

// line handles one line of the stream.
func (w *sseWatch) line(b []byte, now time.Time) {
	w.rep.quietest = max(w.rep.quietest, now.Sub(w.last))
	w.last = now
	if len(b) == 0 {
		w.dispatch(now)
		return
	}
	if b[0] == ':' {
		w.comment(b, now)
		return
	}
	field, value, _ := bytes.Cut(b, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(field) {
	case "event":
		w.typ = string(value)
	case "data":
		if w.hasData {
			_, _ = w.data.Write([]byte("\n"))
		}
		_, _ = w.data.Write(value)
		w.hasData = true
	case "id":
		if !bytes.ContainsRune(value, 0) {
			w.id = string(value)
			w.sse.LastID = w.id
		}
	case "retry":
		w.sse.Retry = string(value)
	}
}

// comment counts a comment line: a heartbeat, or padding when long.
func (w *sseWatch) comment(b []byte, now time.Time) {
	if len(b) > probeHeartbeatMax {
		w.sse.Padding += len(b) + 1
		return
	}
	at := now.Sub(w.opened)
	w.heartbeats = append(w.heartbeats, at)
	w.sse.Heartbeats = spacingOf(w.heartbeats)
	w.arrive(now)
}

// dispatch ends the event being read at a blank line; one with no data
// line is dropped, as EventSource does.
func (w *sseWatch) dispatch(now time.Time) {
	defer func() { w.typ, w.id, w.data, w.hasData = "", "", previewWriter{}, false }()
	if !w.hasData {
		return
	}
	typ := w.typ
	if typ == "" {
		typ = "message"
	}
	if w.sse.FirstEvent == 0 {
		w.sse.FirstEvent = now.Sub(w.sent)
	}
	w.sse.Types[typ]++
	if w.id != "" && len(w.sse.IDs) < probeMaxIDs {
		w.sse.IDs = append(w.sse.IDs, w.id)
	}
	w.rep.Messages.add(ProbeMessage{At: now.Sub(w.opened), Type: typ, ID: w.id, Size: w.data.n, Preview: w.data.preview(false)}, w.previews)
	w.arrive(now)
}

// arrive notes an event or heartbeat for burst detection.
func (w *sseWatch) arrive(now time.Time) {
	if len(w.sse.arrivals) < probeMaxArrivals {
		w.sse.arrivals = append(w.sse.arrivals, now.Sub(w.sent))
	}
}

// end records how the stream ended from the error that ended reading (nil:
// the server ended it).
func (w *sseWatch) end(ctx context.Context, err error) {
	now := time.Now()
	e := &ProbeEnd{After: now.Sub(w.opened), Silence: now.Sub(w.last)}
	var ne net.Error
	switch {
	case err == nil:
		e.By = ProbeEndServer
	case ctx.Err() != nil:
		e.By, e.Error = ProbeEndProbe, "interrupted: "+ctx.Err().Error()
	case errors.As(err, &ne) && ne.Timeout():
		e.By = ProbeEndProbe
	default:
		e.By, e.Error = ProbeEndCut, oneLine(err.Error())
	}
	w.rep.End = e
}

// scanSSELines splits an event stream into lines ended by CRLF, LF or CR.
func scanSSELines(data []byte, atEOF bool) (int, []byte, error) {
	i := bytes.IndexAny(data, "\r\n")
	switch {
	case i < 0 && atEOF && len(data) > 0:
		return len(data), data, nil
	case i < 0:
		return 0, nil, nil
	case data[i] == '\n':
		return i + 1, data[:i], nil
	case i+1 < len(data):
		if data[i+1] == '\n' {
			return i + 2, data[:i], nil
		}
		return i + 1, data[:i], nil
	case atEOF:
		return i + 1, data[:i], nil
	}
	return 0, nil, nil // a CR at the end: wait to see if LF follows
}

// findBursts groups arrivals (counted from the request) into bursts.
func findBursts(at []time.Duration) []ProbeBurst {
	var out []ProbeBurst
	for i := 0; i < len(at); {
		j := i
		for j+1 < len(at) && at[j+1]-at[j] <= probeBurstGap {
			j++
		}
		gap := at[i]
		if i > 0 {
			gap = at[i] - at[i-1]
		}
		if n := j - i + 1; n >= probeBurstMin && gap >= probeBurstQuiet {
			out = append(out, ProbeBurst{At: at[i], Gap: gap, Items: n, Span: at[j] - at[i]})
		}
		i = j + 1
	}
	return out
}

// lazyGzip decompresses a gzip body, reading its header on the first Read
// rather than when the stream opens.
type lazyGzip struct {
	r  io.Reader
	zr *gzip.Reader
}

func (g *lazyGzip) Read(p []byte) (int, error) {
	if g.zr == nil {
		zr, err := gzip.NewReader(g.r)
		if err != nil {
			return 0, err
		}
		g.zr = zr
	}
	return g.zr.Read(p)
}
