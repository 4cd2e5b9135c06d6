package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/streamgate/streamgate/proxy"
)

// probe diagnoses a WebSocket or SSE endpoint as a client would and prints
// the report. It exits 0 when the endpoint is healthy, 1 with a one-line
// likely cause on stderr when it is not, and 2 on bad usage.
func probe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: streamgate probe [flags] URL   (ws://, wss://; with -sse http://, https://)")
		fs.PrintDefaults()
	}
	var subprotocols, headers listFlag
	fs.Var(&subprotocols, "subprotocol", "offer WebSocket subprotocol `P` (repeatable)")
	fs.Var(&headers, "header", "send header `'K: V'` (repeatable)")
	origin := fs.String("origin", "", "send `Origin` O, as a browser on that page would")
	watch := fs.Duration("for", 5*time.Second, "how long to watch the open connection; 0 closes it at once")
	sse := fs.Bool("sse", false, "probe a Server-Sent Events URL (GET with Accept: text/event-stream)")
	timeout := fs.Duration("timeout", proxy.DefaultProbeTimeout, "bound on DNS + TCP + TLS + handshake")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	caFile := fs.String("cacert", "", "PEM `file` of roots to trust instead of the system roots")
	insecure := fs.Bool("insecure", false, "report certificate problems but connect anyway")
	compression := fs.Bool("compression", false, "offer permessage-deflate, as browsers do")
	target, err := parseInterspersed(fs, args)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "streamgate probe:", err)
		}
		return 2
	}
	opts := proxy.ProbeOptions{
		SSE: *sse, Subprotocols: subprotocols, Origin: *origin, For: *watch,
		Timeout: *timeout, Compression: *compression,
	}
	if opts.Header, err = parseHeaders(headers); err == nil {
		opts.TLSConfig, err = probeTLSConfig(*caFile, *insecure)
	}
	if err != nil {
		fmt.Fprintln(stderr, "streamgate probe:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	rep, err := proxy.Probe(ctx, target, opts)
	if err != nil {
		fmt.Fprintln(stderr, "streamgate probe:", err)
		return 2
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "streamgate probe:", err)
		return 1
	}
	if !rep.OK {
		fmt.Fprintln(stderr, "likely cause:", rep.Cause)
		return 1
	}
	return 0
}

// parseInterspersed parses flags before and after the one positional
// argument, so that "probe URL -for 3s" works as "probe -for 3s URL".
func parseInterspersed(fs *flag.FlagSet, args []string) (string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", err
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) != 1 {
		fs.Usage()
		return "", fmt.Errorf("want exactly one URL, got %d", len(positional))
	}
	return positional[0], nil
}

// parseHeaders turns "K: V" strings into a header.
func parseHeaders(list []string) (http.Header, error) {
	h := http.Header{}
	for _, s := range list {
		k, v, ok := strings.Cut(s, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("header %q: want 'Name: value'", s)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

// probeTLSConfig builds the probe's TLS config: nil for the system roots.
func probeTLSConfig(caFile string, insecure bool) (*tls.Config, error) {
	if caFile == "" && !insecure {
		return nil, nil
	}
	cfg := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // reported, not silent: the probe verifies and prints the result
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read -cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", caFile)
		}
	}
	return cfg, nil
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }
