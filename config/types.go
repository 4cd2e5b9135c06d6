package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Byte size units accepted by ParseByteSize: decimal (KB, MB, GB) and
// binary (KiB, MiB, GiB).
const (
	KB  ByteSize = 1000
	MB  ByteSize = 1000 * KB
	GB  ByteSize = 1000 * MB
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// ParseDuration parses a non-negative Go duration string such as "25s" or
// "1m30s"; "0" means zero.
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	d, err := time.ParseDuration(t)
	switch {
	case err != nil && t != "" && strings.Trim(t, "0123456789") == "":
		return 0, fmt.Errorf("invalid duration %q: missing unit, e.g. %q", s, t+"s")
	case err != nil:
		return 0, fmt.Errorf("invalid duration %q: want a Go duration such as \"25s\" or \"1m30s\"", s)
	case d < 0:
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(d), nil
}

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d as time.Duration does: "25s", "1m30s", "0s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a Go duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a Go duration string or 0. A bad value is returned as
// a *yaml.TypeError: yaml.v3 collects those and keeps decoding, so one pass
// reports every problem of a file.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalarValue(n, "duration")
	if err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return typeError(n, err)
	}
	*d = v
	return nil
}

// ParseByteSize parses a size: plain bytes ("512") or a number and a unit
// (B, KB, MB, GB, KiB, MiB, GiB; case-insensitive, optional space), e.g.
// "1MiB", "64 KiB", "1.5GB". The result must be a whole number of bytes.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.TrimSpace(t[i:])
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	mult, ok := byteUnit(unit)
	if !ok || num == "" {
		return 0, fmt.Errorf("invalid size %q: want bytes or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. \"1MiB\"", s)
	}
	n, err := scaleDecimal(num, int64(mult))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w", s, err)
	}
	return ByteSize(n), nil
}

// byteUnit returns the multiplier of a size unit; "" means bytes.
func byteUnit(unit string) (ByteSize, bool) {
	switch strings.ToLower(unit) {
	case "", "b":
		return 1, true
	case "kb":
		return KB, true
	case "mb":
		return MB, true
	case "gb":
		return GB, true
	case "kib":
		return KiB, true
	case "mib":
		return MiB, true
	case "gib":
		return GiB, true
	}
	return 0, false
}

// scaleDecimal returns num*mult exactly, where num is "123" or "1.25".
func scaleDecimal(num string, mult int64) (int64, error) {
	whole, frac, _ := strings.Cut(num, ".")
	if whole == "" || strings.Contains(frac, ".") || len(frac) > 9 {
		return 0, fmt.Errorf("malformed number %q", num)
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > (1<<63-1)/mult {
		return 0, fmt.Errorf("too large")
	}
	f := int64(0)
	if frac != "" {
		f, _ = strconv.ParseInt(frac, 10, 64) // only digits, at most 9
	}
	scale := int64(1)
	for range frac {
		scale *= 10
	}
	if f*mult%scale != 0 {
		return 0, fmt.Errorf("not a whole number of bytes")
	}
	total := w*mult + f*mult/scale
	if total < 0 {
		return 0, fmt.Errorf("too large")
	}
	return total, nil
}

// String formats b with the largest unit that divides it exactly, preferring
// binary units: 1048576 is "1MiB", 1000 is "1KB", 1500 is "1500B".
func (b ByteSize) String() string {
	if b == 0 {
		return "0B"
	}
	units := []struct {
		size ByteSize
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}, {GB, "GB"}, {MB, "MB"}, {KB, "KB"}}
	for _, u := range units {
		if b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// MarshalYAML writes b as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// UnmarshalYAML reads a size as ParseByteSize does. A bad value is returned
// as a *yaml.TypeError, so decoding goes on and reports every problem.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	s, err := scalarValue(n, "size")
	if err != nil {
		return err
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return typeError(n, err)
	}
	*b = v
	return nil
}

// scalarValue returns the text of a scalar node, or a type error naming what
// was expected.
func scalarValue(n *yaml.Node, what string) (string, error) {
	if n.Kind == yaml.ScalarNode {
		return n.Value, nil
	}
	kind := "a list"
	if n.Kind == yaml.MappingNode {
		kind = "a mapping"
	}
	return "", typeError(n, fmt.Errorf("invalid %s: want a single value, got %s", what, kind))
}

// typeError wraps err as yaml.v3 does its own type errors: "line N: ...".
func typeError(n *yaml.Node, err error) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
}

// MarshalYAML writes only the keys that o sets. A nil field inherits the
// top-level value and must not come back as an override, as a nil
// AllowedOrigins written as [] would.
func (o WebSocketOverride) MarshalYAML() (any, error) {
	m := &yaml.Node{Kind: yaml.MappingNode}
	v := reflect.ValueOf(o)
	for i := range v.NumField() {
		if v.Field(i).IsNil() {
			continue
		}
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		var val yaml.Node
		if err := val.Encode(v.Field(i).Interface()); err != nil {
			return nil, err
		}
		m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, &val)
	}
	return m, nil
}
