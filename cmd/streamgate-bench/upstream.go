package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// runUpstream serves WebSocket echo on every path until SIGINT/SIGTERM. It
// is the upstream the other modes measure against; it keeps per-connection
// cost low (no pings of its own, pooled write buffers) so that it does not
// dominate the machine. With -emit RATE it pushes timestamped messages
// instead of echoing (see emitLoop), the source for the sse mode.
func runUpstream(args []string, fs *flag.FlagSet) (any, error) {
	listen := fs.String("listen", "127.0.0.1:3000", "address to serve on")
	emit := fs.Float64("emit", 0, "push this many timestamped text messages per second on every connection instead of echoing; 0 = echo")
	size := fs.Int("size", 64, "bytes per pushed message, with -emit (at least 48)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", *listen, err)
	}
	up := &websocket.Upgrader{
		CheckOrigin:     func(*http.Request) bool { return true },
		WriteBufferPool: &sync.Pool{},
	}
	var wg sync.WaitGroup
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := up.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			wg.Add(1)
			defer wg.Done()
			defer c.Close()
			if *emit > 0 {
				emitLoop(c, *emit, *size)
				return
			}
			echoLoop(c)
		}),
	}
	fmt.Fprintf(os.Stderr, "upstream echo on ws://%s/\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return nil, err
	}
	return nil, nil
}

// echoLoop sends every message back, streaming it without holding it whole.
func echoLoop(c *websocket.Conn) {
	for {
		mt, r, err := c.NextReader()
		if err != nil {
			return
		}
		w, err := c.NextWriter(mt)
		if err != nil {
			return
		}
		if _, err := io.Copy(w, r); err != nil {
			return
		}
		if w.Close() != nil {
			return
		}
	}
}
