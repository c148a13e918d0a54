// The note above a session's details while a live stream (its status or its log) is not live.

import { h } from "../../lib/dom.js";

export function liveNote() {
  const el = h("p", { class: "live-note", role: "alert", hidden: true });
  // each stream's state (sse's onState); the note says when one is broken or refused
  const streams = { status: "open", log: "open" };
  const problems = {};
  const show = () => {
    const refused = Object.keys(streams).find((k) => streams[k] === "refused");
    const broken = Object.values(streams).includes("broken");
    el.hidden = !refused && !broken;
    el.textContent = refused
      ? `Live updates have stopped, so the status and log shown may be out of date. ${problems[refused]}`
      : broken
        ? "The live connection to the server is broken, so the status and log shown may be out of date. Reconnecting…"
        : "";
  };
  /** The ``onState`` of the stream ``name`` ("status" or "log"). */
  const onState = (name) => (state, error) => {
    streams[name] = state;
    if (error) problems[name] = error.message;
    show();
  };
  return { el, onState };
}
