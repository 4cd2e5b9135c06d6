package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/streamgate/streamgate/config"
	"github.com/streamgate/streamgate/proxy"
)

// run loads the config, starts the proxy and serves until SIGTERM or
// SIGINT, then drains. SIGHUP reloads the config file.
func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("streamgate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "proxy.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if unexpectedArgs(stderr, "streamgate", fs.Args(), true) {
		return 2
	}
	cfg, warnings, err := config.Load(*path, os.Environ())
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	logger := newLogger(cfg.Log, stderr)
	for _, w := range warnings {
		logger.Warn().Msg(w)
	}
	srv, err := proxy.New(cfg, logger)
	if err != nil {
		logger.Error().Err(err).Msg("cannot start")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go reloadOnHUP(ctx, srv, *path, logger)
	if err := srv.Run(ctx); err != nil {
		logger.Error().Err(err).Msg("stopped")
		return 1
	}
	return 0
}

// reloadOnHUP re-reads the config on every SIGHUP until ctx ends. An
// invalid file is refused with all its errors and the running config stays.
func reloadOnHUP(ctx context.Context, srv *proxy.Server, path string, logger zerolog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		cfg, _, err := config.Load(path, os.Environ())
		if err == nil {
			err = srv.Reload(cfg)
		}
		if err != nil {
			logger.Error().Str("config", path).Err(err).Msg("reload refused; running config unchanged")
			continue
		}
		logger.Info().Str("config", path).Msg("reload applied")
	}
}

// newLogger builds the root logger from the log block: JSON to w, or
// console output for humans, coloured only when w is a terminal.
func newLogger(c config.Log, w io.Writer) zerolog.Logger {
	if c.Format == "console" {
		w = zerolog.ConsoleWriter{Out: w, NoColor: !isTerminal(w)}
	}
	level, err := zerolog.ParseLevel(c.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// isTerminal reports whether w is a terminal (or a Cygwin or MSYS one on
// Windows), where colours are read rather than kept as escape codes.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}
