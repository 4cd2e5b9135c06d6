package bridge

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// TestStreamWireProtocol checks DESIGN.md's wire protocol on a stream that
// takes its connection over (the proxy's) and on one that stays in its
// handler.
func TestStreamWireProtocol(t *testing.T) {
	for name, start := range map[string]func(testing.TB, Options, ...func(*httptest.Server)) *harness{
		"hijacked": newHarness,
		"handler":  newHandlerHarness,
	} {
		t.Run(name, func(t *testing.T) {
			h := start(t, Options{Padding: 64, Retry: 1500 * time.Millisecond})
			s := h.stream("/ws/feed?room=7", nil)
			up := h.up.next(t)
			if got, want := up.r.URL.String(), "/ws/feed?room=7"; got != want {
				t.Errorf("upstream URL %q, want %q", got, want)
			}

			for k, want := range map[string]string{
				"Content-Type":      "text/event-stream",
				"Cache-Control":     "no-cache, no-transform",
				"X-Accel-Buffering": "no",
				"Connection":        "",
			} {
				if got := s.resp.Header.Get(k); got != want {
					t.Errorf("header %s: %q, want %q", k, got, want)
				}
			}

			pad := s.next()
			if want := ":" + strings.Repeat(" ", 62) + "\n"; !strings.HasPrefix(pad.raw, want) || len(pad.comment) != 1 {
				t.Errorf("padding block %q, want a %d-byte comment", pad.raw, 64)
			}
			if pad.retry != "1500" {
				// The padding comment and retry: share the first block.
				t.Errorf("retry %q, want 1500 (block %q)", pad.retry, pad.raw)
			}
			sess := s.next()
			sid, _, _ := strings.Cut(strings.TrimPrefix(sess.data, `{"session":"`), `"`)
			if want := "event: session\ndata: {\"session\":\"" + sid + "\",\"send\":\"/ws/feed?sg_session=" + sid + "\"}\n\n"; sess.raw != want {
				t.Errorf("session event %q, want %q", sess.raw, want)
			}
			if !validSessionID(sid) {
				t.Errorf("session id %q is not 32 hex digits", sid)
			}
			if idOnly := s.next(); idOnly.raw != "id: "+sid+".0\n\n" {
				t.Errorf("id block %q, want %q", idOnly.raw, "id: "+sid+".0\n\n")
			}

			msgs := []struct {
				binary bool
				data   string
				raw    string // the expected block after the id line
				want   string // what an EventSource gets as event.data
			}{
				{false, "hello", "data: hello\n\n", "hello"},
				{false, "a\nb", "data: a\ndata: b\n\n", "a\nb"},
				{false, "a\n\nevent: close\ndata: forged", "data: a\ndata: \ndata: event: close\ndata: data: forged\n\n", "a\n\nevent: close\ndata: forged"},
				{false, "x\r\ny\rz", "data: x\ndata: y\ndata: z\n\n", "x\ny\nz"},
				{false, "", "data: \n\n", ""},
				{false, "id: 99\nretry: 1", "data: id: 99\ndata: retry: 1\n\n", "id: 99\nretry: 1"},
				{true, "\x00\x01\x02\xff", "data: AAEC/w==\n\n", "AAEC/w=="},
			}
			for _, m := range msgs {
				up.send(t, m.binary, m.data)
			}
			for i, m := range msgs {
				ev := s.next()
				id := fmt.Sprintf("%s.%d", sid, i+1)
				want := "id: " + id + "\n" + m.raw
				wantEvent := ""
				if m.binary {
					want, wantEvent = "event: binary\n"+want, "binary"
				}
				if ev.raw != want {
					t.Errorf("message %d: block %q, want %q", i+1, ev.raw, want)
				}
				if ev.data != m.want || ev.id != id || ev.event != wantEvent {
					t.Errorf("message %d: event %q id %q data %q, want %q %q %q", i+1, ev.event, ev.id, ev.data, wantEvent, id, m.want)
				}
				if m.binary {
					if got, _ := base64.StdEncoding.DecodeString(ev.data); string(got) != m.data {
						t.Errorf("binary message decodes to %q, want %q", got, m.data)
					}
				}
			}
		})
	}
}

func TestStreamHeartbeat(t *testing.T) {
	h := newHarness(t, Options{Heartbeat: 20 * time.Millisecond})
	s := h.stream("/ws", nil)
	s.session()
	up := h.up.next(t)
	pings := 0
	for pings < 2 {
		ev := s.next()
		if ev.raw == ": ping\n\n" {
			pings++
		}
	}
	up.send(t, false, "after pings")
	if ev := s.nextEvent(); ev.data != "after pings" {
		t.Errorf("got %q, want the message", ev.data)
	}
}

func TestStreamForwarding(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/ws/x?a=1&sg_protocols=chat.v1,chat.v2&lastEventId=junk&b=2", http.Header{
		"Cookie":        {"sid=abc"},
		"Authorization": {"Bearer t"},
	})
	up := h.up.next(t)
	if got, want := up.r.URL.RawQuery, "a=1&b=2"; got != want {
		t.Errorf("upstream query %q, want %q", got, want)
	}
	if got := up.r.Header.Get("Sec-WebSocket-Protocol"); got != "chat.v1, chat.v2" {
		t.Errorf("upstream offered %q, want chat.v1, chat.v2", got)
	}
	if got := up.r.Header.Get("Cookie"); got != "sid=abc" {
		t.Errorf("upstream Cookie %q", got)
	}
	if got := up.r.Header.Get("Authorization"); got != "Bearer t" {
		t.Errorf("upstream Authorization %q", got)
	}
	ev := s.nextEvent()
	if !strings.HasSuffix(ev.data, `,"protocol":"chat.v2"}`) {
		t.Errorf("session event %q does not name the subprotocol chat.v2", ev.data)
	}
}

func TestStreamRefused(t *testing.T) {
	h := newHarness(t, Options{
		CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") != "https://evil.example" },
	})
	tests := []struct {
		name   string
		path   string
		hdr    http.Header
		status int
	}{
		{"upstream 403", "/ws?refuse=403", nil, 403},
		{"upstream 401", "/ws?refuse=401", nil, 401},
		{"upstream 200 is no WebSocket", "/ws?refuse=200", nil, 502},
		{"foreign origin", "/ws", http.Header{"Origin": {"https://evil.example"}}, 403},
		{"not an event stream", "/ws", http.Header{"Accept": {"text/html"}}, 406},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, cancel := h.get(tt.path, tt.hdr)
			defer cancel()
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 401 && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate %q not passed on", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	t.Run("upstream unreachable", func(t *testing.T) {
		b, err := New(Options{Upstream: func(*http.Request) (string, http.Header) { return "ws://127.0.0.1:1/ws", nil }})
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		req, _ := http.NewRequest(http.MethodGet, "/ws", nil)
		req.Header.Set("Accept", "text/event-stream")
		rec := newRecorder()
		b.ServeHTTP(rec, req)
		if rec.status != http.StatusBadGateway {
			t.Errorf("status %d, want 502", rec.status)
		}
	})
}

// recorder is a minimal ResponseWriter for refusals.
type recorder struct {
	hdr    http.Header
	status int
}

func newRecorder() *recorder                    { return &recorder{hdr: http.Header{}} }
func (r *recorder) Header() http.Header         { return r.hdr }
func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }

func TestUpstreamClose(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	up.send(t, false, "last words")
	up.close(4000, "bye")
	if ev := s.nextEvent(); ev.data != "last words" {
		t.Fatalf("got %q, want the message sent before the close", ev.data)
	}
	ev := s.nextEvent()
	if want := "event: close\ndata: {\"code\":4000,\"reason\":\"bye\"}\n\n"; ev.raw != want {
		t.Errorf("close event %q, want %q", ev.raw, want)
	}
	if rest := s.waitEnd(); len(rest) != 0 {
		t.Errorf("events after close: %v", rest)
	}
	resp, cancel := h.get("/ws", http.Header{"Last-Event-ID": {sid + ".1"}})
	defer cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("reconnect after close: status %d, want 204", resp.StatusCode)
	}
}

func TestUpstreamCloseWhileDetached(t *testing.T) {
	h := newHarness(t, Options{})
	hs := h.hook()
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	up.send(t, false, "one")
	if ev := s.nextEvent(); ev.id != sid+".1" {
		t.Fatalf("got id %q", ev.id)
	}
	s.close()
	up.send(t, false, "two")
	hs.waitAppended(t, 2)
	up.close(websocket.CloseNormalClosure, "done")
	up.waitClosed(t)

	// The resume still gets what it missed, then the close event.
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".1"}})
	s2.session()
	if ev := s2.nextEvent(); ev.id != sid+".2" || ev.data != "two" {
		t.Errorf("got %q %q, want event 2", ev.id, ev.data)
	}
	if ev := s2.nextEvent(); ev.event != "close" || ev.data != `{"code":1000,"reason":"done"}` {
		t.Errorf("got %q %q, want the close event", ev.event, ev.data)
	}
	s2.waitEnd()
	resp, cancel := h.get("/ws", http.Header{"Last-Event-ID": {sid + ".2"}})
	defer cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d, want 204", resp.StatusCode)
	}
}

func TestUpstreamLost(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/ws", nil)
	s.session()
	up := h.up.next(t)
	_ = up.c.UnderlyingConn().Close() // no close frame
	ev := s.nextEvent()
	if ev.event != "close" || ev.data != `{"code":1011,"reason":"upstream connection lost"}` {
		t.Errorf("got %q %q, want close 1011", ev.event, ev.data)
	}
	s.waitEnd()
}

// TestUpstreamBrokeRule has the upstream break a rule: the upstream is
// told why (1009, 1007), and the page gets the close a proxied WebSocket
// client gets, 1001 "peer broke the protocol", not a lost connection; on
// the event loop and on a goroutine leg alike.
func TestUpstreamBrokeRule(t *testing.T) {
	harnesses := map[string]func(testing.TB, Options, ...func(*httptest.Server)) *harness{
		"loop": newHarness, "goroutine": newHandlerHarness,
	}
	cases := []struct {
		name string
		msg  string
		code int
	}{
		{"too big", strings.Repeat("x", 100), websocket.CloseMessageTooBig},
		{"not UTF-8", "bad \xff text", websocket.CloseInvalidFramePayloadData},
	}
	for hname, newH := range harnesses {
		for _, c := range cases {
			t.Run(hname+"/"+c.name, func(t *testing.T) {
				h := newH(t, Options{Leg: wsconn.Options{MaxMessageSize: 64}})
				s := h.stream("/ws", nil)
				s.session()
				up := h.up.next(t)
				up.send(t, false, c.msg)
				ev := s.nextEvent()
				if want := `{"code":1001,"reason":"peer broke the protocol"}`; ev.event != "close" || ev.data != want {
					t.Errorf("got %q %q, want close %s", ev.event, ev.data, want)
				}
				if code, _ := up.waitClosed(t); code != c.code {
					t.Errorf("upstream told %d, want %d", code, c.code)
				}
				s.waitEnd()
			})
		}
	}
}

// TestStreamHTTP2 streams over HTTP/2: no Connection header, and an idle
// stream outlives its write deadline (which is cleared after each write;
// on HTTP/2 a deadline that passes resets the stream).
func TestStreamHTTP2(t *testing.T) {
	h := newHarness(t, Options{WriteTimeout: 30 * time.Millisecond, Heartbeat: 150 * time.Millisecond})
	srv := httptest.NewUnstartedServer(h.b)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	defer srv.CloseClientConnections()
	plain := h.srv
	t.Cleanup(plain.Close)
	h.srv = srv
	s := h.stream("/ws", nil)
	if s.resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", s.resp.Proto)
	}
	if got := s.resp.Header.Get("Connection"); got != "" {
		t.Errorf("Connection header %q on HTTP/2", got)
	}
	s.session()
	up := h.up.next(t)
	for pings := 0; pings < 2; {
		if ev := s.next(); ev.raw == ": ping\n\n" {
			pings++
		}
	}
	up.send(t, false, "after idling")
	if ev := s.nextEvent(); ev.data != "after idling" {
		t.Errorf("got %q", ev.data)
	}
}
