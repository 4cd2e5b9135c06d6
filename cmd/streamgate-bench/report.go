package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
)

// benchMeta describes a comparison run: when, on what, with which settings.
// examples/bench/compare.sh writes it as the first raw record.
type benchMeta struct {
	Date       string            `json:"date"`
	Nproc      int               `json:"nproc"`
	CPUModel   string            `json:"cpu_model"`
	Kernel     string            `json:"kernel"`
	OS         string            `json:"os"`
	Commit     string            `json:"commit"`
	Versions   map[string]string `json:"versions"` // target -> version
	Rounds     int               `json:"rounds"`
	Seconds    float64           `json:"seconds"`    // each echo run
	EchoConns  int               `json:"echo_conns"` // throughput workload
	EchoSize   int               `json:"echo_size"`
	LatSize    int               `json:"lat_size"` // latency workload, 1 conn
	IdleConns  int               `json:"idle_conns"`
	IdleHold   float64           `json:"idle_hold_s"`
	IdleProcs  int               `json:"idle_procs"`
	Workers    string            `json:"workers"`                  // "auto" or a count, for every proxy
	LoadBefore string            `json:"loadavg_before,omitempty"` // 1, 5, 15 min
	LoadAfter  string            `json:"loadavg_after,omitempty"`
	SSEConns   int               `json:"sse_conns,omitempty"`
	SSERate    float64           `json:"sse_rate,omitempty"`
	SSESize    int               `json:"sse_size,omitempty"`
	SSEWarmup  float64           `json:"sse_warmup_s,omitempty"`
	SSEHold    float64           `json:"sse_hold_s,omitempty"`
	Quick      bool              `json:"quick,omitempty"`
	Notes      []string          `json:"notes,omitempty"`
}

// rawRecord is one measurement (or the meta line) as compare.sh logs it.
type rawRecord struct {
	Kind   string        `json:"kind"` // meta | throughput | latency | idle | sse
	Round  int           `json:"round,omitempty"`
	Target string        `json:"target,omitempty"`
	Pair   string        `json:"pair,omitempty"` // of a direct run: the proxy measured right beside it
	Meta   *benchMeta    `json:"meta,omitempty"`
	Echo   *echoResult   `json:"echo,omitempty"`
	CPU    *float64      `json:"cpu_s,omitempty"` // proxy CPU seconds over the echo run
	Idle   *idleRecord   `json:"idle,omitempty"`
	SSE    *sseResult    `json:"sse,omitempty"`
	SSEMem *sseMemRecord `json:"sse_mem,omitempty"`
	Error  string        `json:"error,omitempty"` // the measurement failed: why
}

// sseMemRecord is the proxy's memory and CPU over one SSE run: VmRSS
// before the streams, at the end of the warm-up (WarmS seconds in) and
// near the end (EndS seconds in), and CPU seconds between the last two.
type sseMemRecord struct {
	RSSBefore int64   `json:"rss_kib_before"`
	RSSWarm   int64   `json:"rss_kib_warm"`
	RSSEnd    int64   `json:"rss_kib_end"`
	Rate      float64 `json:"rate"` // messages per second to each session
	WarmS     float64 `json:"warm_s"`
	EndS      float64 `json:"end_s"`
	CPU       float64 `json:"cpu_s"`
}

// idleRecord is one idle-memory measurement of a proxy.
type idleRecord struct {
	RSSBefore   int64   `json:"rss_kib_before"`
	RSSAfter    int64   `json:"rss_kib_after"`
	Wanted      int     `json:"wanted"`
	Established int     `json:"established"`
	Alive       int     `json:"alive"`
	HoldSeconds float64 `json:"hold_s"`
}

// targetSummary is one row of the comparison: medians over rounds, and
// medians of ratios and differences to the direct run paired with each.
type targetSummary struct {
	Target          string   `json:"target"`
	RTPerSec        *float64 `json:"rt_per_sec,omitempty"`
	ThroughputRatio *float64 `json:"throughput_ratio,omitempty"`
	RatioRange      *spread  `json:"throughput_ratio_range,omitempty"`
	LoadP99us       *float64 `json:"load_p99_us,omitempty"`
	P50us           *float64 `json:"p50_us,omitempty"`
	P99us           *float64 `json:"p99_us,omitempty"`
	AddedP50us      *float64 `json:"added_p50_us,omitempty"`
	AddedRange      *spread  `json:"added_p50_us_range,omitempty"`
	CPUPer100k      *float64 `json:"cpu_s_per_100k_msgs,omitempty"`
	CPURange        *spread  `json:"cpu_s_per_100k_msgs_range,omitempty"`
	IdleKiBPerConn  *float64 `json:"idle_kib_per_conn,omitempty"`
	IdleWanted      int      `json:"idle_wanted,omitempty"`
	IdleAlive       int      `json:"idle_alive_min,omitempty"` // fewest alive over rounds
	SSE             *sseRow  `json:"sse,omitempty"`
	EchoErrors      int      `json:"echo_errors"`
	Failures        []string `json:"failures,omitempty"`
}

// spread is the lowest and highest of a value over rounds.
type spread struct {
	Min float64 `json:"min"`
	Max float64 `json:"max"`
}

// sseRow is the SSE bridge workload's medians.
type sseRow struct {
	EventsPerSec float64 `json:"events_per_sec"`
	P50us        float64 `json:"p50_us"`
	P99us        float64 `json:"p99_us"`
	Lost         int64   `json:"lost"` // summed over rounds
	GapEvents    int     `json:"gap_events"`
	Connected    int     `json:"connected_min"`
	Conns        int     `json:"conns"`
	// KiBWarm and KiBEnd are the proxy's RSS growth per connected session
	// at WarmS and EndS seconds into the run; by then each session holds
	// about rate x seconds messages for replay.
	KiBWarm *float64 `json:"rss_kib_per_session_warm,omitempty"`
	KiBEnd  *float64 `json:"rss_kib_per_session_end,omitempty"`
	// KiBBase and KiBPerMessage are the line through those two points: a
	// session's RSS with an empty replay, and what each message it holds
	// for replay adds. They are estimates, for telling what a session
	// costs from what its replay does.
	KiBBase       *float64 `json:"rss_kib_per_session_base,omitempty"`
	KiBPerMessage *float64 `json:"rss_kib_per_replayed_message,omitempty"`
	Rate          float64  `json:"rate,omitempty"` // messages per second to each session
	WarmS         float64  `json:"warm_s,omitempty"`
	EndS          float64  `json:"end_s,omitempty"`
	CPUPer100k    *float64 `json:"cpu_s_per_100k_events,omitempty"`
}

// results is the machine-readable file compare.sh keeps.
type results struct {
	Meta    benchMeta       `json:"meta"`
	Summary []targetSummary `json:"summary"`
	Runs    []rawRecord     `json:"runs"`
}

// runReport turns compare.sh's raw records (JSON lines, or a results file
// written earlier) into a results file and a table (text, Markdown, or
// the short Markdown block README.md's Performance section shows).
func runReport(args []string, fs *flag.FlagSet) (any, error) {
	in := fs.String("in", "", "raw JSON lines from compare.sh, or a results JSON file")
	out := fs.String("json", "", "write the results JSON here")
	format := fs.String("format", "text", "table on stdout: text | markdown | readme | none")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(*in)
	if err != nil {
		return nil, err
	}
	res, err := loadResults(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", *in, err)
	}
	if *out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return nil, err
		}
	}
	switch *format {
	case "text":
		writeText(os.Stdout, res)
	case "markdown":
		writeMarkdown(os.Stdout, res)
	case "readme":
		writeReadme(os.Stdout, res)
	case "none":
	default:
		return nil, fmt.Errorf("unknown -format %q", *format)
	}
	return nil, nil
}

// loadResults reads a results file or raw records and (re)computes the
// summary from the runs.
func loadResults(data []byte) (results, error) {
	var res results
	if err := json.Unmarshal(data, &res); err == nil && res.Runs != nil {
		res.Summary = summarize(res.Runs) // a results file: recompute
		return res, nil
	}
	res = results{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var r rawRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return res, fmt.Errorf("line %d: %w", n, err)
		}
		if r.Kind == "meta" && r.Meta != nil {
			res.Meta = *r.Meta
			continue
		}
		res.Runs = append(res.Runs, r)
	}
	if err := sc.Err(); err != nil {
		return res, err
	}
	if len(res.Runs) == 0 {
		return res, errors.New("no measurements")
	}
	res.Summary = summarize(res.Runs)
	return res, nil
}

// targetOrder puts the baseline first and streamgate next.
var targetOrder = []string{"direct", "streamgate", "nginx", "haproxy", "caddy"}

// baselineKey finds the direct run a proxy's run is compared with: the one
// paired with it (measured right beside it), else the round's unpaired one.
type baselineKey struct {
	kind  string
	round int
	pair  string
}

// summarize computes one row per target.
func summarize(runs []rawRecord) []targetSummary {
	direct := map[baselineKey]*echoResult{}
	var targets []string
	for _, r := range runs {
		if !slices.Contains(targets, r.Target) {
			targets = append(targets, r.Target)
		}
		if r.Target == "direct" && r.Echo != nil && r.Error == "" {
			direct[baselineKey{r.Kind, r.Round, r.Pair}] = r.Echo
		}
	}
	slices.SortStableFunc(targets, func(a, b string) int { return rank(a) - rank(b) })
	var out []targetSummary
	for _, t := range targets {
		out = append(out, summarizeTarget(t, runs, direct))
	}
	return out
}

func rank(target string) int {
	if i := slices.Index(targetOrder, target); i >= 0 {
		return i
	}
	return len(targetOrder)
}

// summarizeTarget folds one target's rounds.
func summarizeTarget(t string, runs []rawRecord, direct map[baselineKey]*echoResult) targetSummary {
	s := targetSummary{Target: t}
	var rts, ratios, loadP99, p50, p99, added, cpu, idle []float64
	var sse []rawRecord
	for _, r := range runs {
		if r.Target != t {
			continue
		}
		if r.Error != "" {
			s.Failures = append(s.Failures, fmt.Sprintf("round %d %s: %s", r.Round, r.Kind, r.Error))
			continue
		}
		if r.Echo != nil {
			s.EchoErrors += r.Echo.Errors
		}
		base := direct[baselineKey{r.Kind, r.Round, r.Pair}]
		if t != "direct" && direct[baselineKey{r.Kind, r.Round, t}] != nil {
			base = direct[baselineKey{r.Kind, r.Round, t}]
		}
		switch {
		case r.Kind == "throughput" && r.Echo != nil:
			rts = append(rts, r.Echo.RTPerSec)
			loadP99 = append(loadP99, r.Echo.P99us)
			if base != nil && base.RTPerSec > 0 {
				ratios = append(ratios, r.Echo.RTPerSec/base.RTPerSec)
			}
			if r.CPU != nil && r.Echo.RoundTrips > 0 {
				cpu = append(cpu, *r.CPU/float64(2*r.Echo.RoundTrips)*1e5)
			}
		case r.Kind == "latency" && r.Echo != nil:
			p50 = append(p50, r.Echo.P50us)
			p99 = append(p99, r.Echo.P99us)
			if base != nil {
				added = append(added, r.Echo.P50us-base.P50us)
			}
		case r.Kind == "idle" && r.Idle != nil:
			in := r.Idle
			if in.Established > 0 {
				idle = append(idle, float64(in.RSSAfter-in.RSSBefore)/float64(in.Established))
			}
			if s.IdleWanted == 0 || in.Alive < s.IdleAlive {
				s.IdleAlive = in.Alive
			}
			s.IdleWanted = in.Wanted
		case r.Kind == "sse" && r.SSE != nil:
			sse = append(sse, r)
		}
	}
	s.RTPerSec, s.LoadP99us, s.P50us, s.P99us = median(rts), median(loadP99), median(p50), median(p99)
	s.CPUPer100k, s.CPURange, s.IdleKiBPerConn = median(cpu), spreadOf(cpu), median(idle)
	if t == "direct" {
		s.ThroughputRatio, s.AddedP50us = median(ratios), median(added) // 1 and 0
	} else {
		s.ThroughputRatio, s.RatioRange = median(ratios), spreadOf(ratios)
		s.AddedP50us, s.AddedRange = median(added), spreadOf(added)
	}
	s.SSE = summarizeSSERuns(sse)
	return s
}

func summarizeSSERuns(runs []rawRecord) *sseRow {
	if len(runs) == 0 {
		return nil
	}
	var eps, p50, p99, warm, end, cpu []float64
	row := &sseRow{Conns: runs[0].SSE.Conns, Connected: runs[0].SSE.Connected}
	for _, rec := range runs {
		r := rec.SSE
		eps, p50, p99 = append(eps, r.EventsPerSec), append(p50, r.P50us), append(p99, r.P99us)
		row.Lost += r.Lost
		row.GapEvents += r.GapEvents
		row.Connected = min(row.Connected, r.Connected)
		if m := rec.SSEMem; m != nil && r.Connected > 0 {
			n := float64(r.Connected)
			warm = append(warm, float64(m.RSSWarm-m.RSSBefore)/n)
			end = append(end, float64(m.RSSEnd-m.RSSBefore)/n)
			row.Rate, row.WarmS, row.EndS = m.Rate, m.WarmS, m.EndS
			if events := n * m.Rate * (m.EndS - m.WarmS); events > 0 {
				cpu = append(cpu, m.CPU/events*1e5)
			}
		}
	}
	row.EventsPerSec, row.P50us, row.P99us = *median(eps), *median(p50), *median(p99)
	row.KiBWarm, row.KiBEnd, row.CPUPer100k = median(warm), median(end), median(cpu)
	if held := row.Rate * (row.EndS - row.WarmS); row.KiBWarm != nil && held > 0 {
		perMsg := (*row.KiBEnd - *row.KiBWarm) / held
		base := *row.KiBWarm - perMsg*row.Rate*row.WarmS
		row.KiBPerMessage, row.KiBBase = &perMsg, &base
	}
	return row
}

// median returns nil for no values.
func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := slices.Sorted(slices.Values(v))
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return &m
}

// spreadOf returns nil for fewer than two values.
func spreadOf(v []float64) *spread {
	if len(v) < 2 {
		return nil
	}
	return &spread{slices.Min(v), slices.Max(v)}
}

// cell formats a median, a dash when there is none, with the spread over
// rounds in parentheses when there is one.
func cell(v *float64, sp *spread, format, sep string) string {
	if v == nil {
		return "—"
	}
	c := fmt.Sprintf(format, *v)
	if sp != nil {
		c += " (" + fmt.Sprintf(format, sp.Min) + sep + fmt.Sprintf(format, sp.Max) + ")"
	}
	return c
}

// idleCell is the idle column: KiB per connection, flagged when a
// connection did not answer after the hold.
func idleCell(s targetSummary) string {
	if s.IdleKiBPerConn == nil {
		return "—"
	}
	c := fmt.Sprintf("%.1f", *s.IdleKiBPerConn)
	if s.IdleAlive < s.IdleWanted {
		c += fmt.Sprintf(" (only %d/%d alive)", s.IdleAlive, s.IdleWanted)
	}
	return c
}

// writeText prints the table for a terminal.
func writeText(w io.Writer, res results) {
	m := res.Meta
	fmt.Fprintf(w, "streamgate vs peers: medians of %d round(s) (min..max); ratios to a direct run measured beside each\n", m.Rounds)
	fmt.Fprintf(w, "(a) echo %d conns x %d B for %gs  (b) echo 1 conn x %d B  (c) proxy CPU over (a)  (d) %d idle conns held %gs\n",
		m.EchoConns, m.EchoSize, m.Seconds, m.LatSize, m.IdleConns, m.IdleHold)
	if m.LoadBefore != "" {
		fmt.Fprintf(w, "load average before: %s, after: %s (%d cores)\n", m.LoadBefore, m.LoadAfter, m.Nproc)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\t(a) rt/s\t(a) x direct\t(a) p99 µs\t(b) p50 µs\t(b) +p50 µs\t(b) p99 µs\t(c) CPU-s/100k msgs\t(d) idle KiB/conn\t")
	for _, s := range res.Summary {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", s.Target,
			cell(s.RTPerSec, nil, "%.0f", ""), cell(s.ThroughputRatio, s.RatioRange, "%.2fx", ".."), cell(s.LoadP99us, nil, "%.0f", ""),
			cell(s.P50us, nil, "%.0f", ""), cell(s.AddedP50us, s.AddedRange, "%+.0f", ".."), cell(s.P99us, nil, "%.0f", ""),
			cell(s.CPUPer100k, s.CPURange, "%.2f", ".."), idleCell(s))
	}
	tw.Flush()
	for _, s := range res.Summary {
		if s.SSE != nil {
			fmt.Fprintf(w, "\n(e) SSE bridge, %s: %d streams (%d connected) x %g msgs/s x %d B: %.0f events/s, one-way p50 %.0f µs, p99 %.0f µs, %d lost, %d gap events\n",
				s.Target, s.SSE.Conns, s.SSE.Connected, m.SSERate, m.SSESize, s.SSE.EventsPerSec, s.SSE.P50us, s.SSE.P99us, s.SSE.Lost, s.SSE.GapEvents)
			if r := s.SSE; r.KiBWarm != nil {
				fmt.Fprintf(w, "    proxy RSS per session: %.1f KiB at %gs, %.1f KiB at %gs (each holding ~%.0f and ~%.0f messages for replay); CPU %s s per 100k events\n",
					*r.KiBWarm, r.WarmS, *r.KiBEnd, r.EndS, r.Rate*r.WarmS, r.Rate*r.EndS, cell(r.CPUPer100k, nil, "%.2f", ""))
				if r.KiBBase != nil {
					fmt.Fprintf(w, "    %s\n", replayLine(r, m.SSESize))
				}
			}
		}
	}
	writeProblems(w, res.Summary)
}

// writeProblems lists failed measurements and echo errors.
func writeProblems(w io.Writer, sum []targetSummary) {
	var lines []string
	for _, s := range sum {
		for _, f := range s.Failures {
			lines = append(lines, s.Target+": "+f)
		}
		if s.EchoErrors > 0 {
			lines = append(lines, fmt.Sprintf("%s: %d echo connection errors", s.Target, s.EchoErrors))
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintf(w, "\nProblems:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "- %s\n", l)
	}
}

// writeMarkdown prints RESULTS.md: the table with its date, machine and
// method, for README's Performance section to quote.
func writeMarkdown(w io.Writer, res results) {
	m := res.Meta
	fmt.Fprintln(w, "# streamgate vs nginx, HAProxy and Caddy")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "<!-- Generated by examples/bench/compare.sh --markdown; do not edit by hand. -->")
	fmt.Fprintln(w)
	writeRunLine(w, m)
	fmt.Fprintf(w, ".\n\nMedians of %d round(s), lowest and highest in parentheses. Each proxy's\nratio and added latency are to a direct run measured right beside it.\n\n", m.Rounds)
	fmt.Fprintf(w, "| target | echo throughput, %d conns × %s | × direct | added p50, 1 conn × %d B | CPU-s per 100k msgs | idle KiB per WebSocket (%d conns) |\n",
		m.EchoConns, sizeName(m.EchoSize), m.LatSize, m.IdleConns)
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|")
	for _, s := range res.Summary {
		added := cell(s.AddedP50us, s.AddedRange, "%+.0f", "…") + " µs"
		if s.Target == "direct" {
			added = cell(s.P50us, nil, "(p50 %.0f µs)", "")
		}
		fmt.Fprintf(w, "| %s | %s rt/s | %s | %s | %s | %s |\n", s.Target, cell(s.RTPerSec, nil, "%.0f", ""),
			cell(s.ThroughputRatio, s.RatioRange, "%.2f", "…"), added, cell(s.CPUPer100k, s.CPURange, "%.2f", "…"), idleCell(s))
	}
	writeSSELines(w, res)
	writeProblems(w, res.Summary)
	writeMethod(w, m)
}

// writeReadme writes the short block of README.md's Performance section:
// the run, then one row per proxy with its medians.
func writeReadme(w io.Writer, res results) {
	m := res.Meta
	fmt.Fprintln(w, "<!-- Generated by examples/bench/compare.sh --readme; do not edit by hand. -->")
	writeRunLine(w, m)
	fmt.Fprintf(w, "; medians of %d rounds.\n\n", m.Rounds)
	fmt.Fprintf(w, "| proxy | throughput, %d conns × %s | added p50, 1 conn × %d B | CPU-s per 100k msgs | idle KiB per WebSocket (%d conns) |\n",
		m.EchoConns, sizeName(m.EchoSize), m.LatSize, m.IdleConns)
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
	for _, s := range res.Summary {
		if s.Target == "direct" {
			continue
		}
		fmt.Fprintf(w, "| %s | %s× direct | %s µs | %s | %s |\n", s.Target, cell(s.ThroughputRatio, nil, "%.2f", ""),
			cell(s.AddedP50us, nil, "%+.0f", ""), cell(s.CPUPer100k, nil, "%.2f", ""), idleCell(s))
	}
	writeSSELines(w, res)
	writeProblems(w, res.Summary)
	writeNotes(w, m)
}

// writeRunLine writes when, where and what ran, without a final stop.
func writeRunLine(w io.Writer, m benchMeta) {
	fmt.Fprintf(w, "Run on %s on %d × %s, Linux %s, %s", m.Date, m.Nproc, m.CPUModel, m.Kernel, m.OS)
	if m.LoadBefore != "" {
		fmt.Fprintf(w, "; load average %s before, %s after", firstField(m.LoadBefore), firstField(m.LoadAfter))
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintf(w, "streamgate %s", m.Commit)
	if v := m.Versions["streamgate"]; v != "" {
		fmt.Fprintf(w, " (%s)", v)
	}
	var peers []string
	for _, t := range []string{"nginx", "haproxy", "caddy"} {
		if v, ok := m.Versions[t]; ok {
			peers = append(peers, fmt.Sprintf("%s %s", peerName(t), v))
		}
	}
	if len(peers) > 0 {
		fmt.Fprintf(w, " against Debian's %s", strings.Join(peers, ", "))
	}
}

// writeSSELines writes the SSE bridge workload's results.
func writeSSELines(w io.Writer, res results) {
	m := res.Meta
	for _, s := range res.Summary {
		if s.SSE != nil {
			fmt.Fprintf(w, "\nSSE bridge (%s only; the others have none): %d event streams × %g msgs/s × %d B → %.0f events/s, one-way latency p50 %.0f µs, p99 %.0f µs; %d messages lost.\n",
				s.Target, s.SSE.Conns, m.SSERate, m.SSESize, s.SSE.EventsPerSec, s.SSE.P50us, s.SSE.P99us, s.SSE.Lost)
			if r := s.SSE; r.KiBWarm != nil {
				fmt.Fprintf(w, "Proxy RSS per session: %.1f KiB at %g s and %.1f KiB at %g s into the run, when each session holds about %.0f and %.0f messages for replay; %s proxy CPU-s per 100k events.\n",
					*r.KiBWarm, r.WarmS, *r.KiBEnd, r.EndS, r.Rate*r.WarmS, r.Rate*r.EndS, cell(r.CPUPer100k, nil, "%.2f", ""))
				if r.KiBBase != nil {
					fmt.Fprintln(w, replayLine(r, m.SSESize))
				}
			}
		}
	}
}

// replayLine tells apart, from the line through the two RSS figures, what
// a session costs and what each message held for its replay adds.
func replayLine(r *sseRow, payload int) string {
	return fmt.Sprintf("A line through the two: %.1f KiB per session with an empty replay, plus %.2f KiB per message held, of which %.2f KiB is its payload.",
		*r.KiBBase, *r.KiBPerMessage, float64(payload)/1024)
}

// writeMethod writes how the numbers were measured, and the run's notes.
func writeMethod(w io.Writer, m benchMeta) {
	fmt.Fprintf(w, `
Method: everything on one machine over loopback. The load client, the proxy
and the upstream (%[1]s, gorilla/websocket) share the
cores, so absolute numbers are lower than across hosts; compare the ratios.
Every proxy is a fresh process per measurement with %[2]s, no TLS and no
per-connection logging. Throughput: closed-loop echo, each connection sends
and waits for its echo. CPU: utime+stime of the proxy's processes over the
throughput run, per 100k messages relayed (a round trip is 2). Idle memory:
VmRSS of the proxy's processes before and after %[3]d WebSockets (clients in
%[4]d processes on separate loopback addresses) held %[5]gs, every one
answering a message end to end afterwards. Raw numbers: results.json.
`, "`streamgate-bench upstream`", workersText(m.Workers), m.IdleConns, m.IdleProcs, m.IdleHold)
	writeNotes(w, m)
}

// writeNotes writes the run's notes (peers left out, settings of its
// own), a paragraph each.
func writeNotes(w io.Writer, m benchMeta) {
	for _, n := range m.Notes {
		fmt.Fprintf(w, "\n%s\n", n)
	}
}

func workersText(workers string) string {
	if workers == "auto" {
		return "one worker or thread per core (nginx `worker_processes auto`,\nHAProxy's default nbthread, GOMAXPROCS for streamgate and Caddy)"
	}
	return fmt.Sprintf("%s worker(s) or thread(s) (nginx `worker_processes %s`,\nHAProxy `nbthread %s`, GOMAXPROCS=%s for streamgate and Caddy)", workers, workers, workers, workers)
}

func peerName(t string) string {
	switch t {
	case "haproxy":
		return "HAProxy"
	case "caddy":
		return "Caddy"
	}
	return t
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}
