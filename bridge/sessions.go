package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// maxPendingSends bounds the back-channel messages of one session that may
// wait for the upstream writer; more get errBusy (503).
const maxPendingSends = 64

// newSessionID returns 128 random bits from crypto/rand as 32 lowercase hex
// digits.
func newSessionID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// validSessionID reports whether s has the shape of a session id.
func validSessionID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// tableKey is what the session table is keyed by: a hash of the id, so
// that the time a lookup takes tells nothing of the id's bytes. The stored
// id is then compared in constant time.
type tableKey [16]byte

func keyOf(id string) tableKey {
	h := sha256.Sum256([]byte(id))
	return tableKey(h[:16])
}

// memStore is the in-memory store: an LRU for the session table (size
// MaxSessions), whose entries expire SessionTTL after their last Add, and
// a plain LRU of tombstones.
//
// Attach, Renew and Detach re-Add a session, which moves it to the front
// and restarts its TTL; nothing else reorders the table (Peek, Contains
// and GetOldest do not), and every Add holds m.mu. So the table's order
// is also the order of its deadlines: one timer, armed for the oldest
// session's deadline, expires sessions from the back, and an empty table
// costs nothing. An idle session past its deadline that the timer has
// not removed yet is already unknown to lookups. The evict callback may run
// with m.mu held, so it only flags the session and signals (owner.Expire
// and the stream's wake function never block). Close stops the timer.
//
// A session with a stream attached never expires: its TTL runs from
// the moment its last stream left. Its stream renews it every
// SessionTTL/3, which keeps it near the front; one whose renewals are
// late (a stalled process, a very short TTL) and that reaches the back
// anyway is renewed there by the timer rather than removed, and lookups
// find it all the same.
//
// Lock order: m.mu, then the LRU's lock, then a session's mu (the LRU
// runs the evict callback after releasing its own lock).
type memStore struct {
	replay      int
	replayBytes int
	max         int
	bindIP      bool // a stream attaches only from the session's IP
	ttl         time.Duration
	epoch       time.Time // deadlines are durations since epoch, on the monotonic clock

	mu     sync.Mutex // serialises the table's Adds (Create, renew) with expiry and Close; guards the fields below
	closed bool
	expiry *time.Timer // runs expireDue; nil until the first Add
	armed  bool        // expiry is set to fire
	table  *lru.Cache[tableKey, tableEntry]
	tombs  *lru.Cache[tableKey, struct{}]
}

// newMemStore returns a store of at most maxSessions sessions, each
// keeping replay events (and at most replayBytes of them) and expiring
// ttl after its last stream left;
// bindIP binds each session to the IP of its first stream.
func newMemStore(maxSessions, replay, replayBytes int, ttl time.Duration, bindIP bool) *memStore {
	m := &memStore{
		replay: replay, replayBytes: replayBytes, max: maxSessions, bindIP: bindIP,
		ttl: ttl, epoch: time.Now(),
	}
	// New and NewWithEvict fail only for a size <= 0.
	m.table, _ = lru.NewWithEvict(max(maxSessions, 1), func(_ tableKey, e tableEntry) { m.evicted(e.s) })
	m.tombs, _ = lru.New[tableKey, struct{}](max(maxSessions, 1024))
	return m
}

// tableEntry is a session in the table and when it expires.
type tableEntry struct {
	s        *memSession
	deadline time.Duration // since the store's epoch
}

// now is the time on the store's clock, to compare with deadlines.
func (m *memStore) now() time.Duration { return time.Since(m.epoch) }

// add adds s to the table or moves it to the front, restarting its TTL.
// Called with m.mu held.
func (m *memStore) add(s *memSession) {
	deadline := m.now() + m.ttl
	m.table.Add(s.key, tableEntry{s: s, deadline: deadline})
	if !m.armed { // the table was empty: s is the oldest
		m.arm(deadline)
	}
}

// arm sets the expiry timer for deadline, or a hundredth of the TTL from
// now (1 ms to 1 s) if that is later, so that sessions whose deadlines
// are close together expire in one pass. Called with m.mu held.
func (m *memStore) arm(deadline time.Duration) {
	wait := max(deadline-m.now(), min(max(m.ttl/100, time.Millisecond), time.Second))
	m.armed = true
	if m.expiry == nil {
		m.expiry = time.AfterFunc(wait, m.expireDue)
		return
	}
	m.expiry.Reset(wait)
}

// peek returns the session under k unless it is past its deadline with
// no stream attached, without moving it.
func (m *memStore) peek(k tableKey) (*memSession, bool) {
	e, ok := m.table.Peek(k)
	if !ok || m.now() > e.deadline && !e.s.attached() {
		return nil, false
	}
	return e.s, true
}

// expireDue, the expiry timer's function, removes the sessions past
// their deadline, which are at the back of the table, as its order is
// that of their deadlines, and renews those among them with a stream
// attached; then it arms the timer for the oldest left.
func (m *memStore) expireDue() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armed = false
	if m.closed {
		return
	}
	now := m.now()
	for {
		k, e, ok := m.table.GetOldest()
		if !ok {
			return
		}
		switch {
		case e.deadline >= now:
			m.arm(e.deadline)
			return
		case e.s.attached():
			m.add(e.s) // to the front, with a deadline past now
		default:
			m.table.Remove(k)
		}
	}
}

// memSession is a session's state in memory.
type memSession struct {
	m     *memStore
	id    string
	key   tableKey
	owner owner

	pending         atomic.Int32 // Sends waiting for the owner
	msgsUp, bytesUp atomic.Int64
	mu              sync.Mutex // guards the fields below
	log             *ReplayBuffer
	closed          *closeInfo
	sub             *memSub // the attached stream
	unclaimed       bool    // created, and its creator's stream not attached yet: it counts as attached
	ip              string  // the attached (or last attached) stream's client IP
	gone            bool    // left the table
}

// memSub is a memSession's subscription.
type memSub struct {
	s    *memSession
	wake func() // the stream's: see store.Attach
	end  error  // guarded by s.mu
}

// evicted is the table's evict callback. It may run with m.mu held: flag
// and signal only.
func (m *memStore) evicted(s *memSession) {
	s.mu.Lock()
	if s.gone {
		s.mu.Unlock()
		return
	}
	s.gone = true
	if s.sub != nil {
		s.sub.end = errExpired
		s.sub.wake()
	}
	s.mu.Unlock()
	s.owner.Expire()
}

// lookup finds session id; ok is false for unknown ids and for sessions
// that expired but are not yet cleaned out.
func (m *memStore) lookup(id string) (*memSession, bool) {
	s, ok := m.peek(keyOf(id))
	if !ok || subtle.ConstantTimeCompare([]byte(s.id), []byte(id)) != 1 {
		return nil, false
	}
	return s, true
}

// renew re-Adds s, restarting its TTL, unless s has left the table
// meanwhile or is past its deadline (its callers check the first, but not
// under the lock that counts), or the store is closed: at MaxSessions,
// adding an evicted session back would evict another, unrelated one, and
// a session lookups already miss stays gone. Every Add (Create, renew,
// Detach, expiry's renewal of an attached session) holds m.mu, as do
// expiry and Close, which sets closed before its Purge, so nothing can
// remove s between the check and the Add.
func (m *memStore) renew(s *memSession) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, live := m.peek(s.key); m.closed || !live || s.isGone() {
		return
	}
	m.add(s)
}

// isGone reports whether s has left the table.
func (s *memSession) isGone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gone
}

func (m *memStore) Create(id string, o owner) (sessionLog, error) {
	s := &memSession{m: m, id: id, key: keyOf(id), owner: o, log: NewReplayBuffer(m.replay, m.replayBytes), unclaimed: true}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed
	}
	if m.table.Len() >= m.max && !m.makeRoom() {
		return nil, errFull
	}
	m.add(s)
	return s, nil
}

func (m *memStore) CanCreate() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.closed:
		return errClosed
	case m.table.Len() < m.max:
		return nil
	}
	if _, ok := m.idleVictim(); ok {
		return nil
	}
	return errFull
}

// makeRoom, for a full table, evicts the least recently used session with
// no stream attached: an idle session, kept only for a resume that may
// never come, gives way to a new one, while a session with a stream is
// never cut off to make room (Create refuses instead). It reports false
// when every session has a stream attached. Called with m.mu held.
//
// Attached streams renew their sessions every SessionTTL/3, so idle ones
// sink towards the back of the LRU order and the oldest usually is one:
// then it is found at O(1). Otherwise (an attached
// session not renewed for a while, or a table full of attached sessions)
// the table is walked from the oldest, which costs O(MaxSessions) and
// happens only when the table is full. A stream may attach to the
// session chosen just before it is evicted: it then ends as expired and
// its client resumes into a fresh session, told of the gap.
func (m *memStore) makeRoom() bool {
	k, ok := m.idleVictim()
	if ok {
		m.table.Remove(k)
	}
	return ok
}

// idleVictim finds the session makeRoom evicts: the least recently used
// one with no stream attached (or one expired but not yet cleaned out).
// Called with m.mu held.
func (m *memStore) idleVictim() (tableKey, bool) {
	if k, oldest, ok := m.table.GetOldest(); ok && !oldest.s.attached() {
		return k, true
	}
	for _, k := range m.table.Keys() {
		if s, ok := m.peek(k); !ok || !s.attached() {
			return k, true
		}
	}
	return tableKey{}, false
}

func (m *memStore) Attach(id, clientIP string, wake func()) (subscription, error) {
	s, ok := m.lookup(id)
	if ok {
		sub := &memSub{s: s, wake: wake}
		s.mu.Lock()
		if !s.gone && (!m.bindIP || s.ip == "" || s.ip == clientIP) {
			old := s.sub
			s.sub, s.ip, s.unclaimed = sub, clientIP, false
			if old != nil {
				old.end = errTakenOver
				old.wake()
			}
			s.mu.Unlock()
			m.renew(s)
			sub.wake()
			return sub, nil
		}
		s.mu.Unlock()
	}
	if m.tombs.Contains(keyOf(id)) {
		return nil, errSessionClosed
	}
	return nil, errNoSession
}

func (m *memStore) Probe(id, clientIP string, after uint64) error {
	if s, ok := m.lookup(id); ok { // Peek: the LRU order stays as it is
		s.mu.Lock()
		resumable := !s.gone && (!m.bindIP || s.ip == "" || s.ip == clientIP)
		closed := s.closed != nil && after >= s.log.Head()
		s.mu.Unlock()
		switch {
		case resumable && closed:
			return errSessionClosed
		case resumable:
			return nil
		}
	}
	if m.tombs.Contains(keyOf(id)) { // Contains does not touch the LRU order either
		return errSessionClosed
	}
	return errNoSession
}

// sendable finds the session a back-channel message from the client IP
// from (empty unless binding to IPs) goes to.
func (m *memStore) sendable(id, from string) (*memSession, error) {
	s, ok := m.lookup(id)
	if !ok {
		return nil, errNoSession
	}
	s.mu.Lock()
	gone, closed, ip := s.gone, s.closed != nil, s.ip
	s.mu.Unlock()
	switch {
	case gone || closed:
		return nil, errNoSession
	case from != "" && from != ip:
		return nil, errWrongIP
	}
	return s, nil
}

func (m *memStore) CanSend(id, from string) error {
	_, err := m.sendable(id, from)
	return err
}

func (m *memStore) Send(ctx context.Context, id string, msg message) error {
	s, err := m.sendable(id, msg.From)
	if err != nil {
		return err
	}
	if s.pending.Add(1) > maxPendingSends {
		s.pending.Add(-1)
		return errBusy
	}
	defer s.pending.Add(-1)
	if err := s.owner.Deliver(ctx, msg); err != nil {
		return err
	}
	s.msgsUp.Add(1)
	s.bytesUp.Add(int64(len(msg.Data)))
	return nil
}

func (m *memStore) Close() {
	m.mu.Lock()
	m.closed = true
	if m.expiry != nil {
		m.expiry.Stop() // one already running finds closed set
	}
	m.mu.Unlock()
	m.table.Purge()
}

// attached reports whether a stream is attached to s.
func (s *memSession) attached() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sub != nil || s.unclaimed
}

// Append implements sessionLog.
func (s *memSession) Append(binary bool, data []byte) uint64 {
	s.mu.Lock()
	seq := s.log.Append(binary, data)
	if s.sub != nil {
		s.sub.wake()
	}
	s.mu.Unlock()
	return seq
}

// Finish implements sessionLog.
func (s *memSession) Finish(c closeInfo) {
	s.m.tombs.Add(s.key, struct{}{})
	s.mu.Lock()
	s.closed = &c
	if s.sub != nil {
		s.sub.wake()
	}
	s.mu.Unlock()
}

func (sub *memSub) Read(dst []Event, after uint64, limit int) batch {
	s := sub.s
	b := batch{MsgsUp: s.msgsUp.Load(), BytesUp: s.bytesUp.Load()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub.end != nil {
		b.End = sub.end
		return b
	}
	b.Events, b.Lost = s.log.Since(dst, after, limit)
	b.Head = s.log.Head()
	b.Closed = s.closed
	return b
}

func (sub *memSub) Renew() {
	s := sub.s
	s.mu.Lock()
	current := s.sub == sub && !s.gone
	s.mu.Unlock()
	if current {
		s.m.renew(s)
	}
}

// Detach lets the session go and restarts its TTL, even if its deadline
// passed while the stream was attached (see memStore). Both happen under
// m.mu, so that neither the expiry timer nor makeRoom nor a lookup sees
// the session unattached and past its deadline in between.
func (sub *memSub) Detach() {
	s, m := sub.s, sub.s.m
	m.mu.Lock()
	defer m.mu.Unlock()
	s.mu.Lock()
	current := s.sub == sub
	if current {
		s.sub = nil
	}
	gone := s.gone
	s.mu.Unlock()
	if current && !gone && !m.closed && m.table.Contains(s.key) {
		m.add(s)
	}
}
