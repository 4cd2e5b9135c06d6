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
	events   []Event // the ring
	start    int     // index of the oldest event
	n        int     // events held
	cap      int
	bytes    int // payload bytes held
	maxBytes int
	head     uint64 // seq of the newest event; 0 before the first
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
	ev := Event{Seq: r.head, Binary: binary, Data: data}
	if r.n == r.cap {
		r.dropOldest()
	}
	if r.n == len(r.events) { // full at this size, which is below cap: grow
		if r.start != 0 {
			r.events = slices.Concat(r.events[r.start:], r.events[:r.start])
			r.start = 0
		}
		r.events = append(r.events, ev)
	} else {
		r.events[(r.start+r.n)%len(r.events)] = ev
	}
	r.n++
	r.bytes += len(data)
	for r.maxBytes > 0 && r.bytes > r.maxBytes && r.n > 1 {
		r.dropOldest()
	}
	return r.head
}

func (r *ReplayBuffer) dropOldest() {
	r.bytes -= len(r.events[r.start].Data)
	r.events[r.start] = Event{}
	r.start = (r.start + 1) % len(r.events)
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
	i := (r.start + int(first-oldest)) % len(r.events)
	j := min(i+k, len(r.events)) // the ring wraps at most once
	dst = append(dst, r.events[i:j]...)
	return append(dst, r.events[:k-(j-i)]...), lost
}
