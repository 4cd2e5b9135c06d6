package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// summaryRow is the part of a results.json row this test checks.
type summaryRow struct {
	Target          string   `json:"target"`
	ThroughputRatio *float64 `json:"throughput_ratio"`
	AddedP50us      *float64 `json:"added_p50_us"`
	CPUPer100k      *float64 `json:"cpu_s_per_100k_msgs"`
	IdleKiBPerConn  *float64 `json:"idle_kib_per_conn"`
	IdleWanted      int      `json:"idle_wanted"`
	IdleAlive       int      `json:"idle_alive_min"`
	EchoErrors      int      `json:"echo_errors"`
	Failures        []string `json:"failures"`
	SSE             *struct {
		Connected int      `json:"connected_min"`
		Conns     int      `json:"conns"`
		Lost      int64    `json:"lost"`
		KiBWarm   *float64 `json:"rss_kib_per_session_warm"`
		KiBEnd    *float64 `json:"rss_kib_per_session_end"`
	} `json:"sse"`
}

// TestCompareQuick runs compare.sh in quick mode (one short round, 1000
// idle connections) and checks every target produced every number, every
// idle connection answered after the hold, and the Markdown renders from
// the JSON. It is a load run, so it runs only with STREAMGATE_BENCH=1.
func TestCompareQuick(t *testing.T) {
	if os.Getenv("STREAMGATE_BENCH") != "1" {
		t.Skip("load run: set STREAMGATE_BENCH=1 to run compare.sh in quick mode (about a minute, all cores)")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("compare.sh needs bash")
	}
	out := filepath.Join(t.TempDir(), "results.json")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "compare.sh")
	cmd.Env = append(os.Environ(), "QUICK=1", "OUT="+out)
	cmd.WaitDelay = 30 * time.Second // compare.sh's trap stops its processes
	var stderr strings.Builder
	cmd.Stderr = &stderr
	table, err := cmd.Output()
	if err != nil {
		t.Fatalf("compare.sh: %v\n%s", err, stderr.String())
	}
	t.Logf("compare.sh:\n%s", table)

	var res struct {
		Meta struct {
			Versions map[string]string `json:"versions"`
		} `json:"meta"`
		Summary []summaryRow `json:"summary"`
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	rows := map[string]summaryRow{}
	for _, r := range res.Summary {
		rows[r.Target] = r
	}
	for _, target := range []string{"direct", "streamgate"} {
		if _, ok := rows[target]; !ok {
			t.Errorf("no %s row in %s", target, out)
		}
	}
	for target, r := range rows {
		if len(r.Failures) > 0 || r.EchoErrors > 0 {
			t.Errorf("%s: failures %q, %d echo errors", target, r.Failures, r.EchoErrors)
		}
		if r.ThroughputRatio == nil || *r.ThroughputRatio <= 0 || r.AddedP50us == nil {
			t.Errorf("%s: no throughput ratio or added latency", target)
		}
		if target == "direct" {
			continue
		}
		if _, ok := res.Meta.Versions[target]; !ok {
			t.Errorf("%s: no version in meta", target)
		}
		if r.CPUPer100k == nil || *r.CPUPer100k <= 0 {
			t.Errorf("%s: no CPU per 100k messages", target)
		}
		if r.IdleKiBPerConn == nil || r.IdleAlive != r.IdleWanted || r.IdleWanted == 0 {
			t.Errorf("%s: idle: %v KiB/conn, %d of %d alive", target, r.IdleKiBPerConn, r.IdleAlive, r.IdleWanted)
		}
	}
	if s := rows["streamgate"].SSE; s == nil || s.Connected != s.Conns || s.Lost != 0 || s.KiBWarm == nil || s.KiBEnd == nil {
		t.Errorf("streamgate SSE bridge row: %+v", s)
	}

	md, err := exec.CommandContext(ctx, "bash", "compare.sh", "--report", out, "--markdown").Output()
	if err != nil {
		t.Fatalf("compare.sh --report: %v", err)
	}
	for _, want := range []string{"| streamgate |", "Run on ", "Linux ", "× direct"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}
