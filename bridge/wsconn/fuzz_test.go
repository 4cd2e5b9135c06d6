package wsconn

import (
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// FuzzCloseMessage checks the close frame payloads the proxy sends: never
// over the 125 bytes of a control frame (RFC 6455 section 5.5), the code
// kept, the reason valid UTF-8 whatever it was given (section 5.5.1: a
// peer must fail a connection whose close reason is not) and, for a UTF-8
// reason, as much of it as fits.
func FuzzCloseMessage(f *testing.F) {
	f.Add(1000, "")
	f.Add(1001, "going away")
	f.Add(1011, "upstream connection lost")
	f.Add(4001, "unauthorized")
	f.Add(1005, "no status")
	f.Add(1006, "abnormal")
	f.Add(1015, "tls")
	f.Add(1000, strings.Repeat("x", 123))
	f.Add(1000, strings.Repeat("x", 124))
	f.Add(1000, strings.Repeat("é", 62)) // 124 bytes: the cut falls inside a rune
	f.Add(1000, strings.Repeat("😀", 31)) // 124 bytes: 4-byte runes
	f.Add(1000, "x"+strings.Repeat("😀", 31))
	f.Add(0, "")
	f.Add(70000, "code over 16 bits")
	f.Fuzz(func(t *testing.T, code int, reason string) {
		p := CloseMessage(code, reason)
		if len(p) > 125 {
			t.Fatalf("CloseMessage(%d, %q) is %d bytes, over 125", code, reason, len(p))
		}
		switch code {
		case websocket.CloseNoStatusReceived, websocket.CloseAbnormalClosure, websocket.CloseTLSHandshake:
			if len(p) != 0 {
				t.Fatalf("CloseMessage(%d, ...) = %q, want empty: the code must not go on the wire", code, p)
			}
			return
		}
		if len(p) < 2 {
			t.Fatalf("CloseMessage(%d, %q) = %q, want at least the code", code, reason, p)
		}
		if got := binary.BigEndian.Uint16(p); got != uint16(code) {
			t.Errorf("code %d, want %d", got, uint16(code))
		}
		got := string(p[2:])
		if !utf8.ValidString(got) {
			t.Fatalf("CloseMessage(%d, %q): reason %q is not UTF-8", code, reason, got)
		}
		if !utf8.ValidString(reason) {
			return // bytes that are not UTF-8 are dropped, so got is no prefix
		}
		if !strings.HasPrefix(reason, got) {
			t.Fatalf("reason %q is not a prefix of %q", got, reason)
		}
		// Cut only as much as needed: at most one rune less than 123 bytes.
		if len(got) < len(reason) && len(got) <= maxCloseReason-utf8.UTFMax {
			t.Fatalf("reason cut to %d bytes, want at least %d", len(got), maxCloseReason-utf8.UTFMax+1)
		}
	})
}

// TestCloseMessageInvalidUTF8 checks that a reason that is not UTF-8 is
// never sent as it is: a peer must fail the connection on such a close
// frame (RFC 6455 section 5.5.1), so the close code would be lost. Received
// reasons are validated by gorilla, but CloseMessage is exported, and a
// long reason with one bad byte early must not lose everything after it.
func TestCloseMessageInvalidUTF8(t *testing.T) {
	tests := []struct{ name, reason string }{
		{"short", "bad \xff byte"},
		{"long, invalid early", "\xff" + strings.Repeat("x", 200)},
		{"only invalid", "\xff\xfe\xfd"},
		{"long, invalid late", strings.Repeat("x", 100) + "\xff" + strings.Repeat("x", 100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := CloseMessage(websocket.CloseNormalClosure, tt.reason)
			if len(p) > 125 {
				t.Fatalf("%d bytes, over 125", len(p))
			}
			if !utf8.Valid(p[2:]) {
				t.Errorf("CloseMessage sent the reason %q, which is not UTF-8", p[2:])
			}
			if valid := strings.ToValidUTF8(tt.reason, ""); len(valid) >= 100 && len(p[2:]) < 100 {
				t.Errorf("reason cut to %d bytes: the valid text after a bad byte was lost", len(p[2:]))
			}
		})
	}
}
