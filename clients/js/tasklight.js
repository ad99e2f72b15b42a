// tasklight.js: live task updates in the browser (or Node), over the notifier's WebSocket, plus
// small REST helpers. A dependency-free ES module, the `tasklight` package's main module
// (clients/js/); docs/tasklight-js.md documents it, docs/protocol.md the wire.

const FINAL_STATES = new Set(["completed", "failed", "canceled"]);
const GROUPS = {
  waiting: "pending",
  running: "pending",
  canceling: "pending",
  failed: "failed",
  canceled: "failed",
  completed: "finished",
};
// The protocol's numbers (close codes, resume and ping timings) come from one definition that
// the notifier and the Python client share (protocol.js is generated from it).
import {
  BACKOFF_INITIAL_MS,
  BACKOFF_MAX_MS,
  CloseCode,
  MAX_SINCE_ENTRIES,
  NO_RECONNECT,
  PING_INTERVAL_MS,
  PONG_TIMEOUT_MS,
  SINCE_WINDOW_MS,
} from "./protocol.js";

const CLOSE_UNAUTHORIZED = CloseCode.UNAUTHORIZED;
const CLOSE_NO_PONG = CloseCode.NO_PONG;
const CLOSE_OFFLINE = CloseCode.OFFLINE;
// The cookie the API sets at sign-in whose value cookie-authenticated writes send back.
const CSRF_COOKIE = "tasklight_csrf";
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** The value of a cookie of the page, or null. */
function readCookie(name, doc = globalThis.document) {
  const cookies = (doc && doc.cookie) || "";
  for (const part of cookies.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return null;
}

/** Whether a task state is final (the task will never change state again). */
export function isFinal(state) {
  return FINAL_STATES.has(state);
}

/** The dialog group of a task state: "pending", "failed" or "finished". */
export function groupOf(state) {
  return GROUPS[state];
}

/** An error from the REST API, carrying its RFC 9457 problem details. */
export class ProblemError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.name = "ProblemError";
    this.status = status;
    this.problem = problem || {};
  }
}

/** The notifier URL a page should use: a `tasklight-notifier` meta tag, else port 8001 of the page's host. */
export function defaultNotifierUrl(doc = globalThis.document, loc = globalThis.location) {
  const meta = doc && doc.querySelector && doc.querySelector('meta[name="tasklight-notifier"]');
  if (meta && meta.content) return meta.content;
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.hostname.includes(":") ? `[${loc.hostname}]` : loc.hostname}:8001/ws`;
}

/** One subscription: a set of task ids, or every task the user may see (`scope: "all"`). */
class Subscription {
  constructor(client, id, spec, handlers) {
    this.client = client;
    this.id = id;
    this.scope = spec.scope === "all" ? "all" : null;
    this.ids = new Set(spec.tasks || []);
    this.handlers = handlers;
    this.ready = false;
    this.closed = false;
  }

  /** Whether updates of `taskId` belong to this subscription. */
  matches(taskId) {
    return this.scope === "all" || this.ids.has(taskId);
  }

  /** Stop following; the callbacks are not called again. */
  close() {
    this.client._unsubscribe(this);
  }
}

/**
 * A connection to the notifier and the API. It keeps the newest version of every task it has
 * seen, drops stale updates, reconnects with backoff and jitter, and resumes its subscriptions.
 */
export class TaskLight {
  constructor(options = {}) {
    this.notifierUrl = options.notifierUrl || defaultNotifierUrl();
    this.apiBase = (options.apiBase ?? "/api/v1").replace(/\/$/, "");
    this.fetch = options.fetch || globalThis.fetch.bind(globalThis);
    this.backoffMs = { initial: BACKOFF_INITIAL_MS, max: BACKOFF_MAX_MS, ...(options.backoffMs || {}) };
    this.pingIntervalMs = options.pingIntervalMs ?? PING_INTERVAL_MS;
    this.pongTimeoutMs = options.pongTimeoutMs ?? PONG_TIMEOUT_MS;
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    // Credentials. By default the browser's session cookie (the notifier reads it in the
    // handshake, the API on every request; writes add the CSRF token). `token`: an API token,
    // sent as a bearer header and in an `auth` message. `tickets: true`: a notifier on another
    // site, which the cookie does not reach: a single-use ticket from the API per connection.
    this.token = options.token || null;
    this.tickets = Boolean(options.tickets);

    this.status = "idle";
    this._tasks = new Map(); // id -> newest task document
    this._versions = new Map(); // id -> newest version seen (kept after a delete: a tombstone)
    this._newestUpdate = null; // newest `updated_at` seen, ISO string
    this._subs = new Map(); // subscription id -> Subscription
    this._watchers = new Map(); // task id -> Set of callbacks
    this._listeners = new Map(); // event name -> Set of callbacks
    this._pings = new Map(); // ping id -> {resolve, reject, timer}
    this._seq = 0;
    this._socket = null;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._heartbeatTimer = null;
    this._wanted = false;
    this._onOnline = () => this._reconnectNow();
    // The browser knows before any ping does: say "reconnecting" at once.
    this._onOffline = () => this._abandon(CLOSE_OFFLINE, "offline");
    if (globalThis.addEventListener) {
      globalThis.addEventListener("online", this._onOnline);
      globalThis.addEventListener("offline", this._onOffline);
    }
  }

  // ---- events ---------------------------------------------------------------------------------

  /**
   * Listen to "status" ({status, attempt, delayMs}), "task" (task), "deleted" ({id}),
   * "error" (problem) or "unauthorized" (not signed in, or signed out: the notifier closed with
   * 4401 or the API answered 401). Returns a function that removes the listener.
   */
  on(event, callback) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(callback);
    return () => this._listeners.get(event)?.delete(callback);
  }

  _emit(event, payload) {
    for (const callback of [...(this._listeners.get(event) || [])]) {
      try {
        callback(payload);
      } catch (error) {
        console.error(`tasklight: a "${event}" listener threw`, error);
      }
    }
  }

  _setStatus(status, extra = {}) {
    if (this.status === status && !extra.delayMs) return;
    this.status = status;
    this._emit("status", { status, ...extra });
  }

  // ---- connection -----------------------------------------------------------------------------

  /** Open the connection (subscribing does it too); it stays up, reconnecting, until `close()`. */
  connect() {
    this._wanted = true;
    if (!this._socket && !this._reconnectTimer) this._open();
    return this;
  }

  /** Close the connection for good; subscriptions stay defined and resume on `connect()`. */
  close() {
    this._wanted = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._stopHeartbeat();
    if (this._socket) {
      const socket = this._socket;
      this._socket = null;
      socket.close(1000, "client closed");
    }
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener("online", this._onOnline);
      globalThis.removeEventListener("offline", this._onOffline);
    }
    this._setStatus("closed");
  }

  _open() {
    this._setStatus(this._attempt === 0 ? "connecting" : "reconnecting", {
      attempt: this._attempt,
    });
    if (this.tickets && !this.token) {
      this._opening = (this._opening || 0) + 1;
      const opening = this._opening;
      this._request("POST", "/ws-tickets").then(
        ({ ticket }) => {
          if (opening === this._opening && this._wanted && !this._socket) this._openSocket({ ticket });
        },
        (error) => {
          if (error instanceof ProblemError && error.status === 401) return; // "unauthorized" emitted
          console.warn("tasklight: no WebSocket ticket", error);
          if (this._wanted) this._scheduleReconnect();
        },
      );
      return;
    }
    this._openSocket(this.token ? { token: this.token } : null);
  }

  _openSocket(auth) {
    let socket;
    try {
      socket = new this.WebSocket(this.notifierUrl);
    } catch (error) {
      console.error("tasklight: cannot open the WebSocket", error);
      this._scheduleReconnect();
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      if (socket !== this._socket) return;
      // Sent first: the notifier reads it before any subscription.
      if (auth) socket.send(JSON.stringify({ type: "auth", ...auth }));
      this._attempt = 0;
      for (const sub of this._subs.values()) this._sendSubscribe(sub);
      this._startHeartbeat();
      this._setStatus("live");
    };
    socket.onmessage = (event) => {
      if (socket !== this._socket) return;
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("tasklight: a frame that is not JSON was ignored");
        return;
      }
      this._handle(message);
    };
    socket.onclose = (event) => {
      if (socket !== this._socket) return;
      this._socket = null;
      this._stopHeartbeat();
      for (const sub of this._subs.values()) sub.ready = false;
      if (event.code === CLOSE_UNAUTHORIZED || event.code === CloseCode.REVOKED) {
        // Not signed in (any more): reconnecting cannot help until someone signs in again.
        this._setStatus("unauthorized", { code: event.code, reason: event.reason });
        this._emit("unauthorized", { code: event.code, reason: event.reason });
        return;
      }
      if (NO_RECONNECT.includes(event.code) && event.code !== CloseCode.NORMAL) {
        // Refused for good (a frame too big, too many connections): say so, do not retry.
        this._setStatus("closed", { code: event.code, reason: event.reason });
        this._emit("error", { code: event.code, reason: event.reason });
        return;
      }
      if (this._wanted) this._scheduleReconnect(event.code);
    };
    socket.onerror = () => {
      // A close event always follows; reconnecting is decided there.
    };
  }

  _scheduleReconnect(code) {
    clearTimeout(this._reconnectTimer);
    const ceiling = Math.min(this.backoffMs.max, this.backoffMs.initial * 2 ** this._attempt);
    // "Equal jitter": half of the backoff is fixed, half random, so that clients dropped
    // together by a restarting notifier do not all come back at the same instant.
    const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this._attempt += 1;
    this._setStatus("reconnecting", { attempt: this._attempt, delayMs, code });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._wanted && !this._socket) this._open();
    }, delayMs);
  }

  _reconnectNow() {
    if (!this._wanted || this._socket) return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._open();
  }

  _send(message) {
    if (this._socket && this._socket.readyState === 1) {
      this._socket.send(JSON.stringify(message));
      return true;
    }
    return false;
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    if (!this.pingIntervalMs) return;
    this._heartbeatTimer = setInterval(() => {
      // A connection that a sleeping laptop or a dead proxy broke may not close by itself.
      this.ping(this.pongTimeoutMs).catch(() => this._abandon(CLOSE_NO_PONG, "no pong"));
    }, this.pingIntervalMs);
  }

  _abandon(code, reason) {
    const socket = this._socket;
    if (!socket) return;
    this._socket = null;
    this._stopHeartbeat();
    for (const sub of this._subs.values()) sub.ready = false;
    try {
      socket.close(code, reason);
    } catch {
      // Already closing.
    }
    if (this._wanted) this._scheduleReconnect(code);
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeatTimer);
    this._heartbeatTimer = null;
    for (const [id, pending] of this._pings) {
      clearTimeout(pending.timer);
      pending.reject(new Error("connection closed"));
      this._pings.delete(id);
    }
  }

  /** Send a ping; resolves with the round-trip time in milliseconds, rejects on timeout. */
  ping(timeoutMs = this.pongTimeoutMs) {
    const id = `p${++this._seq}`;
    return new Promise((resolve, reject) => {
      const sentAt = performance.now();
      if (!this._send({ type: "ping", id })) {
        reject(new Error("not connected"));
        return;
      }
      const timer = setTimeout(() => {
        this._pings.delete(id);
        reject(new Error("no pong"));
      }, timeoutMs);
      this._pings.set(id, { resolve: () => resolve(performance.now() - sentAt), reject, timer });
    });
  }

  // ---- subscriptions --------------------------------------------------------------------------

  /**
   * Follow tasks: `{tasks: [ids]}` or `{scope: "all"}`. Handlers (all optional):
   * `onTask(task)` for each newer version, `onDeleted(id)`, `onReady()` once the initial state
   * is in (again after each reconnect), `onError(problem)`. Returns the subscription
   * (`.close()` ends it).
   */
  subscribe(spec, handlers = {}) {
    const sub = new Subscription(this, `s${++this._seq}`, spec, handlers);
    this._subs.set(sub.id, sub);
    // What we already hold goes to the new subscriber first, as the server would send it.
    for (const task of this._tasks.values()) {
      if (sub.matches(task.id)) this._call(sub.handlers.onTask, task);
    }
    this.connect();
    if (this._socket && this._socket.readyState === 1) this._sendSubscribe(sub);
    return sub;
  }

  /**
   * Call `callback(task)` with the current and every newer version of one task (and with
   * `null` if it is deleted). Returns a function that stops watching.
   */
  watch(taskId, callback) {
    if (!this._watchers.has(taskId)) this._watchers.set(taskId, new Set());
    const callbacks = this._watchers.get(taskId);
    callbacks.add(callback);
    const covered = [...this._subs.values()].some((s) => s.ids.has(taskId));
    const sub = covered ? null : this.subscribe({ tasks: [taskId] });
    if (this._tasks.has(taskId)) this._call(callback, this._tasks.get(taskId));
    return () => {
      callbacks.delete(callback);
      if (callbacks.size === 0) this._watchers.delete(taskId);
      if (sub) sub.close();
    };
  }

  _sendSubscribe(sub) {
    const message = { type: "subscribe", id: sub.id };
    const since = {};
    let count = 0;
    if (sub.scope === "all") {
      message.scope = "all";
      if (this._newestUpdate) {
        message.since_ts = this._newestUpdate;
        const horizon = Date.parse(this._newestUpdate) - SINCE_WINDOW_MS;
        for (const task of this._tasks.values()) {
          if (count >= MAX_SINCE_ENTRIES) break;
          if (Date.parse(task.updated_at) >= horizon || !isFinal(task.state)) {
            since[task.id] = task.version;
            count += 1;
          }
        }
      }
    } else {
      message.tasks = [...sub.ids];
      for (const id of sub.ids) {
        if (this._versions.has(id) && count < MAX_SINCE_ENTRIES) {
          since[id] = this._versions.get(id);
          count += 1;
        }
      }
    }
    if (count > 0) message.since = since;
    sub.ready = false;
    this._send(message);
  }

  _unsubscribe(sub) {
    if (sub.closed) return;
    sub.closed = true;
    this._subs.delete(sub.id);
    this._send({ type: "unsubscribe", id: sub.id });
  }

  // ---- incoming messages ----------------------------------------------------------------------

  _handle(message) {
    switch (message.type) {
      case "task":
        this.ingest(message.task);
        break;
      case "deleted":
        this._forget(message.id);
        break;
      case "subscribed": {
        const sub = this._subs.get(message.id);
        if (sub) {
          sub.ready = true;
          this._call(sub.handlers.onReady);
        }
        break;
      }
      case "pong": {
        const pending = this._pings.get(message.id);
        if (pending) {
          clearTimeout(pending.timer);
          this._pings.delete(message.id);
          pending.resolve();
        }
        break;
      }
      case "error": {
        const sub = message.id && this._subs.get(message.id);
        if (sub && sub.handlers.onError) this._call(sub.handlers.onError, message.problem);
        else this._emit("error", message.problem);
        break;
      }
      case "unsubscribed":
      case "authenticated":
        break;
      default:
        console.warn("tasklight: unknown message type", message.type);
    }
  }

  /**
   * Take a task document from anywhere (a push, or a REST answer): kept and passed on to the
   * callbacks if it is newer than what is held; ignored otherwise. Returns whether it was newer.
   */
  ingest(task) {
    if (!task || !task.id) return false;
    const known = this._versions.get(task.id);
    if (known !== undefined && task.version <= known) return false;
    this._versions.set(task.id, task.version);
    this._tasks.set(task.id, task);
    if (!this._newestUpdate || Date.parse(task.updated_at) > Date.parse(this._newestUpdate)) {
      this._newestUpdate = task.updated_at;
    }
    for (const sub of this._subs.values()) {
      if (sub.matches(task.id)) this._call(sub.handlers.onTask, task);
    }
    for (const callback of [...(this._watchers.get(task.id) || [])]) this._call(callback, task);
    this._emit("task", task);
    return true;
  }

  _forget(taskId) {
    if (!this._tasks.has(taskId) && !this._watchers.has(taskId)) return;
    this._tasks.delete(taskId);
    for (const sub of this._subs.values()) {
      if (sub.matches(taskId)) this._call(sub.handlers.onDeleted, taskId);
    }
    for (const callback of [...(this._watchers.get(taskId) || [])]) this._call(callback, null);
    this._emit("deleted", { id: taskId });
  }

  _call(callback, ...args) {
    if (!callback) return;
    try {
      callback(...args);
    } catch (error) {
      console.error("tasklight: a callback threw", error);
    }
  }

  /** The newest version held of a task, or undefined. */
  task(taskId) {
    return this._tasks.get(taskId);
  }

  /** Every task held, newest first. */
  tasks() {
    return [...this._tasks.values()].sort((a, b) => (a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  }

  // ---- REST -----------------------------------------------------------------------------------

  async _request(method, path, body, headers = {}) {
    const init = { method, headers: { Accept: "application/json", ...headers } };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers["Content-Type"] = "application/json";
    }
    if (this.token) {
      init.headers.Authorization = `Bearer ${this.token}`;
    } else if (!SAFE_METHODS.has(method)) {
      // The session cookie goes with every request; only our own pages can read this one.
      const csrf = readCookie(CSRF_COOKIE);
      if (csrf) init.headers["X-CSRF-Token"] = csrf;
    }
    const response = await this.fetch(`${this.apiBase}${path}`, init);
    if (response.status === 204) return null;
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { detail: text };
    }
    if (response.status === 401) this._emit("unauthorized", { status: 401, problem: data });
    if (!response.ok) throw new ProblemError(response.status, data);
    return data;
  }

  /** Sign out of a cookie session (the web UI's) and close the connection. */
  async signOut() {
    try {
      await this._request("DELETE", "/session");
    } finally {
      this.close();
    }
  }

  /** Submit a task; resolves with the stored task (`waiting`). Options: ui, metadata, idempotencyKey. */
  async submit(name, args = {}, options = {}) {
    const body = { name, args };
    if (options.ui) body.ui = options.ui;
    if (options.metadata) body.metadata = options.metadata;
    const headers = options.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
    const task = await this._request("POST", "/tasks", body, headers);
    this.ingest(task);
    return task;
  }

  /** Read a task (and keep it, if newer). */
  async get(taskId) {
    const task = await this._request("GET", `/tasks/${encodeURIComponent(taskId)}`);
    this.ingest(task);
    return task;
  }

  /** A page of tasks: params as `GET /tasks` takes them (group, state, name, limit, cursor). */
  async list(params = {}) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined || value === null) continue;
      for (const item of [].concat(value)) query.append(key, item);
    }
    const qs = query.toString();
    const page = await this._request("GET", `/tasks${qs ? `?${qs}` : ""}`);
    for (const task of page.results) this.ingest(task);
    return page;
  }

  /** Cancel a task: a waiting one is canceled at once, a running one stops at its next checkpoint. */
  async cancel(taskId) {
    const task = await this._request("POST", `/tasks/${encodeURIComponent(taskId)}/cancel`);
    this.ingest(task);
    return task;
  }

  /**
   * Answer the question a task asked (`task.question`): `answer` is a choice's value or the
   * form's object; `question` its key, so that an answer meant for an earlier question is
   * refused (409). Resolves with the task, queued again to go on with the answer.
   */
  async answer(taskId, answer, { question } = {}) {
    const body = { answer };
    if (question) body.question = question;
    const task = await this._request("POST", `/tasks/${encodeURIComponent(taskId)}/answer`, body);
    this.ingest(task);
    return task;
  }

  /**
   * Delete a finished task (resolves with null), or cancel a pending one (resolves with the task,
   * now `canceled` or `canceling`).
   */
  async delete(taskId) {
    const task = await this._request("DELETE", `/tasks/${encodeURIComponent(taskId)}`);
    if (task) this.ingest(task);
    else this._forget(taskId);
    return task;
  }

  /** The state changes of a task, oldest first. */
  events(taskId) {
    return this._request("GET", `/tasks/${encodeURIComponent(taskId)}/events`);
  }

  /** Where a waiting page goes when the task has ended: {ready, state, next_url, flash}. */
  outcome(taskId) {
    return this._request("GET", `/tasks/${encodeURIComponent(taskId)}/outcome`);
  }

  /**
   * Resolve with the task once it is final (pushed, never polled); reject after `timeoutMs`.
   */
  waitFor(taskId, { timeoutMs = 0 } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const stop = this.watch(taskId, (task) => {
        if (task && isFinal(task.state)) {
          clearTimeout(timer);
          queueMicrotask(stop);
          resolve(task);
        }
      });
      if (timeoutMs) {
        timer = setTimeout(() => {
          stop();
          reject(new Error(`task ${taskId} did not finish within ${timeoutMs} ms`));
        }, timeoutMs);
      }
    });
  }

  /**
   * Resolve once none of the user's tasks is pending, as the notifier pushes it (a `scope: "all"`
   * subscription: its initial state, then every change); reject with `WaitTimeoutError` after
   * `timeoutMs`, or with the problem if the notifier refuses. The "wait for all tasks" step of an
   * end-to-end suite.
   */
  waitForAll({ timeoutMs = 0 } = {}) {
    return new Promise((resolve, reject) => {
      const pending = new Map();
      let ready = false;
      let done = false;
      let timer = null;
      let sub = null;
      const stopUnauthorized = this.on("unauthorized", (why) => finish(new ProblemError(401, why)));
      const finish = (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        stopUnauthorized();
        // Closed after the callback that finished returns: never from inside `subscribe`.
        queueMicrotask(() => sub && sub.close());
        if (error) reject(error);
        else resolve();
      };
      const settle = () => {
        if (ready && pending.size === 0) finish();
      };
      sub = this.subscribe(
        { scope: "all" },
        {
          onTask: (task) => {
            if (isFinal(task.state)) pending.delete(task.id);
            else pending.set(task.id, task);
            settle();
          },
          onDeleted: (id) => {
            pending.delete(id);
            settle();
          },
          onReady: () => {
            ready = true;
            settle();
          },
          onError: (problem) => finish(new ProblemError(problem?.status || 400, problem)),
        },
      );
      if (timeoutMs) timer = setTimeout(() => finish(new WaitTimeoutError(timeoutMs, [...pending.values()])), timeoutMs);
    });
  }
}

/** What `waitForAll` rejects with when time runs out: `pending` holds the tasks still pending. */
export class WaitTimeoutError extends Error {
  constructor(timeoutMs, pending) {
    const names = pending.map((t) => `${t.id} (${t.name}, ${t.state})`).join(", ");
    super(`still pending after ${timeoutMs} ms: ${names || "none"}`);
    this.name = "WaitTimeoutError";
    this.pending = pending;
  }
}

// ---- flash messages across a redirect ---------------------------------------------------------

const FLASH_KEY = "tasklight.flash";

/** Keep a flash message ({level, message}) for the next page this tab loads. */
export function setFlash(flash) {
  try {
    sessionStorage.setItem(FLASH_KEY, JSON.stringify(flash));
  } catch {
    // Storage may be disabled; the flash is a nicety.
  }
}

/** The flash message left by the previous page, once (it is removed). */
export function takeFlash() {
  try {
    const raw = sessionStorage.getItem(FLASH_KEY);
    sessionStorage.removeItem(FLASH_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}
