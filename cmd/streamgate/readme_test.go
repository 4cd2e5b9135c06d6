package main

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/streamgate/streamgate/config"
)

// TestREADMEDocumentsEveryConfigKey is the configuration reference test:
// every key of config.Config (from its yaml tags) must appear in the YAML
// block of README.md's "Configuration" section, and every key there must
// exist. A route's websocket block overrides the top-level websocket keys
// one for one, so routes.websocket.<key> is covered by websocket.<key>.
func TestREADMEDocumentsEveryConfigKey(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	block := configBlock(t, string(readme))
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatalf("README configuration block is not YAML: %v", err)
	}
	documented := map[string]bool{}
	yamlKeys(doc.Content[0], "", documented)

	var schema []string
	schemaKeys(reflect.TypeFor[config.Config](), "", &schema)
	if len(schema) < 40 {
		t.Fatalf("schema walk found only %d keys: %v", len(schema), schema)
	}
	for _, key := range schema {
		if documented[key] {
			continue
		}
		if rest, ok := strings.CutPrefix(key, "routes.websocket."); ok && documented["routes.websocket"] && documented["websocket."+rest] {
			continue
		}
		t.Errorf("config key %s is not in README.md's configuration block", key)
	}
	for key := range documented {
		if !slices.Contains(schema, key) && !slices.ContainsFunc(schema, func(s string) bool { return strings.HasPrefix(s, key+".") }) {
			t.Errorf("README.md's configuration block has %s, which is not a config key", key)
		}
	}
}

// configBlock returns the first ```yaml block of the "## Configuration"
// section.
func configBlock(t *testing.T, readme string) string {
	t.Helper()
	_, section, ok := strings.Cut(readme, "\n## Configuration\n")
	if !ok {
		t.Fatal("README.md has no \"## Configuration\" section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	_, block, ok := strings.Cut(section, "```yaml\n")
	if !ok {
		t.Fatal("README.md's configuration section has no ```yaml block")
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// yamlKeys adds the dotted key paths of a YAML node to keys; the items of a
// list of mappings add their keys under the list's name.
func yamlKeys(n *yaml.Node, prefix string, keys map[string]bool) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			path := joinKey(prefix, n.Content[i].Value)
			keys[path] = true
			yamlKeys(n.Content[i+1], path, keys)
		}
	case yaml.SequenceNode:
		for _, item := range n.Content {
			yamlKeys(item, prefix, keys)
		}
	}
}

// schemaKeys appends the dotted key paths of the leaves of t, by yaml tag,
// descending into structs, pointers to structs and lists of structs.
func schemaKeys(t reflect.Type, prefix string, keys *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		path := joinKey(prefix, name)
		if ft.Kind() == reflect.Struct {
			schemaKeys(ft, path, keys)
			continue
		}
		*keys = append(*keys, path)
	}
}

func joinKey(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
