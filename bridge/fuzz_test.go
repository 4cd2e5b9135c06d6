package bridge

import (
	"bytes"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// parsedEvent is one event as a standards-conforming EventSource parser
// dispatches it (WHATWG HTML, "Interpreting an event stream").
type parsedEvent struct {
	event, data, id string
}

// parseEventStream parses an event stream the way the HTML standard says
// an EventSource does: lines end with CRLF, LF or CR; a line starting with
// ":" is a comment; "field: value" (one leading space dropped); data lines
// are joined with LF; a blank line dispatches the event unless its data is
// empty.
func parseEventStream(stream []byte) []parsedEvent {
	var out []parsedEvent
	var ev parsedEvent
	var data []string
	for len(stream) > 0 {
		i := bytes.IndexAny(stream, "\r\n")
		if i < 0 {
			break // an unterminated last line is discarded
		}
		line := string(stream[:i])
		if stream[i] == '\r' && i+1 < len(stream) && stream[i+1] == '\n' {
			i++
		}
		stream = stream[i+1:]
		if line == "" {
			if data != nil {
				ev.data = strings.Join(data, "\n")
				if ev.event == "" {
					ev.event = "message"
				}
				out = append(out, ev)
			}
			ev.event, data = "", nil
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		case "id":
			ev.id = value
		}
	}
	return out
}

// FuzzAppendEvent checks that any message, text or binary, comes out of a
// conforming parser as exactly one event with the message's data: byte for
// byte for binary and LF text; with CR and CRLF read as LF for text, since
// EventSource knows no other line end.
func FuzzAppendEvent(f *testing.F) {
	for _, seed := range []string{"", "a", "a\n\nevent: close\ndata: forged", "x\r\ny\rz", "\n", "\r\n\r\n", ":comment", "data: x", "id: 1\n\n", "\x00\xff\xfe"} {
		f.Add([]byte(seed), false, uint64(1))
		f.Add([]byte(seed), true, uint64(7))
	}
	const sid = "0123456789abcdef0123456789abcdef"
	f.Fuzz(func(t *testing.T, payload []byte, binary bool, seq uint64) {
		enc := appendEvent(nil, sid, Event{Seq: seq, Binary: binary, Data: payload})
		evs := parseEventStream(enc)
		if len(evs) != 1 {
			t.Fatalf("%q encoded as %q parses as %d events", payload, enc, len(evs))
		}
		ev := evs[0]
		if want := sid + "." + strconv.FormatUint(seq, 10); ev.id != want {
			t.Errorf("id %q, want %q", ev.id, want)
		}
		if binary {
			got, err := base64.StdEncoding.DecodeString(ev.data)
			if ev.event != "binary" || err != nil || !bytes.Equal(got, payload) {
				t.Errorf("binary %q: event %q data %q (%v)", payload, ev.event, ev.data, err)
			}
			return
		}
		want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(string(payload))
		if ev.event != "message" || ev.data != want {
			t.Errorf("text %q: event %q data %q, want %q", payload, ev.event, ev.data, want)
		}
	})
}

// FuzzLastEventID checks the resume id parser: it never panics, accepts
// only "<32 lowercase hex>.<uint64>", and reads back what was written.
func FuzzLastEventID(f *testing.F) {
	for _, seed := range []string{"", ".", "0123456789abcdef0123456789abcdef.5", "0123456789ABCDEF0123456789abcdef.5",
		"0123456789abcdef0123456789abcdef.-1", "0123456789abcdef0123456789abcdef.18446744073709551616", "x.1", "a.b.c"} {
		f.Add(seed, true)
		f.Add(seed, false)
	}
	f.Fuzz(func(t *testing.T, v string, header bool) {
		r := httptest.NewRequest(http.MethodGet, "/s", nil)
		if header {
			r.Header.Set("Last-Event-ID", v)
		} else {
			r.URL.RawQuery = "lastEventId=" + url.QueryEscape(v)
		}
		sid, seq, ok := lastEventID(r)
		if !ok {
			return
		}
		if !validSessionID(sid) {
			t.Fatalf("accepted invalid session id %q from %q", sid, v)
		}
		if header && !strings.HasPrefix(v, sid+".") {
			t.Fatalf("%q read as session %q", v, sid)
		}
		// What is read back formats to an id that reads the same.
		r2 := httptest.NewRequest(http.MethodGet, "/s", nil)
		r2.Header.Set("Last-Event-ID", sid+"."+strconv.FormatUint(seq, 10))
		if sid2, seq2, ok2 := lastEventID(r2); !ok2 || sid2 != sid || seq2 != seq {
			t.Fatalf("%q: round trip gave %q %d %v", v, sid2, seq2, ok2)
		}
	})
}

// FuzzSend throws arbitrary back-channel requests at a bridge: it must
// answer each with one of the documented statuses and never panic.
func FuzzSend(f *testing.F) {
	f.Add("sg_session=0123456789abcdef0123456789abcdef", "text/plain", []byte("hi"), "")
	f.Add("sg_session=nope", "application/octet-stream", []byte{0, 1}, "http://evil.example")
	f.Add("sg_session=", "text/plain; charset=utf-8", []byte("\xff"), "")
	f.Add("sg_session=0123456789abcdef0123456789abcdef&sg_session=x", "", bytes.Repeat([]byte("x"), 2048), "null")
	b, err := New(Options{
		Upstream: func(*http.Request) (string, http.Header) { return "ws://127.0.0.1:1/", nil },
		Leg:      wsconn.Options{MaxMessageSize: 1024},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(b.Close)
	allowed := map[int]bool{http.StatusAccepted: true, http.StatusBadRequest: true, http.StatusForbidden: true,
		http.StatusNotFound: true, http.StatusRequestEntityTooLarge: true, http.StatusServiceUnavailable: true, http.StatusBadGateway: true,
		http.StatusRequestTimeout: true}
	f.Fuzz(func(t *testing.T, query, contentType string, body []byte, origin string) {
		r := httptest.NewRequest(http.MethodPost, "/s", bytes.NewReader(body))
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", contentType)
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		b.ServeHTTP(w, r)
		if !allowed[w.Code] {
			t.Fatalf("status %d for query %q type %q origin %q", w.Code, query, contentType, origin)
		}
	})
}
