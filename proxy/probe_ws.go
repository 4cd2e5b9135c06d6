package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// probeReservedHeaders are the handshake headers gorilla writes itself; a
// caller's -header may not set them.
var probeReservedHeaders = []string{"Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions", "Sec-Websocket-Protocol"}

// checkProbeHeader refuses caller headers that would clash with the
// handshake the probe writes.
func checkProbeHeader(h http.Header) error {
	for k := range h {
		if k = http.CanonicalHeaderKey(k); slices.Contains(probeReservedHeaders, k) {
			return fmt.Errorf("header %s is part of the handshake the probe writes; use -subprotocol or -compression", k)
		}
	}
	return nil
}

// probeWebSocket dials, records the handshake, then watches the connection
// for opts.For and closes it.
func probeWebSocket(ctx context.Context, u *url.URL, opts ProbeOptions, rep *ProbeReport) {
	d := newProbeDialer(rep, opts)
	dialer := &websocket.Dialer{
		NetDialContext:    d.dialTCP,
		NetDialTLSContext: d.dialTLS,
		HandshakeTimeout:  opts.Timeout,
		Subprotocols:      opts.Subprotocols,
		EnableCompression: opts.Compression,
	}
	c, resp, err := dialer.DialContext(ctx, u.String(), probeHeader(opts))
	if resp != nil {
		rep.Open = time.Since(rep.Started)
		rep.Status, rep.Proto, rep.Header = resp.StatusCode, resp.Proto, resp.Header
	}
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			rep.Body = string(body)
		}
		rep.failed(d.stage, err)
		return
	}
	defer c.Close()
	rep.Subprotocol = c.Subprotocol()
	rep.Extensions = resp.Header.Get("Sec-WebSocket-Extensions")
	watchWebSocket(ctx, c, opts, rep)
}

// wsWatch is the state of a watched WebSocket. closeSent is shared with
// the timer that sends the probe's close; everything else belongs to the
// reading goroutine.
type wsWatch struct {
	c      *websocket.Conn
	rep    *ProbeReport
	opened time.Time
	last   time.Time       // the last frame from the server (or the open)
	pings  []time.Duration // ping arrivals, counted from the open

	mu        sync.Mutex
	closeSent bool
}

// watchWebSocket reads everything the server sends for opts.For, answering
// pings, then sends close 1000 and waits probeCloseWait for the answer.
func watchWebSocket(ctx context.Context, c *websocket.Conn, opts ProbeOptions, rep *ProbeReport) {
	w := &wsWatch{c: c, rep: rep, opened: time.Now()}
	w.last = w.opened
	c.SetPingHandler(w.onPing)
	c.SetPongHandler(func(string) error { w.frame(time.Now()); return nil })
	timer := time.AfterFunc(opts.For, w.sendClose)
	defer timer.Stop()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetReadDeadline(w.opened.Add(opts.For + probeCloseWait))
	for {
		mt, r, err := c.NextReader()
		if err != nil {
			w.end(ctx, err)
			return
		}
		var pw previewWriter
		_, _ = io.Copy(&pw, r) // a read error shows again at NextReader
		now := time.Now()
		w.frame(now)
		typ := "text"
		if mt == websocket.BinaryMessage {
			typ = "binary"
			rep.Messages.Binary++
		} else {
			rep.Messages.Text++
		}
		rep.Messages.add(ProbeMessage{At: now.Sub(w.opened), Type: typ, Size: pw.n, Preview: pw.preview(mt == websocket.BinaryMessage)}, opts.Previews)
	}
}

// frame notes a frame from the server and the quiet gap before it.
func (w *wsWatch) frame(now time.Time) {
	w.rep.quietest = max(w.rep.quietest, now.Sub(w.last))
	w.last = now
}

// onPing records a server ping and answers it, as gorilla's default does.
func (w *wsWatch) onPing(data string) error {
	now := time.Now()
	w.frame(now)
	w.pings = append(w.pings, now.Sub(w.opened))
	w.rep.Pings = spacingOf(w.pings)
	err := w.c.WriteControl(websocket.PongMessage, []byte(data), now.Add(time.Second))
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		return err
	}
	return nil
}

// sendClose ends the watch: close 1000, which the server should answer.
func (w *wsWatch) sendClose() {
	w.mu.Lock()
	w.closeSent = true
	w.mu.Unlock()
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "probe done")
	_ = w.c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(probeCloseWait))
}

// end records how the connection ended, from the error that ended reading.
func (w *wsWatch) end(ctx context.Context, err error) {
	now := time.Now()
	w.mu.Lock()
	sent := w.closeSent
	w.mu.Unlock()
	e := &ProbeEnd{After: now.Sub(w.opened), Silence: now.Sub(w.last)}
	var ce *websocket.CloseError
	if errors.As(err, &ce) && ce.Code == websocket.CloseAbnormalClosure {
		ce = nil // gorilla's name for a connection that ended without a close frame
	}
	switch {
	case ce != nil:
		e.By, e.Code, e.Reason, e.Echoed = ProbeEndServer, ce.Code, ce.Text, sent
		if sent {
			e.By = ProbeEndProbe
		}
	case ctx.Err() != nil:
		e.By, e.Error = ProbeEndProbe, "interrupted: "+ctx.Err().Error()
	case sent:
		e.By, e.Error = ProbeEndProbe, oneLine(err.Error())
	default:
		e.By, e.Error = ProbeEndCut, oneLine(err.Error())
	}
	w.rep.End = e
}

// add counts a message and keeps its preview if it is one of the first.
func (m *ProbeMessages) add(msg ProbeMessage, previews int) {
	if m.Count == 0 || msg.Size < m.MinSize {
		m.MinSize = msg.Size
	}
	if m.Count == 0 {
		m.First = msg.At
	}
	m.MaxSize = max(m.MaxSize, msg.Size)
	m.Count++
	m.Bytes += int64(msg.Size)
	if len(m.Previews) < previews {
		m.Previews = append(m.Previews, msg)
	}
}

// previewWriter counts what is written and keeps its start.
type previewWriter struct {
	n   int
	buf []byte
}

func (w *previewWriter) Write(p []byte) (int, error) {
	w.n += len(p)
	if room := probePreviewBytes + 1 - len(w.buf); room > 0 {
		w.buf = append(w.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// preview renders the start of the payload: text with control characters
// escaped, binary as hex. "…" marks a cut.
func (w *previewWriter) preview(binary bool) string {
	return probePreview(w.buf, w.n, binary)
}

func probePreview(p []byte, total int, binary bool) string {
	if binary {
		n := min(len(p), 16)
		s := hex.EncodeToString(p[:n])
		if total > n {
			s += "…"
		}
		return s
	}
	cut := len(p) > probePreviewBytes || total > len(p)
	p = p[:min(len(p), probePreviewBytes)]
	for i := 0; cut && i < utf8.UTFMax-1 && len(p) > 0; i++ { // do not split the last rune
		if r, size := utf8.DecodeLastRune(p); r != utf8.RuneError || size != 1 {
			break
		}
		p = p[:len(p)-1]
	}
	q := strconv.Quote(string(p))
	s := strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
	if cut {
		s += "…"
	}
	return s
}

// spacingOf summarizes the gaps between consecutive arrivals.
func spacingOf(at []time.Duration) ProbeSpacing {
	s := ProbeSpacing{Count: len(at)}
	if len(at) < 2 {
		return s
	}
	var total time.Duration
	for i := 1; i < len(at); i++ {
		gap := at[i] - at[i-1]
		if i == 1 || gap < s.Min {
			s.Min = gap
		}
		s.Max = max(s.Max, gap)
		total += gap
	}
	s.Mean = total / time.Duration(len(at)-1)
	return s
}
