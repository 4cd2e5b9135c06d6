package app

import (
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// hub is a set of clients that receive the same broadcasts. It has no
// goroutine of its own: broadcast never blocks, so it runs in the caller's.
type hub struct {
	mu      sync.Mutex
	clients map[*client]struct{}
}

func newHub() *hub {
	return &hub{clients: make(map[*client]struct{})}
}

func (h *hub) add(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients[c] = struct{}{}
}

func (h *hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

// broadcast queues m for every client. A client whose queue is full is
// removed and kicked with 1008 "too slow" rather than waited for.
func (h *hub) broadcast(m message) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !c.offer(m) {
			delete(h.clients, c)
		}
	}
}

// counterMessage returns the /ws/counter text message for tick n at time
// t: {"n":<n>,"t":"<t in RFC 3339, UTC>"}. The time has no characters
// that JSON needs to escape.
func counterMessage(n uint64, t time.Time) message {
	data := fmt.Appendf(nil, `{"n":%d,"t":"%s"}`, n, t.UTC().Format(time.RFC3339Nano))
	return message{typ: websocket.TextMessage, data: data}
}
