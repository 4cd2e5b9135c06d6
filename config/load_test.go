package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// mustErrors returns the Errors inside err, failing the test if there are
// none.
func mustErrors(t *testing.T, err error) Errors {
	t.Helper()
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error = %v (%T), want config.Errors", err, err)
	}
	return errs
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := `listen: ":8080"
upstream: "http://127.0.0.1:3000"
listn: ":9000"
websocket:
  ping_interval: 10s
  pong_timeout: 10s
  idle_timeout: 5 minutes
routes:
  - path: /
  - path: /ws/
    websocket:
      pong_timeout: 1m
      max_message_size: 2GiB
  - path: api
`
	c, _, err := Parse([]byte(src), "proxy.yaml", nil)
	if c != nil {
		t.Errorf("config = %+v, want nil on error", c)
	}
	errs := mustErrors(t, err)
	want := []FieldError{
		{"proxy.yaml", 3, "listn", `unknown key "listn"`, nil},
		{"proxy.yaml", 6, "websocket.pong_timeout", "10s must be less than ping_interval (10s): the pong must come back before the next ping is due", nil},
		{"proxy.yaml", 7, "websocket.idle_timeout", `invalid duration "5 minutes": want a Go duration such as "25s" or "1m30s"`, nil},
		{"proxy.yaml", 10, "routes[1].path", `never matched: routes[0] path "/" matches first`, nil},
		{"proxy.yaml", 12, "routes[1].websocket.pong_timeout", "1m0s must be less than ping_interval (10s): the pong must come back before the next ping is due", nil},
		{"proxy.yaml", 13, "routes[1].websocket.max_message_size", "2GiB: must be greater than 0 and at most 1GiB", nil},
		{"proxy.yaml", 14, "routes[2].path", `"api" must start with "/"`, nil},
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if got := *errs[i]; got.File != w.File || got.Line != w.Line || got.Key != w.Key || got.Msg != w.Msg {
			t.Errorf("problem %d = %q:%d %q %q\nwant          %q:%d %q %q", i, got.File, got.Line, got.Key, got.Msg, w.File, w.Line, w.Key, w.Msg)
		}
	}
	wantText := `proxy.yaml:3: listn: unknown key "listn"
proxy.yaml:6: websocket.pong_timeout: 10s must be less than ping_interval (10s): the pong must come back before the next ping is due
proxy.yaml:7: websocket.idle_timeout: invalid duration "5 minutes": want a Go duration such as "25s" or "1m30s"
proxy.yaml:10: routes[1].path: never matched: routes[0] path "/" matches first
proxy.yaml:12: routes[1].websocket.pong_timeout: 1m0s must be less than ping_interval (10s): the pong must come back before the next ping is due
proxy.yaml:13: routes[1].websocket.max_message_size: 2GiB: must be greater than 0 and at most 1GiB
proxy.yaml:14: routes[2].path: "api" must start with "/"`
	if got := err.Error(); got != wantText {
		t.Errorf("Error() =\n%s\nwant\n%s", got, wantText)
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Line != 3 {
		t.Errorf("errors.As(*FieldError) = %v, want the first problem", fe)
	}
}

// TestParseDecodeErrorKeys checks that yaml.v3's errors, which carry only a
// line, are placed on the right dotted key, including in flow mappings.
func TestParseDecodeErrorKeys(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		key, msg  string
	}{
		{"unknown nested key", "upstream: http://a\nwebsocket:\n  pingInterval: 5s\n",
			3, "websocket.pingInterval", `unknown key "pingInterval"`},
		{"unknown key in a route", "upstream: http://a\nroutes:\n  - path: /a\n  - path: /b\n    websocket: {pong: 1s}\n",
			5, "routes[1].websocket.pong", `unknown key "pong"`},
		{"duplicate key", "upstream: http://a\nlisten: :1\nlisten: :2\n",
			3, "listen", `duplicate key "listen" (first at line 2)`},
		{"wrong type in flow mapping", "upstream: http://a\nupstream_tls: { ca_file: \"\", insecure_skip_verify: maybe }\n",
			2, "upstream_tls.insecure_skip_verify", "cannot unmarshal !!str `maybe` into bool"},
		{"two bad values on one line", "upstream: http://a\nsse: {heartbeat: x, retry: x}\n",
			2, "sse.retry", `invalid duration "x": want a Go duration such as "25s" or "1m30s"`},
		{"mapping for a string", "upstream: http://a\nlisten:\n  port: 80\n",
			3, "listen", "cannot unmarshal !!map into string"},
		{"list for a string", "listen: [a]\nupstream: http://a\n",
			1, "listen", "cannot unmarshal !!seq into string"},
		{"long value", "upstream: http://a\nsse:\n  padding: twothousand\n",
			3, "sse.padding", "cannot unmarshal !!str `twothou...` into int"},
		{"bad size in a route", "upstream: http://a\nroutes:\n  - path: /a\n    websocket:\n      max_message_size: big\n",
			5, "routes[0].websocket.max_message_size", `invalid size "big": want bytes or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "1MiB"`},
		{"document is a list", "- a\n", 1, "", "cannot unmarshal !!seq into config.Config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			errs := mustErrors(t, err)
			for _, fe := range errs {
				if fe.Line == tt.line && fe.Key == tt.key && fe.Msg == tt.msg {
					return
				}
			}
			t.Errorf("no problem %d %q %q in:\n%v", tt.line, tt.key, tt.msg, err)
		})
	}
}

func TestParseDecodeErrorNotReportedTwice(t *testing.T) {
	src := "upstream: http://a\nwebsocket:\n  ping_interval: 5s\n  pong_timeout: soon\n"
	_, _, err := Parse([]byte(src), "p.yaml", nil)
	errs := mustErrors(t, err)
	if len(errs) != 1 || errs[0].Key != "websocket.pong_timeout" || errs[0].Line != 4 {
		t.Errorf("got:\n%v\nwant only the bad duration at line 4", err)
	}
}

func TestParseSyntaxError(t *testing.T) {
	tests := []struct {
		name, src string
		line      int
		msg       string
	}{
		{"bad indentation", "upstream: http://a\nlisten: :80\n  admin: :90\n", 3, "invalid YAML: mapping values are not allowed in this context"},
		{"tab", "upstream: http://a\nlog:\n\tlevel: info\n", 3, "invalid YAML: found character that cannot start any token"},
		{"second document", "upstream: http://a\n---\nlisten: :80\n", 2, "a second YAML document: the config is one document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			errs := mustErrors(t, err)
			if len(errs) != 1 {
				t.Fatalf("got %d problems, want 1:\n%v", len(errs), err)
			}
			if got := errs[0]; got.Line != tt.line || got.Msg != tt.msg || got.Key != "" {
				t.Errorf("got %q, want line %d %q", got, tt.line, tt.msg)
			}
		})
	}
}

func TestParseEmptyFile(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "---\n"} {
		_, _, err := Parse([]byte(src), "p.yaml", nil)
		errs := mustErrors(t, err)
		if got, want := err.Error(), "p.yaml: upstream: required"; len(errs) != 1 || got != want {
			t.Errorf("Parse(%q) = %q, want %q", src, got, want)
		}
		c, _, err := Parse([]byte(src), "p.yaml", []string{"STREAMGATE_UPSTREAM=http://app:3000"})
		if err != nil {
			t.Fatalf("Parse(%q) with STREAMGATE_UPSTREAM: %v", src, err)
		}
		want := Default()
		want.Upstream, want.File = "http://app:3000", "p.yaml"
		if !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) = %+v, want defaults %+v", src, c, want)
		}
	}
}

func TestParseKeepsDefaults(t *testing.T) {
	src := "upstream: http://a\nwebsocket:\n  ping_interval: 30s\ntimeouts:\n"
	c, _, err := Parse([]byte(src), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.WebSocket.PingInterval.Std(), 30*time.Second; got != want {
		t.Errorf("ping_interval = %v, want %v", got, want)
	}
	if got, want := c.WebSocket.PongTimeout.Std(), DefaultPongTimeout; got != want {
		t.Errorf("pong_timeout = %v, want the default %v", got, want)
	}
	if got, want := c.Timeouts, Default().Timeouts; got != want {
		t.Errorf("timeouts = %+v, want the defaults %+v", got, want)
	}
}

func TestParseTLSBlock(t *testing.T) {
	c, _, err := Parse([]byte("upstream: http://a\ntls:\n  domains: [app.example.com]\n  redirect_http: false\n"), "p.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{Listen: DefaultTLSListen, Domains: []string{"app.example.com"}, Storage: DefaultTLSStorage}
	if c.TLS == nil || !reflect.DeepEqual(*c.TLS, want) {
		t.Errorf("tls = %+v, want %+v", c.TLS, want)
	}

	for _, src := range []string{"upstream: http://a\n", "upstream: http://a\ntls:\n", "upstream: http://a\ntls: null\n"} {
		c, _, err := Parse([]byte(src), "p.yaml", nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.TLS != nil {
			t.Errorf("Parse(%q): tls = %+v, want nil", src, c.TLS)
		}
	}

	_, _, err = Parse([]byte("upstream: http://a\ntls:\n  email: ops@example.com\n"), "p.yaml", nil)
	want2 := "p.yaml:2: tls: tls needs domains (ACME) or cert_file and key_file"
	if err == nil || err.Error() != want2 {
		t.Errorf("error = %v, want %q", err, want2)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "proxy.yaml")
	_, _, err := Load(path, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want true", err)
	}
	if want := path + ": cannot read config file: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}

	c, _, err := Load("testdata/sample.yaml", []string{"STREAMGATE_LISTEN=:9999"})
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "testdata/sample.yaml" || c.Listen != ":9999" {
		t.Errorf("file, listen = %q, %q, want %q, %q", c.File, c.Listen, "testdata/sample.yaml", ":9999")
	}
}

func TestLineIndex(t *testing.T) {
	src := `upstream: http://a
websocket:
  ping_interval: 25s
tls:
  domains:
    - a.example.com
    - b.example.com
routes:
  - path: /a
  - path: /b
    websocket:
      pong_timeout: 1s
`
	doc, fe := parseNode([]byte(src), "p.yaml")
	if fe != nil {
		t.Fatal(fe)
	}
	x := newLineIndex(doc)
	tests := []struct {
		key  string
		line int
	}{
		{"upstream", 1},
		{"websocket.ping_interval", 3},
		{"tls.domains", 5},
		{"tls.domains[1]", 7},
		{"routes[1].websocket.pong_timeout", 12},
		{"routes[1].websocket.ping_interval", 11}, // unset: its block
		{"routes[0].upstream", 9},
		{"log.level", 0},
	}
	for _, tt := range tests {
		if got := x.line(tt.key); got != tt.line {
			t.Errorf("line(%q) = %d, want %d", tt.key, got, tt.line)
		}
	}
}

func TestErrorsFormat(t *testing.T) {
	errs := Errors{
		{File: "proxy.yaml", Line: 12, Key: "websocket.ping_interval", Msg: "b"},
		{File: "proxy.yaml", Key: "upstream", Msg: "required"},
		{File: "env STREAMGATE_LISTEN", Key: "listen", Msg: "bad"},
		{File: "proxy.yaml", Line: 3, Msg: "invalid YAML: x"},
		{Key: "log.level", Msg: "c"},
	}
	want := strings.Join([]string{
		"log.level: c",
		"env STREAMGATE_LISTEN: listen: bad",
		"proxy.yaml: upstream: required",
		"proxy.yaml:3: invalid YAML: x",
		"proxy.yaml:12: websocket.ping_interval: b",
	}, "\n")
	if got := errs.Error(); got != want {
		t.Errorf("Error() =\n%s\nwant\n%s", got, want)
	}
	if got := errs[0].File; got != "proxy.yaml" {
		t.Errorf("Error() reordered the slice itself")
	}
}

// TestParseDuplicateKey checks that a duplicate key, for which yaml.v3 skips
// the whole mapping, is reported without follow-on errors from the defaults
// left in that mapping.
func TestParseDuplicateKey(t *testing.T) {
	tests := []struct {
		name, src string
		want      string
	}{
		{"top level", "upstream: http://a\nlisten: :1\nlisten: :2\n",
			`p.yaml:3: listen: duplicate key "listen" (first at line 2)`},
		{"nested", "upstream: http://a\nwebsocket:\n  ping_interval: 1s\n  ping_interval: 2s\n  pong_timeout: 5s\nlog:\n  level: loud\n",
			"p.yaml:4: websocket.ping_interval: duplicate key \"ping_interval\" (first at line 3)\n" +
				`p.yaml:7: log.level: "loud": want one of debug, info, warn, error`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tt.src), "p.yaml", nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("error =\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}
