package bridge

import (
	"bytes"
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// Event is one upstream WebSocket message as a session's replay log keeps
// it. Events are immutable once appended: streams share them.
type Event struct {
	// Seq numbers the session's events from 1; the SSE id is
	// "<session>.<seq>".
	Seq uint64
	// Binary is true for a binary WebSocket message, sent as
	// "event: binary" with base64 data.
	Binary bool
	// Data is the message payload.
	Data []byte
}

// appendEvent appends the SSE encoding of ev, an event of session sid, to
// dst: an optional "event: binary" line, "id: <sid>.<seq>", one data line
// per line of a text message (or the base64 of a binary one) and the blank
// line that dispatches the event.
func appendEvent(dst []byte, sid string, ev Event) []byte {
	if ev.Binary {
		dst = append(dst, "event: binary\n"...)
	}
	dst = append(dst, "id: "...)
	dst = append(dst, sid...)
	dst = append(dst, '.')
	dst = strconv.AppendUint(dst, ev.Seq, 10)
	dst = append(dst, '\n')
	if ev.Binary {
		dst = append(dst, "data: "...)
		dst = base64.StdEncoding.AppendEncode(dst, ev.Data)
		return append(dst, "\n\n"...)
	}
	return appendData(dst, ev.Data)
}

// appendData appends text as "data:" lines and the blank line that ends the
// event. Every line break of text (LF, CR or CRLF, which are all line ends
// to an EventSource) starts a new data line, so a message can neither end
// the event early nor add fields of its own; EventSource joins the lines
// with LF again, so a text with LF line ends arrives byte for byte.
func appendData(dst, text []byte) []byte {
	hasCR := bytes.IndexByte(text, '\r') >= 0
	for {
		var i int
		if hasCR {
			i = bytes.IndexAny(text, "\r\n")
		} else {
			i = bytes.IndexByte(text, '\n')
		}
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, text...)
			return append(dst, "\n\n"...)
		}
		dst = append(dst, text[:i]...)
		dst = append(dst, '\n')
		if text[i] == '\r' && i+1 < len(text) && text[i+1] == '\n' {
			i++
		}
		text = text[i+1:]
	}
}

// appendNamed appends an event with a name, no id and one line of JSON
// data: the session, gap and close events.
func appendNamed(dst []byte, name string, json []byte) []byte {
	dst = append(dst, "event: "...)
	dst = append(dst, name...)
	dst = append(dst, "\ndata: "...)
	dst = append(dst, json...)
	return append(dst, "\n\n"...)
}

// sessionJSON is the data of the session event:
// {"session":"<id>","send":"<path>?sg_session=<id>"}, plus "protocol" when
// the upstream selected a subprotocol.
func sessionJSON(sid, path, protocol string) []byte {
	b := []byte(`{"session":`)
	b = appendJSONString(b, sid)
	b = append(b, `,"send":`...)
	b = appendJSONString(b, path+"?sg_session="+sid)
	if protocol != "" {
		b = append(b, `,"protocol":`...)
		b = appendJSONString(b, protocol)
	}
	return append(b, '}')
}

// gapJSON is the data of the gap event: {"lost":N}, or {"lost":"unknown"}
// when n < 0 (the session itself was lost).
func gapJSON(n int64) []byte {
	if n < 0 {
		return []byte(`{"lost":"unknown"}`)
	}
	return append(strconv.AppendInt([]byte(`{"lost":`), n, 10), '}')
}

// closeJSON is the data of the close event: {"code":N,"reason":"..."}.
func closeJSON(code int, reason string) []byte {
	b := strconv.AppendInt([]byte(`{"code":`), int64(code), 10)
	b = append(b, `,"reason":`...)
	b = appendJSONString(b, reason)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Unlike encoding/json it
// leaves <, > and & alone, so the session event reads as DESIGN.md spells
// it; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		dst = utf8.AppendRune(dst, r) // RuneError for invalid bytes
		i += size
	}
	return append(dst, '"')
}
