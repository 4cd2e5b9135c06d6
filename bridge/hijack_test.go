package bridge

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/textproto"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// dialRawStream sends a stream request in HTTP/1.minor over a raw connection
// to h and returns the connection and its reader, past the response head,
// and the head's headers.
func dialRawStream(t *testing.T, h *harness, minor int) (net.Conn, *bufio.Reader, textproto.MIMEHeader) {
	t.Helper()
	c, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c, "GET /ws HTTP/1."+string(rune('0'+minor))+"\r\nHost: example.test\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	status, err := tp.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	if status != "HTTP/1.1 200 OK" {
		t.Fatalf("status line %q", status)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	return c, br, hdr
}

// readUntil reads r until it has seen want, and returns what it read.
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	var got []byte
	b := make([]byte, 512)
	for !strings.Contains(string(got), want) {
		n, err := r.Read(b)
		got = append(got, b[:n]...)
		if err != nil && !strings.Contains(string(got), want) {
			t.Fatalf("read %q, then %v; want %q", got, err, want)
		}
	}
	return string(got)
}

// TestHijackedStreamWire: an HTTP/1 stream that took its connection over
// sends a complete response of its own. HTTP/1.1 gets a chunked body that
// ends with the last chunk after the close event, HTTP/1.0 a body that
// ends with the connection; both are told Connection: close, and the
// connection is closed after the stream.
func TestHijackedStreamWire(t *testing.T) {
	for _, minor := range []int{1, 0} {
		t.Run("HTTP/1."+string(rune('0'+minor)), func(t *testing.T) {
			h := newHarness(t, Options{Padding: 16})
			c, br, hdr := dialRawStream(t, h, minor)
			want := map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     "no-cache, no-transform",
				"X-Accel-Buffering": "no",
				"Connection":        "close",
				"Transfer-Encoding": map[int]string{1: "chunked", 0: ""}[minor],
			}
			for k, v := range want {
				if got := hdr.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			if _, err := http.ParseTime(hdr.Get("Date")); err != nil {
				t.Errorf("Date %q: %v", hdr.Get("Date"), err)
			}
			var body io.Reader = br
			if minor == 1 {
				body = httputil.NewChunkedReader(br)
			}
			readUntil(t, body, "event: session\n")
			up := h.up.next(t)
			up.send(t, false, "hello")
			readUntil(t, body, "data: hello\n\n")
			up.close(4000, "bye")
			readUntil(t, body, "event: close\ndata: {\"code\":4000,\"reason\":\"bye\"}\n\n")
			// The chunked reader ends at the last chunk; then, or right
			// away for HTTP/1.0, the connection ends.
			if rest, err := io.ReadAll(body); err != nil || len(rest) != 0 {
				t.Errorf("after the close event: %q, %v; want the end of the body", rest, err)
			}
			// What is left is the chunked body's empty trailer, then EOF.
			_ = c.SetReadDeadline(time.Now().Add(wait))
			rest, err := io.ReadAll(br)
			if want := map[int]string{1: "\r\n", 0: ""}[minor]; string(rest) != want || err != nil {
				t.Errorf("after the body: %q, %v; want %q and EOF", rest, err, want)
			}
		})
	}
}

// TestHijackedStreamClientGone: a client that leaves a hijacked stream,
// by closing its connection or by resetting it, ends the stream at once
// (the Poller watches for it), with closed_by client in the stream's log
// line; the session stays for a resume.
func TestHijackedStreamClientGone(t *testing.T) {
	for _, reset := range []bool{false, true} {
		name := map[bool]string{false: "FIN", true: "reset"}[reset]
		t.Run(name, func(t *testing.T) {
			var logs syncBuffer
			ended := make(chan struct{}, 1)
			h := newHarness(t, Options{
				Heartbeat: time.Hour, // no write may find out first
				Logger:    zerolog.New(&logs).Level(zerolog.InfoLevel),
				Track:     func(func()) func() { return func() { ended <- struct{}{} } },
			})
			c, br, _ := dialRawStream(t, h, 1)
			body := readUntil(t, httputil.NewChunkedReader(br), "\nid: ")
			sid, _, _ := strings.Cut(body[strings.Index(body, `"session":"`)+len(`"session":"`):], `"`)
			if reset {
				_ = c.(*net.TCPConn).SetLinger(0)
			}
			c.Close()
			select {
			case <-ended:
			case <-time.After(wait):
				t.Fatal("the stream did not end after its client left")
			}
			lines := logs.lines(t)
			if len(lines) != 1 || lines[0]["closed_by"] != "client" {
				t.Errorf("log lines %v, want one with closed_by client", lines)
			}
			s := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".0"}})
			if got := s.session(); got != sid {
				t.Errorf("resume got session %q, want %q", got, sid)
			}
		})
	}
}

// TestServeDoneOutlivesHandler: Serve's done, the proxy's connection
// slot, is called when a hijacked stream ends, not when its handler
// returns; for other requests, when the handler returns.
func TestServeDoneOutlivesHandler(t *testing.T) {
	done := make(chan string, 4)
	h := newHarness(t, Options{}, func(srv *httptest.Server) {
		b := srv.Config.Handler.(*Bridge)
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.Serve(w, r, func() { done <- r.Method + " " + r.URL.RawQuery })
		})
	})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	if got := h.post("/ws?sg_session="+sid, "text/plain", "hi", nil); got != http.StatusAccepted {
		t.Fatalf("POST: %d", got)
	}
	up.next(t)
	select {
	case got := <-done:
		if got != "POST sg_session="+sid {
			t.Fatalf("done for %q while the stream is open, want the POST's", got)
		}
	case <-time.After(wait):
		t.Fatal("no done for the POST")
	}
	select {
	case got := <-done:
		t.Fatalf("done for %q while the stream is open", got)
	case <-time.After(100 * time.Millisecond):
	}
	up.close(4000, "bye")
	s.waitEnd()
	select {
	case got := <-done:
		if got != "GET " {
			t.Errorf("done for %q, want the stream's", got)
		}
	case <-time.After(wait):
		t.Fatal("no done after the stream ended")
	}
}

// streamGoroutines counts the goroutines running a stream: in one of its
// methods, or in its handler.
func streamGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "bridge.(*stream).") || strings.Contains(g, "bridge.(*Bridge).serveStream") {
			count++
		}
	}
	return count
}

// TestIdleHijackedStreamsHoldNoGoroutine: a hijacked stream runs a
// goroutine only while it has something to do. Streams that got their
// session, an event and heartbeats, and wait for the next, hold none; a
// stream that stays in its handler holds that one.
func TestIdleHijackedStreamsHoldNoGoroutine(t *testing.T) {
	const n = 20
	for _, hijacked := range []bool{true, false} {
		t.Run(map[bool]string{true: "hijacked", false: "handler"}[hijacked], func(t *testing.T) {
			opts := Options{Heartbeat: 30 * time.Millisecond}
			h := map[bool]func(testing.TB, Options, ...func(*httptest.Server)) *harness{true: newHarness, false: newHandlerHarness}[hijacked](t, opts)
			for range n {
				var body io.Reader
				if hijacked {
					_, br, _ := dialRawStream(t, h, 1)
					body = httputil.NewChunkedReader(br)
				} else {
					s := h.stream("/ws", nil)
					t.Cleanup(s.close)
					s.session()
					h.up.next(t).send(t, false, "hello")
					if ev := s.nextEvent(); ev.data != "hello" {
						t.Fatalf("event %+v", ev)
					}
					continue
				}
				readUntil(t, body, "event: session\n")
				h.up.next(t).send(t, false, "hello")
				readUntil(t, body, "data: hello\n\n")
				readUntil(t, body, ": ping\n\n")
			}
			want := map[bool]int{true: 0, false: n}[hijacked]
			deadline := time.Now().Add(wait)
			got := streamGoroutines()
			for got != want && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
				got = streamGoroutines()
			}
			if got != want {
				t.Errorf("%d goroutines run the %d idle streams, want %d", got, n, want)
			}
		})
	}
}
