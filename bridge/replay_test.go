package bridge

import (
	"fmt"
	"testing"
)

func seqs(evs []Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

func TestReplayBuffer(t *testing.T) {
	r := NewReplayBuffer(4)
	if evs, lost := r.Since(nil, 0, 10); len(evs) != 0 || lost != 0 {
		t.Fatalf("empty buffer: got %v, lost %d", seqs(evs), lost)
	}
	for i := 1; i <= 6; i++ {
		if seq := r.Append(false, fmt.Appendf(nil, "m%d", i)); seq != uint64(i) {
			t.Fatalf("Append returned seq %d, want %d", seq, i)
		}
	}
	tests := []struct {
		after    uint64
		limit    int
		want     string
		wantLost uint64
	}{
		{0, 10, "[3 4 5 6]", 2},
		{1, 10, "[3 4 5 6]", 1},
		{2, 10, "[3 4 5 6]", 0},
		{4, 10, "[5 6]", 0},
		{6, 10, "[]", 0},
		{9, 10, "[]", 0},
		{2, 3, "[3 4 5]", 0},
		{0, 1, "[3]", 2},
	}
	for _, tt := range tests {
		evs, lost := r.Since(nil, tt.after, tt.limit)
		if got := fmt.Sprint(seqs(evs)); got != tt.want || lost != tt.wantLost {
			t.Errorf("Since(%d, %d) = %s lost %d, want %s lost %d", tt.after, tt.limit, got, lost, tt.want, tt.wantLost)
		}
		for _, ev := range evs {
			if want := fmt.Sprintf("m%d", ev.Seq); string(ev.Data) != want {
				t.Errorf("event %d holds %q, want %q", ev.Seq, ev.Data, want)
			}
		}
	}
}

func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("Since_%d", n), func(b *testing.B) {
			r := NewReplayBuffer(n)
			for range n + n/2 {
				r.Append(false, make([]byte, 64))
			}
			dst := make([]Event, 0, drainBatch)
			b.ReportAllocs()
			for b.Loop() {
				// A resume that replays the whole buffer, batch by batch.
				after := r.Head() - uint64(n)
				for after < r.Head() {
					var evs []Event
					evs, _ = r.Since(dst[:0], after, drainBatch)
					after = evs[len(evs)-1].Seq
				}
			}
		})
	}
	b.Run("ReplayEncode_1000", func(b *testing.B) {
		// Replay as a stream does it: read a batch, encode it, repeat.
		const sid = "0123456789abcdef0123456789abcdef"
		r := NewReplayBuffer(1000)
		for range 1000 {
			r.Append(false, make([]byte, 64))
		}
		dst := make([]Event, 0, drainBatch)
		var buf []byte
		b.ReportAllocs()
		b.SetBytes(1000 * 64)
		for b.Loop() {
			after := uint64(0)
			for after < r.Head() {
				evs, _ := r.Since(dst[:0], after, drainBatch)
				buf = buf[:0]
				for _, ev := range evs {
					buf = appendEvent(buf, sid, ev)
				}
				after = evs[len(evs)-1].Seq
			}
		}
	})
}
