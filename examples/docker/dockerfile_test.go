package docker_test

import (
	"debug/buildinfo"
	"debug/elf"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/streamgate/streamgate/config"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper-cased: FROM, RUN, ...
	args string
}

// parseDockerfile reads the instructions of a Dockerfile.
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") { // a comment inside a continuation
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// buildCommand returns the shell command of the RUN instruction that runs
// go build, without its --mount flags, and the ARGs declared before it in
// its stage.
func buildCommand(t *testing.T, ins []instruction) (string, []string) {
	t.Helper()
	var args []string
	for _, in := range ins {
		switch in.cmd {
		case "FROM":
			args = nil
		case "ARG":
			name, _, _ := strings.Cut(in.args, "=")
			args = append(args, name)
		case "RUN":
			if !strings.Contains(in.args, "go build") {
				continue
			}
			fields := in.args
			for strings.HasPrefix(fields, "--") {
				_, fields, _ = strings.Cut(fields, " ")
				fields = strings.TrimSpace(fields)
			}
			return fields, args
		}
	}
	t.Fatal("no RUN instruction with go build in the Dockerfile")
	return "", nil
}

// TestDockerBuildIsStatic runs the Dockerfile's go build command, as the
// build stage would but with the output in a temporary folder, and checks
// the binary: statically linked (no interpreter, no shared libraries),
// stripped, built with -trimpath and CGO off, and carrying the version.
func TestDockerBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("a full build with -trimpath and CGO off (about a minute on a cold cache)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the image is linux; the ELF checks need a linux build")
	}
	ins := parseDockerfile(t, "Dockerfile")
	cmd, declared := buildCommand(t, ins)
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=", "./cmd/streamgate"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("build command %q lacks %q", cmd, want)
		}
	}
	// Every variable the command uses must be an ARG of its stage.
	for _, m := range regexp.MustCompile(`\$\{?([A-Z_]+)\}?`).FindAllStringSubmatch(cmd, -1) {
		if !slices.Contains(declared, m[1]) {
			t.Errorf("build command uses $%s, which is not an ARG of the build stage (%v)", m[1], declared)
		}
	}
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(cmd)
	if out == nil {
		t.Fatalf("build command %q has no -o", cmd)
	}
	bin := filepath.Join(t.TempDir(), "streamgate")
	run := strings.Replace(cmd, out[0], "-o "+bin, 1)

	c := exec.Command("sh", "-c", run)
	c.Dir = "../.."
	c.Env = append(os.Environ(), "VERSION=v9.8.7-test", "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if b, err := c.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", run, err, b)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %v program header: dynamically linked", p.Type)
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("DT_NEEDED libraries %v (%v), want none", libs, err)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: not built with -s")
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["-trimpath"] != "true" {
		t.Errorf("build settings CGO_ENABLED=%q -trimpath=%q, want 0 and true", settings["CGO_ENABLED"], settings["-trimpath"])
	}
	if b, err := exec.Command(bin, "version").Output(); err != nil || strings.TrimSpace(string(b)) != "streamgate v9.8.7-test" {
		t.Errorf("%s version: %q %v, want the -X main.version value", bin, b, err)
	}
}

// TestDockerImageConfig checks the final stage against the config it ships:
// a non-root numeric USER on a distroless static (or scratch) base, the
// config copied where CMD points, the binary copied from where the build
// wrote it, and EXPOSE covering the listen and admin ports.
func TestDockerImageConfig(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	var final []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			final = nil
		}
		final = append(final, in)
	}
	get := func(cmd string) []string {
		var out []string
		for _, in := range final {
			if in.cmd == cmd {
				out = append(out, in.args)
			}
		}
		return out
	}
	if from := final[0].args; !strings.Contains(from, "distroless/static") && from != "scratch" {
		t.Errorf("final stage FROM %s, want distroless static or scratch", from)
	}
	users := get("USER")
	if len(users) != 1 {
		t.Fatalf("USER %v, want one", users)
	}
	uid, _, _ := strings.Cut(users[0], ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (Kubernetes runAsNonRoot cannot verify a name)", users[0])
	}

	cmd, _ := buildCommand(t, ins)
	out := regexp.MustCompile(`-o\s+(\S+)`).FindStringSubmatch(cmd)
	copies := strings.Join(get("COPY"), "\n")
	if out == nil || !strings.Contains(copies, "--from=build "+out[1]+" /streamgate") {
		t.Errorf("COPY %q does not take the binary from the build's -o", copies)
	}
	if !strings.Contains(copies, "examples/docker/proxy.yaml /etc/streamgate/proxy.yaml") {
		t.Errorf("COPY %q does not install examples/docker/proxy.yaml", copies)
	}
	if got := get("CMD"); len(got) != 1 || got[0] != `["-config", "/etc/streamgate/proxy.yaml"]` {
		t.Errorf("CMD %v, want the installed config", got)
	}
	if got := get("ENTRYPOINT"); len(got) != 1 || got[0] != `["/streamgate"]` {
		t.Errorf("ENTRYPOINT %v, want [\"/streamgate\"]", got)
	}

	data, err := os.ReadFile("proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := config.Parse(data, "examples/docker/proxy.yaml", nil)
	if err != nil || len(warnings) > 0 {
		t.Fatalf("the image's proxy.yaml: %v %v", err, warnings)
	}
	exposed := strings.Fields(strings.Join(get("EXPOSE"), " "))
	for _, addr := range []string{cfg.Listen, cfg.Admin} {
		host, port, _ := net.SplitHostPort(addr)
		if !slices.Contains(exposed, port) {
			t.Errorf("EXPOSE %v lacks port %s of %q", exposed, port, addr)
		}
		if host == "127.0.0.1" || host == "localhost" {
			t.Errorf("%q listens on the container's loopback: unreachable through a published port", addr)
		}
	}

	// The STREAMGATE_* variables README.md documents must be real keys.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, name := range regexp.MustCompile(`STREAMGATE_[A-Z_]+[A-Z]`).FindAllString(string(readme), -1) {
		env = append(env, name+"=x")
	}
	if len(env) == 0 {
		t.Fatal("README.md documents no STREAMGATE_* variable")
	}
	if _, warnings, _ = config.Parse(data, "examples/docker/proxy.yaml", env); len(warnings) > 0 {
		t.Errorf("README.md names variables that are not config keys: %v", warnings)
	}
}
