package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"25s", 25 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"0", 0, ""},
		{"0s", 0, ""},
		{" 2h ", 2 * time.Hour, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"abc", 0, `invalid duration "abc"`},
		{"25", 0, `invalid duration "25": missing unit, e.g. "25s"`},
		{"-5s", 0, `invalid duration "-5s": must not be negative`},
		{"", 0, `invalid duration ""`},
		{"1.5.s", 0, `invalid duration "1.5.s"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) error = %v, want prefix %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDuration(%q): %v", tt.in, err)
			}
			if got.Std() != tt.want {
				t.Errorf("ParseDuration(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    ByteSize
		wantErr string
	}{
		{"512", 512, ""},
		{"0", 0, ""},
		{"512B", 512, ""},
		{"1MiB", 1 << 20, ""},
		{"64 KiB", 64 << 10, ""},
		{"64kib", 64 << 10, ""},
		{"2GiB", 2 << 30, ""},
		{"1KB", 1000, ""},
		{"3 mb", 3_000_000, ""},
		{"1GB", 1_000_000_000, ""},
		{"1.5MiB", 3 << 19, ""},
		{"0.5KB", 500, ""},
		{"1.5", 0, "not a whole number of bytes"},
		{"1.0001KiB", 0, "not a whole number of bytes"},
		{"-1", 0, "must not be negative"},
		{"1TB", 0, `invalid size "1TB": want bytes or a number with a unit`},
		{"MiB", 0, `invalid size "MiB"`},
		{"", 0, `invalid size ""`},
		{"lots", 0, `invalid size "lots"`},
		{"1e6", 0, `invalid size "1e6"`},
		{"99999999999999GiB", 0, "too large"},
		{"1..5MiB", 0, "malformed number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseByteSize(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseByteSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseByteSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1 << 20, "1MiB"},
		{3 << 19, "1536KiB"},
		{1000, "1KB"},
		{1 << 30, "1GiB"},
		{1500, "1500B"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
		back, err := ParseByteSize(tt.in.String())
		if err != nil || back != tt.in {
			t.Errorf("ParseByteSize(%q) = %d, %v, want %d", tt.in.String(), back, err, tt.in)
		}
	}
}

func TestMarshalYAMLRoundTrip(t *testing.T) {
	type doc struct {
		D Duration `yaml:"d"`
		S ByteSize `yaml:"s"`
	}
	in := doc{D: Duration(90 * time.Second), S: 64 * KiB}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(out), "d: 1m30s\ns: 64KiB\n"; got != want {
		t.Errorf("yaml.Marshal = %q, want %q", got, want)
	}
	var back doc
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back != in {
		t.Errorf("round trip = %+v, want %+v", back, in)
	}
}

// TestUnmarshalCollectsEveryError checks the yaml.v3 behaviour the package
// relies on: a *yaml.TypeError from UnmarshalYAML is collected and decoding
// goes on, so one Decode reports every bad value and still sets the good ones.
func TestUnmarshalCollectsEveryError(t *testing.T) {
	var v struct {
		A Duration `yaml:"a"`
		B ByteSize `yaml:"b"`
		C Duration `yaml:"c"`
		D ByteSize `yaml:"d"`
		E Duration `yaml:"e"`
	}
	src := "a: abc\nb: 2 lots\nc: 5s\nd: [1]\ne: {x: 1}\n"
	err := yaml.Unmarshal([]byte(src), &v)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		t.Fatalf("error = %v, want a *yaml.TypeError", err)
	}
	want := []string{
		`line 1: invalid duration "abc": want a Go duration such as "25s" or "1m30s"`,
		`line 2: invalid size "2 lots": want bytes or a number with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. "1MiB"`,
		`line 4: invalid size: want a single value, got a list`,
		`line 5: invalid duration: want a single value, got a mapping`,
	}
	if got := strings.Join(te.Errors, "\n"); got != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if got, want := v.C, Duration(5*time.Second); got != want {
		t.Errorf("c = %v, want %v (decoding must go on after an error)", got, want)
	}
}

func TestUnmarshalIntegerZeroDuration(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	v.D = Duration(time.Second)
	if err := yaml.Unmarshal([]byte("d: 0\n"), &v); err != nil {
		t.Fatal(err)
	}
	if v.D != 0 {
		t.Errorf("d = %v, want 0", v.D)
	}
}
