package bridge

import (
	"strings"
	"testing"
)

func TestAppendEvent(t *testing.T) {
	const sid = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"text", Event{Seq: 1, Data: []byte("hello")}, "id: " + sid + ".1\ndata: hello\n\n"},
		{"empty", Event{Seq: 2}, "id: " + sid + ".2\ndata: \n\n"},
		{"lines", Event{Seq: 3, Data: []byte("a\nb\n")}, "id: " + sid + ".3\ndata: a\ndata: b\ndata: \n\n"},
		{"hostile", Event{Seq: 4, Data: []byte("a\n\nevent: close\ndata: forged")},
			"id: " + sid + ".4\ndata: a\ndata: \ndata: event: close\ndata: data: forged\n\n"},
		{"cr and crlf", Event{Seq: 5, Data: []byte("x\r\ny\rz\r")}, "id: " + sid + ".5\ndata: x\ndata: y\ndata: z\ndata: \n\n"},
		{"leading space", Event{Seq: 6, Data: []byte(" x")}, "id: " + sid + ".6\ndata:  x\n\n"},
		{"binary", Event{Seq: 7, Binary: true, Data: []byte{0, 1, 2, 255}}, "event: binary\nid: " + sid + ".7\ndata: AAEC/w==\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(appendEvent(nil, sid, tt.ev)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNamedEvents(t *testing.T) {
	const sid = "0123456789abcdef0123456789abcdef"
	tests := []struct{ got, want string }{
		{string(appendNamed(nil, "session", sessionJSON(sid, "/ws/feed", ""))),
			"event: session\ndata: {\"session\":\"" + sid + "\",\"send\":\"/ws/feed?sg_session=" + sid + "\"}\n\n"},
		{string(sessionJSON(sid, "/a", "chat")), `{"session":"` + sid + `","send":"/a?sg_session=` + sid + `","protocol":"chat"}`},
		{string(appendNamed(nil, "gap", gapJSON(3))), "event: gap\ndata: {\"lost\":3}\n\n"},
		{string(gapJSON(-1)), `{"lost":"unknown"}`},
		{string(appendNamed(nil, "close", closeJSON(1000, "bye"))), "event: close\ndata: {\"code\":1000,\"reason\":\"bye\"}\n\n"},
		{string(closeJSON(4000, "a\"b\\c\nd<&>\x01é\xff")), `{"code":4000,"reason":"a\"b\\c\nd<&>\u0001é` + "\uFFFD" + `"}`},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	const sid = "0123456789abcdef0123456789abcdef"
	for _, bc := range []struct {
		name string
		ev   Event
	}{
		{"Text_100B", Event{Seq: 12345, Data: []byte(strings.Repeat("x", 100))}},
		{"Text_1KiB_16Lines", Event{Seq: 12345, Data: []byte(strings.Repeat(strings.Repeat("y", 63)+"\n", 16))}},
		{"Binary_1KiB", Event{Seq: 12345, Binary: true, Data: make([]byte, 1024)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.ev.Data)))
			var buf []byte
			for b.Loop() {
				buf = appendEvent(buf[:0], sid, bc.ev)
			}
		})
	}
}
