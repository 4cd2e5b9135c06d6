/* streamgate client.js: StreamgateSocket, the WebSocket API over WebSocket
 * or else SSE + POST, with reconnects and resume. See bridge/clientjs.go. */
(function (g) {
'use strict';
var remembered = null; // the transport that worked on this page

function size(d) { return typeof d === 'string' ? d.length : d.byteLength || d.size || 0; }

class StreamgateSocket extends EventTarget {
  constructor(url, protocols, options) {
    super();
    var u = new URL(url, g.location.href);
    this.url = u.href;
    this._http = u.href.replace(/^ws/, 'http');
    this._wsURL = u.href.replace(/^http/, 'ws');
    this._protocols = protocols == null ? [] : [].concat(protocols);
    this._o = Object.assign({
      transport: 'auto', openTimeout: 5000, shortLived: 3000,
      minDelay: 500, maxDelay: 30000, maxRetries: 20,
      retryCodes: [1001, 1006, 1011, 1012, 1013, 1014], withCredentials: false
    }, options);
    this.readyState = this.bufferedAmount = this._tries = 0;
    this.protocol = this.extensions = '';
    this.binaryType = 'blob';
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    this._q = [];
    this._cred = this._o.withCredentials ? 'include' : 'same-origin';
    var t = this._o.transport;
    this._t = t === 'sse' ? t : t === 'websocket' ? 'ws' : remembered || 'ws';
    this._connect();
  }

  // the transport in use: "websocket" or "sse"
  get transport() { return this._t === 'ws' ? 'websocket' : 'sse'; }

  _fire(e) {
    var h = this['on' + e.type];
    if (typeof h === 'function') h.call(this, e);
    this.dispatchEvent(e);
  }

  _connect() {
    if (this.readyState > 1) return;
    if (this._t === 'ws') this._connectWS(); else this._connectSSE();
  }

  _up() {
    // the retry count resets only once the connection has stayed up: an
    // app that accepts and at once closes must still meet the backoff
    var me = this;
    clearTimeout(this._stable);
    this._stable = setTimeout(function () { me._tries = 0; }, this._o.shortLived);
    this._sseErrors = 0;
    if (this.readyState === 0) { this.readyState = 1; this._fire(new Event('open')); }
    else if (this._fresh) this._fire(new CustomEvent('gap', { detail: { lost: 'unknown' } }));
    this._fresh = false;
    this._flush();
  }

  // a transport failed before it was up: in auto mode, try the other
  _failed() {
    if (this._o.transport === 'auto' && !remembered) this._t = this._t === 'ws' ? 'sse' : 'ws';
    if (this._t === 'sse' && this._tries === 0) { this._tries++; this._connect(); return; }
    this._retry();
  }

  _retry(fresh) {
    if (this.readyState > 1) return;
    clearTimeout(this._stable);
    if (fresh) { this._fresh = true; this._last = null; }
    if (++this._tries > this._o.maxRetries) { this._end(1006, 'reconnecting gave up', false); return; }
    var d = Math.min(this._o.maxDelay, this._o.minDelay * Math.pow(2, this._tries - 1));
    this._timer = setTimeout(this._connect.bind(this), d / 2 + Math.random() * d / 2);
  }

  _end(code, reason, clean) {
    if (this.readyState === 3) return;
    this.readyState = 3; clearTimeout(this._timer);
    if (this._sock) { this._sock.onclose = this._sock.onerror = null; this._sock.close(); this._sock = null; }
    if (!clean) this._fire(new Event('error'));
    this._fire(new CloseEvent('close', { code: code, reason: reason, wasClean: clean }));
  }

  _connectWS() {
    var me = this, opened = 0, ws;
    try { ws = new WebSocket(this._wsURL, this._protocols); } catch (e) { this._failed(); return; }
    ws.binaryType = 'arraybuffer';
    this._sock = ws;
    var stall = setTimeout(function () {
      if (me._sock !== ws || opened) return;
      ws.onclose = null; ws.close(); me._sock = null; me._failed();
    }, this._o.openTimeout);
    ws.onopen = function () {
      clearTimeout(stall);
      me._opened = opened = Date.now(); me._early = [];
      me.protocol = ws.protocol; me._up();
    };
    ws.onmessage = function (e) {
      var d = e.data;
      me._fire(new MessageEvent('message', { data: d.byteLength >= 0 && me.binaryType === 'blob' ? new Blob([d]) : d, origin: e.origin }));
    };
    ws.onclose = function (e) {
      clearTimeout(stall);
      if (me._sock !== ws) return;
      me._sock = null;
      if (me.readyState === 2) { me._end(e.code, e.reason, e.wasClean); return; }
      var up = opened ? Date.now() - opened : -1;
      if (up >= me._o.shortLived) remembered = remembered || 'ws';
      if (up < 0) me._failed();
      else if (e.code === 1006 && up < me._o.shortLived && remembered !== 'ws') {
        // lost at once: resend what it may never have delivered
        me._early.forEach(function (d) { me.bufferedAmount += size(d); });
        me._q = me._early.concat(me._q); me._fresh = true; me._failed();
      }
      else if (me._o.retryCodes.indexOf(e.code) >= 0) me._retry(true);
      else me._end(e.code, e.reason, e.wasClean);
    };
  }

  _connectSSE() {
    var me = this, u = new URL(this._http);
    if (this._protocols.length) u.searchParams.set('sg_protocols', this._protocols.join(','));
    if (this._last) u.searchParams.set('lastEventId', this._last);
    var es = new EventSource(u.href, { withCredentials: this._cred === 'include' });
    this._sock = es;
    var on = function (t, f) { es.addEventListener(t, function (e) { if (me._sock === es) f(e); }); };
    var msg = function (e, data) {
      me._last = e.lastEventId;
      me._fire(new MessageEvent('message', { data: data, origin: e.origin, lastEventId: e.lastEventId }));
    };
    on('session', function (e) {
      var d = JSON.parse(e.data);
      if (d.session !== me._sid) me._last = d.session + '.0';
      me._sid = d.session; me._send = new URL(d.send, me._http).href;
      if (d.protocol) me.protocol = d.protocol;
      remembered = 'sse';
      me._up();
    });
    on('message', function (e) { msg(e, e.data); });
    on('binary', function (e) { msg(e, me._bin(e.data)); });
    on('gap', function (e) { me._fire(new CustomEvent('gap', { detail: JSON.parse(e.data) })); });
    on('close', function (e) {
      var d = JSON.parse(e.data);
      es.close(); me._sock = null;
      if (me._o.retryCodes.indexOf(d.code) >= 0) me._retry(true);
      else me._end(d.code, d.reason, true);
    });
    es.onerror = function () {
      if (me._sock !== es) return;
      // While CONNECTING, EventSource resumes by itself, at the server's
      // retry: interval; count those attempts so that maxRetries holds.
      if (es.readyState === 0 && me._sid && ++me._sseErrors <= me._o.maxRetries) return;
      es.close(); me._sock = null;
      if (!me._sid) me._failed(); // never up: try the other transport
      else if (es.readyState === 2 && me._sseErrors <= me._o.maxRetries) me._probe();
      else me._end(1006, 'reconnecting gave up', false);
    };
  }

  // a resume failed: 204 means the upstream closed the session; sg_probe
  // (not in DESIGN.md) gets the status alone, with no side effect
  _probe() {
    var me = this, u = new URL(this._http);
    u.searchParams.set('lastEventId', this._last);
    u.searchParams.set('sg_probe', '1');
    fetch(u.href, { headers: { Accept: 'text/event-stream' }, credentials: this._cred }).then(function (r) {
      if (r.body) r.body.cancel().catch(function () {});
      if (r.status === 204) me._end(1005, '', true);
      else if (r.status >= 400 && r.status < 500) me._end(1006, 'HTTP ' + r.status, false);
      else me._retry();
    }, function () { me._retry(); });
  }

  _bin(b64) {
    var s = atob(b64), a = new Uint8Array(s.length);
    for (var i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return this.binaryType === 'arraybuffer' ? a.buffer : new Blob([a]);
  }

  send(data) {
    if (this.readyState === 0) throw new DOMException('Still in CONNECTING state.', 'InvalidStateError');
    if (this.readyState !== 1) return;
    this._q.push(data); this.bufferedAmount += size(data); this._flush();
  }

  _flush() {
    var s = this._sock, d;
    if (this._t === 'sse') return this._pump();
    while (s && s.readyState === 1 && this._q.length) {
      d = this._q.shift(); this.bufferedAmount -= size(d); s.send(d);
      if (Date.now() - this._opened < this._o.shortLived) this._early.push(d);
    }
  }

  // one POST at a time keeps messages in order
  _pump() {
    var me = this, d = this._q[0];
    if (this._posting || d === undefined || !this._send || this.readyState !== 1) return;
    this._posting = true;
    var done = function (ok) {
      me._posting = false;
      if (ok) { me._q.shift(); me.bufferedAmount -= size(d); me._pump(); }
      else setTimeout(function () { me._pump(); }, me._o.minDelay);
    };
    var to = this._send;
    fetch(to, {
      method: 'POST', body: d, credentials: this._cred,
      headers: { 'Content-Type': typeof d === 'string' ? 'text/plain;charset=utf-8' : 'application/octet-stream' }
    }).then(function (r) {
      if (r.status === 404) { // the session is gone: resend with the next one
        me._posting = false;
        if (me._send !== to) me._pump(); // which may already be here
        return;
      }
      if (r.status >= 400 && r.status < 500) me._fire(new Event('error')); // refused
      done(r.status < 500);
    }, function () { done(false); });
  }

  close(code, reason) {
    if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) throw new DOMException('Invalid close code', 'InvalidAccessError');
    if (this.readyState > 1) return;
    this.readyState = 2; clearTimeout(this._timer);
    var s = this._sock;
    if (s && this._t === 'ws') s.close(code, reason);
    else this._end(code || 1000, reason || '', true); // the session expires later
  }
}

['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'].forEach(function (k, i) {
  StreamgateSocket[k] = StreamgateSocket.prototype[k] = i;
});
g.StreamgateSocket = StreamgateSocket;
})(window);
