// The API client: JSON calls with the user's token in a header, and errors that speak to the user.

import { auth, toLogin } from "./auth.js";
import { saveFile } from "./dom.js";

const API = "/api/v1";

/** An error answer of the API: status, code, message (for the user), and the field it is
 *  about. ``status`` 0: the server could not be reached. ``serverMessage``: the server's own
 *  words (written for API clients: they may name SDK calls). ``details``: the error's details
 *  object (``{}`` when none), such as a 422's ``problems`` list. */
export class ApiError extends Error {
  constructor(status, body, path = "") {
    const err = (body && body.error) || {};
    super(userMessage(status, err, path));
    this.status = status;
    this.code = err.code || "";
    this.field = err.field || "";
    this.serverMessage = err.message || "";
    this.details = err.details && typeof err.details === "object" ? err.details : {};
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

/** The URL of an API path; empty query values are left out, lists are joined with commas. */
export function apiUrl(path, query) {
  const u = new URL(API + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "") continue;
    u.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  return u;
}

/** Request headers with the user's token (never put in a URL). */
export function authHeaders(extra) {
  const h = { ...(extra || {}) };
  if (auth.token) h.Authorization = `Bearer ${auth.token}`;
  return h;
}

/** Call the API; JSON in, JSON out. A 401 signs the user out. */
export async function api(method, path, { json, query, signal, body, contentType } = {}) {
  const init = { method, headers: authHeaders(), signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    if (contentType) init.headers["Content-Type"] = contentType;
    init.body = body;
  }
  const r = await send(apiUrl(path, query), init);
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
  const r = await send(apiUrl(path, query), { headers: authHeaders() });
  if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null), path);
  saveFile(await r.blob(), name);
}
