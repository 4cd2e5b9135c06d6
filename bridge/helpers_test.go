package bridge

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/streamgate/streamgate/bridge/wsconn"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait is how long a test waits for something that should happen at once
// over loopback; it only bounds a failing test.
const wait = 10 * time.Second

// upMsg is a message the test upstream received.
type upMsg struct {
	binary bool
	data   string
}

// upConn is one WebSocket connection of the test upstream.
type upConn struct {
	c      *websocket.Conn
	r      *http.Request
	echo   bool
	wmu    sync.Mutex
	recv   chan upMsg    // messages from the bridge, buffered
	closed chan struct{} // closed when the reader ended
	code   int           // close code received; read after closed
	reason string
}

// send writes a message to the bridge.
func (u *upConn) send(t testing.TB, binary bool, data string) {
	t.Helper()
	mt := websocket.TextMessage
	if binary {
		mt = websocket.BinaryMessage
	}
	u.wmu.Lock()
	defer u.wmu.Unlock()
	if err := u.c.WriteMessage(mt, []byte(data)); err != nil {
		t.Errorf("upstream send: %v", err)
	}
}

// close sends a close frame with code and reason; the reader ends when the
// bridge answers.
func (u *upConn) close(code int, reason string) {
	_ = u.c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
}

// waitClosed waits for the connection to end and returns the close code
// the bridge sent.
func (u *upConn) waitClosed(t testing.TB) (int, string) {
	t.Helper()
	select {
	case <-u.closed:
		return u.code, u.reason
	case <-time.After(wait):
		t.Fatal("upstream connection did not end")
		return 0, ""
	}
}

func (u *upConn) next(t testing.TB) upMsg {
	t.Helper()
	select {
	case m := <-u.recv:
		return m
	case <-time.After(wait):
		t.Fatal("upstream got no message")
		return upMsg{}
	}
}

// testUpstream is a gorilla WebSocket server standing in for the app:
// every connection is handed to the test on conns; paths under /echo echo
// each message back; ?greet=N sends "greet 1".."greet N" on connect;
// ?refuse=N answers the handshake with status N.
type testUpstream struct {
	srv    *httptest.Server
	conns  chan *upConn
	mu     sync.Mutex // guards closed and wg.Add against wg.Wait
	closed bool
	wg     sync.WaitGroup
}

// enter registers a connection handler unless the upstream is closing.
func (u *testUpstream) enter() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.wg.Add(1)
	return true
}

func newTestUpstream(t testing.TB) *testUpstream {
	u := &testUpstream{conns: make(chan *upConn, 10000)}
	up := websocket.Upgrader{
		CheckOrigin:  func(*http.Request) bool { return true },
		Subprotocols: []string{"chat.v2", "chat.v1"},
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := r.URL.Query().Get("refuse"); s != "" {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "refused", atoi(s))
			return
		}
		if !u.enter() {
			http.Error(w, "closing", http.StatusServiceUnavailable)
			return
		}
		defer u.wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		uc := &upConn{c: c, r: r, echo: strings.HasPrefix(r.URL.Path, "/echo"), recv: make(chan upMsg, 10000), closed: make(chan struct{})}
		c.SetCloseHandler(func(code int, text string) error {
			uc.code, uc.reason = code, text
			uc.wmu.Lock()
			defer uc.wmu.Unlock()
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		})
		u.conns <- uc
		defer close(uc.closed)
		for i := 1; i <= atoi(r.URL.Query().Get("greet")); i++ {
			uc.send(t, false, fmt.Sprintf("greet %d", i))
		}
		defer c.Close()
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			uc.recv <- upMsg{binary: mt == websocket.BinaryMessage, data: string(p)}
			if uc.echo {
				uc.wmu.Lock()
				err = c.WriteMessage(mt, p)
				uc.wmu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}))
	t.Cleanup(func() {
		u.mu.Lock()
		u.closed = true
		u.mu.Unlock()
		u.srv.CloseClientConnections()
		u.srv.Close()
		u.wg.Wait()
	})
	return u
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// next returns the next connection the upstream accepted.
func (u *testUpstream) next(t testing.TB) *upConn {
	t.Helper()
	select {
	case c := <-u.conns:
		return c
	case <-time.After(wait):
		t.Fatal("upstream got no connection")
		return nil
	}
}

// harness is a Bridge in an httptest server in front of a test upstream.
type harness struct {
	t   testing.TB
	up  *testUpstream
	b   *Bridge
	srv *httptest.Server
}

// newHarness starts a bridge with opts (Upstream is filled in: the test
// upstream at the same path and query, forwarding Cookie and
// Authorization; Poller too, unless set: one of the harness's own, as the
// proxy gives its bridges, so that HTTP/1 streams take their connections
// over); configure, if any, runs on the server before it starts.
func newHarness(t testing.TB, opts Options, configure ...func(*httptest.Server)) *harness {
	if opts.Poller == nil {
		p, err := wsconn.NewPoller(1)
		if err == nil {
			t.Cleanup(func() { _ = p.Close() }) // after the bridge's Close, which runs first
			opts.Poller = p
		}
	}
	return startHarness(t, opts, configure...)
}

// newHandlerHarness is newHarness without a Poller: every stream stays in
// its handler, as on platforms without event loops.
func newHandlerHarness(t testing.TB, opts Options, configure ...func(*httptest.Server)) *harness {
	return startHarness(t, opts, configure...)
}

func startHarness(t testing.TB, opts Options, configure ...func(*httptest.Server)) *harness {
	h := &harness{t: t, up: newTestUpstream(t)}
	upURL := "ws" + strings.TrimPrefix(h.up.srv.URL, "http")
	opts.Upstream = func(r *http.Request) (string, http.Header) {
		hdr := http.Header{}
		for _, k := range []string{"Cookie", "Authorization"} {
			if v := r.Header.Values(k); len(v) > 0 {
				hdr[k] = v
			}
		}
		u := upURL + r.URL.Path
		if r.URL.RawQuery != "" {
			u += "?" + r.URL.RawQuery
		}
		return u, hdr
	}
	if opts.Leg.CloseTimeout == 0 {
		opts.Leg.CloseTimeout = time.Second
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.b = b
	h.srv = httptest.NewUnstartedServer(b)
	for _, f := range configure {
		f(h.srv)
	}
	h.srv.Start()
	t.Cleanup(func() {
		h.srv.CloseClientConnections()
		b.Close()
		h.srv.Close()
	})
	return h
}

// sseEvent is one block of an event stream: the lines up to a blank line.
type sseEvent struct {
	raw     string // the block as received, blank line included
	event   string
	id      string
	hasID   bool
	data    string
	hasData bool
	retry   string
	comment []string
}

// sseStream reads an event stream, parsing it as EventSource does.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	events chan sseEvent
	done   chan struct{} // closed when the body ended
	err    error         // the body's end, read after done
	cancel context.CancelFunc
}

// get opens a stream at path with the given extra headers; it does not
// check the status.
func (h *harness) get(path string, hdr http.Header) (*http.Response, context.CancelFunc) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+path, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		cancel()
		h.t.Fatal(err)
	}
	return resp, cancel
}

// stream opens a stream and checks it is a 200 event stream.
func (h *harness) stream(path string, hdr http.Header) *sseStream {
	h.t.Helper()
	resp, cancel := h.get(path, hdr)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		h.t.Fatalf("GET %s: status %d (%s), want 200", path, resp.StatusCode, body)
	}
	s := &sseStream{t: h.t, resp: resp, events: make(chan sseEvent, 100000), done: make(chan struct{}), cancel: cancel}
	go s.read()
	h.t.Cleanup(s.close)
	return s
}

// close drops the connection and waits for the reader.
func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
	<-s.done
}

func (s *sseStream) read() {
	defer close(s.done)
	br := bufio.NewReader(s.resp.Body)
	var ev sseEvent
	var raw bytes.Buffer
	var data strings.Builder
	for {
		line, term, err := readLine(br)
		if err != nil {
			s.err = err
			return
		}
		raw.WriteString(line)
		raw.WriteString(term)
		if line == "" {
			ev.raw = raw.String()
			if ev.hasData {
				ev.data = strings.TrimSuffix(data.String(), "\n")
			}
			s.events <- ev
			ev, raw, data = sseEvent{}, bytes.Buffer{}, strings.Builder{}
			continue
		}
		if strings.HasPrefix(line, ":") {
			ev.comment = append(ev.comment, line[1:])
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "event":
			ev.event = value
		case "data":
			ev.hasData = true
			data.WriteString(value)
			data.WriteByte('\n')
		case "id":
			ev.id, ev.hasID = value, true
		case "retry":
			ev.retry = value
		}
	}
}

// readLine reads a line. The bridge ends lines with LF only: a CR on the
// wire would be a line end to EventSource, so the test fails on one.
func readLine(br *bufio.Reader) (line, term string, err error) {
	l, err := br.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	if strings.IndexByte(l, '\r') >= 0 {
		return "", "", fmt.Errorf("CR on the wire: %q", l)
	}
	return l[:len(l)-1], "\n", nil
}

// next returns the next block, comments and id-only blocks included.
func (s *sseStream) next() sseEvent {
	s.t.Helper()
	select {
	case ev := <-s.events:
		return ev
	case <-s.done:
		select {
		case ev := <-s.events:
			return ev
		default:
		}
		s.t.Fatalf("stream ended (%v), want an event", s.err)
	case <-time.After(wait):
		s.t.Fatal("no event")
	}
	return sseEvent{}
}

// nextEvent returns the next block that dispatches an event (skipping
// comments and id-only blocks).
func (s *sseStream) nextEvent() sseEvent {
	s.t.Helper()
	for {
		ev := s.next()
		if ev.hasData {
			return ev
		}
	}
}

// session reads the preamble up to the session event and returns the
// session id.
func (s *sseStream) session() string {
	s.t.Helper()
	ev := s.nextEvent()
	if ev.event != "session" {
		s.t.Fatalf("first event %q, want session", ev.event)
	}
	sid, _, _ := strings.Cut(strings.TrimPrefix(ev.data, `{"session":"`), `"`)
	return sid
}

// waitEnd waits for the stream to end and returns what was left unread.
func (s *sseStream) waitEnd() []sseEvent {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(wait):
		s.t.Fatal("stream did not end")
	}
	var rest []sseEvent
	for {
		select {
		case ev := <-s.events:
			rest = append(rest, ev)
		default:
			return rest
		}
	}
}

// post sends a back-channel message and returns the status.
func (h *harness) post(path, contentType, body string, hdr http.Header) int {
	h.t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// hookStore wraps the bridge's store to tell the test when upstream
// messages reach a session's log and when sessions end.
type hookStore struct {
	store
	appended chan uint64  // every seq appended, any session
	creates  atomic.Int32 // sessions created
}

type hookLog struct {
	sessionLog
	h *hookStore
}

func (l hookLog) Append(binary bool, data []byte) uint64 {
	seq := l.sessionLog.Append(binary, data)
	l.h.appended <- seq
	return seq
}

func (h *hookStore) Create(id string, o owner) (sessionLog, error) {
	h.creates.Add(1)
	l, err := h.store.Create(id, o)
	if err != nil {
		return nil, err
	}
	return hookLog{l, h}, nil
}

// hook installs a hookStore; call it before the first request.
func (h *harness) hook() *hookStore {
	hs := &hookStore{store: h.b.store, appended: make(chan uint64, 100000)}
	h.b.store = hs
	return hs
}

// waitAppended waits until the log has appended seq n (of the one
// session the test runs).
func (hs *hookStore) waitAppended(t testing.TB, n uint64) {
	t.Helper()
	for {
		select {
		case seq := <-hs.appended:
			if seq >= n {
				return
			}
		case <-time.After(wait):
			t.Fatalf("seq %d never appended", n)
		}
	}
}

// smallRecvDialer dials TCP connections with a receive buffer of rcvbuf
// bytes, for clients that stop reading: the sender's writes then block
// after a few kilobytes rather than megabytes.
func smallRecvDialer(rcvbuf int) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
	}}
}
