/* Answer outbox: every save is kept in localStorage until the server has acknowledged it.
 *
 * Payloads hold the whole answer state plus cumulative telemetry, so only the newest
 * entry per case matters, and re-sending one (same idempotency key) is harmless: the
 * server treats a repeated key as a replay. A reload, a lost connection or a server
 * restart therefore loses nothing; pending entries are sent when any viewer page loads.
 * Each payload names the revision it was edited from (`base_revision`); a save built on a
 * revision another tab or device has since replaced is refused (409) with the newer answer.
 * Entries go in the order they were first queued: a case's submission reaches the server before
 * the next case's first save, which the server accepts only once the case before it is finished.
 */
(function (global) {
  "use strict";
  var PREFIX = "readerstudy.outbox.";

  function newKey() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2, 14);
  }

  function AnswerOutbox(csrfToken, onStatus) {
    this.csrfToken = csrfToken;
    this.onStatus = onStatus || function () {};
    this.inflight = null;
    this.delay = 1000;
    this.timer = null;
    this.waiters = [];
    this.lastReply = {};
  }

  AnswerOutbox.prototype.pending = function (token) {
    try { return JSON.parse(global.localStorage.getItem(PREFIX + token)); } catch (e) { return null; }
  };

  AnswerOutbox.prototype.put = function (token, url, payload) {
    var previous = this.pending(token);
    // A submission stays a submission even if a later autosave replaces the entry.
    if (previous && previous.payload.submit) payload.submit = true;
    payload.idempotency_key = newKey();
    // A newer state of a case still waiting keeps its place in the queue.
    var entry = { token: token, url: url, payload: payload,
                  queuedAt: previous ? previous.queuedAt : this.nextQueuedAt() };
    global.localStorage.setItem(PREFIX + token, JSON.stringify(entry));
    this.flush();
    return entry;
  };

  /* Now, or just after the newest entry: two entries queued in one millisecond keep their order. */
  AnswerOutbox.prototype.nextQueuedAt = function () {
    var self = this, top = 0;
    self.tokens().forEach(function (t) { var e = self.pending(t); if (e && e.queuedAt > top) top = e.queuedAt; });
    return Math.max(top + 1, Date.now());
  };

  /* Tokens with an entry waiting, oldest first. */
  AnswerOutbox.prototype.tokens = function () {
    var out = [];
    for (var i = 0; i < global.localStorage.length; i++) {
      var k = global.localStorage.key(i);
      if (k && k.indexOf(PREFIX) === 0) out.push(k.slice(PREFIX.length));
    }
    var self = this, order = {};
    out.forEach(function (t) { var e = self.pending(t); order[t] = e && e.queuedAt || 0; });
    return out.sort(function (a, b) { return order[a] - order[b]; });
  };

  /* Resolves with the server's reply for `token` once nothing is pending for it. */
  AnswerOutbox.prototype.whenSaved = function (token) {
    var self = this;
    return new Promise(function (resolve, reject) {
      self.waiters.push({ token: token, resolve: resolve, reject: reject });
      self.flush();
    });
  };

  AnswerOutbox.prototype._settle = function (token, ok, value) {
    this.waiters = this.waiters.filter(function (w) {
      if (w.token !== token) return true;
      (ok ? w.resolve : w.reject)(value);
      return false;
    });
  };

  AnswerOutbox.prototype.flush = function () {
    var self = this;
    if (self.inflight) return;
    var tokens = self.tokens();
    if (!tokens.length) {
      self.waiters.slice().forEach(function (w) { self._settle(w.token, true, self.lastReply[w.token]); });
      return;
    }
    var entry = self.pending(tokens[0]);
    if (!entry) { global.localStorage.removeItem(PREFIX + tokens[0]); return self.flush(); }
    self.inflight = entry;
    self.onStatus("saving");
    fetch(entry.url, {
      method: "POST", credentials: "same-origin", keepalive: true,
      headers: { "Content-Type": "application/json", "X-CSRFToken": self.csrfToken },
      body: JSON.stringify(entry.payload)
    }).then(function (response) {
      var json = (response.headers.get("Content-Type") || "").indexOf("application/json") === 0;
      return (json ? response.json() : Promise.resolve(null)).then(function (body) {
        return { status: response.status, body: body, redirected: response.redirected };
      });
    }).then(function (reply) {
      self.inflight = null;
      var acknowledged = reply.status === 200 && reply.body && reply.body.answer;
      var refused = reply.status >= 400 && reply.status < 500 && reply.body && reply.body.error;
      if (!acknowledged && !refused) {
        // Logged out, CSRF failure, proxy error, server restarting: keep the entry and retry.
        self.retry(reply.redirected || reply.status === 403 || reply.status === 401 ? "auth" : "offline");
        return;
      }
      var current = self.pending(entry.token);
      if (current && current.payload.idempotency_key === entry.payload.idempotency_key) {
        global.localStorage.removeItem(PREFIX + entry.token);
      } else if (current && acknowledged &&
                 current.payload.base_revision === entry.payload.base_revision) {
        // The newer entry was edited on top of the one just saved, here: it builds on that revision.
        current.payload.base_revision = reply.body.answer.revision;
        global.localStorage.setItem(PREFIX + entry.token, JSON.stringify(current));
      }
      self.delay = 1000;
      if (refused) {
        self.onStatus("rejected", reply.body.error, entry.token, reply.body);
        self._settle(entry.token, false, reply);
      } else {
        self.lastReply[entry.token] = reply;
        self.onStatus("saved", reply.body, entry.token);
        if (!self.pending(entry.token)) self._settle(entry.token, true, reply);
      }
      self.flush();
    }).catch(function () {
      self.inflight = null;
      self.retry("offline");
    });
  };

  AnswerOutbox.prototype.retry = function (why) {
    var self = this;
    self.onStatus(why);
    clearTimeout(self.timer);
    self.timer = setTimeout(function () { self.flush(); }, self.delay);
    self.delay = Math.min(self.delay * 2, 15000);
  };

  global.AnswerOutbox = AnswerOutbox;
})(window);
