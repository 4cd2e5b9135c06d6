package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/streamgate/streamgate/config"
)

// validate loads and validates a config and prints every problem, one per
// line, with file, line and key. It exits 0 when the config is valid.
func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "proxy.yaml", "config file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if unexpectedArgs(stderr, "streamgate validate", fs.Args(), true) {
		return 2
	}
	_, warnings, err := config.Load(*path, os.Environ())
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%s: %d problem(s)\n", *path, len(errs))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: valid\n", *path)
	return 0
}
