package bridge

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"unsafe"
)

func seqs(evs []Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

func TestReplayBuffer(t *testing.T) {
	r := NewReplayBuffer(4, 0)
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
			r := NewReplayBuffer(n, 0)
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
		r := NewReplayBuffer(1000, 0)
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

func TestReplayBufferBytes(t *testing.T) {
	r := NewReplayBuffer(10, 10)
	for i := 1; i <= 5; i++ {
		r.Append(false, []byte("abcd")) // 4 bytes each: at most 2 (8 bytes) fit
	}
	evs, lost := r.Since(nil, 0, 10)
	if got := fmt.Sprint(seqs(evs)); got != "[4 5]" || lost != 3 {
		t.Errorf("got %s lost %d, want [4 5] lost 3", got, lost)
	}
	r.Append(true, make([]byte, 100)) // alone over the limit: still kept
	if evs, lost = r.Since(nil, 0, 10); fmt.Sprint(seqs(evs)) != "[6]" || lost != 5 {
		t.Errorf("got %v lost %d, want [6] lost 5", seqs(evs), lost)
	}
	for i := 7; i <= 30; i++ { // wrap the ring many times
		r.Append(false, []byte("x"))
	}
	if evs, lost = r.Since(nil, 20, 10); fmt.Sprint(seqs(evs)) != "[21 22 23 24 25 26 27 28 29 30]" || lost != 0 {
		t.Errorf("got %v lost %d, want 21..30", seqs(evs), lost)
	}
}

// TestReplayBufferModel checks the ring against a plain slice under random
// appends (random sizes, so the byte limit drops events too) and reads.
func TestReplayBufferModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		capN, maxBytes := 1+rng.IntN(8), rng.IntN(40)
		r := NewReplayBuffer(capN, maxBytes)
		var model []Event
		for range 100 {
			// The payload names its seq, so a slot read from the wrong
			// place in the ring shows even though seqs are computed.
			data := fmt.Appendf(nil, "%d", r.Head()+1)
			data = append(data, make([]byte, rng.IntN(12))...)
			binary := rng.IntN(2) == 0
			seq := r.Append(binary, data)
			model = append(model, Event{Seq: seq, Binary: binary, Data: data})
			if len(model) > capN {
				model = model[1:]
			}
			held := 0
			for _, ev := range model {
				held += len(ev.Data)
			}
			for maxBytes > 0 && held > maxBytes && len(model) > 1 {
				held -= len(model[0].Data)
				model = model[1:]
			}
			after := uint64(rng.IntN(int(seq) + 2))
			evs, lost := r.Since(nil, after, 100)
			var want []Event
			var wantLost uint64
			for s := after + 1; s <= seq; s++ {
				if s < model[0].Seq {
					wantLost++
				} else {
					want = append(want, model[s-model[0].Seq])
				}
			}
			if fmt.Sprint(seqs(evs)) != fmt.Sprint(seqs(want)) || lost != wantLost {
				t.Fatalf("trial %d (cap %d, max %d B): Since(%d) = %v lost %d, want %v lost %d",
					trial, capN, maxBytes, after, seqs(evs), lost, seqs(want), wantLost)
			}
			for i, ev := range evs {
				if ev.Binary != want[i].Binary || !bytes.Equal(ev.Data, want[i].Data) {
					t.Fatalf("trial %d (cap %d, max %d B): Since(%d)[%d] = seq %d binary %v data %q, want binary %v data %q",
						trial, capN, maxBytes, after, i, ev.Seq, ev.Binary, ev.Data, want[i].Binary, want[i].Data)
				}
			}
		}
	}
}

// TestReplaySlotSize guards what each held message costs beyond its
// payload: a session's ring holds a slot per message, up to sse.replay of
// them, so a field that pushes a slot past 32 bytes costs every session
// a quarter more ring.
func TestReplaySlotSize(t *testing.T) {
	if n := unsafe.Sizeof(replaySlot{}); n > 32 {
		t.Errorf("replaySlot is %d bytes, want at most 32 (its seq follows from its place in the ring)", n)
	}
}
