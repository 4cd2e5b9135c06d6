// Command demo runs the whole streamgate demo in one process: the legacy
// WebSocket-only backend on a loopback port, and streamgate in front of it
// with ./proxy.yaml (its upstream pointed at the backend). Open the URL it
// prints.
//
//	go run ./examples/demo [-config proxy.yaml]
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/examples/backend/app"
	"github.com/streamgate/streamgate/proxy"
)

// sideBySide is the demo page that uses client.js.
//
//go:embed side-by-side.html
var sideBySide []byte

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "proxy.yaml", "streamgate config")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	backend := app.New(app.Options{})
	defer backend.Close()
	// The demo adds one page to the legacy app: the same stream over a
	// plain WebSocket and over StreamgateSocket, side by side.
	mux := http.NewServeMux()
	mux.Handle("/", backend)
	mux.HandleFunc("GET /side-by-side", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(sideBySide)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen backend: %w", err)
	}
	backendSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := backendSrv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(os.Stderr, "demo backend:", err)
		}
	}()
	defer backendSrv.Close()

	env := append(os.Environ(), "STREAMGATE_UPSTREAM=http://"+ln.Addr().String())
	cfg, warnings, err := config.Load(*path, env)
	if err != nil {
		return err
	}
	logger := zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr}).With().Timestamp().Logger()
	for _, w := range warnings {
		logger.Warn().Msg(w)
	}
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		return err
	}
	fmt.Printf("\n  legacy backend (WebSocket only): http://%s/\n", ln.Addr())
	fmt.Printf("  streamgate in front of it:       http://%s/   <- open this\n", srv.Addr())
	fmt.Printf("  WebSocket vs SSE side by side:   http://%s/side-by-side\n", srv.Addr())
	if a := srv.AdminAddr(); a != nil {
		fmt.Printf("  metrics:                         http://%s/metrics\n", a)
	}
	fmt.Printf("\n  Ctrl-C to stop.\n\n")
	return srv.Run(ctx)
}
