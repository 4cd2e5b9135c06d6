package proxy_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/streamgate/streamgate/proxy"
)

// sseServer serves an event stream: n events spaced by every; flushEvery
// is how many events go out per flush (0: never flush; the handler's
// return sends everything); heartbeat adds a ": ping" comment before each
// event.
func sseServer(t *testing.T, n int, every time.Duration, flushEvery int, heartbeat bool, header http.Header) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/event-stream")
		}
		w.Header().Set("Cache-Control", "no-cache")
		rc := http.NewResponseController(w)
		if flushEvery > 0 {
			fmt.Fprintf(w, ":%s\nretry: 2000\n\n", strings.Repeat(" ", 2048))
			_ = rc.Flush()
		}
		tick := time.NewTicker(every) // the server's own pace, the thing being measured
		defer tick.Stop()
		for i := 1; i <= n; i++ {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
			if heartbeat {
				fmt.Fprint(w, ": ping\n\n")
			}
			fmt.Fprintf(w, "id: s.%d\nevent: tick\ndata: {\"n\":%d}\ndata: second line\n\n", i, i)
			if flushEvery > 0 && i%flushEvery == 0 {
				_ = rc.Flush()
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func TestProbeSSEHealthy(t *testing.T) {
	s := sseServer(t, 50, 40*time.Millisecond, 1, true, http.Header{"X-Accel-Buffering": {"no"}})
	rep := probeOK(t, s.URL+"/events", proxy.ProbeOptions{SSE: true, For: 500 * time.Millisecond, Previews: 2})
	checkDiagnosis(t, rep, true, "healthy", "event stream opened")
	sse := rep.SSE
	if sse == nil || rep.Messages.Count < 5 || sse.Types["tick"] != rep.Messages.Count {
		t.Fatalf("events %+v sse %+v: want several tick events", rep.Messages, sse)
	}
	if len(sse.Bursts) != 0 {
		t.Errorf("bursts %+v in a flushed stream", sse.Bursts)
	}
	if sse.Heartbeats.Count < 5 || sse.Heartbeats.Min < 10*time.Millisecond {
		t.Errorf("heartbeats %+v: want several, spaced", sse.Heartbeats)
	}
	if sse.Padding < 2048 || sse.Retry != "2000" || sse.IDs[0] != "s.1" || sse.FirstEvent <= 0 {
		t.Errorf("padding %d retry %q ids %v first event %s", sse.Padding, sse.Retry, sse.IDs, sse.FirstEvent)
	}
	if p := rep.Messages.Previews; len(p) != 2 || p[0].Preview != `{"n":1}\nsecond line` || p[0].ID != "s.1" || p[0].Type != "tick" {
		t.Errorf("previews %+v", p)
	}
	if rep.End == nil || rep.End.By != proxy.ProbeEndProbe {
		t.Errorf("end %+v, want the probe to end it", rep.End)
	}
}

// TestProbeSSEBuffered: events written at a steady pace but flushed late
// arrive in bursts, the mark of a buffering proxy.
func TestProbeSSEBuffered(t *testing.T) {
	for _, tt := range []struct {
		name       string
		flushEvery int
	}{
		{"flushed only at the end", 0},
		{"flushed every 4 events", 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := sseServer(t, 8, 40*time.Millisecond, tt.flushEvery, false, nil)
			rep := probeOK(t, s.URL+"/events", proxy.ProbeOptions{SSE: true, For: 2 * time.Second})
			checkDiagnosis(t, rep, false, "sse-buffered", "SSE events arriving in bursts")
			if !strings.Contains(rep.Cause, "a buffering proxy (send X-Accel-Buffering: no / padding)") {
				t.Errorf("cause %q lacks the remedy", rep.Cause)
			}
			if rep.Messages.Count != 8 {
				t.Errorf("%d events, want 8", rep.Messages.Count)
			}
		})
	}
}

func TestProbeSSESignatures(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    http.HandlerFunc
		id   string
		text string
	}{
		{"not an event stream", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{}`))
		}, "sse-content-type", `Content-Type is "application/json", not text/event-stream`},
		{"401", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusUnauthorized) }, "auth", "401"},
		{"204 ends EventSource", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }, "sse-no-content", "stop reconnecting"},
		{"WebSocket-only endpoint", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "ws only", http.StatusUpgradeRequired) },
			"bad-request", "speaks only WebSocket"},
		{"cut after silence", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.Header().Set("Cache-Control", "no-cache")
			fmt.Fprint(w, "data: hello\n\n")
			_ = http.NewResponseController(w).Flush()
			<-time.After(300 * time.Millisecond) // the idle timeout being reproduced
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close() // cut the stream without its end
			}
		}, "idle-cut", "stream cut after"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := httptest.NewServer(tt.h)
			t.Cleanup(s.Close)
			rep := probeOK(t, s.URL+"/events", proxy.ProbeOptions{SSE: true, For: 3 * time.Second})
			checkDiagnosis(t, rep, false, tt.id, tt.text)
		})
	}
}

// TestProbeSSEServerEnd checks what the probe says of a stream the server
// ends: EventSource reconnects after a plain end, but not after a
// streamgate close event, whose reconnect gets 204.
func TestProbeSSEServerEnd(t *testing.T) {
	for _, tt := range []struct {
		name, last, want string
	}{
		{"plain end", "data: bye\n\n", "EventSource reconnects after retry"},
		{"close event", "event: close\ndata: {\"code\":1000,\"reason\":\"bye\"}\n\n", "gets 204, and EventSource stops"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				w.Header().Set("Cache-Control", "no-cache")
				fmt.Fprint(w, "retry: 2000\n\ndata: hello\n\n"+tt.last)
			}))
			t.Cleanup(s.Close)
			rep := probeOK(t, s.URL+"/events", proxy.ProbeOptions{SSE: true, For: 3 * time.Second})
			var found *proxy.ProbeFinding
			for i := range rep.Findings {
				if rep.Findings[i].ID == "sse-ended" {
					found = &rep.Findings[i]
				}
			}
			if found == nil || !strings.Contains(found.Message, tt.want) {
				t.Errorf("findings %+v, want sse-ended saying %q", rep.Findings, tt.want)
			}
		})
	}
}
