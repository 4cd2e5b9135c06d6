package main

import (
	"os"
	"os/exec"
	"testing"
)

// TestBuildsOnOtherPlatforms builds every package for a Unix other than
// Linux (no event loops: relays and legs use goroutines) and for Windows
// (no raw non-blocking reads and no SIGUSR1 either), so code that only
// Linux has cannot creep into the shared files. The tests themselves use
// Unix socket options and process groups, and are not built for Windows.
func TestBuildsOnOtherPlatforms(t *testing.T) {
	for _, target := range []struct{ goos, goarch string }{
		{"darwin", "arm64"},
		{"windows", "amd64"},
	} {
		t.Run(target.goos, func(t *testing.T) {
			cmd := exec.Command("go", "build", "github.com/streamgate/streamgate/...")
			cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("GOOS=%s GOARCH=%s go build: %v\n%s", target.goos, target.goarch, err, out)
			}
		})
	}
}
