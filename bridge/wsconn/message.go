package wsconn

import (
	"errors"
	"io"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// ErrInvalidUTF8 reports a text message that is not valid UTF-8, which
// RFC 6455 section 8.1 says must fail the connection with 1007. gorilla
// does not check it.
var ErrInvalidUTF8 = errors.New("text message is not valid UTF-8")

// messageReader reads one message at a time for the relay. It remembers
// its read error, so that a failed copy can tell a read failure from a
// write failure; it enforces the size limit on the bytes the application
// sees (gorilla's read limit counts wire bytes, which for a compressed
// message can be a small fraction of what it inflates to); and it checks
// that text messages are UTF-8, across reads.
type messageReader struct {
	r     io.Reader
	err   error
	n     int64 // bytes of the current message so far
	limit int64 // 0 = none
	text  bool
	utf8  utf8Checker
}

// reset points m at the next message, of gorilla message type mt.
func (m *messageReader) reset(r io.Reader, mt int) {
	m.r, m.err, m.n, m.text = r, nil, 0, mt == websocket.TextMessage
	m.utf8 = utf8Checker{}
}

func (m *messageReader) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	m.n += int64(n)
	switch {
	case m.limit > 0 && m.n > m.limit:
		err = websocket.ErrReadLimit
	case m.text && !m.utf8.check(p[:n]):
		err = ErrInvalidUTF8
	case m.text && err == io.EOF && m.utf8.pending > 0:
		err = ErrInvalidUTF8 // the message ends inside a character
	}
	if err != nil && err != io.EOF {
		m.err = err
	}
	return n, err
}

// utf8Checker validates a byte stream as UTF-8 chunk by chunk, carrying a
// character split between chunks over to the next one.
type utf8Checker struct {
	carry   [utf8.UTFMax]byte
	pending int
}

// check reports whether p continues a valid UTF-8 stream.
func (u *utf8Checker) check(p []byte) bool {
	if u.pending > 0 {
		for len(p) > 0 && !utf8.FullRune(u.carry[:u.pending]) {
			u.carry[u.pending] = p[0]
			u.pending++
			p = p[1:]
		}
		if !utf8.FullRune(u.carry[:u.pending]) {
			return true // still inside the character
		}
		if r, size := utf8.DecodeRune(u.carry[:u.pending]); r == utf8.RuneError && size <= 1 || size != u.pending {
			return false
		}
		u.pending = 0
	}
	// Hold back an incomplete character at the end for the next chunk.
	tail := 0
	for k := 1; k < utf8.UTFMax && k <= len(p); k++ {
		if utf8.RuneStart(p[len(p)-k]) {
			if !utf8.FullRune(p[len(p)-k:]) {
				tail = k
			}
			break
		}
	}
	if !utf8.Valid(p[:len(p)-tail]) {
		return false
	}
	u.pending = copy(u.carry[:], p[len(p)-tail:])
	return true
}
