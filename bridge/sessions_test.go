package bridge

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// createIdle creates session id in m as a stream does, and lets that
// stream go at once: an idle session, whose TTL runs.
func createIdle(t *testing.T, m *memStore, id string, o owner) {
	t.Helper()
	if _, err := m.Create(id, o); err != nil {
		t.Fatal(err)
	}
	sub, err := m.Attach(id, "", func() {})
	if err != nil {
		t.Fatal(err)
	}
	sub.Detach()
}

// TestRenewNeverAddsBackEvicted evicts an idle session from a full table
// (a new session takes its place) and then renews it, as a stream's late
// renewal would: the renewal must not add it back, which would evict
// another session. (A Detach restarts the TTL under the store's lock, so
// it cannot meet an eviction half way.)
func TestRenewNeverAddsBackEvicted(t *testing.T) {
	m := newMemStore(2, 10, 0, time.Minute, false)
	defer m.Close()
	owners := map[string]*expiryOwner{}
	owners["idle"], owners["attached"] = newExpiryOwner(), newExpiryOwner()
	createIdle(t, m, "idle", owners["idle"])
	if _, err := m.Create("attached", owners["attached"]); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Attach("attached", "", func() {}); err != nil {
		t.Fatal(err)
	}
	idle, _ := m.lookup("idle")
	owners["newcomer"] = newExpiryOwner()
	if _, err := m.Create("newcomer", owners["newcomer"]); err != nil {
		t.Fatalf("newcomer: %v, want the idle session evicted", err)
	}
	select {
	case <-owners["idle"].expired:
	default:
		t.Fatal("the idle session was not evicted for the newcomer")
	}
	m.renew(idle)
	if _, ok := m.lookup("idle"); ok {
		t.Error("renew added the evicted session back")
	}
	for _, id := range []string{"attached", "newcomer"} {
		select {
		case <-owners[id].expired:
			t.Errorf("session %s was evicted", id)
		default:
		}
		if _, ok := m.lookup(id); !ok {
			t.Errorf("session %s is no longer found", id)
		}
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
type expiryOwner struct {
	expired chan struct{}
	at      time.Time // set before expired is closed
}

func newExpiryOwner() *expiryOwner { return &expiryOwner{expired: make(chan struct{})} }

func (o *expiryOwner) Deliver(context.Context, message) error { return nil }
func (o *expiryOwner) Expire() {
	o.at = time.Now()
	close(o.expired)
}

// TestMemStoreExpiry checks the table's TTL: idle sessions created one
// after another expire (their owners hear of it and lookups stop finding
// them) each about a TTL after it was created, in that order; a session
// renewed more often than that stays; a session past its deadline is
// unknown even before the timer removes it, and renewing it does not
// bring it back; Close ends the rest.
func TestMemStoreExpiry(t *testing.T) {
	const ttl = 200 * time.Millisecond
	m := newMemStore(10, 10, 0, ttl, false)
	defer m.Close()

	kept := newExpiryOwner()
	createIdle(t, m, "kept", kept)
	keptSession, _ := m.lookup("kept")
	var idle [4]*expiryOwner
	created := make([]time.Time, len(idle))
	for i := range idle {
		idle[i], created[i] = newExpiryOwner(), time.Now()
		createIdle(t, m, fmt.Sprintf("idle-%d", i), idle[i])
		time.Sleep(ttl / 8)
	}
	renew := time.NewTicker(ttl / 4)
	defer renew.Stop()
	timeout := time.After(5 * time.Second)
	for i := range idle {
	wait:
		for {
			select {
			case <-idle[i].expired:
				break wait
			case <-renew.C:
				m.renew(keptSession)
			case <-timeout:
				t.Fatalf("idle session %d did not expire within 5 s", i)
			}
		}
		if took := idle[i].at.Sub(created[i]); took < ttl {
			t.Errorf("idle session %d expired %v after it was created, before its TTL of %v", i, took, ttl)
		}
		if i > 0 && idle[i].at.Before(idle[i-1].at) {
			t.Errorf("idle session %d expired before session %d, created earlier", i, i-1)
		}
		if _, ok := m.lookup(fmt.Sprintf("idle-%d", i)); ok {
			t.Errorf("lookup still finds expired session %d", i)
		}
	}
	select {
	case <-kept.expired:
		t.Error("the renewed session expired")
	default:
	}
	if _, ok := m.lookup("kept"); !ok {
		t.Error("lookup no longer finds the renewed session")
	}

	// A deadline passed but not yet acted on: lookups miss it already,
	// and a renewal (a stream's late Detach) does not revive it.
	m.mu.Lock()
	m.table.Add(keptSession.key, tableEntry{s: keptSession, deadline: m.now() - time.Millisecond})
	_, found := m.lookup("kept")
	m.mu.Unlock()
	if found {
		t.Error("lookup finds a session past its deadline")
	}
	m.renew(keptSession)
	if _, found := m.lookup("kept"); found {
		t.Error("renew revived a session past its deadline")
	}

	m.Close()
	select {
	case <-kept.expired:
	default:
		t.Error("Close did not end the remaining session")
	}
}

// TestAttachedSessionNeverExpires checks that a session with a stream
// attached, or created and not yet attached, outlives its TTL even when
// the stream never renews it (a
// stalled process: TestSSEChurn lost sessions under load this way, as
// POSTs answered 404 and streams ended while their clients read them),
// including a Detach that comes after its deadline has passed; and that
// once the stream has left, the session expires a TTL later.
func TestAttachedSessionNeverExpires(t *testing.T) {
	const ttl = 30 * time.Millisecond
	m := newMemStore(10, 10, 0, ttl, false)
	defer m.Close()
	o := newExpiryOwner()
	if _, err := m.Create("s", o); err != nil {
		t.Fatal(err)
	}
	// Between Create and its first Attach, the session counts as
	// attached: its creator's stream is about to take it.
	time.Sleep(3 * ttl)
	sub, err := m.Attach("s", "", func() {})
	if err != nil {
		t.Fatalf("the first Attach, %v after Create: %v", 3*ttl, err)
	}
	time.Sleep(5 * ttl) // several expiry passes, no renewal
	select {
	case <-o.expired:
		t.Fatal("a session with a stream attached expired")
	default:
	}
	if err := m.CanSend("s", ""); err != nil {
		t.Fatalf("back-channel to the attached session: %v", err)
	}
	if ev := sub.Read(nil, 0, 10); ev.End != nil {
		t.Fatalf("the attached stream was told %v", ev.End)
	}

	// The deadline passed, and the timer has not got to it yet: Detach
	// still starts the TTL from now.
	s, _ := m.lookup("s")
	m.mu.Lock()
	m.table.Add(s.key, tableEntry{s: s, deadline: m.now() - time.Millisecond})
	m.mu.Unlock()
	if _, ok := m.lookup("s"); !ok {
		t.Fatal("lookup misses an attached session past its deadline")
	}
	left := time.Now()
	sub.Detach()
	if _, ok := m.lookup("s"); !ok {
		t.Fatal("the session is gone at once when its stream left after its deadline")
	}
	select {
	case <-o.expired:
		if took := o.at.Sub(left); took < ttl {
			t.Errorf("expired %v after its stream left, before its TTL of %v", took, ttl)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not expire within 5 s of its stream leaving")
	}
	if err := m.CanSend("s", ""); err == nil {
		t.Error("back-channel to an expired session accepted")
	}
}

// slowExpiryOwner takes a while to hear that its session expired, as an
// owner under load might, which widens the window between Close's Purge
// emptying the table and the last eviction callback.
type slowExpiryOwner struct{}

func (o *slowExpiryOwner) Deliver(context.Context, message) error { return nil }
func (o *slowExpiryOwner) Expire()                                { time.Sleep(20 * time.Microsecond) }

// TestMemStoreRenewAfterClose renews sessions while Close purges the
// table: none may be left in it.
func TestMemStoreRenewAfterClose(t *testing.T) {
	for range 30 {
		m := newMemStore(20, 10, 0, time.Minute, false)
		var sessions []*memSession
		for i := range 20 {
			id := fmt.Sprintf("s-%d", i)
			if _, err := m.Create(id, &slowExpiryOwner{}); err != nil {
				t.Fatal(err)
			}
			s, _ := m.lookup(id)
			sessions = append(sessions, s)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				for _, s := range sessions {
					m.renew(s)
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		time.Sleep(time.Millisecond)
		m.Close()
		close(stop)
		<-done
		if n := m.table.Len(); n != 0 {
			t.Fatalf("%d sessions left in the table after Close", n)
		}
	}
}

// TestNewRefusesNegativeOptions checks that New names the options that
// must not be negative, SessionTTL among them (a negative TTL would
// expire every session at birth).
func TestNewRefusesNegativeOptions(t *testing.T) {
	up := func(*http.Request) (string, http.Header) { return "ws://127.0.0.1:1/ws", nil }
	for name, opts := range map[string]Options{
		"Padding":     {Upstream: up, Padding: -1},
		"Replay":      {Upstream: up, Replay: -1},
		"ReplayBytes": {Upstream: up, ReplayBytes: -1},
		"MaxSessions": {Upstream: up, MaxSessions: -1},
		"QueueLen":    {Upstream: up, QueueLen: -1},
		"SessionTTL":  {Upstream: up, SessionTTL: -time.Second},
	} {
		b, err := New(opts)
		if err == nil {
			b.Close()
			t.Errorf("New accepted a negative %s", name)
		} else if !strings.Contains(err.Error(), name) {
			t.Errorf("New's error for a negative %s does not name it: %v", name, err)
		}
	}
}
