package bridge

import "slices"

// ReplayBuffer is a session's replay log: its last events, oldest first,
// for resume with Last-Event-ID. It keeps at most a number of events and,
// beyond the newest one, at most a number of payload bytes, so that an
// upstream sending large messages cannot grow it without bound. It is a
// ring that grows on demand up to its capacity, so a quiet session holds
// little memory.
//
// A ReplayBuffer is not safe for concurrent use: its session guards it.
type ReplayBuffer struct {
	slots    []replaySlot // the ring
	start    int          // index of the oldest event
	n        int          // events held
	cap      int
	bytes    int // payload bytes held
	maxBytes int
	head     uint64 // seq of the newest event; 0 before the first
}

// replaySlot is one event in the ring. Its seq is not stored: the ring
// holds consecutive seqs, the newest being head, which makes a slot 32
// bytes rather than an Event's 40.
type replaySlot struct {
	data   []byte
	binary bool
}

// NewReplayBuffer returns an empty buffer that keeps the last n events (at
// least one), dropping older ones while they hold more than maxBytes of
// payload (zero: no byte limit). The newest event is always kept.
func NewReplayBuffer(n, maxBytes int) *ReplayBuffer {
	return &ReplayBuffer{cap: max(n, 1), maxBytes: maxBytes}
}

// Head is the seq of the newest event, 0 when there was none.
func (r *ReplayBuffer) Head() uint64 { return r.head }

// Append adds a message as the next event and returns its seq, dropping
// the oldest events beyond the limits. data is kept, not copied.
func (r *ReplayBuffer) Append(binary bool, data []byte) uint64 {
	r.head++
	slot := replaySlot{data: data, binary: binary}
	if r.n == r.cap {
		r.dropOldest()
	}
	if r.n == len(r.slots) { // full at this size, which is below cap: grow
		if r.start != 0 {
			r.slots = slices.Concat(r.slots[r.start:], r.slots[:r.start])
			r.start = 0
		}
		r.slots = append(r.slots, slot)
	} else {
		r.slots[(r.start+r.n)%len(r.slots)] = slot
	}
	r.n++
	r.bytes += len(data)
	for r.maxBytes > 0 && r.bytes > r.maxBytes && r.n > 1 {
		r.dropOldest()
	}
	return r.head
}

func (r *ReplayBuffer) dropOldest() {
	r.bytes -= len(r.slots[r.start].data)
	r.slots[r.start] = replaySlot{}
	r.start = (r.start + 1) % len(r.slots)
	r.n--
}

// Since appends to dst, oldest first, at most limit events with a seq
// above after, and returns dst and lost: how many events above after the
// buffer no longer holds. An after at or past Head yields nothing.
func (r *ReplayBuffer) Since(dst []Event, after uint64, limit int) ([]Event, uint64) {
	if after >= r.head || limit <= 0 {
		return dst, 0
	}
	oldest := r.head - uint64(r.n) + 1
	var lost uint64
	first := after + 1
	if first < oldest {
		lost = oldest - first
		first = oldest
	}
	k := int(min(r.head-first+1, uint64(limit)))
	i := (r.start + int(first-oldest)) % len(r.slots)
	j := min(i+k, len(r.slots)) // the ring wraps at most once
	dst = appendEvents(dst, first, r.slots[i:j])
	return appendEvents(dst, first+uint64(j-i), r.slots[:k-(j-i)]), lost
}

// appendEvents appends the events of slots, whose first has seq first,
// to dst.
func appendEvents(dst []Event, first uint64, slots []replaySlot) []Event {
	n := len(dst)
	dst = slices.Grow(dst, len(slots))[:n+len(slots)]
	for k := range slots {
		ev := &dst[n+k]
		ev.Seq, ev.Binary, ev.Data = first+uint64(k), slots[k].binary, slots[k].data
	}
	return dst
}
