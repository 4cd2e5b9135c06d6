// Command streamgate is a reverse-proxy sidecar that upgrades transports:
// it proxies HTTP and WebSockets to an unchanged app, keeps both legs of
// every WebSocket alive, and re-exposes WebSocket endpoints as Server-Sent
// Events. See README.md.
//
// Usage:
//
//	streamgate [-config FILE]            run (default ./proxy.yaml)
//	streamgate validate [-config FILE]   check a config, print every problem
//	streamgate probe [flags] URL         diagnose a WebSocket (or, with -sse, SSE) endpoint
//	streamgate version                   print the version
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args and returns the exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return run(args, stderr)
	case "validate":
		return validate(args, stdout, stderr)
	case "version":
		if unexpectedArgs(stderr, "streamgate version", args, false) {
			return 2
		}
		fmt.Fprintln(stdout, "streamgate", version)
		return 0
	case "probe":
		return probe(args, stdout, stderr)
	case "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "streamgate: unknown command %q\n", cmd)
		if strings.HasSuffix(cmd, ".yaml") || strings.HasSuffix(cmd, ".yml") {
			fmt.Fprintf(stderr, "to run with that config: streamgate -config %s\n", cmd)
		}
		usage(stderr)
		return 2
	}
}

// unexpectedArgs reports on stderr the first of args, what is left after
// the flags of a command that takes no arguments, and returns whether there
// was one: a usage error. cmd is the command as typed ("streamgate
// validate"); for a command that reads a config, the message says how to
// name the file, since that is what a stray argument usually is.
func unexpectedArgs(stderr io.Writer, cmd string, args []string, config bool) bool {
	if len(args) == 0 {
		return false
	}
	if config {
		fmt.Fprintf(stderr, "%s: unexpected argument %q: name the config file with -config FILE, e.g. %s -config %s\n", cmd, args[0], cmd, args[0])
	} else {
		fmt.Fprintf(stderr, "%s: unexpected argument %q: it takes none\n", cmd, args[0])
	}
	return true
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  streamgate [-config FILE]            run the proxy (default config ./proxy.yaml)
  streamgate validate [-config FILE]   check a config and print every problem
  streamgate probe [flags] URL         diagnose a ws://, wss:// (or with -sse, http(s)://) endpoint
                                       as a client would; "streamgate probe -h" lists the flags
  streamgate version                   print the version
Every config key can be overridden with STREAMGATE_<PATH>, e.g. STREAMGATE_UPSTREAM.
`)
}
