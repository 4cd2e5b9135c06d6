package wsconn

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestHeaderListHas checks the list-header matching that decides both the
// event-stream Accept and a client's permessage-deflate offer.
func TestHeaderListHas(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		token string
		want  bool
	}{
		{"alone", []string{"text/event-stream"}, "text/event-stream", true},
		{"with parameters and others", []string{"text/html;q=0.9, Text/Event-Stream ; q=1"}, "text/event-stream", true},
		{"on a second line", []string{"text/html", "text/event-stream"}, "text/event-stream", true},
		{"a prefix is not a match", []string{"text/event-streams"}, "text/event-stream", false},
		{"in a parameter is not a match", []string{"x-webkit-deflate-frame; permessage-deflate"}, "permessage-deflate", false},
		{"extension offer", []string{"permessage-deflate; client_max_window_bits"}, "permessage-deflate", true},
		{"absent", nil, "permessage-deflate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add("X-List", l)
			}
			if got := HeaderListHas(h, "X-List", tt.token); got != tt.want {
				t.Errorf("HeaderListHas(%q, %q) = %v, want %v", tt.lines, tt.token, got, tt.want)
			}
		})
	}
	r := &http.Request{Header: http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}}
	if NegotiatesDeflate(&websocket.Upgrader{}, r) || !NegotiatesDeflate(&websocket.Upgrader{EnableCompression: true}, r) {
		t.Error("NegotiatesDeflate must need both the offer and EnableCompression")
	}
}

// TestSmallReadBufferDialer: a Dialer with a read buffer smaller than the
// messages it reads (DialOptions.ReadBufferSize) still reads every
// message whole, from one byte to 100 KB, one at a time and in a burst of
// many small ones sent in one write.
func TestSmallReadBufferDialer(t *testing.T) {
	sizes := []int{1, 125, 511, 512, 513, 4096, 100_000}
	const burst = 300
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for _, n := range sizes {
			if c.WriteMessage(websocket.BinaryMessage, bytes.Repeat([]byte{byte(n)}, n)) != nil {
				return
			}
		}
		var frames []byte // many small frames in one write
		for i := range burst {
			frames = append(frames, 0x82, 3, byte(i), byte(i>>8), 0xff)
		}
		_, _ = c.NetConn().Write(frames)
		_, _, _ = c.ReadMessage() // until the client closes
	}))
	defer srv.Close()

	if got := NewDialer(DialOptions{}).ReadBufferSize; got != readBufferSize {
		t.Errorf("default read buffer %d, want %d", got, readBufferSize)
	}
	d := NewDialer(DialOptions{ReadBufferSize: 512})
	if d.ReadBufferSize != 512 {
		t.Fatalf("read buffer %d, want the 512 asked for", d.ReadBufferSize)
	}
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, n := range sizes {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("message of %d bytes: %v", n, err)
		}
		if !bytes.Equal(p, bytes.Repeat([]byte{byte(n)}, n)) {
			t.Fatalf("message of %d bytes: got %d bytes, not the ones sent", n, len(p))
		}
	}
	for i := range burst {
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("burst message %d: %v", i, err)
		}
		if want := []byte{byte(i), byte(i >> 8), 0xff}; !bytes.Equal(p, want) {
			t.Fatalf("burst message %d: got %x, want %x", i, p, want)
		}
	}
}
