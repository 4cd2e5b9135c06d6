package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamgate/streamgate/config"
)

// TestConsoleLogColours checks that log.format console colours its output
// only on a terminal: a file gets plain text, with no ANSI escapes.
func TestConsoleLogColours(t *testing.T) {
	t.Setenv("NO_COLOR", "") // zerolog leaves colours out whenever it is set
	tests := []struct {
		name   string
		open   func(t *testing.T) (w, r *os.File)
		colour bool
	}{
		{"file", func(t *testing.T) (w, r *os.File) {
			path := filepath.Join(t.TempDir(), "stderr.log")
			w, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			r, err = os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			return w, r
		}, false},
		{"terminal", openTerminal, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, r := tt.open(t)
			defer w.Close()
			defer r.Close()
			logger := newLogger(config.Log{Level: "info", Format: "console"}, w)
			logger.Info().Str("route", "/ws/").Msg("connection closed")
			buf := make([]byte, 4096)
			n, err := r.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			line := string(buf[:n])
			if !strings.Contains(line, "connection closed") {
				t.Fatalf("no log line: %q", line)
			}
			if got := strings.Contains(line, "\x1b["); got != tt.colour {
				t.Errorf("ANSI escapes = %v, want %v: %q", got, tt.colour, line)
			}
		})
	}
}
