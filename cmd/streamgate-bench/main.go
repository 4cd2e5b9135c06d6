// Command streamgate-bench is streamgate's load generator and its matching
// test upstream. Every run prints one JSON line of results, so scripts can
// compare runs.
//
//	streamgate-bench upstream -listen 127.0.0.1:3000
//	streamgate-bench echo -url ws://127.0.0.1:8080/ws/echo -conns 64 -size 1024 -for 10s
//	streamgate-bench idle -url ws://127.0.0.1:8080/ws/echo -conns 3000 -sources 127.0.0.2,127.0.0.3 -hold 10s
//	streamgate-bench upstream -listen 127.0.0.1:3001 -emit 10 -size 256
//	streamgate-bench sse -url http://127.0.0.1:8080/sse/feed -conns 100 -for 10s
//	streamgate-bench proc -pid 1234
//	streamgate-bench report -in raw.jsonl -json results.json -format markdown
//
// The last two serve examples/bench/compare.sh, which compares streamgate
// with nginx, HAProxy and Caddy.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: streamgate-bench upstream|echo|idle|sse|proc|report [flags]")
		return 2
	}
	modes := map[string]func([]string, *flag.FlagSet) (any, error){
		"upstream": runUpstream,
		"echo":     runEcho,
		"idle":     runIdle,
		"sse":      runSSE,
		"proc":     runProc,
		"report":   runReport,
	}
	mode, ok := modes[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "streamgate-bench: unknown mode %q\n", args[0])
		return 2
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	res, err := mode(args[1:], fs)
	if err != nil {
		fmt.Fprintln(stderr, "streamgate-bench:", err)
		return 1
	}
	if res != nil {
		_ = json.NewEncoder(stdout).Encode(res)
	}
	return 0
}
