package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads the config file at path and returns it as Parse does. A file
// that cannot be read is an error naming it (errors.Is(err, fs.ErrNotExist)
// works for a missing one).
func Load(path string, environ []string) (*Config, []string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		cause := err
		var pe *fs.PathError
		if errors.As(err, &pe) {
			cause = pe.Err
		}
		return nil, nil, Errors{{File: path, Msg: "cannot read config file: " + cause.Error(), err: err}}
	}
	return Parse(data, path, environ)
}

// Parse decodes data, a proxy.yaml read from file, onto Default; applies the
// STREAMGATE_* overrides found in environ (as from os.Environ), then
// validates. Unset keys keep their defaults; an empty file is all defaults.
//
// It returns the config, warnings (such as unknown STREAMGATE_* variables),
// and, if anything is wrong, an Errors holding every problem: YAML syntax
// (then alone), unknown keys, bad values, bad environment values and failed
// validation, each with file, line and dotted key. On error the config is
// nil.
func Parse(data []byte, file string, environ []string) (*Config, []string, error) {
	doc, fe := parseNode(data, file)
	if fe != nil {
		return nil, nil, Errors{fe}
	}
	index := newLineIndex(doc)
	c := Default()
	c.File = file
	if tls := index.byPath["tls"]; tls != nil && tls.value.Kind == yaml.MappingNode {
		c.TLS = defaultTLS()
	}
	errs := index.decode(data, file, c)
	warnings, envErrs, envSet := applyEnv(c, environ)
	errs = append(errs, envErrs...)

	v := &validator{file: file, index: index, env: envSet}
	v.config(c)
	skipped := undecoded(errs)
	for _, fe := range v.errs {
		if !coveredBy(fe.Key, errs, skipped) {
			errs = append(errs, fe)
		}
	}
	if len(errs) > 0 {
		return nil, warnings, sorted(errs)
	}
	return c, warnings, nil
}

// parseNode parses data into a YAML node tree (nil for an empty file). A
// syntax error, or a second document, is returned as one FieldError.
func parseNode(data []byte, file string) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, syntaxError(file, err)
	}
	var extra yaml.Node
	err := dec.Decode(&extra)
	switch {
	case errors.Is(err, io.EOF):
		return &doc, nil
	case err != nil:
		return nil, syntaxError(file, err)
	case len(extra.Content) == 1 && extra.Content[0].ShortTag() == "!!null":
		return &doc, nil // a trailing "---"
	}
	return nil, &FieldError{File: file, Line: extra.Line, Msg: "a second YAML document: the config is one document"}
}

// syntaxError turns "yaml: line 3: mapping values are not allowed" into a
// FieldError at line 3. yaml.v3 counts lines from 0 and leaves "line 0"
// out, so a scanner or parser error without a line is on line 1; errors of
// its byte reader (control characters, bad UTF-8) and of alias and merge
// resolution carry no position at all and stay at line 0 (unknown).
func syntaxError(file string, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line, msg := splitLine(msg)
	if line == 0 && !unpositioned(msg) {
		line = 1
	}
	return &FieldError{File: file, Line: line, Msg: "invalid YAML: " + msg, err: err}
}

// unpositioned reports whether a yaml.v3 error message is one that never
// carries a position.
func unpositioned(msg string) bool {
	for _, s := range []string{"UTF-8", "control characters", "anchor", "merge", "alias"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// splitLine splits "line N: rest" into N and rest; 0 and s if s has no line.
func splitLine(s string) (int, string) {
	rest, ok := strings.CutPrefix(s, "line ")
	if !ok {
		return 0, s
	}
	num, rest, ok := strings.Cut(rest, ": ")
	n, err := strconv.Atoi(num)
	if !ok || err != nil {
		return 0, s
	}
	return n, rest
}

// coveredBy reports whether key, or a key above it, already has a problem in
// errs, or was left undecoded (see undecoded): a value that failed to decode
// kept its default, which validation should not report a second time.
func coveredBy(key string, errs Errors, skipped []string) bool {
	under := func(p string) bool {
		return key == p || strings.HasPrefix(key, p+".") || strings.HasPrefix(key, p+"[")
	}
	for _, e := range errs {
		if e.Key != "" && under(e.Key) {
			return true
		}
	}
	for _, p := range skipped {
		if p == "" || under(p) {
			return true
		}
	}
	return false
}

// lineIndex maps the dotted key paths of a YAML document to their lines, and
// places yaml.v3's decoding errors (which carry only a line) on a key.
type lineIndex struct {
	entries []*indexEntry // in document order, parents before children
	byPath  map[string]*indexEntry
}

// indexEntry is one key of a mapping, or one item of a sequence.
type indexEntry struct {
	path  string     // "routes[1].websocket.pong_timeout", "tls.domains[0]"
	name  string     // the mapping key; "" for a sequence item
	line  int        // line of the key, or of the item
	value *yaml.Node // the value, or the item
}

func newLineIndex(doc *yaml.Node) *lineIndex {
	x := &lineIndex{byPath: map[string]*indexEntry{}}
	if doc != nil && len(doc.Content) == 1 {
		root := doc.Content[0]
		x.walk(root, "")
		// The root itself, last, for errors about the whole document
		// ("cannot unmarshal !!seq into config.Config").
		x.entries = append(x.entries, &indexEntry{line: root.Line, value: root})
	}
	return x
}

func (x *lineIndex) walk(n *yaml.Node, prefix string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			path := k.Value
			if prefix != "" {
				path = prefix + "." + k.Value
			}
			x.add(&indexEntry{path: path, name: k.Value, line: k.Line, value: v})
			x.walk(v, path)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			path := fmt.Sprintf("%s[%d]", prefix, i)
			x.add(&indexEntry{path: path, line: item.Line, value: item})
			x.walk(item, path)
		}
	}
}

func (x *lineIndex) add(e *indexEntry) {
	x.entries = append(x.entries, e)
	if _, dup := x.byPath[e.path]; !dup {
		x.byPath[e.path] = e
	}
}

// has reports whether the document sets key.
func (x *lineIndex) has(key string) bool {
	return x != nil && x.byPath[key] != nil
}

// line returns the line of key or, if the document does not set it, of its
// nearest ancestor that it sets; 0 if none.
func (x *lineIndex) line(key string) int {
	for x != nil && key != "" {
		if e := x.byPath[key]; e != nil {
			return e.line
		}
		key = parentPath(key)
	}
	return 0
}

// decode decodes data strictly onto c and returns its problems, each placed
// on a key.
func (x *lineIndex) decode(data []byte, file string, c *Config) Errors {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	var te *yaml.TypeError
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return nil
	case errors.As(err, &te):
		used := map[*indexEntry]bool{}
		errs := make(Errors, 0, len(te.Errors))
		for _, msg := range te.Errors {
			errs = append(errs, x.decodeError(file, msg, used))
		}
		return errs
	}
	return Errors{syntaxError(file, err)}
}

// undecoded returns the key paths whose values yaml.v3 left undecoded after
// errs: a mapping with a duplicate key is skipped whole, so its keys kept
// their defaults. "" stands for the whole document.
func undecoded(errs Errors) []string {
	var paths []string
	for _, e := range errs {
		if strings.HasPrefix(e.Msg, "duplicate key ") {
			paths = append(paths, parentPath(e.Key))
		}
	}
	return paths
}

// parentPath returns the path of the mapping or list holding key.
func parentPath(key string) string {
	return key[:max(strings.LastIndexByte(key, '.'), strings.LastIndexByte(key, '['), 0)]
}

// decodeError places one yaml.v3 type error ("line 3: field foo not found
// in type config.WebSocket") on its key.
func (x *lineIndex) decodeError(file, msg string, used map[*indexEntry]bool) *FieldError {
	line, rest := splitLine(msg)
	fe := &FieldError{File: file, Line: line, Msg: rest}
	var name string
	if field, ok := strings.CutPrefix(rest, "field "); ok {
		if name, _, ok = strings.Cut(field, " not found in type "); ok {
			fe.Msg = fmt.Sprintf("unknown key %q", name)
		}
	} else if dup, ok := strings.CutPrefix(rest, "mapping key "); ok {
		var quoted, first string
		if quoted, first, ok = strings.Cut(dup, " already defined at line "); ok {
			name, _ = strconv.Unquote(quoted)
			fe.Msg = fmt.Sprintf("duplicate key %q (first at line %s)", name, first)
		}
	}
	if name == "" {
		if e := x.valueAt(line, rest, used); e != nil {
			fe.Key = e.path
		}
		return fe
	}
	fe.Key = name
	if e := x.keyAt(line, name); e != nil {
		fe.Key = e.path
	}
	return fe
}

// keyAt returns the mapping key name written at line.
func (x *lineIndex) keyAt(line int, name string) *indexEntry {
	for _, e := range x.entries {
		if e.line == line && e.name == name {
			return e
		}
	}
	return nil
}

// valueAt returns the entry whose value, at line, an error message is about:
// the first not yet used whose scalar the message quotes, else the first
// whose tag it names ("cannot unmarshal !!seq into ..."), else the first
// (outermost) on that line.
func (x *lineIndex) valueAt(line int, msg string, used map[*indexEntry]bool) *indexEntry {
	var first, tagged *indexEntry
	for _, e := range x.entries {
		if e.value.Line != line {
			continue
		}
		first = cmp.Or(first, e)
		if used[e] {
			continue
		}
		if e.value.Kind == yaml.ScalarNode && quotes(msg, e.value.Value) {
			used[e] = true
			return e
		}
		if tagged == nil && strings.HasPrefix(msg, "cannot unmarshal "+e.value.ShortTag()+" ") {
			tagged = e
		}
	}
	if tagged != nil {
		used[tagged] = true
		return tagged
	}
	return first
}

// quotes reports whether msg quotes value as yaml.v3 (`value`, cut to 7
// characters and "..." when longer than 10) or this package (%q) do.
func quotes(msg, value string) bool {
	if strings.Contains(msg, "`"+value+"`") || strings.Contains(msg, strconv.Quote(value)) {
		return true
	}
	return len(value) > 10 && strings.Contains(msg, "`"+value[:7]+"...`")
}
