package wsconn

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/websocket"
)

// BenchmarkRelayMessage measures one message relayed each way (client to
// upstream and back) through a Relay over loopback TCP. allocs/op counts
// the whole process: the 6 are the test's gorilla client and echo upstream
// (NextReader's reader, NextWriter's writer and the write-buffer pool entry,
// on each); the frame relay itself allocates nothing per message (check
// with -memprofile and -memprofilerate=1).
func BenchmarkRelayMessage(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchRelayMessage(b, size) })
	}
}

func benchRelayMessage(b *testing.B, size int) {
	pool := NewBufferPool()
	// The upstream echoes with NextReader/NextWriter into pooled buffers.
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := NewUpgrader(false, pool).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, rd, err := c.NextReader()
			if err != nil {
				return
			}
			wr, err := c.NextWriter(mt)
			if err != nil {
				return
			}
			if _, err := io.Copy(wr, rd); err != nil || wr.Close() != nil {
				return
			}
		}
	}))
	defer up.Close()
	dialer := NewDialer(DialOptions{BufferPool: pool})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, err := Dial(context.Background(), dialer, "ws"+strings.TrimPrefix(up.URL, "http"), nil, nil)
		if err != nil {
			return
		}
		c, err := NewUpgrader(false, pool).Upgrade(w, r, nil)
		if err != nil {
			u.Close()
			return
		}
		NewRelay(c, u, Options{PingInterval: 0}).Run(context.Background())
	}))
	defer front.Close()
	c, _, err := Dial(context.Background(), dialer, "ws"+strings.TrimPrefix(front.URL, "http"), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, size)
	buf := make([]byte, size)
	b.SetBytes(int64(2 * size))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			b.Fatal(err)
		}
		_, rd, err := c.NextReader()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(rd, buf); err != nil {
			b.Fatal(err)
		}
	}
}
