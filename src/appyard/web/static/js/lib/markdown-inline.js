// Inline Markdown of a readme (code, bold, italic, links) as DOM nodes. Only absolute http(s)
// addresses become links; everything else stays text.

import { h } from "./dom.js";
import { httpHref as safeHref } from "./links.js";

const ESCAPABLE = "\\`*_{}[]()#+-.!<>|~";
const wordChar = (c) => c !== undefined && /[\p{L}\p{N}]/u.test(c);

/** Inline Markdown of one paragraph as nodes. */
export function inline(text) {
  const out = [];
  let buf = "";
  const flush = () => {
    if (buf) out.push(buf);
    buf = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && ESCAPABLE.includes(text[i + 1] ?? "\n")) {
      buf += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let n = 1;
      while (text[i + n] === "`") n += 1;
      const ticks = "`".repeat(n);
      let end = text.indexOf(ticks, i + n);
      while (end >= 0 && text[end + n] === "`") end = text.indexOf(ticks, end + n + 1);
      if (end > 0) {
        flush();
        let code = text.slice(i + n, end);
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        out.push(h("code", {}, code));
        i = end + n;
        continue;
      }
      buf += ticks;
      i += n;
      continue;
    }
    if ((c === "*" || c === "_") && text[i + 1] === c) {
      const delim = c + c;
      const end = text.indexOf(delim, i + 2);
      const inner = end > 0 ? text.slice(i + 2, end) : "";
      if (inner.trim() === inner && inner && (c === "*" || (!wordChar(text[i - 1]) && !wordChar(text[end + 2])))) {
        flush();
        out.push(h("strong", {}, inline(inner)));
        i = end + 2;
        continue;
      }
      buf += delim;
      i += 2;
      continue;
    } else if (c === "*" || c === "_") {
      let end = i + 1;
      while ((end = text.indexOf(c, end)) > 0 && text[end + 1] === c) end += 2;
      const inner = end > 0 ? text.slice(i + 1, end) : "";
      if (inner && inner.trim() === inner && (c === "*" || (!wordChar(text[i - 1]) && !wordChar(text[end + 1])))) {
        flush();
        out.push(h("em", {}, inline(inner)));
        i = end + 1;
        continue;
      }
    }
    if (c === "[" || (c === "!" && text[i + 1] === "[")) {
      const link = parseLink(text, c === "!" ? i + 1 : i);
      if (link) {
        flush();
        const href = safeHref(link.url);
        const label = link.label || link.url;
        out.push(href ? h("a", { href, rel: "noopener noreferrer nofollow" }, inline(label)) : inline(label));
        i = link.end;
        continue;
      }
    }
    if (c === "<") {
      const m = /^<(https?:\/\/[^\s<>]+)>/i.exec(text.slice(i));
      const href = m && safeHref(m[1]);
      if (href) {
        flush();
        out.push(h("a", { href, rel: "noopener noreferrer nofollow" }, m[1]));
        i += m[0].length;
        continue;
      }
    }
    buf += c;
    i += 1;
  }
  flush();
  return out.flat();
}

/** ``[label](url "title")`` at ``text[i] === "["``: {label, url, end} or null. */
function parseLink(text, i) {
  let depth = 0;
  let j = i;
  for (; j < text.length; j += 1) {
    if (text[j] === "\\") j += 1;
    else if (text[j] === "[") depth += 1;
    else if (text[j] === "]" && --depth === 0) break;
  }
  if (j >= text.length || text[j + 1] !== "(") return null;
  let close = j + 2;
  for (let open = 1; close < text.length; close += 1) {
    if (text[close] === "(") open += 1;
    else if (text[close] === ")" && --open === 0) break;
  }
  if (close >= text.length) return null;
  const target = text.slice(j + 2, close).trim();
  const url = target.replace(/^<(.*)>$/, "$1").split(/\s+/)[0];
  return { label: text.slice(i + 1, j), url, end: close + 1 };
}
