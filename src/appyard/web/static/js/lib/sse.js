// Server-sent events of the API, read over fetch (so the token goes in a header, never in a
// URL), re-opened after a dropped connection.

import { ApiError, apiUrl, authHeaders } from "./api.js";
import { sleep } from "./time.js";

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
      const r = await fetch(apiUrl(path, q), {
        headers: authHeaders({ Accept: "text/event-stream" }),
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
