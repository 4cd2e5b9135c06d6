package wsconn

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// legRecorder is a LegHandler that hands what it gets to the test.
type legRecorder struct {
	msgs chan legMsg
	end  chan LegEnd
}

type legMsg struct {
	binary bool
	p      []byte
}

func newLegRecorder() *legRecorder {
	return &legRecorder{msgs: make(chan legMsg, 1000), end: make(chan LegEnd, 1)}
}

func (r *legRecorder) Message(binary bool, p []byte) { r.msgs <- legMsg{binary, p} }
func (r *legRecorder) Ended(e LegEnd)                { r.end <- e }

// next returns the next message, failing the test after 5 seconds.
func (r *legRecorder) next(t *testing.T) legMsg {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case e := <-r.end:
		r.end <- e // for ended
		select {
		case m := <-r.msgs: // sent before the end; the select chose at random
			return m
		default:
		}
		t.Fatalf("the leg ended (%+v) before the next message", e)
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
	}
	return legMsg{}
}

// ended returns how the leg ended, failing the test after 10 seconds.
func (r *legRecorder) ended(t *testing.T) LegEnd {
	t.Helper()
	select {
	case e := <-r.end:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("the leg did not end within 10s")
	}
	return LegEnd{}
}

// dialLeg dials url with a Dialer from NewDialer, as the bridge does, and
// makes a Leg of it with opts and the Poller p (nil: a goroutine reads
// it). It checks that the leg went where p says it should.
func dialLeg(t *testing.T, url string, opts Options, p *Poller) *Leg {
	t.Helper()
	c, _, err := Dial(context.Background(), NewDialer(DialOptions{}), url, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts.Poller = p
	l := NewLeg(c, opts)
	if l.OnLoop() != (p != nil) {
		t.Fatalf("OnLoop() = %v with Poller %v", l.OnLoop(), p)
	}
	return l
}

// legPeer starts a WebSocket server that runs serve on each connection and
// returns a started Leg dialled to it, and what it reads.
func legPeer(t *testing.T, opts Options, p *Poller, serve func(*websocket.Conn)) (*Leg, *legRecorder) {
	t.Helper()
	var wg sync.WaitGroup
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}))
	l := dialLeg(t, "ws"+strings.TrimPrefix(srv.URL, "http"), opts, p)
	rec := newLegRecorder()
	l.Start(rec)
	t.Cleanup(func() {
		l.Stop()
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	return l, rec
}

// drain reads c until it fails.
func drain(c *websocket.Conn) {
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			return
		}
	}
}

func TestLegPingTimeout(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		release := make(chan struct{})
		_, rec := legPeer(t, Options{PingInterval: 20 * time.Millisecond, PongTimeout: 20 * time.Millisecond}, p, func(c *websocket.Conn) {
			<-release // never reads, so never answers a ping
		})
		defer close(release)
		end := rec.ended(t)
		if end.ClosedBy != ClosedByPingTimeout || end.Code != websocket.CloseAbnormalClosure || end.Err == nil {
			t.Errorf("got %+v, want ping_timeout, 1006 and an error", end)
		}
	})
}

type rttCounter struct{ n atomic.Int64 }

func (r *rttCounter) Observe(float64) { r.n.Add(1) }

func TestLegKeepalive(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		rtt := &rttCounter{}
		// The liveness window is 250ms; the peer stays silent for ten
		// pings, 500ms, answering pings only.
		opts := Options{PingInterval: 50 * time.Millisecond, PongTimeout: 200 * time.Millisecond,
			Metrics: &Metrics{UpstreamPingRTT: prometheus.Observer(rtt)}}
		_, rec := legPeer(t, opts, p, func(c *websocket.Conn) {
			pings := 0
			reply := c.PingHandler()
			done := make(chan struct{})
			c.SetPingHandler(func(data string) error {
				if pings++; pings == 10 {
					close(done)
				}
				return reply(data)
			})
			go func() {
				<-done
				_ = c.WriteMessage(websocket.TextMessage, []byte("still alive"))
			}()
			drain(c)
		})
		if m := rec.next(t); m.binary || string(m.p) != "still alive" {
			t.Fatalf("got %v %q, want the text message after 10 pings", m.binary, m.p)
		}
		if rtt.n.Load() == 0 {
			t.Error("no ping RTT observed")
		}
	})
}

func TestLegClose(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		got := make(chan string, 1)
		l, rec := legPeer(t, Options{}, p, func(c *websocket.Conn) {
			c.SetCloseHandler(func(code int, text string) error {
				got <- text
				return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, text), time.Now().Add(time.Second))
			})
			drain(c)
		})
		l.Close(websocket.CloseGoingAway, "bye")
		l.Close(websocket.CloseNormalClosure, "again") // only the first counts
		if err := l.WriteMessage(websocket.TextMessage, []byte("late")); !errors.Is(err, ErrLegClosing) {
			t.Errorf("write after Close: %v, want ErrLegClosing", err)
		}
		end := rec.ended(t)
		if end.Code != websocket.CloseGoingAway || end.Reason != "bye" || end.Err != nil {
			t.Errorf("got %+v, want the echo of 1001 bye", end)
		}
		if text := <-got; text != "bye" {
			t.Errorf("peer got reason %q", text)
		}
	})
}

// TestLegCloseTimeout checks that a peer that never answers our close
// frame is cut off after CloseTimeout.
func TestLegCloseTimeout(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		release := make(chan struct{})
		l, rec := legPeer(t, Options{CloseTimeout: 100 * time.Millisecond}, p, func(c *websocket.Conn) { <-release })
		defer close(release)
		l.Close(websocket.CloseGoingAway, "bye")
		if end := rec.ended(t); end.Code != websocket.CloseAbnormalClosure || end.Err == nil {
			t.Errorf("got %+v, want 1006 and an error", end)
		}
	})
}

// TestLegPeerClose checks that the peer's close frame is echoed and ends
// the leg with the peer's code, after the messages before it.
func TestLegPeerClose(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		echoed := make(chan int, 1)
		_, rec := legPeer(t, Options{}, p, func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "done"), time.Now().Add(time.Second))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				echoed <- ce.Code
			}
			close(echoed)
		})
		if m := rec.next(t); !m.binary || string(m.p) != "\x01\x02\x03" {
			t.Errorf("got %v %q", m.binary, m.p)
		}
		if end := rec.ended(t); end.ClosedBy != ClosedByUpstream || end.Code != 4000 || end.Reason != "done" || end.Err != nil {
			t.Errorf("got %+v, want upstream 4000 done", end)
		}
		if code := <-echoed; code != 4000 {
			t.Errorf("peer got back %d, want the echo of 4000", code)
		}
	})
}

func TestLegReadLimit(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		told := make(chan int, 1)
		_, rec := legPeer(t, Options{MaxMessageSize: 8}, p, func(c *websocket.Conn) {
			_ = c.WriteMessage(websocket.BinaryMessage, []byte("12345678"))
			_ = c.WriteMessage(websocket.BinaryMessage, []byte("123456789"))
			_, _, err := c.ReadMessage()
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				told <- ce.Code
			}
			close(told)
		})
		if m := rec.next(t); string(m.p) != "12345678" {
			t.Errorf("got %q, want the message at the limit", m.p)
		}
		if end := rec.ended(t); end.ClosedBy != ClosedByError || end.Code != websocket.CloseMessageTooBig {
			t.Errorf("got %+v, want error, 1009", end)
		}
		if code := <-told; code != websocket.CloseMessageTooBig {
			t.Errorf("peer was told %d, want 1009", code)
		}
	})
}

// TestLegRefusesBadFrames sends frames that break RFC 6455 by hand: the
// leg ends with the code the rule says, and tells the peer so.
func TestLegRefusesBadFrames(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
		code int
	}{
		{name: "masked", wire: appendFrame(nil, opText, []byte("hi"), true), code: websocket.CloseProtocolError},
		{name: "continuation first", wire: []byte{finBit | opContinuation, 1, 'x'}, code: websocket.CloseProtocolError},
		{name: "data inside a message", wire: []byte{opText, 1, 'x', finBit | opText, 1, 'y'}, code: websocket.CloseProtocolError},
		{name: "long ping", wire: append([]byte{finBit | opPing, 126, 0, 126}, make([]byte, 126)...), code: websocket.CloseProtocolError},
		{name: "RSV1", wire: []byte{finBit | 0x40 | opText, 1, 'x'}, code: websocket.CloseProtocolError},
		{name: "bad opcode", wire: []byte{finBit | 3, 0}, code: websocket.CloseProtocolError},
		{name: "text not UTF-8", wire: []byte{finBit | opText, 2, 0xc3, 0x28}, code: websocket.CloseInvalidFramePayloadData},
		{name: "text cut inside a character", wire: []byte{opText, 1, 0xc3, finBit | opContinuation, 1, 'a'}, code: websocket.CloseInvalidFramePayloadData},
		{name: "bad close code", wire: []byte{finBit | opClose, 2, 0x03, 0xe7}, code: websocket.CloseProtocolError}, // 999
	}
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				told := make(chan int, 1)
				url := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) {
					_, _ = c.Write(append([]byte{finBit | opText, 2, 'o', 'k'}, tt.wire...))
					told <- closeCodeFrom(br)
				})
				l := dialLeg(t, url, Options{}, p)
				rec := newLegRecorder()
				l.Start(rec)
				if m := rec.next(t); string(m.p) != "ok" {
					t.Errorf("got %q before the bad frame", m.p)
				}
				if end := rec.ended(t); end.ClosedBy != ClosedByError || end.Code != tt.code || end.Err == nil {
					t.Errorf("got %+v, want error, %d", end, tt.code)
				}
				if code := <-told; code != tt.code {
					t.Errorf("peer was told %d, want %d", code, tt.code)
				}
			})
		}
	})
}

// closeCodeFrom reads frames from br (a leg's frames: masked) until a
// close frame, and returns its code; 0 if none came.
func closeCodeFrom(br *bufio.Reader) int {
	var buf []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			return 0
		}
		buf = append(buf, b)
		h, complete, err := parseFrameHeader(buf)
		if err != nil || !complete || len(buf) < h.size+int(h.length) {
			continue
		}
		p := buf[h.size : h.size+int(h.length)]
		maskBytes(h.key, 0, p)
		if h.op == opClose && len(p) >= 2 {
			return int(p[0])<<8 | int(p[1])
		}
		buf = buf[:0]
	}
}

// TestLegKeepsFramesSentWithThe101 checks that frames an upstream writes
// with its 101 response reach the handler, as for the frame relay.
func TestLegKeepsFramesSentWithThe101(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		greeting := append(appendFrame(nil, opText, []byte("hello"), false), appendFrame(nil, opBinary, []byte("world"), false)...)
		url := rawUpstream(t, "\r\n", greeting, readUntilEOF)
		l := dialLeg(t, url, Options{}, p)
		defer l.Stop()
		rec := newLegRecorder()
		l.Start(rec)
		if m := rec.next(t); m.binary || string(m.p) != "hello" {
			t.Errorf("got %v %q, want text hello", m.binary, m.p)
		}
		if m := rec.next(t); !m.binary || string(m.p) != "world" {
			t.Errorf("got %v %q, want binary world", m.binary, m.p)
		}
	})
}

func TestLegConcurrentWrites(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		const writers, each = 8, 50
		got := make(chan int, 1)
		l, _ := legPeer(t, Options{WriteTimeout: time.Second}, p, func(c *websocket.Conn) {
			n := 0
			for n < writers*each {
				if _, _, err := c.ReadMessage(); err != nil {
					break
				}
				n++
			}
			got <- n
		})
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for range each {
					if err := l.WriteMessage(websocket.TextMessage, []byte("m")); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if n := <-got; n != writers*each {
			t.Errorf("peer got %d messages, want %d", n, writers*each)
		}
	})
}

// TestLegMessagesSizedToMessage checks that every message arrives whole,
// whatever its size and however the peer fragments it, and holds little
// more memory than its own bytes: the bridge keeps every message for
// replay.
func TestLegMessagesSizedToMessage(t *testing.T) {
	sizes := []int{0, 1, 64, 256, 300, 511, 512, 513, 5000, 70000, 300000}
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		_, rec := legPeer(t, Options{}, p, func(c *websocket.Conn) {
			for i, n := range sizes {
				msg := make([]byte, n)
				for j := range msg {
					msg[j] = byte(i + j)
				}
				// gorilla fragments a message at its 4 KiB write buffer;
				// a ping between the fragments must not disturb it.
				w, err := c.NextWriter(websocket.BinaryMessage)
				if err != nil {
					return
				}
				half := n / 2
				_, _ = w.Write(msg[:half])
				_ = c.WriteControl(websocket.PingMessage, []byte("p"), time.Now().Add(patientWrite))
				_, _ = w.Write(msg[half:])
				if w.Close() != nil {
					return
				}
			}
			drain(c)
		})
		for i, n := range sizes {
			m := rec.next(t)
			if len(m.p) != n {
				t.Fatalf("read %d bytes, want %d", len(m.p), n)
			}
			for j, b := range m.p {
				if b != byte(i+j) {
					t.Fatalf("message %d: byte %d is %d, want %d", i, j, b, byte(i+j))
				}
			}
			if limit := n + max(maxSpare, n/8); cap(m.p) > limit {
				t.Errorf("a %d-byte message holds %d bytes, want at most %d", n, cap(m.p), limit)
			}
		}
	})
}

// TestLegStopUnstarted checks that a leg dropped before Start closes its
// connection and calls no handler.
func TestLegStopUnstarted(t *testing.T) {
	forEachRelayMode(t, func(t *testing.T, p *Poller) {
		eof := make(chan error, 1)
		url := rawUpstream(t, "\r\n", nil, func(c net.Conn, br *bufio.Reader) {
			_, err := io.Copy(io.Discard, br)
			eof <- err
		})
		l := dialLeg(t, url, Options{PingInterval: time.Hour}, p)
		l.Close(websocket.CloseTryAgainLater, "too many sessions")
		l.Stop()
		l.Stop()
		select {
		case err := <-eof:
			if err != nil {
				t.Errorf("peer read ended with %v, want EOF", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the connection stayed open")
		}
	})
}
