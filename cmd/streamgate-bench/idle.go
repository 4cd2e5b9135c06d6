package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// idleResult is the JSON line of an idle run.
type idleResult struct {
	Mode        string  `json:"mode"`
	URL         string  `json:"url"`
	Wanted      int     `json:"wanted"`
	Established int     `json:"established"`
	Alive       int     `json:"alive"`
	DialErrors  int     `json:"dial_errors"`
	RampSeconds float64 `json:"ramp_seconds"`
	HoldSeconds float64 `json:"hold_seconds"`
}

// runIdle opens conns WebSockets (ramped, spread over source addresses so
// ephemeral ports do not run out), holds them for hold, then sends one
// message on every connection and counts the echoes: a connection is alive
// only if it still carries data end to end. With -ready FILE it writes the
// file once all are open, and with -hold 0 it holds until SIGUSR1, so a
// script can measure the proxy in between.
func runIdle(args []string, fs *flag.FlagSet) (any, error) {
	url := fs.String("url", "ws://127.0.0.1:8080/", "WebSocket URL")
	conns := fs.Int("conns", 1000, "connections to open")
	sources := fs.String("sources", "127.0.0.1", "comma-separated local addresses to dial from")
	rate := fs.Int("rate", 2000, "connections opened per second")
	hold := fs.Duration("hold", 10*time.Second, "how long to hold them idle; 0 = until SIGUSR1 (Ctrl-C on Windows)")
	ready := fs.String("ready", "", "file to create once every connection is open")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	srcs := strings.Split(*sources, ",")
	dialers := make([]*websocket.Dialer, len(srcs))
	for i, s := range srcs {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return nil, fmt.Errorf("bad source address %q", s)
		}
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
		dialers[i] = &websocket.Dialer{NetDial: nd.Dial, HandshakeTimeout: 10 * time.Second,
			ReadBufferSize: 256, WriteBufferSize: 256}
	}
	res := idleResult{Mode: "idle", URL: *url, Wanted: *conns}
	cs := make([]*websocket.Conn, 0, *conns)
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(*rate, 1)))
	defer tick.Stop()
	for i := 0; i < *conns; i++ {
		<-tick.C
		c, _, err := dialers[i%len(dialers)].Dial(*url, nil)
		if err != nil {
			res.DialErrors++
			continue
		}
		cs = append(cs, c)
	}
	res.Established = len(cs)
	res.RampSeconds = time.Since(start).Seconds()
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	// Keep reading so that pings from the proxy are answered.
	var wg sync.WaitGroup
	echoes := make(chan struct{}, len(cs))
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
				echoes <- struct{}{}
			}
		}()
	}
	// Listen for the hold signal before announcing readiness: a signal
	// sent between the two would otherwise kill the process.
	signalled, stop := signal.NotifyContext(context.Background(), holdSignal())
	defer stop()
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte("ready\n"), 0o644); err != nil {
			return nil, err
		}
	}
	holdStart := time.Now()
	if *hold > 0 {
		time.Sleep(*hold)
	} else {
		<-signalled.Done()
	}
	res.HoldSeconds = time.Since(holdStart).Seconds()
	for _, c := range cs {
		_ = c.WriteMessage(websocket.TextMessage, []byte("alive?"))
	}
	timeout := time.After(30 * time.Second)
	for res.Alive < len(cs) {
		select {
		case <-echoes:
			res.Alive++
		case <-timeout:
			return res, nil
		}
	}
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
	return res, nil
}
