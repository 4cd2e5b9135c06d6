package bridge

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/rs/zerolog"
)

// syncBuffer is a log sink safe for the bridge's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(s.b.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if dup := duplicateKey(t, l); dup != "" {
			t.Errorf("log line has the key %q twice: %s", dup, l)
		}
		out = append(out, m)
	}
	return out
}

// duplicateKey returns a top-level key that the JSON object line has more
// than once (which decoding into a map would hide), or "".
func duplicateKey(t *testing.T, line []byte) string {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil { // {
		t.Fatalf("log line %q: %v", line, err)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		key, _ := tok.(string)
		if seen[key] {
			return key
		}
		seen[key] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
	}
	return ""
}

func TestStreamLogLine(t *testing.T) {
	var logs syncBuffer
	ended := make(chan struct{}, 1)
	h := newHarness(t, Options{
		Route:  "/ws/",
		Logger: zerolog.New(&logs).Level(zerolog.InfoLevel),
		Track:  func(func()) func() { return func() { ended <- struct{}{} } },
	})
	s := h.stream("/ws", nil)
	sid := s.session()
	up := h.up.next(t)
	up.send(t, false, "one")
	up.send(t, false, "two")
	s.nextEvent()
	s.nextEvent()
	if got := h.post("/ws?sg_session="+sid, "text/plain", "hello", nil); got != http.StatusAccepted {
		t.Fatalf("POST: %d", got)
	}
	up.next(t)
	up.close(4001, "done")
	s.waitEnd()
	<-ended
	lines := logs.lines(t)
	if len(lines) != 1 {
		t.Fatalf("got %d log lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	for k, want := range map[string]any{
		"kind": "sse", "route": "/ws/", "client_ip": "127.0.0.1", "session": sid[:8],
		"msgs_down": 2.0, "msgs_up": 1.0, "bytes_up": 5.0, "upstream_code": 4001.0, "client_code": 4001.0,
		"closed_by": "upstream", "resumed": false, "replayed": 0.0, "message": "connection closed",
		"component": "bridge",
	} {
		if l[k] != want {
			t.Errorf("%s = %v, want %v", k, l[k], want)
		}
	}
	if _, ok := l["duration"].(float64); !ok {
		t.Errorf("no duration in %v", l)
	}
	if b, _ := json.Marshal(l); bytes.Contains(b, []byte(sid)) {
		t.Errorf("the log line holds the whole session id: %s", b)
	}
}
