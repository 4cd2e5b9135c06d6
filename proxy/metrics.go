package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/streamgate/streamgate/bridge"
	"github.com/streamgate/streamgate/bridge/wsconn"
)

// metrics are the server's Prometheus collectors, registered on a registry
// of the server's own (never the global one).
type metrics struct {
	active      *prometheus.GaugeVec   // kind
	closed      *prometheus.CounterVec // kind, closed_by
	messages    *prometheus.CounterVec // kind, direction
	bytes       *prometheus.CounterVec // kind, direction
	dial        *prometheus.HistogramVec
	pingRTT     *prometheus.HistogramVec // leg
	rejected    *prometheus.CounterVec   // reason
	upstreamErr *prometheus.CounterVec   // status
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "streamgate_connections_active",
			Help: "Open proxied long-lived connections, by kind (ws, sse).",
		}, []string{"kind"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_connections_closed_total",
			Help: "Ended long-lived connections, by kind and by what closed them.",
		}, []string{"kind", "closed_by"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_messages_total",
			Help: "Relayed messages by kind and direction (up = client to upstream).",
		}, []string{"kind", "direction"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_message_bytes_total",
			Help: "Relayed message payload bytes by kind and direction (up = client to upstream).",
		}, []string{"kind", "direction"}),
		dial: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamgate_upstream_dial_seconds",
			Help:    "Time to open an upstream WebSocket (TCP, TLS and handshake), by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}, []string{"outcome"}),
		pingRTT: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "streamgate_ping_rtt_seconds",
			Help:    "WebSocket ping round-trip time, by leg (client, upstream).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"leg"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_rejected_total",
			Help: "Requests refused before proxying, by reason (origin, limit, handshake, draining).",
		}, []string{"reason"}),
		upstreamErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "streamgate_upstream_errors_total",
			Help: "Requests that could not reach the upstream, by status returned (502, 504).",
		}, []string{"status"}),
	}
	reg.MustRegister(m.active, m.closed, m.messages, m.bytes, m.dial, m.pingRTT, m.rejected, m.upstreamErr,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// bridgeMetrics returns the collectors the SSE bridges feed: the bridge's
// own streamgate_sse_* family, except that attached streams, their ends
// and the bridged messages and bytes are counted in the connection and
// message metrics under kind="sse"; and those of the
// bridges' upstream legs (ping round trips).
func (m *metrics) bridgeMetrics(reg *prometheus.Registry) (*bridge.Metrics, *wsconn.Metrics) {
	bm := bridge.NewMetrics(reg)
	for _, c := range []prometheus.Collector{bm.Streams, bm.StreamsClosed, bm.Messages, bm.MessageBytes} {
		reg.Unregister(c)
	}
	sse := prometheus.Labels{"kind": "sse"}
	bm.Streams = m.active.WithLabelValues("sse")
	bm.StreamsClosed = m.closed.MustCurryWith(sse)
	bm.Messages = m.messages.MustCurryWith(sse)
	bm.MessageBytes = m.bytes.MustCurryWith(sse)
	return bm, &wsconn.Metrics{UpstreamPingRTT: m.pingRTT.WithLabelValues("upstream")}
}

// relayMetrics returns the collectors a WebSocket relay feeds.
func (m *metrics) relayMetrics() *wsconn.Metrics {
	return &wsconn.Metrics{
		MsgsUp:          m.messages.WithLabelValues("ws", "up"),
		MsgsDown:        m.messages.WithLabelValues("ws", "down"),
		BytesUp:         m.bytes.WithLabelValues("ws", "up"),
		BytesDown:       m.bytes.WithLabelValues("ws", "down"),
		ClientPingRTT:   m.pingRTT.WithLabelValues("client"),
		UpstreamPingRTT: m.pingRTT.WithLabelValues("upstream"),
	}
}
