package proxy

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestProbeFindingsDocumented checks that docs/troubleshooting.md has a
// section for every finding the probe can report, and none for a finding it
// cannot.
func TestProbeFindingsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/troubleshooting.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^### `([a-z-]+)`$").FindAllSubmatch(doc, -1) {
		documented = append(documented, string(m[1]))
	}
	for _, id := range probeFindingIDs {
		if !slices.Contains(documented, id) {
			t.Errorf("finding %q has no section \"### `%s`\" in docs/troubleshooting.md", id, id)
		}
	}
	for _, id := range documented {
		if !slices.Contains(probeFindingIDs, id) {
			t.Errorf("docs/troubleshooting.md documents %q, which the probe never reports", id)
		}
	}
}
