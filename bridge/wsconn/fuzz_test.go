package wsconn

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
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

// FuzzFrameRelay feeds arbitrary bytes to a frame relay as a client's
// stream and checks that the relay ends by itself, that every frame the
// upstream gets is whole and masked, and that their payloads, unmasked, are
// a prefix of the client's data payloads up to the first fault: frames may
// be split into fragments, never cut, changed or invented.
func FuzzFrameRelay(f *testing.F) {
	masked := func(op byte, p string) []byte { return appendFrame(nil, op, []byte(p), true) }
	f.Add(masked(opText, "hello"))
	f.Add(append(masked(opBinary, "\xff\x00"), masked(opClose, "\x03\xe8bye")...))
	f.Add(append([]byte{opText, maskBit | 2, 0, 0, 0, 0, 'e', 'u'}, masked(opPing, "p")...)) // a ping inside a fragmented message
	f.Add(append(append([]byte{opBinary, maskBit | 10, 1, 2, 3, 4}, make([]byte, 10)...),
		0x80, 0x80|127, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFA, 1, 2, 3, 4)) // a continuation past int64
	f.Add(append(masked(opText, "ok"), 0x83, 0x80, 1, 2, 3, 4))                          // bad opcode
	f.Add(append(masked(opText, "ok"), appendFrame(nil, opText, []byte("x"), false)...)) // unmasked
	f.Add([]byte{0x01 | 0x00, 0x80 | 2, 0, 0, 0, 0, 'a', 'b', 0x80, 0x80 | 1, 0, 0, 0, 0, 'c'})
	f.Add([]byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte("\xe2\x82"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cc, cs := net.Pipe()
		us, uc := net.Pipe()
		r := newFrameRelay(cs, uc, Options{MaxMessageSize: 1 << 10, CloseTimeout: 20 * time.Millisecond, WriteTimeout: time.Second})
		var upstreamGot bytes.Buffer
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); _, _ = io.Copy(&upstreamGot, us) }()
		go func() { defer wg.Done(); _, _ = io.Copy(io.Discard, cc) }()
		go func() {
			defer wg.Done()
			_ = cc.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = cc.Write(in)
			cc.Close()
		}()
		done := make(chan struct{})
		go func() { r.Run(context.Background()); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("relay did not end")
		}
		us.Close()
		wg.Wait()

		// The client's data payloads, unmasked, up to the first fault.
		var want []byte
		for rest := in; ; {
			h, complete, err := parseFrameHeader(rest)
			if err != nil || !complete {
				break
			}
			n := min(int64(len(rest)-h.size), h.length)
			payload := bytes.Clone(rest[h.size : h.size+int(n)])
			maskBytes(h.key, 0, payload)
			if !h.isControl() {
				want = append(want, payload...)
			}
			if n < h.length {
				break
			}
			rest = rest[h.size+int(n):]
		}
		var got []byte
		for out := upstreamGot.Bytes(); len(out) > 0; {
			h, complete, err := parseFrameHeader(out)
			if err != nil || !complete || int64(len(out)-h.size) < h.length {
				t.Fatalf("upstream got a malformed or cut frame: %x (err %v)", out, err)
			}
			if !h.masked {
				t.Fatalf("upstream got an unmasked frame %x", out)
			}
			payload := bytes.Clone(out[h.size : h.size+int(h.length)])
			maskBytes(h.key, 0, payload)
			if !h.isControl() {
				got = append(got, payload...)
			}
			out = out[h.size+int(h.length):]
		}
		if !bytes.HasPrefix(want, got) {
			t.Fatalf("upstream got payload %x, not a prefix of the client's %x", got, want)
		}
	})
}
