package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

func ptr(f float64) *float64 { return &f }

// rawLines builds compare.sh-style raw records.
func rawLines(t *testing.T, recs ...rawRecord) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(append(line, '\n'))
	}
	return b.Bytes()
}

func TestSummarizeSameRoundRatios(t *testing.T) {
	echo := func(rt, p50 float64, trips int64) *echoResult {
		return &echoResult{RTPerSec: rt, P50us: p50, P99us: 2 * p50, RoundTrips: trips}
	}
	data := rawLines(t,
		rawRecord{Kind: "meta", Meta: &benchMeta{Rounds: 3, Versions: map[string]string{"nginx": "1.22.1"}}},
		// Direct drifts from round to round; ratios are taken within a round.
		rawRecord{Kind: "throughput", Round: 1, Target: "direct", Echo: echo(1000, 0, 0)},
		rawRecord{Kind: "throughput", Round: 2, Target: "direct", Echo: echo(2000, 0, 0)},
		rawRecord{Kind: "throughput", Round: 3, Target: "direct", Echo: echo(4000, 0, 0)},
		rawRecord{Kind: "throughput", Round: 1, Target: "nginx", Echo: echo(500, 0, 50000), CPU: ptr(1)},
		rawRecord{Kind: "throughput", Round: 2, Target: "nginx", Echo: echo(1600, 0, 50000), CPU: ptr(2)},
		rawRecord{Kind: "throughput", Round: 3, Target: "nginx", Echo: echo(3000, 0, 50000), CPU: ptr(3)},
		rawRecord{Kind: "latency", Round: 1, Target: "direct", Echo: echo(0, 40, 0)},
		rawRecord{Kind: "latency", Round: 2, Target: "direct", Echo: echo(0, 60, 0)},
		rawRecord{Kind: "latency", Round: 1, Target: "nginx", Echo: echo(0, 50, 0)},
		rawRecord{Kind: "latency", Round: 2, Target: "nginx", Echo: echo(0, 90, 0)},
		rawRecord{Kind: "idle", Round: 1, Target: "nginx", Idle: &idleRecord{RSSBefore: 1000, RSSAfter: 21000, Wanted: 1000, Established: 1000, Alive: 1000}},
		rawRecord{Kind: "idle", Round: 2, Target: "nginx", Idle: &idleRecord{RSSBefore: 1000, RSSAfter: 11000, Wanted: 1000, Established: 1000, Alive: 998}},
		rawRecord{Kind: "idle", Round: 3, Target: "nginx", Error: "idle client 1 exited"},
	)
	res, err := loadResults(data)
	if err != nil {
		t.Fatal(err)
	}
	if g, e := len(res.Summary), 2; g != e {
		t.Fatalf("got %d rows, want %d", g, e)
	}
	d, n := res.Summary[0], res.Summary[1]
	if d.Target != "direct" || n.Target != "nginx" {
		t.Fatalf("got rows %q, %q, want direct first", d.Target, n.Target)
	}
	for _, c := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"direct ratio", d.ThroughputRatio, 1},
		{"nginx ratio", n.ThroughputRatio, 0.75},      // of 0.5, 0.8, 0.75
		{"nginx rt/s", n.RTPerSec, 1600},              // of 500, 1600, 3000
		{"nginx added p50", n.AddedP50us, 20},         // of 10, 30
		{"nginx CPU per 100k", n.CPUPer100k, 2},       // 2 s / 100k msgs
		{"nginx idle KiB/conn", n.IdleKiBPerConn, 15}, // of 20, 10
	} {
		if c.got == nil || *c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if n.IdleAlive != 998 || n.IdleWanted != 1000 {
		t.Errorf("idle alive: got %d/%d, want the worst round, 998/1000", n.IdleAlive, n.IdleWanted)
	}
	if len(n.Failures) != 1 || !strings.Contains(n.Failures[0], "idle client 1 exited") {
		t.Errorf("failures: got %q", n.Failures)
	}
}

func TestSummarizePairedBaseline(t *testing.T) {
	data := rawLines(t,
		rawRecord{Kind: "throughput", Round: 1, Target: "direct", Pair: "nginx", Echo: &echoResult{RTPerSec: 1000}},
		rawRecord{Kind: "throughput", Round: 1, Target: "nginx", Echo: &echoResult{RTPerSec: 800}},
		rawRecord{Kind: "throughput", Round: 1, Target: "direct", Pair: "caddy", Echo: &echoResult{RTPerSec: 500}},
		rawRecord{Kind: "throughput", Round: 1, Target: "caddy", Echo: &echoResult{RTPerSec: 400}},
	)
	res, err := loadResults(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Summary {
		want := map[string]float64{"direct": 1, "nginx": 0.8, "caddy": 0.8}[s.Target]
		if s.ThroughputRatio == nil || *s.ThroughputRatio != want {
			t.Errorf("%s: got ratio %v, want %v (to its own paired direct run)", s.Target, s.ThroughputRatio, want)
		}
	}
}

func TestReportRoundTripsThroughResultsFile(t *testing.T) {
	data := rawLines(t,
		rawRecord{Kind: "meta", Meta: &benchMeta{Rounds: 1, Date: "2026-01-02T03:04Z", CPUModel: "Test CPU", Nproc: 2,
			Kernel: "6.1", EchoConns: 64, EchoSize: 1024, LatSize: 64, IdleConns: 9000, Workers: "auto",
			Notes: []string{"streamgate ran with GOGC=50 in its environment."}}},
		rawRecord{Kind: "throughput", Round: 1, Target: "direct", Echo: &echoResult{RTPerSec: 1000, P50us: 40}},
		rawRecord{Kind: "throughput", Round: 1, Target: "streamgate", Echo: &echoResult{RTPerSec: 500, RoundTrips: 5000}, CPU: ptr(0.5)},
		rawRecord{Kind: "sse", Round: 1, Target: "streamgate", SSE: &sseResult{Conns: 10, Connected: 10, EventsPerSec: 100, P50us: 300},
			SSEMem: &sseMemRecord{RSSBefore: 1000, RSSWarm: 1300, RSSEnd: 1590, Rate: 1, WarmS: 20, EndS: 49, CPU: 0.029}},
	)
	first, err := loadResults(data)
	if err != nil {
		t.Fatal(err)
	}
	file, _ := json.Marshal(first)
	again, err := loadResults(file)
	if err != nil {
		t.Fatalf("reading a results file back: %v", err)
	}
	var md bytes.Buffer
	writeMarkdown(&md, again)
	for _, want := range []string{"2 × Test CPU", "Linux 6.1", "| streamgate | 500 rt/s | 0.50 |", "5.00 |", "64 conns × 1 KiB", "SSE bridge",
		// (1300-1000)/10 sessions, (1590-1000)/10; 0.029 CPU-s over 10 x 1 x 29 events.
		"30.0 KiB at 20 s and 59.0 KiB at 49 s", "about 20 and 49 messages", "10.00 proxy CPU-s per 100k events",
		// 29 KiB more for 29 more messages each: 1 KiB a message, 30 - 20 x 1 without any.
		"10.0 KiB per session with an empty replay, plus 1.00 KiB per message held"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md.String())
		}
	}
	var txt bytes.Buffer
	writeText(&txt, again)
	if !strings.Contains(txt.String(), "0.50x") {
		t.Errorf("text table lacks the ratio:\n%s", txt.String())
	}
	// A run with settings of its own says so wherever its numbers go.
	var readme bytes.Buffer
	writeReadme(&readme, again)
	for name, out := range map[string]string{"Markdown": md.String(), "README block": readme.String()} {
		if !strings.Contains(out, "streamgate ran with GOGC=50") {
			t.Errorf("%s lacks the run's note:\n%s", name, out)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if g := median(c.in); g == nil || *g != c.want {
			t.Errorf("median(%v): got %v, want %v", c.in, g, c.want)
		}
	}
	if median(nil) != nil {
		t.Error("median(nil) is not nil")
	}
}

// TestReadmePerformanceBlockIsGenerated checks that README.md's
// Performance table is what compare.sh --readme renders from the committed
// examples/bench/results.json, so that it is regenerated, never edited.
func TestReadmePerformanceBlockIsGenerated(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../../examples/bench/results.json")
	if err != nil {
		t.Fatal(err)
	}
	res, err := loadResults(data)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	writeReadme(&want, res)
	const begin, end = "<!-- compare.sh:begin -->\n", "<!-- compare.sh:end -->\n"
	_, rest, ok := strings.Cut(string(readme), begin)
	got, _, ok2 := strings.Cut(rest, end)
	if !ok || !ok2 {
		t.Fatalf("README.md has no %q ... %q block", strings.TrimSpace(begin), strings.TrimSpace(end))
	}
	if got != want.String() {
		t.Errorf("README.md's Performance block is not compare.sh's output for results.json; run\n\tbash examples/bench/compare.sh --report examples/bench/results.json --readme\ngot:\n%s\nwant:\n%s", got, want.String())
	}
}
