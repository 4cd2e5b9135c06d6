package bridge

// ReplayBuffer is a session's replay log: its last Cap events, oldest
// first, for resume with Last-Event-ID. It is a ring that grows on demand
// up to its capacity, so a quiet session holds little memory, and then
// overwrites its oldest event with each new one.
//
// A ReplayBuffer is not safe for concurrent use: its session guards it.
type ReplayBuffer struct {
	events []Event
	cap    int
	head   uint64 // seq of the newest event; 0 before the first
}

// NewReplayBuffer returns an empty buffer that keeps the last n events
// (at least one).
func NewReplayBuffer(n int) *ReplayBuffer {
	return &ReplayBuffer{cap: max(n, 1)}
}

// Head is the seq of the newest event, 0 when there was none.
func (r *ReplayBuffer) Head() uint64 { return r.head }

// Append adds a message as the next event and returns its seq. When the
// buffer is full the oldest event is dropped. data is kept, not copied.
func (r *ReplayBuffer) Append(binary bool, data []byte) uint64 {
	r.head++
	ev := Event{Seq: r.head, Binary: binary, Data: data}
	if len(r.events) < r.cap {
		r.events = append(r.events, ev)
	} else {
		r.events[r.index(r.head)] = ev
	}
	return r.head
}

// index is the position of seq in the ring; seq 1 is at position 0.
func (r *ReplayBuffer) index(seq uint64) int { return int((seq - 1) % uint64(r.cap)) }

// Since appends to dst, oldest first, at most limit events with a seq
// above after, and returns dst and lost: how many events above after the
// buffer no longer holds. An after at or past Head yields nothing.
func (r *ReplayBuffer) Since(dst []Event, after uint64, limit int) ([]Event, uint64) {
	if after >= r.head || limit <= 0 {
		return dst, 0
	}
	oldest := r.head - uint64(len(r.events)) + 1
	var lost uint64
	first := after + 1
	if first < oldest {
		lost = oldest - first
		first = oldest
	}
	last := min(r.head, first+uint64(limit)-1)
	for seq := first; seq <= last; seq++ {
		dst = append(dst, r.events[r.index(seq)])
	}
	return dst, lost
}
