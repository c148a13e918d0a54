// A safe subset of Markdown for app readmes, built as DOM nodes (never HTML strings):
// headings, paragraphs, lists (nested by indentation), block quotes, code blocks, rules, and
// inline code, bold, italic and links. Only http(s) links become links; every text is a text
// node, so a readme cannot inject markup.

import { h } from "./core.js";

const FENCE = /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)[^`]*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
const LIST = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const QUOTE = /^\s{0,3}>\s?/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const TABLE_SEP = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

/**
 * Render ``text`` as a DocumentFragment. Its biggest heading becomes ``h{top}`` and the others
 * follow, so a readme's headings continue the page's own in order.
 */
export function renderMarkdown(text, { top = 1 } = {}) {
  const lines = String(text || "").replace(/\r\n?/g, "\n").replace(/\t/g, "    ").split("\n");
  let fenced = false;
  let biggest = 6;
  for (const line of lines) {
    if (FENCE.test(line)) fenced = !fenced;
    const m = !fenced && HEADING.exec(line);
    if (m) biggest = Math.min(biggest, m[1].length);
  }
  const shift = top - biggest;
  const frag = document.createDocumentFragment();
  frag.append(...blocks(lines, shift));
  return frag;
}

const blank = (line) => line.trim() === "";
const startsBlock = (line) =>
  FENCE.test(line) || HEADING.test(line) || LIST.test(line) || QUOTE.test(line) || RULE.test(line);

// a paragraph goes on over a wrapped "2024. And then" line: only "1." starts a list inside one
const interrupts = (line) => startsBlock(line) && !/^\s*([2-9]|\d{2,})\d*[.)]\s/.test(line);

function blocks(lines, shift) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (blank(line)) {
      i += 1;
    } else if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const body = [];
      i += 1;
      const closes = (l) => l.trim().startsWith(fence) && /^[`~]+$/.test(l.trim());
      while (i < lines.length && !closes(lines[i])) body.push(lines[i++]);
      i += 1; // the closing fence (or the end)
      const code = h("code", m[2] ? { "data-lang": m[2] } : {}, body.join("\n"));
      out.push(h("pre", { class: "codeblock", tabindex: "0" }, code));
    } else if ((m = HEADING.exec(line))) {
      const level = Math.max(1, Math.min(6, m[1].length + shift));
      out.push(h(`h${level}`, {}, inline(m[2])));
      i += 1;
    } else if (line.includes("|") && TABLE_SEP.test(lines[i + 1] || "") && lines[i + 1].includes("|")) {
      const head = cells(line);
      const rows = [];
      i += 2;
      while (i < lines.length && lines[i].includes("|") && !blank(lines[i])) rows.push(cells(lines[i++]));
      const row = (tag, r) => h("tr", {}, head.map((_, k) => h(tag, tag === "th" ? { scope: "col" } : {}, inline(r[k] || ""))));
      out.push(h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, row("th", head)), h("tbody", {}, rows.map((r) => row("td", r))))));
    } else if (RULE.test(line)) {
      out.push(h("hr"));
      i += 1;
    } else if (LIST.test(line)) {
      i = list(lines, i, shift, out);
    } else if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && QUOTE.test(lines[i])) body.push(lines[i++].replace(QUOTE, ""));
      out.push(h("blockquote", {}, blocks(body, shift)));
    } else if (/^ {4}/.test(line)) {
      const body = [];
      while (i < lines.length && (/^ {4}/.test(lines[i]) || blank(lines[i]))) body.push(lines[i++].slice(4));
      while (body.length && blank(body[body.length - 1])) body.pop();
      out.push(h("pre", { class: "codeblock", tabindex: "0" }, h("code", {}, body.join("\n"))));
    } else {
      const para = [];
      while (i < lines.length && !blank(lines[i]) && !(para.length && interrupts(lines[i]))) {
        para.push(lines[i++].trim());
      }
      out.push(h("p", {}, inline(para.join(" "))));
    }
  }
  return out;
}

/** The cells of a table row: split on ``|`` outside code spans (``\|`` is a literal bar). */
function cells(line) {
  const out = [""];
  let code = false;
  const text = line.trim().replace(/^\|/, "").replace(/\|$/, "");
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === "\\" && text[i + 1] === "|") {
      out[out.length - 1] += "|";
      i += 1;
    } else if (c === "`") {
      code = !code;
      out[out.length - 1] += c;
    } else if (c === "|" && !code) out.push("");
    else out[out.length - 1] += c;
  }
  return out.map((c) => c.trim());
}

/** One list starting at ``lines[i]``; items hold their indented lines, parsed as blocks. */
function list(lines, i, shift, out) {
  const first = LIST.exec(lines[i]);
  const indent = first[1].length;
  const ordered = /\d/.test(first[2]);
  const items = [];
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const m = LIST.exec(line);
    const lead = line.length - line.trimStart().length;
    if (m && m[1].length <= indent + 1) {
      if (/\d/.test(m[2]) !== ordered) break; // another kind of list begins
      item = { lines: [m[3]], pad: m[1].length + m[2].length + 1 };
      items.push(item);
      i += 1;
    } else if (blank(line)) {
      let j = i + 1;
      while (j < lines.length && blank(lines[j])) j += 1;
      if (j >= lines.length) break;
      const next = lines[j];
      const nextLead = next.length - next.trimStart().length;
      const sameList = LIST.test(next) && nextLead <= indent + 1;
      if (!sameList && nextLead <= indent) break;
      item.lines.push("");
      i += 1;
    } else if (lead > indent) {
      item.lines.push(line.slice(Math.min(lead, item.pad))); // continuation or nested block
      i += 1;
    } else if (!startsBlock(line) && !blank(lines[i - 1])) {
      item.lines.push(line.trim()); // a lazy continuation of the paragraph
      i += 1;
    } else {
      break;
    }
  }
  const start = ordered ? parseInt(first[2], 10) : null;
  out.push(
    h(
      ordered ? "ol" : "ul",
      start && start !== 1 ? { start } : {},
      items.map((it) => h("li", {}, blocks(it.lines, shift))),
    ),
  );
  return i;
}

/** A link's address when it is an absolute http(s) URL, else null (the label stays text). */
function safeHref(raw) {
  try {
    const u = new URL(raw.trim());
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch {
    return null;
  }
}

const ESCAPABLE = "\\`*_{}[]()#+-.!<>|~";
const wordChar = (c) => c !== undefined && /[\p{L}\p{N}]/u.test(c);

/** Inline Markdown of one paragraph as nodes. */
function inline(text) {
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
