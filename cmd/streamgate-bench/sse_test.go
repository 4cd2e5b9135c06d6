package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestStampRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	msg := stamp(nil, 42, at, 100)
	if len(msg) != 100 {
		t.Errorf("got %d bytes, want 100", len(msg))
	}
	seq, sent, err := parseStamp(msg)
	if err != nil || seq != 42 || !sent.Equal(at) {
		t.Errorf("got %d, %v, %v; want 42, %v", seq, sent, err, at)
	}
	if _, _, err := parseStamp([]byte("hello")); err == nil {
		t.Error("no error for an unstamped message")
	}
}

func TestParseEventsBridgeFormat(t *testing.T) {
	now := time.Now()
	msg := func(seq uint64) string { return string(stamp(nil, seq, now, 60)) }
	stream := ": " + strings.Repeat(" ", 64) + "\n\n" +
		"retry: 2000\n\n" +
		"event: session\ndata: {\"session\":\"abc\",\"send\":\"/sse/?sg_session=abc\"}\n\n" +
		"id: abc.1\ndata: " + msg(1) + "\n\n" +
		": ping\n\n" +
		"id: abc.2\ndata: " + msg(2) + "\n\n" +
		"event: gap\ndata: {\"lost\":3}\n\n" +
		"id: abc.6\ndata: " + msg(6) + "\n\n" +
		"event: close\ndata: {\"code\":1000,\"reason\":\"\"}\n\n"
	var st sseStats
	if err := parseEvents(strings.NewReader(stream), &st); err == nil || err.Error() != "EOF" {
		t.Fatalf("got %v, want EOF at event: close", err)
	}
	if len(st.lat) != 3 || st.lost != 3 || st.gapEvents != 1 {
		t.Errorf("got %d events, %d lost, %d gap events; want 3, 3, 1", len(st.lat), st.lost, st.gapEvents)
	}
}

// TestSSEAgainstEmitter serves the bridge's wire format from an emitLoop
// upstream, as a minimal stand-in for streamgate, and reads it with the
// sse mode's client.
func TestSSEAgainstEmitter(t *testing.T) {
	up := &websocket.Upgrader{}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		emitLoop(c, 200, 64)
	}))
	t.Cleanup(upstream.Close)
	bridge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _, err := websocket.DefaultDialer.DialContext(r.Context(), "ws"+upstream.URL[len("http"):], nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer c.Close()
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for seq := 1; ; seq++ {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "id: s.%d\ndata: %s\n\n", seq, data); err != nil || rc.Flush() != nil {
				return
			}
		}
	}))
	t.Cleanup(bridge.Close)

	clients, err := sourceClients("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	connected := make(chan struct{}, 1)
	st := readSSE(ctx, clients[0], bridge.URL, connected, time.Time{})
	res := summarizeSSE(bridge.URL, []sseStats{st}, len(connected), 0.5, 0)
	if res.Connected != 1 || res.Errors != 0 || res.Closed != 0 || res.Lost != 0 {
		t.Errorf("got %+v, want 1 connected stream, no errors, closes or losses", res)
	}
	if res.Events < 20 || res.P50us <= 0 {
		t.Errorf("got %d events (p50 %.0f µs) in 0.5 s at 200/s, want at least 20", res.Events, res.P50us)
	}
}

// TestSummarizeSSERateOverWindow checks that events/s is over the window
// the events were counted in: the run after its warm-up.
func TestSummarizeSSERateOverWindow(t *testing.T) {
	st := sseStats{lat: make([]time.Duration, 300)} // 300 events after the warm-up
	for _, c := range []struct{ elapsed, warmup, want float64 }{{30, 0, 10}, {50, 20, 10}, {20, 20, 0}} {
		if got := summarizeSSE("u", []sseStats{st}, 1, c.elapsed, c.warmup).EventsPerSec; got != c.want {
			t.Errorf("%g s run, %g s warm-up: %g events/s, want %g", c.elapsed, c.warmup, got, c.want)
		}
	}
}
