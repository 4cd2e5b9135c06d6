package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvPrefix starts the name of every environment variable that overrides a
// config key: STREAMGATE_ and the key path upper-cased, its segments joined
// by "_" (websocket.ping_interval is STREAMGATE_WEBSOCKET_PING_INTERVAL).
const EnvPrefix = "STREAMGATE_"

// EnvName returns the environment variable that overrides the dotted key
// path, e.g. "STREAMGATE_TLS_CERT_FILE" for "tls.cert_file".
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// envKey is a config key as the environment sees it.
type envKey struct {
	name  string       // STREAMGATE_WEBSOCKET_PING_INTERVAL
	path  string       // websocket.ping_interval
	index []int        // reflect field indexes from Config
	typ   reflect.Type // the field's type
	list  bool         // a list of mappings (routes): not overridable
}

// envSchema lists every key of Config, derived from the yaml tags, so the
// variable names always follow the schema.
func envSchema() []envKey {
	var keys []envKey
	walkSchema(reflect.TypeFor[Config](), "", nil, &keys)
	return keys
}

func walkSchema(t reflect.Type, prefix string, index []int, keys *[]envKey) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // as yaml.v3 does
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		idx := append(slices.Clone(index), i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft.Kind() == reflect.Struct:
			walkSchema(ft, path, idx, keys)
		default:
			list := ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.String
			*keys = append(*keys, envKey{name: EnvName(path), path: path, index: idx, typ: f.Type, list: list})
		}
	}
}

// applyEnv applies the STREAMGATE_* variables of environ to c, in name
// order. It returns warnings for variables that match no key, errors for bad
// values, and the key paths it set with the variable that set each.
func applyEnv(c *Config, environ []string) (warnings []string, errs Errors, set map[string]string) {
	vars := map[string]string{}
	for _, kv := range environ {
		name, value, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, EnvPrefix) {
			vars[name] = value // the last one wins, as in a shell
		}
	}
	keys := map[string]envKey{}
	for _, k := range envSchema() {
		keys[k.name] = k
	}
	set = map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(vars)) {
		k, ok := keys[name]
		if !ok {
			k, ok = listKey(keys, name)
		}
		switch {
		case !ok:
			warnings = append(warnings, fmt.Sprintf("%s ignored: no config key matches it", name))
		case k.list:
			warnings = append(warnings, fmt.Sprintf("%s ignored: %s cannot be set from the environment", name, k.path))
		default:
			val, err := parseEnvValue(k.typ, vars[name])
			if err != nil {
				errs = append(errs, &FieldError{File: "env " + name, Key: k.path, Msg: err.Error()})
				continue
			}
			k.set(c, val)
			set[k.path] = name
		}
	}
	return warnings, errs, set
}

// listKey returns the list key (routes) that name reaches into, as in
// STREAMGATE_ROUTES_0_PATH.
func listKey(keys map[string]envKey, name string) (envKey, bool) {
	for _, k := range keys {
		if k.list && strings.HasPrefix(name, k.name+"_") {
			return k, true
		}
	}
	return envKey{}, false
}

// parseEnvValue parses s as a value of type t: a duration, a size, a string,
// a boolean, an integer, or a comma-separated list of strings.
func parseEnvValue(t reflect.Type, s string) (reflect.Value, error) {
	var v any
	var err error
	switch {
	case t == reflect.TypeFor[Duration]():
		v, err = ParseDuration(s)
	case t == reflect.TypeFor[ByteSize]():
		v, err = ParseByteSize(s)
	case t.Kind() == reflect.String:
		v = s
	case t.Kind() == reflect.Bool:
		if v, err = strconv.ParseBool(strings.TrimSpace(s)); err != nil {
			err = fmt.Errorf("invalid boolean %q: want true or false", s)
		}
	case t.Kind() == reflect.Int:
		if v, err = strconv.Atoi(strings.TrimSpace(s)); err != nil {
			err = fmt.Errorf("invalid integer %q", s)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		v = splitList(s)
	default:
		return reflect.Value{}, fmt.Errorf("a %s cannot be set from the environment", t)
	}
	if err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(v).Convert(t), nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items; "" is the empty list.
func splitList(s string) []string {
	list := []string{}
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			list = append(list, item)
		}
	}
	return list
}

// set stores val in c at k, creating the blocks on the way that are absent
// (a tls block gets its defaults).
func (k envKey) set(c *Config, val reflect.Value) {
	v := reflect.ValueOf(c).Elem()
	for _, i := range k.index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(newBlock(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	v.Set(val)
}

// newBlock returns a pointer to a new block of type t, with its defaults.
func newBlock(t reflect.Type) reflect.Value {
	if t == reflect.TypeFor[TLS]() {
		return reflect.ValueOf(defaultTLS())
	}
	return reflect.New(t)
}
