// What every page shares: the API client, the signed-in user and team, server-sent events
// over fetch (so the token goes in a header, never in a URL), a DOM builder, formatting.

const API = "/api/v1";
const TOKEN_KEY = "appyard.token";
const TOKEN_ID_KEY = "appyard.tokenId";
const TEAM_KEY = "appyard.team";

/** An error answer of the API: status, code, message (for the user), and the field it is
 *  about. ``status`` 0: the server could not be reached. ``serverMessage``: the server's own
 *  words (written for API clients: they may name SDK calls). */
export class ApiError extends Error {
  constructor(status, body, path = "") {
    const err = (body && body.error) || {};
    super(userMessage(status, err, path));
    this.status = status;
    this.code = err.code || "";
    this.field = err.field || "";
    this.serverMessage = err.message || "";
  }
}

/** What to tell the user of an error answer: the server's message, except where it speaks to
 *  a developer at a terminal (a token to create, an endpoint list) or says nothing. */
function userMessage(status, err, path) {
  if (status === 0) return "The appyard server cannot be reached. Check the connection, then try again.";
  if (status === 401 && path !== "/auth/login") {
    return "You are signed out: your sign-in has ended or was revoked. Sign in again.";
  }
  if (status === 404 && !err.field && /^No such endpoint/.test(err.message || "")) {
    return "This server does not offer this: it may run an older appyard than this page. Reload the page; if that does not help, ask your admin to update the server.";
  }
  if (err.message) return err.message;
  return status >= 500
    ? `The server could not answer (HTTP ${status}). Try again in a moment.`
    : `The server refused the request (HTTP ${status}).`;
}

/** ``fetch``, with a failure to reach the server as an ApiError (status 0) that says so. */
async function send(u, init) {
  try {
    return await fetch(u, init);
  } catch (e) {
    if (init.signal?.aborted) throw e;
    throw new ApiError(0, null);
  }
}

/** To the sign-in page; the page shown comes back after signing in (``?next=``). */
export function toLogin() {
  const raw = location.hash.replace(/^#/, "");
  if (raw.startsWith("/login")) return;
  location.hash = raw && raw !== "/" ? `#/login?next=${encodeURIComponent(raw)}` : "#/login";
}

export const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  get tokenId() {
    const v = localStorage.getItem(TOKEN_ID_KEY);
    return v ? Number(v) : null;
  },
  save(token, tokenId) {
    localStorage.setItem(TOKEN_KEY, token);
    if (tokenId) localStorage.setItem(TOKEN_ID_KEY, String(tokenId));
    else localStorage.removeItem(TOKEN_ID_KEY);
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_ID_KEY);
  },
};

function url(path, query) {
  const u = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "") continue;
    u.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  return u;
}

function headers(extra) {
  const h = { ...(extra || {}) };
  if (auth.token) h.Authorization = `Bearer ${auth.token}`;
  return h;
}

/** Call the API; JSON in, JSON out. A 401 signs the user out. */
export async function api(method, path, { json, query, signal, body, contentType } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    if (contentType) init.headers["Content-Type"] = contentType;
    init.body = body;
  }
  const r = await send(url(path, query), init);
  if (r.status === 204) return null;
  let data = null;
  const text = await r.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!r.ok) {
    if (r.status === 401 && path !== "/auth/login") {
      auth.clear();
      toLogin();
    }
    throw new ApiError(r.status, data, path);
  }
  return data;
}

/** Download an API resource (it needs the token header) as a file named ``name``. */
export async function download(path, query, name) {
  const r = await send(url(path, query), { headers: headers() });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null), path);
  const blob = await r.blob();
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}

/** A stream that says nothing this long is taken for dead (the server sends a keep-alive
 *  comment every 15 s), dropped and opened again. */
const SILENCE_MS = 40_000;

/**
 * Follow a server-sent events stream of the API. ``onEvent(type, data, id)`` gets each event
 * (data parsed as JSON). The stream is re-opened after a dropped connection (``query()`` gives
 * the query of each attempt, so a cursor can move on) until ``signal`` aborts or an ``end``
 * event comes. Resolves when it ends; a refusal (4xx) rejects with its ApiError.
 *
 * ``onState(state, error)`` hears how the connection is: ``"open"`` (connected: what comes is
 * live), ``"broken"`` (dropped, failed or silent: re-opening after a pause; ``error`` says why),
 * ``"ended"`` (the ``end`` event came) and ``"refused"`` (a 4xx: given up).
 */
export async function sse(path, { query, onEvent, onState, signal }) {
  const tell = (state, error = null) => onState?.(state, error);
  let failures = 0;
  while (!signal.aborted) {
    let ended = false;
    let why = null; // why this attempt is over without an end
    const conn = new AbortController(); // this attempt: aborted by the page or by silence
    const drop = () => conn.abort();
    signal.addEventListener("abort", drop);
    let silence = 0;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(() => {
        why = new Error("the server has sent nothing for a while");
        conn.abort();
      }, SILENCE_MS);
    };
    try {
      const q = typeof query === "function" ? query() : query;
      heard();
      const r = await fetch(url(path, q), {
        headers: headers({ Accept: "text/event-stream" }),
        signal: conn.signal,
      });
      if (!r.ok) {
        const err = new ApiError(r.status, await r.json().catch(() => null), path);
        if (r.status < 500) throw err;
        why = err;
      } else {
        failures = 0;
        tell("open");
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        let ev = { event: "message", data: [], id: null };
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          heard();
          buffer += value;
          let nl;
          while ((nl = buffer.indexOf("\n")) >= 0) {
            const line = buffer.slice(0, nl).replace(/\r$/, "");
            buffer = buffer.slice(nl + 1);
            if (line === "") {
              if (ev.data.length) {
                const data = JSON.parse(ev.data.join("\n"));
                if (ev.event === "end") ended = true;
                onEvent(ev.event, data, ev.id);
              }
              ev = { event: "message", data: [], id: null };
            } else if (!line.startsWith(":")) {
              const i = line.indexOf(":");
              const name = i < 0 ? line : line.slice(0, i);
              const val = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
              if (name === "event") ev.event = val;
              else if (name === "data") ev.data.push(val);
              else if (name === "id") ev.id = val;
            }
          }
          if (ended) {
            reader.cancel().catch(() => {});
            break;
          }
        }
        why ||= new Error("the connection was closed");
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError) {
        tell("refused", e);
        throw e;
      }
      why ||= e;
    } finally {
      clearTimeout(silence);
      signal.removeEventListener("abort", drop);
    }
    if (ended) {
      tell("ended");
      return;
    }
    failures += 1;
    tell("broken", why);
    await sleep(Math.min(250 * 2 ** failures, 4000), signal);
  }
}

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Build a DOM element: ``h("a", {href: "#/x", class: "btn"}, "text", child, ...)``.
 *  Strings become text nodes (never HTML); ``on*`` attributes take functions. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// -- the signed-in user and the current team -------------------------------------------------

export const session = {
  user: null, // UserInfo
  teams: [], // TeamInfo with the caller's role
  team: null, // the current TeamInfo
  workspaces: [], // of the current team
  async load() {
    this.user = await api("GET", "/users/me");
    this.teams = await api("GET", "/teams");
    const saved = Number(localStorage.getItem(TEAM_KEY));
    this.team = this.teams.find((t) => t.id === saved) || this.teams[0] || null;
    await this.loadWorkspaces();
  },
  async loadWorkspaces() {
    this.workspaces = this.team ? await api("GET", `/teams/${this.team.id}/workspaces`) : [];
  },
  async pickTeam(id) {
    this.team = this.teams.find((t) => t.id === Number(id)) || this.team;
    if (this.team) localStorage.setItem(TEAM_KEY, String(this.team.id));
    await this.loadWorkspaces();
  },
  get workspace() {
    return this.workspaces[0] || null;
  },
  /** Whether the user's role in the current team is at least ``need``. */
  can(need) {
    const rank = { viewer: 1, developer: 2, admin: 3 };
    const role = this.team?.role || "viewer";
    return rank[role] >= rank[need];
  },
};

// -- formatting ------------------------------------------------------------------------------

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function fmtDuration(fromIso, toIso) {
  if (!fromIso) return "–";
  const end = toIso ? new Date(toIso) : new Date();
  let s = Math.max(0, Math.round((end - new Date(fromIso)) / 1000));
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}

export const TERMINAL = new Set(["finished", "error", "stopped"]);
export const STATUSES = [
  "queued",
  "consumed",
  "started",
  "deployed",
  "terminating",
  "finished",
  "error",
  "stopped",
];

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status);
}

export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  const item = h("div", { class: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}

/** A message of an error for the page (an ApiError's message says what to do). */
export function errorBox(e) {
  return h("p", { class: "error", role: "alert" }, e instanceof Error ? e.message : String(e));
}
