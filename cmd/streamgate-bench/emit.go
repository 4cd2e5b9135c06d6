package main

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// stampMin is the smallest pushed message: two numbers and their spaces.
const stampMin = 48

// emitLoop pushes rate text messages per second on c until the peer goes
// away, each carrying its sequence number (from 1) and send time, padded to
// size bytes: "<seq> <unix ns> xxx...". The schedule is fixed from the
// start, so a late send is followed by catch-up sends, not a lower rate.
// Incoming messages are read and dropped.
func emitLoop(c *websocket.Conn, rate float64, size int) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()
	defer func() { c.Close(); <-done }()
	msg := make([]byte, 0, max(size, stampMin))
	interval := time.Duration(float64(time.Second) / rate)
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := time.Now()
	for seq := uint64(1); ; seq++ {
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
			select {
			case <-done:
				return
			case <-timer.C:
			}
		}
		msg = stamp(msg[:0], seq, time.Now(), size)
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if c.WriteMessage(websocket.TextMessage, msg) != nil {
			return
		}
		next = next.Add(interval)
	}
}

// stamp appends a pushed message to b.
func stamp(b []byte, seq uint64, at time.Time, size int) []byte {
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, at.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// parseStamp reads the sequence number and send time of a pushed message.
func parseStamp(msg []byte) (seq uint64, sent time.Time, err error) {
	s, rest, ok := bytes.Cut(msg, []byte{' '})
	t, _, ok2 := bytes.Cut(rest, []byte{' '})
	if !ok || !ok2 {
		return 0, time.Time{}, errors.New("not a timestamped message")
	}
	if seq, err = strconv.ParseUint(string(s), 10, 64); err != nil {
		return 0, time.Time{}, err
	}
	ns, err := strconv.ParseInt(string(t), 10, 64)
	if err != nil {
		return 0, time.Time{}, err
	}
	return seq, time.Unix(0, ns), nil
}
