package main

import (
	"flag"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// echoResult is the JSON line of an echo run.
type echoResult struct {
	Mode       string  `json:"mode"`
	URL        string  `json:"url"`
	Conns      int     `json:"conns"`
	Size       int     `json:"size"`
	Seconds    float64 `json:"seconds"`
	RoundTrips int64   `json:"round_trips"`
	RTPerSec   float64 `json:"rt_per_sec"`
	P50us      float64 `json:"p50_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	Errors     int     `json:"errors"`
}

// runEcho runs closed-loop request/response: each connection sends a
// message of size bytes and waits for its echo, for the duration.
func runEcho(args []string, fs *flag.FlagSet) (any, error) {
	url := fs.String("url", "ws://127.0.0.1:8080/", "WebSocket URL to load")
	conns := fs.Int("conns", 64, "concurrent connections")
	size := fs.Int("size", 1024, "message size in bytes")
	dur := fs.Duration("for", 10*time.Second, "how long to run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cs := make([]*websocket.Conn, *conns)
	for i := range cs {
		c, _, err := websocket.DefaultDialer.Dial(*url, nil)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", *url, err)
		}
		defer c.Close()
		cs[i] = c
	}
	msg := make([]byte, *size)
	lat := make([][]time.Duration, *conns)
	errs := make([]int, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	stopAt := start.Add(*dur)
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stopAt) {
				t0 := time.Now()
				if c.WriteMessage(websocket.BinaryMessage, msg) != nil {
					errs[i]++
					return
				}
				if _, _, err := c.ReadMessage(); err != nil {
					errs[i]++
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := echoResult{Mode: "echo", URL: *url, Conns: *conns, Size: *size, Seconds: elapsed,
		RoundTrips: int64(len(all)), RTPerSec: float64(len(all)) / elapsed}
	res.P50us, res.P99us, res.P999us = quantileUS(all, 0.5), quantileUS(all, 0.99), quantileUS(all, 0.999)
	for _, e := range errs {
		res.Errors += e
	}
	return res, nil
}

func quantileUS(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))].Nanoseconds()) / 1e3
}
