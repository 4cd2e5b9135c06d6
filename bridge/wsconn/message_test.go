package wsconn

import (
	"testing"
	"unicode/utf8"
)

// TestUTF8CheckerSplits feeds valid and invalid texts to the checker cut at
// every point and in single bytes: its verdict must match utf8.Valid.
func TestUTF8CheckerSplits(t *testing.T) {
	texts := []string{"", "ascii", "ünïcödé €𝄞", "\xff", "a\xc3", "\xe2\x82", "\xed\xa0\x80", "ok\xf0\x9d\x84\x9e!", "\xc3\x28", "€\xf4\x90\x80\x80"}
	for _, text := range texts {
		want := utf8.ValidString(text)
		for cut := 0; cut <= len(text); cut++ {
			var u utf8Checker
			ok := u.check([]byte(text[:cut])) && u.check([]byte(text[cut:])) && u.pending == 0
			if ok != want {
				t.Errorf("%q cut at %d: got %v, want %v", text, cut, ok, want)
			}
		}
		var u utf8Checker
		ok := true
		for i := 0; i < len(text); i++ {
			ok = ok && u.check([]byte{text[i]})
		}
		if ok = ok && u.pending == 0; ok != want {
			t.Errorf("%q byte by byte: got %v, want %v", text, ok, want)
		}
	}
}

func FuzzUTF8Checker(f *testing.F) {
	f.Add([]byte("ünï€𝄞"), 3)
	f.Add([]byte("\xf0\x9d\x84"), 1)
	f.Fuzz(func(t *testing.T, p []byte, cut int) {
		if cut < 0 || cut > len(p) {
			cut = len(p) / 2
		}
		var u utf8Checker
		got := u.check(p[:cut]) && u.check(p[cut:]) && u.pending == 0
		if got != utf8.Valid(p) {
			t.Fatalf("%q cut at %d: got %v, want %v", p, cut, got, utf8.Valid(p))
		}
	})
}
