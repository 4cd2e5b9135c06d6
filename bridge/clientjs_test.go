package bridge

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestClientJS(t *testing.T) {
	srv := httptest.NewServer(ClientJS())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/.streamgate/client.js")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if !strings.Contains(string(body), "g.StreamgateSocket = StreamgateSocket") {
		t.Error("body does not define window.StreamgateSocket")
	}
	if len(body) > 10<<10 {
		t.Errorf("client.js is %d bytes; keep it small", len(body))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("ETag %q, Cache-Control %q: want both", etag, resp.Header.Get("Cache-Control"))
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/.streamgate/client.js", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET: status %d, want 304", resp.StatusCode)
	}
}
