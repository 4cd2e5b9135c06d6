package app

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

const (
	// writeWait is the deadline of every write.
	writeWait = 10 * time.Second
	// pingPeriod is how often the writer pings the client.
	pingPeriod = 25 * time.Second
	// pongWait is how long the reader waits for a pong or a message.
	pongWait = pingPeriod + writeWait // Must be greater than pingPeriod.
	// closeGrace is how long the writer waits for the client to answer a
	// close frame before it closes the connection.
	closeGrace = time.Second
	// maxMessageSize is the read limit; larger messages get close 1009.
	maxMessageSize = 1 << 20
	// sendQueueSize bounds the messages waiting for a client's writer.
	sendQueueSize = 64
)

// message is one WebSocket data message.
type message struct {
	typ  int // websocket.TextMessage or websocket.BinaryMessage
	data []byte
}

// client is one WebSocket connection: readPump runs in the handler
// goroutine, writePump in a goroutine of its own, and only the writer
// writes (besides gorilla's replies to ping and close frames).
type client struct {
	conn *websocket.Conn
	send chan message // the bounded queue read by writePump

	kickOnce   sync.Once
	kicked     chan struct{} // closed by kick: the writer closes with kickCode
	kickCode   int
	kickReason string

	writerDone chan struct{} // closed when writePump has returned
	// closeCode and closeReason are the close frame the writer sent, if
	// any; written by the writer, read after writerDone.
	closeCode   int
	closeReason string
}

func newClient(conn *websocket.Conn) *client {
	return &client{
		conn:       conn,
		send:       make(chan message, sendQueueSize),
		kicked:     make(chan struct{}),
		writerDone: make(chan struct{}),
	}
}

// offer queues m without waiting. If the queue is full the client is too
// slow: it is kicked with 1008 and offer returns false.
func (c *client) offer(m message) bool {
	select {
	case c.send <- m:
		return true
	default:
		c.kick(websocket.ClosePolicyViolation, "too slow")
		return false
	}
}

// queue queues m, waiting for room (back-pressure on the sender), unless
// the writer is closing or gone, or shutdown is closed.
func (c *client) queue(m message, shutdown <-chan struct{}) {
	select {
	case c.send <- m:
	case <-c.kicked:
	case <-shutdown:
	case <-c.writerDone:
	}
}

// kick makes the writer close the connection with code and reason. Only the
// first call counts. Safe from any goroutine.
func (c *client) kick(code int, reason string) {
	c.kickOnce.Do(func() {
		c.kickCode, c.kickReason = code, reason
		close(c.kicked)
	})
}

// sentClose reports the close frame the writer sent. Call it only after
// writerDone is closed.
func (c *client) sentClose() (code int, reason string, ok bool) {
	return c.closeCode, c.closeReason, c.closeCode != 0
}

// readPump reads messages until the connection fails or closes, passing
// each to onMessage if it is not nil, and returns the error that ended it.
// Reading also processes ping, pong and close frames.
func (c *client) readPump(onMessage func(*client, message)) error {
	c.conn.SetReadLimit(maxMessageSize)
	extend := func() error { return c.conn.SetReadDeadline(time.Now().Add(pongWait)) }
	if err := extend(); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	c.conn.SetPongHandler(func(string) error { return extend() })
	for {
		typ, data, err := c.conn.ReadMessage()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if err := extend(); err != nil {
			return fmt.Errorf("set read deadline: %w", err)
		}
		if onMessage != nil {
			onMessage(c, message{typ: typ, data: data})
		}
	}
}

// writePump writes queued messages and pings until the client is kicked,
// shutdown is closed (close 1001), the reader is done or a write fails.
// It closes the connection when it returns, which also ends the reader.
func (c *client) writePump(shutdown, readerDone <-chan struct{}) {
	ticker := time.NewTicker(pingPeriod)
	defer func() {
		ticker.Stop()
		_ = c.conn.Close()
		close(c.writerDone)
	}()
	for {
		select {
		case m := <-c.send:
			if err := c.write(m); err != nil {
				return
			}
		case <-ticker.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		case <-c.kicked:
			c.closeHandshake(c.kickCode, c.kickReason, readerDone)
			return
		case <-shutdown:
			c.closeHandshake(websocket.CloseGoingAway, "server shutting down", readerDone)
			return
		case <-readerDone:
			return
		}
	}
}

func (c *client) write(m message) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(writeWait)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if err := c.conn.WriteMessage(m.typ, m.data); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// closeHandshake sends a close frame and waits up to closeGrace for the
// client's reply, which ends the reader.
func (c *client) closeHandshake(code int, reason string, readerDone <-chan struct{}) {
	frame := websocket.FormatCloseMessage(code, reason)
	err := c.conn.WriteControl(websocket.CloseMessage, frame, time.Now().Add(writeWait))
	if errors.Is(err, websocket.ErrCloseSent) {
		return // The client closed first and gorilla has replied.
	}
	if err != nil {
		return
	}
	c.closeCode, c.closeReason = code, reason
	timer := time.NewTimer(closeGrace)
	defer timer.Stop()
	select {
	case <-readerDone:
	case <-timer.C:
	}
}
