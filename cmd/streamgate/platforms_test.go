package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsOnOtherPlatforms checks every package for a Unix other than
// Linux (no event loops: relays and legs use goroutines) and for Windows
// (no raw non-blocking reads and no SIGUSR1 either), so code that only
// Linux has cannot creep into the shared files. darwin is vetted, tests
// included; Windows is built, as the tests use Unix socket options and
// process groups and are not built for it.
func TestBuildsOnOtherPlatforms(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles the module twice; skipped with -short")
	}
	for _, target := range []struct{ goos, goarch, verb string }{
		{"darwin", "arm64", "vet"},
		{"windows", "amd64", "build"},
	} {
		t.Run(target.goos, func(t *testing.T) {
			cmd := exec.Command("go", target.verb, "github.com/streamgate/streamgate/...")
			cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go %s: %v\n%s", target.goos, target.goarch, target.verb, err, out)
			}
		})
	}
}
