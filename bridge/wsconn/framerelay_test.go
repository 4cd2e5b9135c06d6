package wsconn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// relayFront starts a server that dials upstreamURL and relays each client
// to it with opts, and returns its ws:// URL.
func relayFront(t *testing.T, upstreamURL string, opts Options) string {
	t.Helper()
	pool := NewBufferPool()
	dialer := NewDialer(DialOptions{BufferPool: pool, Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, err := Dial(ctx, dialer, upstreamURL, nil, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		c, err := NewUpgrader(false, pool).Upgrade(w, r, nil)
		if err != nil {
			u.Close()
			return
		}
		NewRelay(c, u, opts).Run(ctx)
	}))
	t.Cleanup(func() { cancel(); front.Close() })
	return "ws" + strings.TrimPrefix(front.URL, "http")
}

// TestFrameRelayKeepsFramesSentWithThe101 checks that frames an upstream
// writes in the same TCP segment as its 101 response (a greeting) reach
// the client: gorilla's Dialer must not swallow them into its buffer,
// since the frame relay reads the connection directly.
func TestFrameRelayKeepsFramesSentWithThe101(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		var out []byte
		out = fmt.Appendf(out, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]))
		out = appendFrame(out, opText, []byte("hello, one"), false)
		out = appendFrame(out, opText, []byte("hello, two"), false)
		c.Write(out) // one write: the frames arrive with the 101
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var buf [64]byte
		for {
			if _, err := c.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	c, _, err := websocket.DefaultDialer.Dial(relayFront(t, "ws://"+ln.Addr().String()+"/", Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"hello, one", "hello, two"} {
		if _, p, err := c.ReadMessage(); err != nil || string(p) != want {
			t.Fatalf("got %q %v, want %q", p, err, want)
		}
	}
}

// TestFrameRelayByteExact relays messages of many sizes, around and far
// beyond the read buffer, text and binary, whole and fragmented, through a
// frame relay to an echo upstream and back, with pings from both legs in
// between, and checks every byte.
func TestFrameRelayByteExact(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for i := 0; ; i++ {
			mt, rd, err := c.NextReader()
			if err != nil {
				return
			}
			if i%3 == 0 {
				_ = c.WriteControl(websocket.PingMessage, []byte("up"), time.Now().Add(time.Second))
			}
			wr, err := c.NextWriter(mt) // gorilla fragments what exceeds its buffer
			if err != nil {
				return
			}
			if _, err := bufio.NewReader(rd).WriteTo(wr); err != nil || wr.Close() != nil {
				return
			}
		}
	}))
	defer up.Close()
	front := relayFront(t, "ws"+strings.TrimPrefix(up.URL, "http"), Options{PingInterval: 50 * time.Millisecond, PongTimeout: time.Second})
	c, _, err := (&websocket.Dialer{WriteBufferSize: 1000}).Dial(front, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []int{0, 1, 125, 126, 65535, 65536, frameBufferSize - 14, frameBufferSize, frameBufferSize + 1, 3*frameBufferSize + 7, 1 << 20}
	for i := 0; i < 40; i++ {
		sizes = append(sizes, rng.IntN(3*frameBufferSize))
	}
	for i, size := range sizes {
		mt := websocket.BinaryMessage
		msg := make([]byte, size)
		if i%2 == 0 {
			mt = websocket.TextMessage
			for j := range msg {
				msg[j] = byte('a' + rng.IntN(26))
			}
			if size >= 3 {
				copy(msg[size/2:], "€") // a character split wherever the frames split
			}
		} else {
			for j := range msg {
				msg[j] = byte(rng.Uint32())
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if err := c.WriteMessage(mt, msg); err != nil {
			t.Fatalf("message %d (%d bytes): write: %v", i, size, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		gt, got, err := c.ReadMessage()
		if err != nil || gt != mt || !bytes.Equal(got, msg) {
			t.Fatalf("message %d (%d bytes, type %d): got type %d, %d bytes, equal %v, err %v", i, size, mt, gt, len(got), bytes.Equal(got, msg), err)
		}
	}
}

// TestMaskBytes compares the word-at-a-time masking with the definition,
// at every start position and length around a word.
func TestMaskBytes(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for pos := 0; pos < 8; pos++ {
		for n := 0; n < 40; n++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(i * 7)
			}
			want := bytes.Clone(b)
			for i := range want {
				want[i] ^= key[(pos+i)%4]
			}
			if end := maskBytes(key, pos, b); end != pos+n || !bytes.Equal(b, want) {
				t.Fatalf("pos %d len %d: got %x, want %x", pos, n, b, want)
			}
		}
	}
}

// TestParseFrameHeader checks lengths, masks and the stateless protocol
// checks, and that a header cut short is reported incomplete.
func TestParseFrameHeader(t *testing.T) {
	tests := []struct {
		name   string
		frame  []byte
		length int64
		masked bool
		err    string
	}{
		{"short text", appendFrame(nil, opText, []byte("hi"), false), 2, false, ""},
		{"masked 126", appendFrame(nil, opBinary, make([]byte, 126), true), 126, true, ""},
		{"64-bit length", appendFrame(nil, opBinary, make([]byte, 70000), false), 70000, false, ""},
		{"length with the top bit", []byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1}, 0, false, "bad length"},
		{"RSV2", []byte{0xA1, 0}, 0, false, "RSV2 set"},
		{"opcode 3", []byte{0x83, 0}, 0, false, "bad opcode 3"},
		{"fragmented ping", []byte{0x09, 0}, 0, false, "FIN not set on control"},
		{"long pong", []byte{0x8A, 126, 0, 126}, 0, false, "len > 125 for control"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for cut := 0; cut < min(len(tt.frame), maxFrameHeader); cut++ {
				h, complete, err := parseFrameHeader(tt.frame[:cut])
				if complete && cut < h.size || !complete && err != nil {
					t.Fatalf("cut at %d: complete %v err %v for a %d-byte header", cut, complete, err, h.size)
				}
			}
			h, complete, err := parseFrameHeader(tt.frame)
			if !complete {
				t.Fatal("incomplete")
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || h.length != tt.length || h.masked != tt.masked {
				t.Fatalf("got length %d masked %v err %v", h.length, h.masked, err)
			}
		})
	}
}
