package bridge

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestTakenOverStreamEndsItsBody: a stream taken over by a resume ends
// its chunked body cleanly, with the last chunk, whether it was hijacked
// or stayed in its handler.
func TestTakenOverStreamEndsItsBody(t *testing.T) {
	for _, poller := range []bool{true, false} {
		t.Run(map[bool]string{true: "hijacked", false: "net/http"}[poller], func(t *testing.T) {
			var h *harness
			if poller {
				h = newHarness(t, Options{Padding: 16})
			} else {
				h = newHandlerHarness(t, Options{Padding: 16})
			}
			c, br, _ := dialRawStream(t, h, 1)
			body := httputil.NewChunkedReader(br)
			got := readUntil(t, body, "\nid: ")
			sid, _, _ := strings.Cut(got[strings.Index(got, `"session":"`)+len(`"session":"`):], `"`)
			s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".0"}})
			s2.session()
			_ = c.SetReadDeadline(time.Now().Add(wait))
			_, err := io.ReadAll(body)
			if err != nil {
				t.Errorf("taken-over stream's body ended with %v, want a clean end (last chunk)", err)
			}
		})
	}
}

// TestServeDoneBeforeClientSeesEnd: a hijacked stream calls done (the
// proxy's connection slot) before its client sees the end of the
// connection, so that a client that reconnects at once finds its slot
// free.
func TestServeDoneBeforeClientSeesEnd(t *testing.T) {
	var done atomic.Bool
	h := newHarness(t, Options{Padding: 16}, func(srv *httptest.Server) {
		b := srv.Config.Handler.(*Bridge)
		srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.Serve(w, r, func() {
				if r.Method == http.MethodGet {
					done.Store(true)
				}
			})
		})
	})
	_, br, _ := dialRawStream(t, h, 1)
	body := httputil.NewChunkedReader(br)
	readUntil(t, body, "\nid: ")
	up := h.up.next(t)
	up.close(4000, "bye")
	if _, err := io.ReadAll(br); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if !done.Load() {
		t.Errorf("the client saw the end of its connection before done (its slot's release) was called")
	}
}

// TestHijackedStreamEndSurvivesUnreadClientBytes: a client that sent
// bytes after its request (a stray CRLF) and reads slowly still gets the
// end of its stream: the last events, the close event and the last
// chunk. Closing a socket that holds unread bytes would reset it and
// throw away what is still queued for the client; the stream half-closes
// and reads them first (see linger).
func TestHijackedStreamEndSurvivesUnreadClientBytes(t *testing.T) {
	for _, extra := range []bool{false, true} {
		t.Run(map[bool]string{false: "no extra byte", true: "one extra byte"}[extra], func(t *testing.T) {
			h := newHarness(t, Options{Padding: 16})
			c, err := smallRecvDialer(4096).Dial("tcp", h.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(wait))
			io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: example.test\r\nAccept: text/event-stream\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			readUntil(t, resp.Body, "event: session\n")
			if extra {
				io.WriteString(c, "\r\n") // a stray CRLF, as some clients send after a request
			}
			up := h.up.next(t)
			for i := range 50 {
				up.send(t, false, strings.Repeat("x", 1000)+string(rune('a'+i%26)))
			}
			up.close(4000, "bye")
			time.Sleep(500 * time.Millisecond)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || !strings.Contains(string(rest), "event: close") {
				t.Errorf("read %d bytes, then %v; close event: %v", len(rest), err, strings.Contains(string(rest), "event: close"))
			}
		})
	}
}
