package bridge

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// Metrics are the collectors a Bridge feeds. Nil fields are skipped, and
// a nil *Metrics feeds nothing. The proxy may fill the fields with
// children of its own vectors (say, its connections gauge with kind="sse")
// or use NewMetrics.
type Metrics struct {
	// Sessions is the number of live sessions (open upstream legs).
	Sessions prometheus.Gauge
	// Streams is the number of SSE streams attached.
	Streams prometheus.Gauge
	// StreamsClosed counts ended streams by closed_by.
	StreamsClosed *prometheus.CounterVec
	// EventsSent counts events written to SSE clients, replays included.
	EventsSent prometheus.Counter
	// EventsReplayed counts events written on resume from the replay log.
	EventsReplayed prometheus.Counter
	// EventsLost counts events reported lost in gap events; a lost
	// session ({"lost":"unknown"}) counts in SessionsLost instead.
	EventsLost prometheus.Counter
	// SessionsLost counts resumes of sessions the bridge no longer knew.
	SessionsLost prometheus.Counter
	// SlowStreams counts streams dropped because their client could not
	// keep up.
	SlowStreams prometheus.Counter
	// Posts counts back-channel requests by HTTP status code.
	Posts *prometheus.CounterVec
	// DialSeconds observes upstream dial latency.
	DialSeconds prometheus.Observer
	// Messages and MessageBytes count messages and their payload bytes by
	// direction: "down", upstream messages taken into sessions; "up",
	// back-channel messages delivered to upstreams.
	Messages     *prometheus.CounterVec
	MessageBytes *prometheus.CounterVec
}

// flow is a Metrics' message counters of one direction, looked up once
// rather than by label for every message; its zero value counts nothing.
type flow struct {
	msgs, bytes prometheus.Counter
}

// flow returns the counters of direction dir ("up" or "down").
func (m *Metrics) flow(dir string) flow {
	var f flow
	if m != nil && m.Messages != nil {
		f.msgs = m.Messages.WithLabelValues(dir)
	}
	if m != nil && m.MessageBytes != nil {
		f.bytes = m.MessageBytes.WithLabelValues(dir)
	}
	return f
}

// add counts one message of n bytes.
func (f flow) add(n int) {
	if f.msgs != nil {
		f.msgs.Inc()
	}
	if f.bytes != nil {
		f.bytes.Add(float64(n))
	}
}

// NewMetrics creates the bridge's collectors, named streamgate_sse_*, and
// registers them with reg (nil: not registered). Call it once per
// registry: the same names cannot be registered twice.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgate_sse_sessions", Help: "Live SSE bridge sessions (open upstream WebSockets).",
		}),
		Streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "streamgate_sse_streams", Help: "SSE streams attached to a session.",
		}),
		StreamsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_sse_streams_closed_total", Help: "SSE streams ended, by what ended them.",
		}, []string{"closed_by"}),
		EventsSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgate_sse_events_sent_total", Help: "Events written to SSE clients, replays included.",
		}),
		EventsReplayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgate_sse_events_replayed_total", Help: "Events replayed to resuming SSE clients.",
		}),
		EventsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgate_sse_events_lost_total", Help: "Events reported lost to resuming SSE clients (evicted from the replay log).",
		}),
		SessionsLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgate_sse_sessions_lost_total", Help: "Resumes of sessions the bridge no longer knew.",
		}),
		SlowStreams: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "streamgate_sse_slow_streams_total", Help: "SSE streams dropped because the client could not keep up.",
		}),
		Posts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_sse_posts_total", Help: "Back-channel POSTs, by HTTP status code.",
		}, []string{"code"}),
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_sse_messages_total", Help: "Bridged messages by direction (up = back-channel to upstream, down = upstream to sessions).",
		}, []string{"direction"}),
		MessageBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_sse_message_bytes_total", Help: "Bridged message payload bytes by direction (up = back-channel to upstream, down = upstream to sessions).",
		}, []string{"direction"}),
	}
	dial := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "streamgate_sse_dial_seconds", Help: "Upstream WebSocket dial latency of new SSE sessions.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
	})
	m.DialSeconds = dial
	if reg != nil {
		reg.MustRegister(m.Sessions, m.Streams, m.StreamsClosed, m.EventsSent, m.EventsReplayed,
			m.EventsLost, m.SessionsLost, m.SlowStreams, m.Posts, dial, m.Messages, m.MessageBytes)
	}
	return m
}

func (m *Metrics) sessionStarted() {
	if m != nil && m.Sessions != nil {
		m.Sessions.Inc()
	}
}

func (m *Metrics) sessionEnded() {
	if m != nil && m.Sessions != nil {
		m.Sessions.Dec()
	}
}

func (m *Metrics) streamStarted() {
	if m != nil && m.Streams != nil {
		m.Streams.Inc()
	}
}

func (m *Metrics) streamEnded(by wsconn.ClosedBy, slow bool) {
	if m == nil {
		return
	}
	if m.Streams != nil {
		m.Streams.Dec()
	}
	if m.StreamsClosed != nil {
		m.StreamsClosed.WithLabelValues(string(by)).Inc()
	}
	if slow && m.SlowStreams != nil {
		m.SlowStreams.Inc()
	}
}

// eventsWritten counts n events written, replayed of them from the log.
func (m *Metrics) eventsWritten(n, replayed int) {
	if m == nil {
		return
	}
	if m.EventsSent != nil && n > 0 {
		m.EventsSent.Add(float64(n))
	}
	if m.EventsReplayed != nil && replayed > 0 {
		m.EventsReplayed.Add(float64(replayed))
	}
}

// gap counts a gap event: n lost events, or a lost session when n < 0.
func (m *Metrics) gap(n int64) {
	switch {
	case m == nil:
	case n < 0 && m.SessionsLost != nil:
		m.SessionsLost.Inc()
	case n > 0 && m.EventsLost != nil:
		m.EventsLost.Add(float64(n))
	}
}

func (m *Metrics) post(status int) {
	if m != nil && m.Posts != nil {
		m.Posts.WithLabelValues(strconv.Itoa(status)).Inc()
	}
}

func (m *Metrics) dialed(seconds float64) {
	if m != nil && m.DialSeconds != nil {
		m.DialSeconds.Observe(seconds)
	}
}
