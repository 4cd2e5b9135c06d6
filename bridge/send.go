package bridge

import (
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamgate/streamgate/bridge/wsconn"
)

// serveSend serves the back-channel, POST <path>?sg_session=<id>: the body
// is one message to the session's upstream (text for a text/* Content-Type,
// binary otherwise). 202 once it was written to the upstream socket; 403
// for a refused origin (or, with BindIP, another IP than the stream's);
// 408 for a body that took longer than BodyTimeout;
// 404 for an unknown or ended session; 413 for a body over the leg's
// MaxMessageSize; 400 for text that is not UTF-8; 503 when too many
// messages of the session are waiting; 502 when writing upstream failed.
// A POST whose client goes away while its message waits for the ones
// before it gives up: the message is not written.
func (b *Bridge) serveSend(w http.ResponseWriter, r *http.Request) {
	bodyRead := false
	status := b.send(w, r, &bodyRead)
	b.opts.Metrics.post(status)
	b.setCORS(w, r)
	if !bodyRead && r.ProtoMajor == 1 && r.ContentLength != 0 {
		// Refused before its body was read: close the connection rather
		// than have the server read (up to 256 KiB of) the body after
		// the handler to reuse it, before it even sends the answer. (On
		// HTTP/2 the server resets the stream's unread body by itself;
		// there, "Connection: close" would end every stream of the
		// connection with a GOAWAY.)
		w.Header().Set("Connection", "close")
	}
	if status == http.StatusAccepted {
		w.WriteHeader(status)
		return
	}
	http.Error(w, http.StatusText(status), status)
}

// send delivers the POSTed message and returns the status to answer with;
// it sets *bodyRead once it has started to read the body.
func (b *Bridge) send(w http.ResponseWriter, r *http.Request, bodyRead *bool) int {
	if !b.opts.CheckOrigin(r) {
		return http.StatusForbidden
	}
	if b.isClosing() {
		return http.StatusServiceUnavailable // going away, not an unknown session
	}
	// The session is looked up before a byte of the body is read: a POST
	// to a session that is not there (or not this client's) is answered
	// at once, whatever body it announces.
	var from string
	if b.opts.BindIP {
		from = b.opts.ClientIP(r)
	}
	sid := r.URL.Query().Get("sg_session")
	if !validSessionID(sid) {
		return http.StatusNotFound
	}
	switch err := b.store.CanSend(sid, from); {
	case errors.Is(err, errNoSession):
		return http.StatusNotFound
	case errors.Is(err, errWrongIP):
		return http.StatusForbidden
	}
	limit := b.opts.Leg.MaxMessageSize
	if r.ContentLength > limit {
		return http.StatusRequestEntityTooLarge
	}
	// A body trickled in byte by byte must not hold the handler: the
	// whole body has BodyTimeout to arrive.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(b.opts.BodyTimeout))
	*bodyRead = true
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &ne) && ne.Timeout():
		b.log.Warn().Str("client_ip", b.opts.ClientIP(r)).Dur("body_timeout", b.opts.BodyTimeout).
			Msg("back-channel POST body too slow; request cut off")
		return http.StatusRequestTimeout
	case err != nil:
		return http.StatusBadRequest
	}
	m := message{Binary: !isText(r.Header.Get("Content-Type")), Data: body}
	if !m.Binary && !utf8.Valid(body) {
		return http.StatusBadRequest
	}
	m.From = from
	err = b.store.Send(r.Context(), sid, m)
	switch {
	case err == nil:
		b.up.add(len(body))
		return http.StatusAccepted
	case errors.Is(err, errNoSession), errors.Is(err, wsconn.ErrLegClosing):
		return http.StatusNotFound
	case errors.Is(err, errWrongIP):
		return http.StatusForbidden
	case errors.Is(err, errBusy):
		return http.StatusServiceUnavailable
	case r.Context().Err() != nil:
		return statusClientClosed
	}
	if e := b.log.Debug(); e.Enabled() {
		e.Str("session", logID(sid)).Err(err).Msg("back-channel write failed")
	}
	return http.StatusBadGateway
}

// statusClientClosed is what a POST whose client went away while its
// message waited is counted as (nginx's 499 "client closed request"); no
// client reads it.
const statusClientClosed = 499

// isText reports whether a Content-Type is text/*.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt, _, _ = strings.Cut(contentType, ";")
	}
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(mt)), "text/")
}
