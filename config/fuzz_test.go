package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// fuzzSeeds are config files the fuzzers start from: the sample, the shapes
// the other tests use, and YAML features a hostile or careless file might
// use (anchors, merge keys, tags, flow style, several documents).
var fuzzSeeds = []string{
	"",
	"upstream: http://a\n",
	"listen: \":8080\"\nupstream: \"http://127.0.0.1:3000\"\nlistn: \":9000\"\nwebsocket:\n  ping_interval: 10s\n  pong_timeout: 10s\n  idle_timeout: 5 minutes\nroutes:\n  - path: /\n  - path: /ws/\n    websocket:\n      pong_timeout: 1m\n      max_message_size: 2GiB\n  - path: api\n",
	"upstream: http://a\nwebsocket:\n  ping_interval: 20s\n  allowed_origins: [\"https://a.example.com\"]\nroutes:\n  - path: /ws/slow\n    websocket: {ping_interval: 50s, pong_timeout: 20s, allowed_origins: []}\n  - path: /ws/\n    upstream: http://b\n",
	"upstream: http://a\nupstream_tls: { ca_file: \"\", insecure_skip_verify: maybe }\n",
	"upstream: http://a\nsse: {heartbeat: x, retry: x}\n",
	"upstream: http://a\nlisten:\n  port: 80\n",
	"upstream: http://a\nlisten: :1\nlisten: :2\n",
	"- a\n",
	"upstream: http://a\n---\nlisten: :1\n",
	"upstream: http://a\n---\n",
	"upstream: http://a\ntls:\n  domains: [a.example.com]\n  email: ops@example.com\n",
	"upstream: http://a\ntls:\n  cert_file: /nonexistent.pem\n",
	"upstream: http://a\nbase: &b {ping_interval: 5s}\n",
	"upstream: http://a\nwebsocket: &w\n  ping_interval: 5s\nroutes:\n  - path: /x\n    websocket: *w\n",
	"upstream: http://a\nwebsocket:\n  <<: {ping_interval: 5s}\n",
	"upstream: !!binary aGVsbG8=\n",
	"upstream: http://a\nsse:\n  padding: 99999999999999999999\n  max_sessions: -1\n",
	"upstream: http://a\nwebsocket:\n  max_message_size: 1.5KiB\n",
	"upstream: http://a\nlimits: {max_connections: 1, max_connections_per_ip: 2}\ntrusted_proxies: [10.0.0.0/8, \"::1\", bogus]\n",
	"upstream: http://a\nlog: {level: loud, format: xml}\n",
	"upstream: \"http://a\nlisten: [\n",
	"\tupstream: http://a\n",
	"upstream: http://a\x00\n",
}

// FuzzParse checks that Parse never panics on any file and environment, and
// that every problem it reports can be shown to a user: it names a key, or
// is about the whole file (YAML syntax, a second document, a document of the
// wrong shape) and then gives the line, when yaml.v3 reports one. env holds
// STREAMGATE_* variables, one per line.
func FuzzParse(f *testing.F) {
	if sample, err := os.ReadFile("testdata/sample.yaml"); err == nil {
		f.Add(sample, "")
		f.Add(sample, "STREAMGATE_WEBSOCKET_PING_INTERVAL=soon\nSTREAMGATE_NOPE=1")
	} else {
		f.Fatal(err)
	}
	for _, s := range fuzzSeeds {
		f.Add([]byte(s), "")
	}
	f.Add([]byte("upstream: http://a\n"), "STREAMGATE_LISTEN=8080\nSTREAMGATE_SSE_BIND_IP=maybe\nSTREAMGATE_TLS_DOMAINS=a.example.com,b.example.com")
	f.Add([]byte(""), "STREAMGATE_UPSTREAM=http://a\nSTREAMGATE_ROUTES=x")
	f.Fuzz(func(t *testing.T, data []byte, env string) {
		var environ []string
		if env != "" {
			environ = strings.Split(env, "\n")
		}
		c, _, err := Parse(data, "p.yaml", environ)
		if err == nil {
			if c == nil {
				t.Fatal("Parse returned neither a config nor an error")
			}
			// A config Parse accepted is valid by Validate's rules too.
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate refuses:\n%v\ninput:\n%q", verr, data)
			}
			return
		}
		if c != nil {
			t.Fatalf("Parse returned a config with an error: %v", err)
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v (%T) is not a non-empty config.Errors", err, err)
		}
		for _, fe := range errs {
			checkFieldError(t, fe, data)
		}
	})
}

// checkFieldError fails t unless fe names what it is about.
func checkFieldError(t *testing.T, fe *FieldError, data []byte) {
	t.Helper()
	if fe == nil {
		t.Fatalf("nil *FieldError in Errors; input %q", data)
	}
	if fe.Msg == "" {
		t.Errorf("problem without a message: %#v; input %q", fe, data)
	}
	if fe.File != "p.yaml" && !strings.HasPrefix(fe.File, "env STREAMGATE_") {
		t.Errorf("problem %q names file %q, want p.yaml or an environment variable", fe.Error(), fe.File)
	}
	// yaml.v3 may place "unexpected end of stream" on the line after the
	// last one.
	if n := yamlLines(data); fe.Line < 0 || fe.Line > n+1 {
		t.Errorf("problem %q is at line %d of a %d-line file", fe.Error(), fe.Line, n)
	}
	if fe.Key != "" {
		return
	}
	// A problem of the whole file: YAML syntax, a second document, a
	// document of the wrong shape. Those of the document's structure give
	// their line. Syntax errors may not: yaml.v3 leaves the line out of
	// errors on the first line, of errors in the byte stream and of
	// alias and merge errors; TestParseSyntaxErrorLines covers them.
	if fe.Line == 0 && !strings.HasPrefix(fe.Msg, "invalid YAML: ") {
		t.Errorf("problem with neither key nor line: %q; input %q", fe.Error(), data)
	}
}

// TestParseSyntaxErrorLines checks that a YAML syntax error names its line,
// including on the first line, where yaml.v3's message has no "line N:"
// (its marks are 0-based and it leaves out line 0). Some errors come from
// yaml.v3 with no position at all: those of the byte stream (control
// characters, bad UTF-8, from its reader) and those it finds while
// resolving aliases and merge keys; for them line 0 (unknown) is accepted
// as well as the right line.
func TestParseSyntaxErrorLines(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		noLineOK  bool // yaml.v3 gives no position
	}{
		{"tab on line 1", "\tupstream: http://a\n", 1, false},
		{"mapping in a scalar on line 1", "a: b: c\n", 1, false},
		{"tab on line 2", "upstream: http://a\n\tlisten: x\n", 2, false},
		{"unterminated quote", "upstream: \"http://a\n", 2, false},
		{"control character", "upstream: http://a\n\x01", 2, true},
		{"invalid UTF-8", "upstream: http://a\n\xff\n", 2, true},
		{"merge key of a scalar", "upstream: http://a\nwebsocket:\n  <<: 5\n", 3, true},
		{"anchor containing itself", "upstream: http://a\nwebsocket: &a\n  <<: *a\n", 3, true},
		{"unknown anchor", "upstream: http://a\nlisten: *nope\n", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			errs := mustErrors(t, err)
			var fe *FieldError
			for _, e := range errs {
				if strings.HasPrefix(e.Msg, "invalid YAML: ") {
					fe = e
				}
			}
			if fe == nil {
				t.Fatalf("want a syntax error, got %v", err)
			}
			if fe.Line != tt.line && !(tt.noLineOK && fe.Line == 0) {
				t.Errorf("%q: line %d, want %d", fe.Error(), fe.Line, tt.line)
			}
		})
	}
}

// yamlLines counts the lines of data as yaml.v3 does: CR LF, CR, LF, NEL,
// LS and PS each end a line.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	n := 1
	for _, r := range s {
		switch r {
		case '\n', '\r', '\u0085', '\u2028', '\u2029':
			n++
		}
	}
	return n
}

// FuzzParseByteSize checks that a size never parses to a negative number
// (overflow) and that a parsed size prints as a string that parses back to
// it.
func FuzzParseByteSize(f *testing.F) {
	for _, s := range []string{"512", "1MiB", "64 KiB", "1.5GB", "1.5.KB", "9223372036854775807", "8589934591GiB", "0.000000001GiB", "1e6", "-1", " 2 gib ", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseByteSize(s)
		if err != nil {
			return
		}
		if b < 0 {
			t.Fatalf("ParseByteSize(%q) = %d, negative", s, b)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseByteSize(%q) = %d, String %q parses back to %d, %v", s, b, b.String(), back, err)
		}
	})
}

// FuzzParseDuration checks that a duration never parses to a negative value
// and that a parsed duration prints as a string that parses back to it.
func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"25s", "1m30s", "0", "-5s", "25", "1.5.s", "2562047h47m16.854775807s", "9999999999h", "1ns", ".5s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("ParseDuration(%q) = %d, negative", s, d)
		}
		back, err := ParseDuration(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDuration(%q) = %v, String %q parses back to %v, %v", s, d, d.String(), back, err)
		}
	})
}
