package bridge

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

// TestSlowConsumer has one client stop reading while another reads
// everything: the slow stream is dropped (its write deadline passes or it
// falls too far behind), the fast one gets every message, the upstream of
// neither waits, and the slow client, resuming, misses nothing.
func TestSlowConsumer(t *testing.T) {
	m := NewMetrics(nil)
	ended := make(chan struct{}, 2)
	h := newHarness(t, Options{
		WriteTimeout: time.Second,
		Replay:       1000,
		QueueLen:     500,
		Metrics:      m,
		Track:        func(func()) func() { return func() { ended <- struct{}{} } },
	}, func(srv *httptest.Server) {
		// Small socket buffers, so that a client that does not read
		// blocks the bridge's writes after a few events.
		srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
			if tc, ok := c.(*net.TCPConn); ok && s == http.StateNew {
				_ = tc.SetWriteBuffer(32 << 10)
			}
		}
	})
	slowClient := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(16 << 10)
			}
			return c, err
		},
	}}
	defer slowClient.CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL+"/ws", nil)
	req.Header.Set("Accept", "text/event-stream")
	slowResp, err := slowClient.Do(req) // never read until the end
	if err != nil {
		t.Fatal(err)
	}
	defer slowResp.Body.Close()
	upSlow := h.up.next(t)
	fast := h.stream("/ws", nil)
	fast.session()
	upFast := h.up.next(t)

	const n, size = 300, 8 << 10 // 2.4 MiB: far more than the socket buffers hold
	payload := func(i int) string { return fmt.Sprintf("%06d", i) + strings.Repeat("x", size-6) }
	for i := 1; i <= n; i++ {
		upSlow.send(t, false, payload(i))
		upFast.send(t, false, payload(i))
	}
	for i := 1; i <= n; i++ {
		if ev := fast.nextEvent(); ev.data != payload(i) {
			t.Fatalf("fast client: event %d has %.10q", i, ev.data)
		}
	}
	select {
	case <-ended: // the slow stream; the fast one is still attached
	case <-time.After(wait):
		t.Fatal("the slow stream was not dropped")
	}
	if got := value(m.SlowStreams); got != 1 {
		t.Errorf("slow streams %v, want 1", got)
	}

	// The slow client reads what it got, then resumes.
	s := &sseStream{t: t, resp: slowResp, events: make(chan sseEvent, n+10), done: make(chan struct{}), cancel: cancel}
	go s.read()
	rest := s.waitEnd()
	var sid string
	got := 0
	for _, ev := range rest {
		if ev.event == "session" {
			sid = s.sessionOf(ev)
		}
		if ev.hasData && ev.event == "" {
			got++
			if ev.data != payload(got) {
				t.Fatalf("slow client: event %d has %.10q", got, ev.data)
			}
		}
	}
	if got == n {
		t.Fatalf("the slow client got all %d events before it was dropped", n)
	}
	s2 := h.stream("/ws", http.Header{"Last-Event-ID": {fmt.Sprintf("%s.%d", sid, got)}})
	s2.session()
	for got < n {
		got++
		if ev := s2.nextEvent(); ev.data != payload(got) {
			t.Fatalf("resumed slow client: event %d has %q", got, ev.data[:10])
		}
	}
}

// rawStream is a stream read without goroutines, for load tests.
type rawStream struct {
	c    net.Conn
	br   *bufio.Reader
	body io.ReadCloser
	sr   *bufio.Reader
}

func openRaw(t testing.TB, addr, path string) *rawStream {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(wait))
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Accept", "text/event-stream")
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 512)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", path, resp.StatusCode)
	}
	return &rawStream{c: c, br: br, body: resp.Body, sr: bufio.NewReaderSize(resp.Body, 512)}
}

// expect reads lines until one equals line.
func (r *rawStream) expect(t testing.TB, line string) {
	t.Helper()
	for {
		l, err := r.sr.ReadString('\n')
		if err != nil {
			t.Fatalf("reading for %q: %v", line, err)
		}
		if strings.TrimSuffix(l, "\n") == line {
			return
		}
	}
}

// TestManySessions opens thousands of sessions (fewer under -race), gets a
// message through each, ends them all and checks that no goroutine is
// left behind and the gauges return to zero.
func TestManySessions(t *testing.T) {
	t.Cleanup(func() { goleak.VerifyNone(t) })
	n := 3000
	if raceEnabled {
		n = 1200
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	h := newHarness(t, Options{Metrics: m, MaxSessions: n})
	addr := h.srv.Listener.Addr().String()
	streams := make([]*rawStream, n)
	for i := range n {
		streams[i] = openRaw(t, addr, fmt.Sprintf("/ws/%d", i))
		streams[i].expect(t, "event: session")
	}
	ups := make(map[string]*upConn, n)
	for range n {
		u := h.up.next(t)
		ups[u.r.URL.Path] = u
	}
	if got := value(m.Sessions); got != float64(n) {
		t.Errorf("sessions gauge %v, want %d", got, n)
	}
	for i := range n {
		ups[fmt.Sprintf("/ws/%d", i)].send(t, false, fmt.Sprintf("hello %d", i))
	}
	for i, s := range streams {
		s.expect(t, fmt.Sprintf("data: hello %d", i))
	}
	if got := value(m.Streams); got != float64(n) {
		t.Errorf("streams gauge %v, want %d", got, n)
	}
	// Half the clients leave (their sessions wait for a resume), then the
	// bridge closes with the other half attached.
	for _, s := range streams[:n/2] {
		s.c.Close()
	}
	h.b.Close()
	for _, s := range streams[n/2:] {
		if _, err := io.Copy(io.Discard, s.sr); err != nil {
			t.Errorf("attached stream did not end cleanly: %v", err)
		}
		s.c.Close()
	}
	for _, u := range ups {
		if code, _ := u.waitClosed(t); code != websocket.CloseGoingAway {
			t.Errorf("upstream closed with %d, want 1001", code)
		}
	}
	if got := value(m.Sessions); got != 0 {
		t.Errorf("sessions gauge %v after Close, want 0", got)
	}
	if got := value(m.Streams); got != 0 {
		t.Errorf("streams gauge %v after Close, want 0", got)
	}
}

// value reads a gauge or counter.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// gatedStore holds each stream's second Read after it has read, until
// release: what the session appends meanwhile arrives while the stream is
// about to write what it read, as a burst does when its first message
// wakes the stream. firstRead and holding tell the test when the first
// Read has returned and when the second one holds.
type gatedStore struct {
	store
	firstRead, holding, release chan struct{}
}

type gatedSub struct {
	subscription
	g     *gatedStore
	reads int // by the stream's turn, one at a time
}

func (g *gatedStore) Attach(id, clientIP string, wake func()) (subscription, error) {
	sub, err := g.store.Attach(id, clientIP, wake)
	if err != nil {
		return nil, err
	}
	return &gatedSub{subscription: sub, g: g}, nil
}

func (s *gatedSub) Read(dst []Event, after uint64, limit int) batch {
	s.reads++
	b := s.subscription.Read(dst, after, limit)
	switch s.reads {
	case 1:
		close(s.g.firstRead)
	case 2:
		close(s.g.holding)
		<-s.g.release
	}
	return b
}

// TestBurstIsNotSlowness sends a stream a burst of more events than
// QueueLen, which arrive while it writes the first of them (the first
// one woke it): a client that reads them as fast as they are written is
// not too slow, so it gets them all and stays. Before, a stream more than
// QueueLen behind at a read, or that fell further behind during one
// write, was dropped, so an upstream that greets with a burst dropped
// fresh, fast streams.
func TestBurstIsNotSlowness(t *testing.T) {
	const burst, queueLen = 40, 30
	h := newHarness(t, Options{Replay: 100, QueueLen: queueLen})
	hs := h.hook()
	g := &gatedStore{store: hs, firstRead: make(chan struct{}), holding: make(chan struct{}), release: make(chan struct{})}
	h.b.store = g
	s := h.stream("/ws", nil)
	s.session()
	up := h.up.next(t)
	for _, c := range []chan struct{}{g.firstRead, g.holding} {
		select {
		case <-c:
		case <-time.After(wait):
			t.Fatal("the stream never read")
		}
		if c == g.firstRead {
			up.send(t, false, "m1") // wakes the stream, whose second Read takes it
		}
	}
	for i := 2; i <= burst; i++ {
		up.send(t, false, fmt.Sprintf("m%d", i))
	}
	hs.waitAppended(t, burst)
	close(g.release)
	for i := 1; i <= burst; i++ {
		if ev := s.nextEvent(); ev.data != fmt.Sprintf("m%d", i) {
			t.Fatalf("event %d: got %q (%q)", i, ev.data, ev.raw)
		}
	}
	up.send(t, false, "live")
	if ev := s.nextEvent(); ev.data != "live" {
		t.Fatalf("after the burst: got %q (%q), want the stream still live", ev.data, ev.raw)
	}
}
