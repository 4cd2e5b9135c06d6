package wsconn

import (
	"net/http"
	"testing"

	"github.com/gorilla/websocket"
)

// TestHeaderListHas checks the list-header matching that decides both the
// event-stream Accept and a client's permessage-deflate offer.
func TestHeaderListHas(t *testing.T) {
	tests := []struct {
		name  string
		lines []string
		token string
		want  bool
	}{
		{"alone", []string{"text/event-stream"}, "text/event-stream", true},
		{"with parameters and others", []string{"text/html;q=0.9, Text/Event-Stream ; q=1"}, "text/event-stream", true},
		{"on a second line", []string{"text/html", "text/event-stream"}, "text/event-stream", true},
		{"a prefix is not a match", []string{"text/event-streams"}, "text/event-stream", false},
		{"in a parameter is not a match", []string{"x-webkit-deflate-frame; permessage-deflate"}, "permessage-deflate", false},
		{"extension offer", []string{"permessage-deflate; client_max_window_bits"}, "permessage-deflate", true},
		{"absent", nil, "permessage-deflate", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, l := range tt.lines {
				h.Add("X-List", l)
			}
			if got := HeaderListHas(h, "X-List", tt.token); got != tt.want {
				t.Errorf("HeaderListHas(%q, %q) = %v, want %v", tt.lines, tt.token, got, tt.want)
			}
		})
	}
	r := &http.Request{Header: http.Header{"Sec-Websocket-Extensions": {"permessage-deflate"}}}
	if NegotiatesDeflate(&websocket.Upgrader{}, r) || !NegotiatesDeflate(&websocket.Upgrader{EnableCompression: true}, r) {
		t.Error("NegotiatesDeflate must need both the offer and EnableCompression")
	}
}
