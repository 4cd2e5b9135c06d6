package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestImportGraph guards DESIGN.md's dependency direction:
// cmd -> proxy -> bridge -> bridge/wsconn, config imports nothing of ours,
// bridge and wsconn never import proxy or config.
func TestImportGraph(t *testing.T) {
	const mod = "github.com/streamgate/streamgate/"
	allowed := map[string][]string{
		"config":         {},
		"bridge/wsconn":  {},
		"bridge":         {"bridge/wsconn"},
		"proxy":          {"config", "bridge", "bridge/wsconn"},
		"cmd/streamgate": {"config", "proxy"},
	}
	cmd := exec.Command("go", "list", "-json", mod+"...")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(out)
	seen := map[string]bool{}
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkg := strings.TrimPrefix(p.ImportPath, mod)
		seen[pkg] = true
		ok, ruled := allowed[pkg]
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			if strings.HasPrefix(dep, "cmd/") || (strings.HasPrefix(dep, "examples/") && !strings.HasPrefix(pkg, "examples/")) {
				t.Errorf("%s imports %s: nothing may import commands or examples", pkg, dep)
			}
			if ruled && !contains(ok, dep) {
				t.Errorf("%s imports %s; allowed: %v", pkg, dep, ok)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for pkg := range allowed {
		if !seen[pkg] {
			t.Errorf("package %s not found by go list", pkg)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
