package bridge

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestResumeRandomDrops drops the stream at random points, with messages
// arriving before, during and after each drop, and checks that the
// resumed streams together deliver every message exactly once, in order.
func TestResumeRandomDrops(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := newHarness(t, Options{})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	sent, got := 0, 0
	send := func(n int) {
		for range n {
			sent++
			up.send(t, false, fmt.Sprintf("m%d\nline 2", sent))
		}
	}
	expect := func(s *sseStream) {
		t.Helper()
		ev := s.nextEvent()
		got++
		if want := fmt.Sprintf("%s.%d", sid, got); ev.id != want || ev.data != fmt.Sprintf("m%d\nline 2", got) {
			t.Fatalf("got id %q data %q, want id %q (seed %d)", ev.id, ev.data, want, seed)
		}
	}
	for range 25 {
		send(rng.IntN(20))
		for range rng.IntN(sent - got + 1) {
			expect(s)
		}
		var wg sync.WaitGroup
		wg.Go(func() { send(rng.IntN(10)) }) // while the drop happens
		s.close()
		wg.Wait()
		send(rng.IntN(10)) // while no stream is attached
		s = h.stream("/ws", http.Header{"Last-Event-ID": {fmt.Sprintf("%s.%d", sid, got)}})
		if ev := s.nextEvent(); ev.event != "session" || !strings.Contains(ev.data, sid) {
			t.Fatalf("resume: first event %q %q, want the session event of %s", ev.event, ev.data, sid)
		}
	}
	for got < sent {
		expect(s)
	}
}

func TestResumeQueryParam(t *testing.T) {
	h := newHarness(t, Options{})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	up.send(t, false, "one")
	up.send(t, false, "two")
	s.nextEvent()
	s.close()
	s2 := h.stream("/ws?lastEventId="+sid+".1", nil)
	s2.session()
	if ev := s2.nextEvent(); ev.data != "two" {
		t.Errorf("got %q, want two", ev.data)
	}
}

func TestResumeGap(t *testing.T) {
	h := newHarness(t, Options{Replay: 5, QueueLen: 2})
	hs := h.hook()
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	up.send(t, false, "m1")
	if ev := s.nextEvent(); ev.data != "m1" {
		t.Fatalf("got %q", ev.data)
	}
	s.close()
	for i := 2; i <= 11; i++ {
		up.send(t, false, fmt.Sprintf("m%d", i))
	}
	hs.waitAppended(t, 11)
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".1"}})
	s2.session()
	if ev := s2.nextEvent(); ev.raw != "event: gap\ndata: {\"lost\":5}\n\n" {
		t.Errorf("got %q, want a gap of 5", ev.raw)
	}
	for i := 7; i <= 11; i++ {
		if ev := s2.nextEvent(); ev.id != fmt.Sprintf("%s.%d", sid, i) || ev.data != fmt.Sprintf("m%d", i) {
			t.Errorf("got %q %q, want event %d", ev.id, ev.data, i)
		}
	}
	up.send(t, false, "m12")
	if ev := s2.nextEvent(); ev.data != "m12" {
		t.Errorf("got %q, want the live m12", ev.data)
	}
}

func TestResumeUnknownSession(t *testing.T) {
	for name, id := range map[string]string{"unknown": newSessionID() + ".42", "malformed": "not-an-id"} {
		t.Run(name, func(t *testing.T) { testResumeUnknown(t, id) })
	}
}

// testResumeUnknown resumes with lastID, which the bridge does not know: a
// fresh session, then the unknown gap.
func testResumeUnknown(t *testing.T, lastID string) {
	h := newHarness(t, Options{})
	old, _, _ := strings.Cut(lastID, ".")
	s := h.stream("/ws", http.Header{"Last-Event-ID": {lastID}})
	h.up.next(t) // a fresh upstream connection
	sess := s.next()
	for sess.event != "session" {
		sess = s.next()
	}
	sid := s.sessionOf(sess)
	if sid == old || !validSessionID(sid) {
		t.Errorf("session %q, want a fresh one", sid)
	}
	if ev := s.next(); ev.raw != "event: gap\ndata: {\"lost\":\"unknown\"}\n\n" {
		t.Errorf("got %q, want the unknown gap", ev.raw)
	}
	if ev := s.next(); ev.raw != "id: "+sid+".0\n\n" {
		t.Errorf("got %q, want the id block of the new session", ev.raw)
	}
}

func (s *sseStream) sessionOf(ev sseEvent) string {
	sid, _, _ := strings.Cut(strings.TrimPrefix(ev.data, `{"session":"`), `"`)
	return sid
}

func TestTakeover(t *testing.T) {
	h := newHarness(t, Options{})
	s1 := h.stream("/ws", nil)
	sid := s1.session()
	up := h.up.next(t)
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".0"}})
	s2.session()
	s1.waitEnd()
	up.send(t, false, "to the new one")
	if ev := s2.nextEvent(); ev.data != "to the new one" {
		t.Errorf("got %q", ev.data)
	}
}

func TestSessionExpiry(t *testing.T) {
	h := newHarness(t, Options{SessionTTL: 100 * time.Millisecond})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	s.close()
	code, reason := up.waitClosed(t)
	if code != websocket.CloseGoingAway || reason != "sse session expired" {
		t.Errorf("upstream closed with %d %q, want 1001 \"sse session expired\"", code, reason)
	}
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".0"}})
	s2.session()
	if ev := s2.nextEvent(); ev.event != "gap" || ev.data != `{"lost":"unknown"}` {
		t.Errorf("got %q %q, want the unknown gap", ev.event, ev.data)
	}
}

// TestAttachedSessionOutlivesTTL checks that an attached stream keeps its
// session alive past the TTL.
func TestAttachedSessionOutlivesTTL(t *testing.T) {
	h := newHarness(t, Options{SessionTTL: 150 * time.Millisecond, Heartbeat: 20 * time.Millisecond})
	s := h.stream("/ws", nil)
	s.session()
	up := h.up.next(t)
	for pings := 0; pings < 25; { // 500ms and more: several TTLs
		if ev := s.next(); ev.raw == ": ping\n\n" {
			pings++
		}
	}
	up.send(t, false, "still here")
	if ev := s.nextEvent(); ev.data != "still here" {
		t.Errorf("got %q", ev.data)
	}
}

func TestTrackEnd(t *testing.T) {
	var mu sync.Mutex
	var ends []func()
	untracked := 0
	h := newHarness(t, Options{Retry: time.Second, Track: func(end func()) func() {
		mu.Lock()
		defer mu.Unlock()
		ends = append(ends, end)
		return func() { mu.Lock(); untracked++; mu.Unlock() }
	}})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	mu.Lock()
	end := ends[0]
	mu.Unlock()
	end()
	end() // the proxy calls it once; twice must not hurt either
	rest := s.waitEnd()
	var hint string
	for _, ev := range rest {
		hint += ev.retry
	}
	if ms := atoi(hint); ms < 1000 || ms >= 2000 {
		t.Errorf("retry hint %q, want 1000..1999 ms", hint)
	}
	mu.Lock()
	if untracked != 1 {
		t.Errorf("untrack called %d times, want 1", untracked)
	}
	mu.Unlock()
	// The session lives on: the client resumes it.
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {sid + ".0"}})
	if got := s2.session(); got != sid {
		t.Errorf("resumed session %q, want %q", got, sid)
	}
	up.send(t, false, "x")
	if ev := s2.nextEvent(); ev.data != "x" {
		t.Errorf("got %q", ev.data)
	}
}

func TestBridgeClose(t *testing.T) {
	h := newHarness(t, Options{})
	s1 := h.stream("/a", nil)
	sid := s1.session()
	s2 := h.stream("/b", nil)
	s2.session()
	ups := []*upConn{h.up.next(t), h.up.next(t)}
	h.b.Close()
	for _, s := range []*sseStream{s1, s2} {
		rest := s.waitEnd()
		if len(rest) == 0 || rest[len(rest)-1].retry == "" {
			t.Errorf("stream ended with %v, want a retry: hint", rest)
		}
	}
	for _, up := range ups {
		if code, reason := up.waitClosed(t); code != websocket.CloseGoingAway || reason != "going away" {
			t.Errorf("upstream closed with %d %q, want 1001 going away", code, reason)
		}
	}
	h.b.Close() // idempotent
	resp, cancel := h.get("/a", http.Header{"Last-Event-ID": {sid + ".0"}})
	defer cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: status %d, want 503", resp.StatusCode)
	}
	// 503, not 404: the server is going away, the session is not unknown.
	if got := h.post("/a?sg_session="+sid, "text/plain", "x", nil); got != http.StatusServiceUnavailable {
		t.Errorf("POST after Close: status %d, want 503", got)
	}
}

func TestResumeBindIP(t *testing.T) {
	h := newHarness(t, Options{BindIP: true, ClientIP: func(r *http.Request) string { return r.Header.Get("X-Test-IP") }})
	s := h.stream("/ws", http.Header{"X-Test-IP": {"10.0.0.1"}})
	sid := s.session()
	h.up.next(t)
	s.close()
	s2 := h.stream("/ws", http.Header{"X-Test-IP": {"10.0.0.2"}, "Last-Event-ID": {sid + ".0"}})
	if got := s2.session(); got == sid {
		t.Fatal("a resume from another IP got the session")
	}
	if ev := s2.nextEvent(); ev.event != "gap" {
		t.Errorf("got %q, want the unknown gap", ev.event)
	}
	s2.close()
	s3 := h.stream("/ws", http.Header{"X-Test-IP": {"10.0.0.1"}, "Last-Event-ID": {sid + ".0"}})
	if got := s3.session(); got != sid {
		t.Errorf("a resume from the session's IP got %q, want %q", got, sid)
	}
}

// TestProbeHasNoSideEffects checks that a resume probe (?sg_probe=1, what
// client.js sends when EventSource gave up on a resume) answers the
// status alone: the live session's stream is not taken over, an unknown
// session is not dialled, and a closed one answers 204.
func TestProbeHasNoSideEffects(t *testing.T) {
	h := newHarness(t, Options{})
	hs := h.hook()
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)

	probe := func(lastEventID string) int {
		t.Helper()
		resp, cancel := h.get("/ws?sg_probe=1&lastEventId="+lastEventID, nil)
		defer cancel()
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("probe %s answered with an event stream (status %d)", lastEventID, resp.StatusCode)
		}
		return resp.StatusCode
	}
	if got := probe(sid + ".0"); got != http.StatusOK {
		t.Errorf("probe of the live session: status %d, want 200", got)
	}
	if got := probe(newSessionID() + ".3"); got != http.StatusOK {
		t.Errorf("probe of an unknown session: status %d, want 200", got)
	}
	if n := hs.creates.Load(); n != 1 {
		t.Errorf("%d sessions created, want 1: a probe opened a session", n)
	}
	// The stream was not taken over: it still gets live events.
	up.send(t, false, "after the probes")
	if ev := s.nextEvent(); ev.data != "after the probes" {
		t.Fatalf("stream got %q", ev.data)
	}

	up.close(websocket.CloseNormalClosure, "bye")
	if ev := s.nextEvent(); ev.event != "close" {
		t.Fatalf("got %q, want the close event", ev.event)
	}
	s.waitEnd()
	if got := probe(sid + ".1"); got != http.StatusNoContent {
		t.Errorf("probe of a closed session with every event: status %d, want 204", got)
	}
	if got := probe(sid + ".0"); got != http.StatusOK {
		t.Errorf("probe of a closed session with an event missed: status %d, want 200 (the resume replays it)", got)
	}
}
