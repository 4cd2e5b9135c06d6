// Command backend runs the "legacy" demo app: a WebSocket-only backend
// (a live counter, a chat and an echo endpoint, plus a dashboard page) to put
// streamgate in front of.
//
// Usage:
//
//	go run ./examples/backend [-listen 127.0.0.1:3000] [-interval 1s]
package main

import (
	"context"
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

	"github.com/streamgate/streamgate/examples/backend/app"
)

// shutdownTimeout bounds http.Server.Shutdown; App.Close is bounded on its own.
const shutdownTimeout = 5 * time.Second

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:3000", "address to listen on")
	interval := fs.Duration("interval", app.DefaultInterval, "period of the /ws/counter ticks")
	verbose := fs.Bool("v", false, "log every closed WebSocket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("parse flags: %w", err)
	}

	level := zerolog.InfoLevel
	if *verbose {
		level = zerolog.DebugLevel
	}
	console := zerolog.ConsoleWriter{Out: os.Stderr, NoColor: !isTerminal(os.Stderr)}
	logger := zerolog.New(console).Level(level).With().Timestamp().Logger()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	a := app.New(app.Options{Interval: *interval, Logger: logger})
	srv := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("legacy backend listening on %s\n", pageURL(ln.Addr()))

	select {
	case err = <-errc: // Serve failed before any signal.
	case <-ctx.Done():
		logger.Info().Msg("shutting down")
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		err = srv.Shutdown(shutdownCtx) // Stops accepting; ignores hijacked WebSockets.
		cancel()
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
	}
	a.Close() // Sends 1001 to every WebSocket and waits for them.
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// pageURL returns the dashboard URL for addr, naming loopback when addr is
// the unspecified address (":3000" listens on every interface).
func pageURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// isTerminal reports whether f is a character device, such as a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
