// Addresses from the server as links: only absolute http(s) ones become links; anything else
// (a ``javascript:`` address an older server stored, a relative path) stays text.

import { h } from "./dom.js";

/** ``raw`` as an href when it is an absolute http(s) URL, else null. */
export function httpHref(raw) {
  if (typeof raw !== "string") return null;
  try {
    const u = new URL(raw.trim());
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

/** A link to ``raw`` opening in a new tab when it is http(s); otherwise its text in a
 *  ``<code>`` (shown, never followed). */
export function externalLink(raw, label = raw) {
  const href = httpHref(raw);
  if (!href) return h("code", { class: "not-a-link", title: "Not an http(s) address: shown as text" }, String(raw));
  return h("a", { href, target: "_blank", rel: "noopener noreferrer" }, label);
}
