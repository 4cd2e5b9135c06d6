package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// sseResult is the JSON line of an sse run.
type sseResult struct {
	Mode         string  `json:"mode"`
	URL          string  `json:"url"`
	Conns        int     `json:"conns"`
	Connected    int     `json:"connected"` // streams that answered 200 text/event-stream
	Seconds      float64 `json:"seconds"`
	Events       int64   `json:"events"` // timestamped message events received after the warm-up
	EventsPerSec float64 `json:"events_per_sec"`
	P50us        float64 `json:"p50_us"` // one-way: upstream send to client parse
	P99us        float64 `json:"p99_us"`
	MaxUS        float64 `json:"max_us"`
	Lost         int64   `json:"lost"`       // sequence numbers skipped within a stream
	GapEvents    int     `json:"gap_events"` // `event: gap` the bridge announced
	Closed       int     `json:"closed"`     // streams that got `event: close` or ended early
	Errors       int     `json:"errors"`     // dial errors and bad responses
}

// sseStats is what one stream saw.
type sseStats struct {
	from      time.Time // latencies count from here (after the warm-up)
	lat       []time.Duration
	lost      int64
	gapEvents int
	closed    bool
	err       error
}

// runSSE opens conns event streams (GET with Accept: text/event-stream,
// from the given source addresses) on a bridged route whose upstream runs
// `upstream -emit`, reads them for the duration, and reports delivery rate,
// one-way latency (sender and reader share the clock) and lost messages.
func runSSE(args []string, fs *flag.FlagSet) (any, error) {
	url := fs.String("url", "http://127.0.0.1:8080/sse/", "event stream URL of a bridged route")
	conns := fs.Int("conns", 100, "concurrent streams")
	sources := fs.String("sources", "127.0.0.1", "comma-separated local addresses to dial from")
	rate := fs.Int("rate", 1000, "streams opened per second")
	dur := fs.Duration("for", 10*time.Second, "how long to read, from the first stream's start")
	warmup := fs.Duration("warmup", 0, "leave out of the latency figures what arrives in this first part of the run (the ramp-up); losses still count")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	clients, err := sourceClients(*sources)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	stats := make([]sseStats, *conns)
	connected := make(chan struct{}, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(*rate, 1)))
	defer tick.Stop()
	for i := range stats {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats[i] = readSSE(ctx, clients[i%len(clients)], *url, connected, start.Add(*warmup))
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	return summarizeSSE(*url, stats, len(connected), elapsed, warmup.Seconds()), nil
}

// sourceClients returns one HTTP client per source address. Each stream
// holds its own connection; responses are never compressed.
func sourceClients(sources string) ([]*http.Client, error) {
	var out []*http.Client
	for _, s := range strings.Split(sources, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("bad source address %q", s)
		}
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
		out = append(out, &http.Client{Transport: &http.Transport{
			DialContext:           nd.DialContext,
			DisableCompression:    true,
			MaxIdleConnsPerHost:   -1,
			ResponseHeaderTimeout: 10 * time.Second,
		}})
	}
	return out, nil
}

// readSSE reads one event stream until ctx ends or the stream does.
func readSSE(ctx context.Context, c *http.Client, url string, connected chan<- struct{}, from time.Time) sseStats {
	st := sseStats{from: from}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		st.err = err
		return st
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.Do(req)
	if err != nil {
		st.err = err
		return st
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		st.err = fmt.Errorf("GET %s: %s, Content-Type %q", url, resp.Status, ct)
		return st
	}
	connected <- struct{}{}
	err = parseEvents(resp.Body, &st)
	if ctx.Err() == nil {
		st.closed = true // the stream ended before the run did
		if err != nil && !errors.Is(err, io.EOF) {
			st.err = err
		}
	}
	return st
}

// parseEvents reads SSE events (DESIGN.md, "SSE bridge wire protocol") into
// st until the stream ends: default events carry upstream messages, `gap`
// announces lost ones, `close` ends the stream.
func parseEvents(r io.Reader, st *sseStats) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var event string
	var data []byte
	var last uint64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0: // dispatch
			switch event {
			case "":
				if seq, sent, err := parseStamp(data); err == nil {
					if now := time.Now(); now.After(st.from) {
						st.lat = append(st.lat, now.Sub(sent))
					}
					if last != 0 && seq > last+1 {
						st.lost += int64(seq - last - 1)
					}
					last = max(last, seq)
				}
			case "gap":
				st.gapEvents++
			case "close":
				return io.EOF
			}
			event, data = "", data[:0]
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[len("event:"):]))
		case bytes.HasPrefix(line, []byte("data:")):
			d := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
			if len(data) > 0 {
				data = append(data, '\n')
			}
			data = append(data, d...)
		}
	}
}

// summarizeSSE folds the streams' stats into the result line.
func summarizeSSE(url string, stats []sseStats, connected int, elapsed, warmup float64) sseResult {
	res := sseResult{Mode: "sse", URL: url, Conns: len(stats), Connected: connected, Seconds: elapsed}
	var all []time.Duration
	for _, st := range stats {
		all = append(all, st.lat...)
		res.Lost += st.lost
		res.GapEvents += st.gapEvents
		if st.closed {
			res.Closed++
		}
		if st.err != nil {
			res.Errors++
		}
	}
	slices.Sort(all)
	res.Events = int64(len(all))
	if window := elapsed - warmup; window > 0 {
		res.EventsPerSec = float64(len(all)) / window // events are counted after the warm-up only
	}
	res.P50us, res.P99us = quantileUS(all, 0.5), quantileUS(all, 0.99)
	res.MaxUS = quantileUS(all, 1)
	return res
}
