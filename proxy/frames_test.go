package proxy_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/config"
)

// Frame-level garbage: after a good handshake, the client writes frames
// that break RFC 6455 straight onto the TCP connection. The proxy must
// close that connection with 1002 (protocol error), tell the upstream
// 1001, log the cause, and leave every other connection alone.

// closeRecorder is an upstream that echoes and reports, per request path,
// the close code it got when the connection ended (1006 for none).
func closeRecorder(t *testing.T) (url string, got func(path string) int) {
	type ended struct {
		path string
		code int
	}
	codes := make(chan ended, 16)
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		code := websocket.CloseAbnormalClosure
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					code = ce.Code
				}
				break
			}
			if c.WriteMessage(mt, p) != nil {
				break
			}
		}
		codes <- ended{r.URL.Path, code}
	})
	return be.URL, func(path string) int {
		t.Helper()
		for {
			select {
			case pc := <-codes:
				if pc.path == path {
					return pc.code
				}
			case <-t.Context().Done():
				return 0
			}
		}
	}
}

func TestFrameGarbageClosesOnlyThatConnection(t *testing.T) {
	beURL, upstreamCode := closeRecorder(t)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(beURL), logger)
	bystander := dial(t, wsURL(srv, "/bystander"), nil)

	tests := []struct {
		name  string
		frame []byte
		// cause is what gorilla names in the close reason and the
		// log's error.
		cause string
	}{
		{"reserved opcode 0x3", clientFrame(finBit|0x3, []byte("x"), true), "bad opcode 3"},
		{"reserved opcode 0xB (control)", clientFrame(finBit|0xB, nil, true), "bad opcode 11"},
		{"ping without FIN", clientFrame(opPing, []byte("p"), true), "FIN not set on control"},
		{"control frame over 125 bytes", clientFrame(finBit|opPing, make([]byte, 126), true), "len > 125 for control"},
		{"unmasked client frame", clientFrame(finBit|opText, []byte("hello"), false), "bad MASK"},
		{"RSV1 without permessage-deflate", clientFrame(finBit|rsv1Bit|opText, []byte("x"), true), "RSV1 set"},
		{"continuation without a start", clientFrame(finBit|0x0, []byte("x"), true), "continuation after FIN"},
		{"new message inside a fragmented one", append(clientFrame(opText, []byte("a"), true), clientFrame(finBit|opText, []byte("b"), true)...), "data before FIN"},
		{"close code 1005 on the wire", clientFrame(finBit|opClose, closePayload(1005, ""), true), "bad close code 1005"},
		{"close code 999", clientFrame(finBit|opClose, closePayload(999, ""), true), "bad close code 999"},
		{"close reason not UTF-8", clientFrame(finBit|opClose, closePayload(1000, "\xff\xfe"), true), "invalid utf8 payload in close frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/garbage/" + strings.ReplaceAll(tt.name, " ", "-")
			c := dialRaw(t, srv.Addr().String(), path)
			c.write(t, clientFrame(finBit|opText, []byte("ok"), true))
			if op, p, err := c.readFrame(); err != nil || op != opText || string(p) != "ok" {
				t.Fatalf("echo before the garbage: op %d %q %v", op, p, err)
			}
			c.write(t, tt.frame)
			code, reason := c.readClose(t, window)
			if code != websocket.CloseProtocolError || !strings.Contains(reason, tt.cause) {
				t.Errorf("client got close %d %q, want 1002 naming %q", code, reason, tt.cause)
			}
			if got := upstreamCode(path); got != websocket.CloseGoingAway {
				t.Errorf("upstream got %d, want 1001", got)
			}
			line := logs.wait(t, window, func(m map[string]any) bool {
				return closedLine(m) && m["client_code"] == 1002.0 && strings.Contains(m["error"].(string), tt.cause)
			})
			if line["closed_by"] != "error" || line["upstream_code"] != 1001.0 {
				t.Errorf("log: %v", line)
			}
			mustEcho(t, bystander, "still here after "+tt.name)
		})
	}
}

// TestFrameInvalidUTF8Text checks RFC 6455 section 8.1: a text message
// that is not UTF-8 fails the connection with 1007. gorilla does not check
// text payloads, so the relay does, across frames and reads: a character
// split between two fragments is valid, and a message that ends inside a
// character is not.
func TestFrameInvalidUTF8Text(t *testing.T) {
	beURL, upstreamCode := closeRecorder(t)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(beURL), logger)
	bystander := dial(t, wsURL(srv, "/bystander"), nil)

	tests := []struct {
		name   string
		frames [][]byte
		echo   string // "" when the message must be refused with 1007
	}{
		{"invalid byte", [][]byte{clientFrame(finBit|opText, []byte("bad \xff\xfe utf-8"), true)}, ""},
		{"ends inside a character", [][]byte{clientFrame(finBit|opText, []byte("euro \xe2\x82"), true)}, ""},
		{"invalid across fragments", [][]byte{
			clientFrame(opText, []byte("euro \xe2\x82"), true),
			clientFrame(finBit|0x0, []byte("\x28 no"), true),
		}, ""},
		{"overlong encoding", [][]byte{clientFrame(finBit|opText, []byte("slash \xc0\xaf"), true)}, ""},
		{"surrogate half", [][]byte{clientFrame(finBit|opText, []byte("\xed\xa0\x80"), true)}, ""},
		{"valid character across fragments", [][]byte{
			clientFrame(opText, []byte("euro \xe2"), true),
			clientFrame(0x0, []byte("\x82"), true),
			clientFrame(finBit|0x0, []byte("\xac!"), true),
		}, "euro €!"},
		{"binary is not checked", [][]byte{clientFrame(finBit|0x2, []byte("\xff\xfe"), true)}, "\xff\xfe"},
	}
	refused := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/utf8/" + strings.ReplaceAll(tt.name, " ", "-")
			c := dialRaw(t, srv.Addr().String(), path)
			c.write(t, tt.frames...)
			if tt.echo != "" {
				_ = c.conn.SetReadDeadline(time.Now().Add(window))
				if op, p, err := c.readFrame(); err != nil || op == opClose || string(p) != tt.echo {
					t.Fatalf("got op %d %q %v, want %q echoed", op, p, err, tt.echo)
				}
				return
			}
			code, reason := c.readClose(t, window)
			// Hang up rather than wait for the proxy to: it keeps
			// reading a refused sender for a moment, until EOF.
			c.conn.Close()
			if code != websocket.CloseInvalidFramePayloadData {
				t.Errorf("client got close %d %q, want 1007", code, reason)
			}
			if got := upstreamCode(path); got != websocket.CloseGoingAway {
				t.Errorf("upstream got %d, want 1001", got)
			}
			// Log lines do not name the path: this refusal's line is
			// the next one with 1007.
			refused++
			refusedLine := func(m map[string]any) bool { return closedLine(m) && m["client_code"] == 1007.0 }
			logs.waitCount(t, window, refused, refusedLine)
			if line := logs.matching(refusedLine)[refused-1]; line["closed_by"] != "error" || line["upstream_code"] != 1001.0 {
				t.Errorf("log: %v", line)
			}
			mustEcho(t, bystander, "still here after "+tt.name)
		})
	}
}

// TestFrameLengthWithTopBitSet sends a frame whose 64-bit length has its
// most significant bit set, which RFC 6455 section 5.2 forbids. gorilla
// reports it as ErrReadLimit, like an oversized message, but without
// sending the 1009 close frame it sends for those; the client must still
// get the close code the log names.
func TestFrameLengthWithTopBitSet(t *testing.T) {
	beURL, upstreamCode := closeRecorder(t)
	logs, logger := newLogLines(t)
	srv := startProxy(t, testConfig(beURL), logger)
	bystander := dial(t, wsURL(srv, "/bystander"), nil)
	c := dialRaw(t, srv.Addr().String(), "/length")
	c.write(t, []byte{finBit | opText, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4})
	code, reason := c.readClose(t, window)
	c.conn.Close()
	if got := upstreamCode("/length"); got != websocket.CloseGoingAway {
		t.Errorf("upstream got %d, want 1001", got)
	}
	line := logs.wait(t, window, closedLine)
	t.Logf("64-bit length with the top bit set: client got close %d %q (0: none, TCP closed); log client_code %v, closed_by %v, error %q",
		code, reason, line["client_code"], line["closed_by"], line["error"])
	if line["closed_by"] != "error" {
		t.Errorf("log: %v", line)
	}
	if float64(code) != line["client_code"] {
		t.Errorf("client got close code %d (0: no close frame), but the log says client_code %v", code, line["client_code"])
	}
	mustEcho(t, bystander, "still here")
}

// TestCompressedMessageOverMaxSize sends, with permessage-deflate on, a
// message whose compressed frames are far under max_message_size but which
// inflates far over it: a decompression bomb. gorilla's SetReadLimit counts
// the bytes on the wire, which for a compressed message are the compressed
// ones (centrifugal/centrifuge#584 works around the same gap), so the limit
// must be enforced on what the relay copies. The sender must get 1009 and
// the upstream nothing over the limit.
func TestCompressedMessageOverMaxSize(t *testing.T) {
	const limit = 64 << 10
	largest := make(chan int, 4)
	be := wsBackend(t, nil, func(c *websocket.Conn, r *http.Request) {
		n := 0
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				break
			}
			n = max(n, len(p))
		}
		largest <- n
	})
	logs, logger := newLogLines(t)
	cfg := testConfig(be.URL)
	cfg.WebSocket.Compression = true
	cfg.WebSocket.MaxMessageSize = config.ByteSize(limit)
	srv := startProxy(t, cfg, logger)
	d := websocket.Dialer{EnableCompression: true}
	c, _, err := d.Dial(wsURL(srv, "/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.EnableWriteCompression(true)
	// 8 MiB of zeros deflate to a few KiB on the wire.
	if err := c.WriteMessage(websocket.BinaryMessage, make([]byte, 8<<20)); err != nil {
		t.Fatal(err)
	}
	code := 0 // none: the message went through and the connection stays
	_ = c.SetReadDeadline(time.Now().Add(window))
	for {
		_, _, err := c.ReadMessage()
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			code = ce.Code
		}
		if err != nil {
			break
		}
	}
	c.Close()
	line := logs.wait(t, window, closedLine)
	var got int
	select {
	case got = <-largest:
	case <-time.After(window):
	}
	t.Logf("compressed 8 MiB message, max_message_size 64 KiB: client got close %d (0: none); upstream's largest message %d bytes; log closed_by %v",
		code, got, line["closed_by"])
	if code != websocket.CloseMessageTooBig {
		t.Errorf("client got close %d (0: none), want 1009", code)
	}
	if got > limit {
		t.Errorf("the upstream received a %d-byte message through a %d-byte limit", got, limit)
	}
}
