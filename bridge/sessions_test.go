package bridge

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestRenewNeverAddsBackEvicted evicts a session between its stream's
// detach and the TTL renewal that follows (a new session takes its place
// in a full table): the renewal must not add it back, which would evict
// another session, whose stream is attached.
func TestRenewNeverAddsBackEvicted(t *testing.T) {
	h := newHarness(t, Options{MaxSessions: 2})
	ms := h.b.store.(*memStore)
	var target atomic.Pointer[string]
	newcomer := make(chan *http.Response, 1)
	ms.testHookRenew = func(s *memSession) {
		if p := target.Load(); p == nil || *p != s.id || !target.CompareAndSwap(p, nil) {
			return
		}
		// s's stream has detached: a new session now evicts s, the
		// least recently used and idle.
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, h.srv.URL+"/ws?n=newcomer", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := h.srv.Client().Do(req)
		if err != nil {
			t.Errorf("newcomer: %v", err)
			resp = nil
		}
		newcomer <- resp
	}

	idle := h.stream("/ws?n=idle", nil)
	idleID := idle.session()
	idleUp := h.up.next(t)
	attached := h.stream("/ws?n=attached", nil)
	attached.session()
	attachedUp := h.up.next(t)

	target.Store(&idleID)
	idle.close() // detach, then renew: the hook runs
	var resp *http.Response
	select {
	case resp = <-newcomer:
	case <-time.After(wait):
		t.Fatal("the idle session's stream never renewed it")
	}
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("newcomer: status %d, want 200 (the idle session evicted)", resp.StatusCode)
	}
	if code, _ := idleUp.waitClosed(t); code != websocket.CloseGoingAway {
		t.Errorf("evicted session's upstream got close %d, want 1001", code)
	}

	attachedUp.send(t, false, "still here")
	if ev := attached.nextEvent(); ev.data != "still here" {
		t.Errorf("attached stream got %q", ev.data)
	}
	select {
	case <-attachedUp.closed:
		t.Errorf("the attached session's upstream was closed (code %d)", attachedUp.code)
	default:
	}
}

// closeOnCreate closes the bridge while a new session's upstream is
// dialled, just before the session is added to the table.
type closeOnCreate struct {
	store
	b      *Bridge
	closed chan struct{} // closed once the store is
}

func (c *closeOnCreate) Create(id string, o owner) (sessionLog, error) {
	go c.b.Close() // returns once the stream that dialled has ended
	<-c.closed
	return c.store.Create(id, o)
}

func (c *closeOnCreate) Close() {
	c.store.Close()
	close(c.closed)
}

// TestShutdownDuringCreate closes the bridge between a new session's
// dial and its entry in the table: the stream gets 503 and the upstream
// it dialled 1001 "going away", as every other upstream does on shutdown,
// not 1013 "try again later", which is for a full table.
func TestShutdownDuringCreate(t *testing.T) {
	h := newHarness(t, Options{})
	h.b.store = &closeOnCreate{store: h.b.store, b: h.b, closed: make(chan struct{})}
	resp, cancel := h.get("/ws", nil)
	defer cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if code, reason := h.up.next(t).waitClosed(t); code != websocket.CloseGoingAway {
		t.Errorf("upstream got close %d %q, want 1001", code, reason)
	}
}

// detachHook tells the test when a stream has detached from its session.
type detachHook struct {
	store
	detached chan struct{}
}

type detachSub struct {
	subscription
	detached chan struct{}
}

func (d *detachHook) Attach(id, clientIP string, wake func()) (subscription, error) {
	sub, err := d.store.Attach(id, clientIP, wake)
	if err != nil {
		return nil, err
	}
	return &detachSub{sub, d.detached}, nil
}

func (s *detachSub) Detach() {
	s.subscription.Detach()
	s.detached <- struct{}{}
}

// TestFullTableEvictsIdleSession fills the table with a session whose
// stream is attached (the least recently used) and an idle one: a new
// session takes the idle one's place, not a 503, and the attached one is
// untouched.
func TestFullTableEvictsIdleSession(t *testing.T) {
	h := newHarness(t, Options{MaxSessions: 2})
	hook := &detachHook{store: h.b.store, detached: make(chan struct{}, 10)}
	h.b.store = hook
	attached := h.stream("/ws?n=attached", nil)
	attached.session()
	attachedUp := h.up.next(t)
	idle := h.stream("/ws?n=idle", nil)
	idle.session()
	idleUp := h.up.next(t)
	idle.close()
	select {
	case <-hook.detached: // the idle session is now the most recently used
	case <-time.After(wait):
		t.Fatal("the idle stream never detached")
	}

	resp, cancel := h.get("/ws?n=new", nil)
	defer cancel()
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("new session: status %d, want 200 (the idle session evicted)", resp.StatusCode)
	}
	if code, _ := idleUp.waitClosed(t); code != websocket.CloseGoingAway {
		t.Errorf("idle session's upstream got close %d, want 1001", code)
	}
	attachedUp.send(t, false, "still here")
	if ev := attached.nextEvent(); ev.data != "still here" {
		t.Errorf("attached stream got %q", ev.data)
	}

	// The new session's stream ended with its response: once it has
	// detached, another stream takes its place, and then, with every
	// session attached, a further one is refused.
	h.up.next(t)
	select {
	case <-hook.detached:
	case <-time.After(wait):
		t.Fatal("the new stream never detached")
	}
	again := h.stream("/ws?n=again", nil)
	again.session()
	h.up.next(t)
	resp, cancel2 := h.get("/ws?n=refused", nil)
	defer cancel2()
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("table full of attached sessions: status %d, want 503", resp.StatusCode)
	}
	// The refusal came before the dial: the app never saw the request.
	// (A dial would have completed before the 503: the upstream registers
	// its connection right after its 101.)
	select {
	case c := <-h.up.conns:
		t.Errorf("the refused stream dialled the upstream: %s", c.r.URL)
	case <-time.After(200 * time.Millisecond):
	}
}

// expiryOwner records when its session left the table.
type expiryOwner struct{ expired chan struct{} }

func (o *expiryOwner) Deliver(context.Context, message) error { return nil }
func (o *expiryOwner) Expire()                                { close(o.expired) }

// TestMemStoreExpiry checks the table's TTL: an idle session expires (its
// owner hears of it and lookups stop finding it) about a TTL after its
// last renewal, a session renewed more often than that stays, a session
// past its deadline is unknown even before the store's goroutine removes
// it, and Close stops that goroutine (TestMain checks no goroutine is
// left).
func TestMemStoreExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	m := newMemStore(10, 10, 0, ttl, false)
	defer m.Close()

	idle, kept := &expiryOwner{make(chan struct{})}, &expiryOwner{make(chan struct{})}
	start := time.Now()
	if _, err := m.Create("idle", idle); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create("kept", kept); err != nil {
		t.Fatal(err)
	}
	keptSession, _ := m.lookup("kept")
	renew := time.NewTicker(ttl / 4)
	defer renew.Stop()
wait:
	for {
		select {
		case <-idle.expired:
			break wait
		case <-renew.C:
			m.renew(keptSession)
		case <-time.After(5 * time.Second):
			t.Fatal("the idle session did not expire within 5 s")
		}
	}
	if took := time.Since(start); took < ttl {
		t.Errorf("the idle session expired after %v, before its TTL of %v", took, ttl)
	}
	if _, ok := m.lookup("idle"); ok {
		t.Error("lookup still finds the expired session")
	}
	select {
	case <-kept.expired:
		t.Error("the renewed session expired")
	default:
	}
	if _, ok := m.lookup("kept"); !ok {
		t.Error("lookup no longer finds the renewed session")
	}

	// A deadline passed but not yet acted on: lookups miss it already.
	m.mu.Lock()
	m.table.Add(keptSession.key, tableEntry{s: keptSession, deadline: m.now() - time.Millisecond})
	_, found := m.lookup("kept")
	m.mu.Unlock()
	if found {
		t.Error("lookup finds a session past its deadline")
	}

	m.Close()
	select {
	case <-m.expiryEnded:
	default:
		t.Error("Close returned before the expiry goroutine ended")
	}
	select {
	case <-kept.expired:
	default:
		t.Error("Close did not end the remaining session")
	}
}
