package wsconn

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
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

// echoHandler upgrades to a WebSocket that echoes every message, after
// handing the request to onRequest if that is not nil.
func echoHandler(onRequest func(*http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if onRequest != nil {
			onRequest(r)
		}
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil || c.WriteMessage(mt, p) != nil {
				return
			}
		}
	}
}

// patientWrite is the write deadline of test peers' control frames:
// gorilla's default pong handler allows 1 s, which a test that backs a
// connection up on purpose can outlast on a loaded machine, and a control
// write that times out fails every later write of the connection.
const patientWrite = 10 * time.Second

// answerPingsPatiently makes c answer pings as gorilla does, with
// patientWrite for each pong.
func answerPingsPatiently(c *websocket.Conn) {
	c.SetPingHandler(func(data string) error {
		err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(patientWrite))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
}

// writeCountingConn counts the writes that reach a connection.
type writeCountingConn struct {
	net.Conn
	writes atomic.Int32
}

func (c *writeCountingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestDialerSendsRequestInOneWrite checks that a Dialer from NewDialer
// sends the handshake request in one write, at any size (net/http's own
// buffered writer would flush a large one in 4 KiB pieces), that the
// request arrives whole, and that writes after the handshake go straight
// through.
func TestDialerSendsRequestInOneWrite(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(echoHandler(func(r *http.Request) { got <- r.Header.Get("X-Big") }))
	defer srv.Close()

	for _, size := range []int{10, 5000, 20_000} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			var counted *writeCountingConn
			d := NewDialer(DialOptions{NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
				if err != nil {
					return nil, err
				}
				counted = &writeCountingConn{Conn: c}
				return counted, nil
			}})
			big := strings.Repeat("b", size)
			c, _, err := Dial(context.Background(), d, "ws"+strings.TrimPrefix(srv.URL, "http"), http.Header{"X-Big": {big}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if v := <-got; v != big {
				t.Fatalf("upstream got a header of %d bytes, want the %d sent", len(v), size)
			}
			if n := counted.writes.Load(); n != 1 {
				t.Fatalf("handshake request sent in %d writes, want 1", n)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range 3 {
				msg := []byte("after " + strconv.Itoa(i))
				if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
					t.Fatal(err)
				}
				if _, p, err := c.ReadMessage(); err != nil || !bytes.Equal(p, msg) {
					t.Fatalf("echo %d: %q, %v", i, p, err)
				}
			}
			if n := counted.writes.Load(); n != 4 {
				t.Fatalf("%d writes after three messages, want 4: writes after the handshake must go straight through", n)
			}
		})
	}
}
