// The dashboard's plumbing: the signed-in session, calls to the JSON API, DOM building and
// the live event stream. Screens import from here and never touch tokens themselves.

const SESSION_KEY = "switchboard.session";

/** The signed-in session ({access_token, refresh_token, user}) or null. */
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY));
  } catch {
    return null;
  }
}

/** Keeps a session answered by login, refresh or password reset. */
export function keepSession(s) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify({
    access_token: s.access_token,
    refresh_token: s.refresh_token,
    user: s.user,
  }));
}

/** Forgets the session (sign-out, or a refresh the server refused). */
export function dropSession() {
  sessionStorage.removeItem(SESSION_KEY);
}

/** What the signed-in user's role may do; the server checks again on every write. */
export function can(what) {
  const role = session()?.user?.role;
  if (what === "admin") return role === "owner" || role === "admin";
  if (what === "handle") return role === "owner" || role === "admin" || role === "agent";
  return false;
}

/** An API failure carrying the problem document's words. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem;
  }
}

function problemText(status, problem) {
  if (!problem) return `The server answered ${status}.`;
  const fields = (problem.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
  return [problem.detail || problem.title, fields].filter(Boolean).join(" — ");
}

let refreshing = null;

async function refresh() {
  const s = session();
  if (!s) return false;
  refreshing ??= fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: s.refresh_token }),
  }).then(async (r) => {
    if (!r.ok) return false;
    keepSession(await r.json());
    return true;
  }).catch(() => false).finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * Calls the API with the session's token. `body` is sent as JSON unless it is FormData.
 * A 401 refreshes the session once; a refused refresh sends the user to sign in.
 */
export async function api(method, path, body, retried = false) {
  const headers = {};
  const s = session();
  if (s) headers.authorization = `Bearer ${s.access_token}`;
  let payload;
  if (body instanceof FormData) {
    payload = body;
  } else if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body: payload });
  if (response.status === 401 && s && !retried) {
    if (await refresh()) return api(method, path, body, true);
    dropSession();
    location.hash = "#/login";
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON (a proxy's error page): the status says enough.
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

/** `path` with the defined, non-empty values of `params` as its query string. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * Builds an element: `h("button", {class: "x", onclick: f}, "Text", child)`. Text is always
 * set as text, never parsed as HTML, so customer words cannot inject markup.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Shows a short message in the corner; errors stay until dismissed. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toasts");
  const item = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    h("span", {}, message),
    h("button", { class: "link", "aria-label": "Dismiss", onclick: () => item.remove() }, "×"));
  box.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 4000);
}

/** Runs `work` for a button: disabled while it runs, errors shown as a toast. */
export async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } catch (e) {
    toast(e.message, "error");
    return undefined;
  } finally {
    button.disabled = false;
  }
}

/** A labelled form field; `input` is the control element. */
export function field(label, input, hint) {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input,
    hint ? h("small", {}, hint) : null);
}

/** The values of a form's named controls. */
export function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** Local date and time of an RFC 3339 timestamp. */
export function when(ts) {
  return ts ? new Date(ts).toLocaleString() : "—";
}

/** "2m 05s" from milliseconds. */
export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s` : `${s}s`;
}

/** A status word as a coloured badge. */
export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind || "none"}` }, text || "—");
}

/** A table with a header row; `rows` are arrays of cells. */
export function table(headers, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

/** Every event type `GET /v1/events` sends (SSE needs a listener per named event). */
const EVENT_KINDS = [
  "call.ringing", "call.started", "call.transcript", "call.agent_speaking", "call.barge_in",
  "call.tool_calls", "call.dtmf", "call.ended", "call.failed", "sms.received", "sms.sent",
  "conversation.takeover", "lead.updated", "document.status", "quota.exceeded",
];

function matches(types, kind) {
  return types.split(",").some((t) => t === kind || (t.endsWith("*") && kind.startsWith(t.slice(0, -1))));
}

/**
 * The tenant's live events, filtered by `types` (e.g. "call.*"). Opens the stream with a
 * single-use ticket (browsers cannot send headers on EventSource) and, when it drops,
 * reopens it with a fresh ticket from the last event seen, so nothing is missed.
 * `onStatus(connected)` tells whether the stream is up.
 */
export function subscribe(types, onEvent, onStatus = () => {}) {
  let source = null;
  let lastId = "";
  let closed = false;
  let retry = null;
  async function open() {
    if (closed) return;
    try {
      const { ticket } = await api("POST", "/v1/events/ticket");
      if (closed) return;
      source = new EventSource(withQuery("/v1/events", { ticket, types, last_event_id: lastId }));
      for (const kind of EVENT_KINDS.filter((k) => matches(types, k))) {
        source.addEventListener(kind, deliver);
      }
      source.onopen = () => onStatus(true);
      source.onerror = () => reopen();
      source.addEventListener("stream.reconnect", () => reopen());
    } catch {
      reopen();
    }
  }
  function deliver(message) {
    if (message.lastEventId) lastId = message.lastEventId;
    try {
      onEvent({ type: message.type, ...JSON.parse(message.data) });
    } catch {
      // A comment or an event that is not JSON carries nothing for screens.
    }
  }
  function reopen() {
    onStatus(false);
    source?.close();
    source = null;
    if (!closed && !retry) retry = setTimeout(() => { retry = null; open(); }, 2000);
  }
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    source?.close();
  };
}
