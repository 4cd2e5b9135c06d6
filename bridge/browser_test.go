package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// The browser tests drive Debian's headless Chromium over the DevTools
// protocol with the small client below (gorilla/websocket only, so no new
// module is needed). CI installs chromium (.ci/run); without it they fail.

// chromium starts a headless Chromium and returns a DevTools connection
// to it.
func chromium(t *testing.T) *cdp {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not on PATH: the browser tests need Debian's chromium (apt-get install -y chromium, as .ci/run does)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--ignore-certificate-errors", // the HTTP/2 test's server has a throwaway certificate
		"--user-data-dir="+t.TempDir(), "--remote-debugging-port=0", "about:blank")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	wsURL := make(chan string, 1)
	go func() {
		defer close(exited)
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				wsURL <- m[1]
			}
		}
		_ = cmd.Wait()
	}()
	stop := func() {
		cancel()
		<-exited
	}
	var u string
	select {
	case u = <-wsURL:
	case <-exited:
		t.Fatal("chromium exited before it listened for DevTools")
	case <-time.After(30 * time.Second):
		stop()
		t.Fatal("chromium did not start")
	}
	c, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		stop()
		t.Fatal(err)
	}
	d := &cdp{t: t, c: c, pending: map[int64]chan cdpReply{}, done: make(chan struct{})}
	go d.read()
	t.Cleanup(func() {
		ctx, cancelCall := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = d.call(ctx, "", "Browser.close", nil)
		cancelCall()
		_ = c.Close()
		<-d.done
		stop()
	})
	return d
}

// cdp is a minimal Chrome DevTools Protocol client: calls with replies,
// console output and exceptions logged.
type cdp struct {
	t       *testing.T
	c       *websocket.Conn
	wmu     sync.Mutex
	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan cdpReply
	done    chan struct{}
}

type cdpReply struct {
	Result json.RawMessage
	Err    error
}

func (d *cdp) read() {
	defer close(d.done)
	for {
		var m struct {
			ID     int64           `json:"id"`
			Method string          `json:"method"`
			Params json.RawMessage `json:"params"`
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := d.c.ReadJSON(&m); err != nil {
			return
		}
		switch {
		case m.ID != 0:
			d.mu.Lock()
			ch := d.pending[m.ID]
			delete(d.pending, m.ID)
			d.mu.Unlock()
			r := cdpReply{Result: m.Result}
			if m.Error != nil {
				r.Err = errors.New(m.Error.Message)
			}
			if ch != nil {
				ch <- r
			}
		case m.Method == "Runtime.consoleAPICalled", m.Method == "Runtime.exceptionThrown":
			d.t.Logf("browser %s: %s", m.Method, m.Params)
		}
	}
}

// call sends a command (to the page session sid, or the browser) and
// waits for its reply.
func (d *cdp) call(ctx context.Context, sid, method string, params any) (json.RawMessage, error) {
	ch := make(chan cdpReply, 1)
	d.mu.Lock()
	d.nextID++
	id := d.nextID
	d.pending[id] = ch
	d.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if sid != "" {
		msg["sessionId"] = sid
	}
	d.wmu.Lock()
	err := d.c.WriteJSON(msg)
	d.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r.Result, r.Err
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: %w", method, ctx.Err())
	case <-d.done:
		return nil, fmt.Errorf("%s: devtools connection closed", method)
	}
}

// open opens url in a new tab and returns the tab's session.
func (d *cdp) open(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	res, err := d.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"})
	if err != nil {
		t.Fatal(err)
	}
	var target struct{ TargetID string }
	_ = json.Unmarshal(res, &target)
	res, err = d.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true})
	if err != nil {
		t.Fatal(err)
	}
	var att struct{ SessionID string }
	_ = json.Unmarshal(res, &att)
	for _, m := range []string{"Runtime.enable", "Page.enable"} {
		if _, err := d.call(ctx, att.SessionID, m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.call(ctx, att.SessionID, "Page.navigate", map[string]any{"url": url}); err != nil {
		t.Fatal(err)
	}
	return att.SessionID
}

// await evaluates the page's window[name], a promise the page sets up,
// waiting for the page to define it and for it to settle, and decodes
// its value into v.
func (d *cdp) await(t *testing.T, ctx context.Context, sid, name string, v any) {
	t.Helper()
	expr := fmt.Sprintf(`new Promise(r => { const f = () => window[%q] ? window[%[1]q].then(r) : setTimeout(f, 20); f(); })`, name)
	res, err := d.call(ctx, sid, "Runtime.evaluate", map[string]any{"expression": expr, "awaitPromise": true, "returnByValue": true})
	if err != nil {
		t.Fatalf("await %s: %v", name, err)
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails json.RawMessage `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil || r.ExceptionDetails != nil {
		t.Fatalf("await %s: %v %s", name, err, r.ExceptionDetails)
	}
	if err := json.Unmarshal(r.Result.Value, v); err != nil {
		t.Fatalf("await %s: %v in %s", name, err, r.Result.Value)
	}
}

// site is what the browser loads: pages, client.js, the bridge, and a
// WebSocket passthrough (a gorilla-to-gorilla wsconn.Relay), in front of
// the test upstream; and an intermediary in front of it that refuses
// WebSocket upgrades, as some corporate proxies do.
type site struct {
	h            *harness
	direct       *httptest.Server
	intermediary *httptest.Server // refuses WebSocket upgrades
	dropper      *httptest.Server // accepts them, then drops the connection
	mu           sync.Mutex
	ends         []func()
	tracked      int // SSE streams the bridge served
	relays       sync.WaitGroup

	// failResume, when set, makes the next resume GET (one with a
	// Last-Event-ID, not a probe) fail with 502 before it reaches the
	// bridge, and then announces the next GET on afterFail.
	failResume atomic.Bool
	afterFail  chan *http.Request
}

func newSite(t *testing.T) *site {
	s := &site{afterFail: make(chan *http.Request, 1)}
	failed := atomic.Bool{}
	s.h = newHarness(t, Options{
		Retry: 200 * time.Millisecond,
		Track: func(end func()) func() {
			s.mu.Lock()
			s.ends = append(s.ends, end)
			s.tracked++
			s.mu.Unlock()
			return func() {}
		},
	})
	upWS := "ws" + strings.TrimPrefix(s.h.up.srv.URL, "http")
	mux := http.NewServeMux()
	mux.Handle("/.streamgate/client.js", ClientJS())
	mux.HandleFunc("/page/", func(w http.ResponseWriter, r *http.Request) {
		page, ok := browserPages[strings.TrimPrefix(r.URL.Path, "/page/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, page)
	})
	dialer := wsconn.NewDialer(wsconn.DialOptions{})
	upgrader := wsconn.NewUpgrader(false, nil)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			if r.Method == http.MethodGet && failed.Load() {
				failed.Store(false)
				s.afterFail <- r
			}
			if r.Method == http.MethodGet && r.Header.Get("Last-Event-ID") != "" && s.failResume.CompareAndSwap(true, false) {
				failed.Store(true)
				http.Error(w, "resume failed", http.StatusBadGateway)
				return
			}
			s.h.b.ServeHTTP(w, r)
			return
		}
		s.relays.Add(1)
		defer s.relays.Done()
		u, _, err := wsconn.Dial(r.Context(), dialer, upWS+r.URL.RequestURI(), nil, websocket.Subprotocols(r))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		hdr := http.Header{}
		if p := u.Subprotocol(); p != "" {
			hdr.Set("Sec-WebSocket-Protocol", p)
		}
		c, err := upgrader.Upgrade(w, r, hdr)
		if err != nil {
			u.Close()
			return
		}
		wsconn.NewRelay(c, u, wsconn.Options{CloseTimeout: time.Second}).Run(context.Background())
	})
	s.direct = httptest.NewServer(mux)
	target, _ := url.Parse(s.direct.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.Out.Host = pr.In.Host }}
	s.intermediary = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			http.Error(w, "WebSocket blocked by policy", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	s.dropper = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !websocket.IsWebSocketUpgrade(r) {
			rp.ServeHTTP(w, r)
			return
		}
		// Answer the handshake with the offered subprotocol, then cut
		// the connection without a close frame: the browser sees 1006
		// right after onopen.
		hdr := http.Header{}
		if p := websocket.Subprotocols(r); len(p) > 0 {
			hdr.Set("Sec-WebSocket-Protocol", p[0])
		}
		if c, err := upgrader.Upgrade(w, r, hdr); err == nil {
			_ = c.UnderlyingConn().Close()
		}
	}))
	t.Cleanup(func() {
		s.dropper.CloseClientConnections()
		s.dropper.Close()
		s.intermediary.CloseClientConnections()
		s.intermediary.Close()
		s.direct.CloseClientConnections()
		s.direct.Close()
		s.h.up.srv.CloseClientConnections()
		s.relays.Wait()
	})
	return s
}

// endStreams ends every SSE stream as a proxy shutdown would.
func (s *site) endStreams() {
	s.mu.Lock()
	ends := s.ends
	s.ends = nil
	s.mu.Unlock()
	for _, end := range ends {
		end()
	}
}

var browserPages = map[string]string{
	// client.js: open, receive the greeting, echo a text and a binary
	// message, then close.
	"client.html": `<!doctype html><script src="/.streamgate/client.js"></script><script>
window.result = new Promise((resolve) => {
  const r = {opens: 0, got: [], gaps: 0};
  const proto = new URLSearchParams(location.search).get('proto');
  const s = new StreamgateSocket('/echo?greet=2', [proto], {openTimeout: 3000});
  s.binaryType = 'arraybuffer';
  s.addEventListener('gap', () => r.gaps++);
  s.onopen = () => { r.opens++; s.send('echo me'); s.send(new Uint8Array([1, 2, 255])); };
  s.onmessage = (e) => {
    if (typeof e.data !== 'string') {
      r.binary = Array.from(new Uint8Array(e.data));
      r.transport = s._t; r.protocol = s.protocol;
      s.close(1000, 'done');
      return;
    }
    r.got.push(e.data);
  };
  s.onerror = () => { r.errors = (r.errors || 0) + 1; };
  s.onclose = (e) => { r.code = e.code; r.wasClean = e.wasClean; resolve(r); };
});
</script>`,
	// A plain EventSource: the bridged stream, a reconnect (the server
	// ends the stream) that resumes the session, and a hostile message
	// POSTed and echoed, which must arrive as one message, byte for byte.
	"eventsource.html": `<!doctype html><script>
const hostile = 'a\n\nevent: close\ndata: forged\r\nid: 1';
const r = {sessions: [], got: []};
let phase1, posted = false;
window.phase1 = new Promise((res) => { phase1 = res; });
window.result = new Promise((resolve) => {
  const es = new EventSource('/echo?greet=2');
  es.addEventListener('session', (e) => {
    const s = JSON.parse(e.data);
    r.sessions.push(s.session);
    if (r.sessions.length === 2 && !posted) {
      posted = true;
      fetch(s.send, {method: 'POST', body: hostile, headers: {'Content-Type': 'text/plain'}})
        .then((resp) => { r.postStatus = resp.status; });
    }
  });
  es.onmessage = (e) => {
    r.got.push(e.lastEventId + ' ' + JSON.stringify(e.data));
    if (r.got.length === 2) phase1(r.got.length);
    if (r.got.length === 3) { es.close(); resolve(r); }
  };
});
</script>`,
	// Ten EventSources to one https origin: over HTTP/1.1 a browser opens
	// at most six connections per origin and the rest would stall; over
	// HTTP/2 they share one connection.
	"ten.html": `<!doctype html><script>
window.result = Promise.all(Array.from({length: 10}, (_, i) => new Promise((resolve) => {
  const es = new EventSource('/echo?greet=1&n=' + i);
  es.onmessage = (e) => { es.close(); resolve(e.data); };
})));
</script>`,
	// client.js over SSE while the upstream dies: the page must see no
	// close, one gap (continuity broke) and the stream again.
	"restart.html": `<!doctype html><script src="/.streamgate/client.js"></script><script>
const r = {opens: 0, closes: 0, gaps: [], got: []};
let phase1;
window.phase1 = new Promise((res) => { phase1 = res; });
window.result = new Promise((resolve) => {
  const s = new StreamgateSocket('/echo?greet=1', [], {transport: 'sse', minDelay: 50, maxDelay: 200});
  s.onopen = () => r.opens++;
  s.onclose = (e) => { r.closes++; r.code = e.code; resolve(r); };
  s.addEventListener('gap', (e) => r.gaps.push(String(e.detail.lost)));
  s.onmessage = (e) => {
    r.got.push(e.data);
    if (r.got.length === 1) phase1(1);
    if (r.got.length === 2) { r.transport = s.transport; resolve(r); }
  };
});
</script>`,
	// client.js over SSE whose resume fails: it probes, then resumes the
	// same session (no gap) and gets the message sent meanwhile.
	"probe.html": `<!doctype html><script src="/.streamgate/client.js"></script><script>
const r = {opens: 0, closes: 0, gaps: 0, got: []};
let phase1;
window.phase1 = new Promise((res) => { phase1 = res; });
window.result = new Promise((resolve) => {
  const s = new StreamgateSocket('/echo?greet=1', [], {transport: 'sse', minDelay: 50, maxDelay: 200});
  s.onopen = () => r.opens++;
  s.onclose = (e) => { r.closes++; r.code = e.code; resolve(r); };
  s.addEventListener('gap', () => r.gaps++);
  s.onmessage = (e) => {
    r.got.push(e.data);
    if (r.got.length === 1) phase1(1);
    if (r.got.length === 2) resolve(r);
  };
});
</script>`,
	// A plain EventSource reconnecting before any message: the id-only
	// block makes it resume its session.
	"quiet.html": `<!doctype html><script>
const sessions = [];
let phase1;
window.phase1 = new Promise((res) => { phase1 = res; });
window.result = new Promise((resolve) => {
  const es = new EventSource('/echo');
  es.addEventListener('session', (e) => {
    sessions.push(JSON.parse(e.data).session);
    if (sessions.length === 1) phase1(1);
    if (sessions.length === 2) { es.close(); resolve({sessions, lastEventId: es.lastEventId}); }
  });
});
</script>`,
}

type clientResult struct {
	Opens     int
	Got       []string
	Gaps      int
	Binary    []int
	Transport string
	Protocol  string
	Code      int
	WasClean  bool
	Errors    int
}

func TestBrowserClientJS(t *testing.T) {
	d := chromium(t)
	s := newSite(t)
	for _, tt := range []struct {
		name, base, proto, transport string
		gaps                         int
	}{
		{"websocket", "direct", "chat.v1", "ws", 0},
		{"websocket refused by an intermediary", "intermediary", "chat.v1", "sse", 0},
		// Chromium fails a WebSocket whose server does not echo the offered
		// subprotocol (the classic 1006 after "accepted"); SSE has no
		// such check.
		{"subprotocol not echoed", "direct", "unknown.v9", "sse", 0},
		// onopen has fired on the WebSocket; the fallback is a new
		// upstream connection, told as a gap.
		{"websocket dropped right after opening", "dropper", "chat.v1", "sse", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			base := map[string]string{"direct": s.direct.URL, "intermediary": s.intermediary.URL, "dropper": s.dropper.URL}[tt.base]
			tab := d.open(t, ctx, base+"/page/client.html?proto="+tt.proto)
			var r clientResult
			d.await(t, ctx, tab, "result", &r)
			if r.Transport != tt.transport || r.Opens != 1 || r.Code != 1000 || !r.WasClean || r.Errors != 0 || r.Gaps != tt.gaps {
				t.Errorf("got %+v, want transport %s, one open, a clean close 1000, no error, %d gaps", r, tt.transport, tt.gaps)
			}
			if want := "[greet 1 greet 2 echo me]"; fmt.Sprint(r.Got) != want {
				t.Errorf("messages %v, want %s", r.Got, want)
			}
			if fmt.Sprint(r.Binary) != "[1 2 255]" {
				t.Errorf("binary echo %v, want [1 2 255]", r.Binary)
			}
			if want := map[string]string{"chat.v1": "chat.v1"}[tt.proto]; r.Protocol != want {
				t.Errorf("protocol %q, want %q", r.Protocol, want)
			}
		})
	}
}

// TestBrowserTenEventSourcesHTTP2 opens ten bridged streams from one page
// to an https origin served with HTTP/2: all ten must receive an event.
func TestBrowserTenEventSourcesHTTP2(t *testing.T) {
	d := chromium(t)
	s := newSite(t)
	var protos sync.Map
	inner := s.direct.Config.Handler
	h2 := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos.Store(r.Proto, true)
		inner.ServeHTTP(w, r)
	}))
	h2.EnableHTTP2 = true
	h2.StartTLS()
	t.Cleanup(func() { h2.CloseClientConnections(); h2.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab := d.open(t, ctx, h2.URL+"/page/ten.html")
	var got []string
	d.await(t, ctx, tab, "result", &got)
	if len(got) != 10 {
		t.Fatalf("%d of 10 EventSources received an event: %v", len(got), got)
	}
	for i, g := range got {
		if g != "greet 1" {
			t.Errorf("stream %d got %q", i, g)
		}
	}
	if _, ok := protos.Load("HTTP/2.0"); !ok {
		t.Error("the page was not served over HTTP/2")
	}
	if _, ok := protos.Load("HTTP/1.1"); ok {
		t.Error("some requests came over HTTP/1.1")
	}
}

// TestBrowserUpstreamRestart kills the upstream connection under a page
// using client.js over SSE: the page keeps its one logical connection,
// reconnects to a fresh session and is told continuity broke with a gap.
func TestBrowserUpstreamRestart(t *testing.T) {
	d := chromium(t)
	s := newSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab := d.open(t, ctx, s.intermediary.URL+"/page/restart.html")
	var n int
	d.await(t, ctx, tab, "phase1", &n)
	up := s.h.up.next(t)
	_ = up.c.UnderlyingConn().Close() // the app dies: no close frame
	var r struct {
		Opens, Closes, Code int
		Gaps, Got           []string
		Transport           string
	}
	d.await(t, ctx, tab, "result", &r)
	if r.Opens != 1 || r.Closes != 0 {
		t.Errorf("page saw %d opens and %d closes (code %d), want 1 and 0", r.Opens, r.Closes, r.Code)
	}
	if fmt.Sprint(r.Gaps) != "[unknown]" {
		t.Errorf("gap events %v, want one with lost unknown", r.Gaps)
	}
	if fmt.Sprint(r.Got) != "[greet 1 greet 1]" || r.Transport != "sse" {
		t.Errorf("messages %v over %s, want the greeting from each upstream connection over sse", r.Got, r.Transport)
	}
}

func TestBrowserEventSource(t *testing.T) {
	d := chromium(t)
	s := newSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tab := d.open(t, ctx, s.intermediary.URL+"/page/eventsource.html")
	var n int
	d.await(t, ctx, tab, "phase1", &n)
	s.endStreams() // EventSource reconnects with Last-Event-ID
	var r struct {
		Sessions []string
		Got      []string
	}
	d.await(t, ctx, tab, "result", &r)
	if len(r.Sessions) != 2 || r.Sessions[0] != r.Sessions[1] {
		t.Fatalf("sessions %v, want the same one twice", r.Sessions)
	}
	sid := r.Sessions[0]
	// The CRLF of the hostile message arrives as LF: EventSource knows
	// no other line end.
	want := fmt.Sprintf(`[%[1]s.1 "greet 1" %[1]s.2 "greet 2" %[1]s.3 "a\n\nevent: close\ndata: forged\nid: 1"]`, sid)
	if got := fmt.Sprint(r.Got); got != want {
		t.Errorf("events %s, want %s", got, want)
	}

	tab = d.open(t, ctx, s.intermediary.URL+"/page/quiet.html")
	d.await(t, ctx, tab, "phase1", &n)
	s.endStreams()
	var q struct {
		Sessions    []string
		LastEventID string
	}
	d.await(t, ctx, tab, "result", &q)
	if len(q.Sessions) != 2 || q.Sessions[0] != q.Sessions[1] {
		t.Errorf("sessions %v, want a quiet EventSource to resume its session", q.Sessions)
	}
}

// TestBrowserResumeProbe fails a resume of client.js's EventSource, so
// that the page probes (sg_probe=1) whether the session ended: the probe
// must not be a stream (it would take the session over), and the page
// then resumes its session with no gap and no close.
func TestBrowserResumeProbe(t *testing.T) {
	d := chromium(t)
	s := newSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab := d.open(t, ctx, s.intermediary.URL+"/page/probe.html")
	var n int
	d.await(t, ctx, tab, "phase1", &n)
	up := s.h.up.next(t)
	s.failResume.Store(true)
	s.endStreams() // EventSource reconnects with Last-Event-ID and gets 502
	var probe *http.Request
	select {
	case probe = <-s.afterFail:
	case <-ctx.Done():
		t.Fatal("the page sent nothing after its resume failed")
	}
	if q := probe.URL.Query(); q.Get("sg_probe") != "1" || q.Get("lastEventId") == "" {
		t.Errorf("request after the failed resume: %s, want a probe with sg_probe=1 and lastEventId", probe.URL.RequestURI())
	}
	up.send(t, false, "late") // the resume replays it
	var r struct {
		Opens, Closes, Gaps, Code int
		Got                       []string
	}
	d.await(t, ctx, tab, "result", &r)
	if r.Opens != 1 || r.Closes != 0 || r.Gaps != 0 || fmt.Sprint(r.Got) != "[greet 1 late]" {
		t.Errorf("page saw %+v, want one open, no close, no gap, [greet 1 late]", r)
	}
	s.mu.Lock()
	tracked := s.tracked
	s.mu.Unlock()
	if tracked != 2 {
		t.Errorf("the bridge served %d streams, want 2 (the first and the resume): the probe was a stream", tracked)
	}
}
