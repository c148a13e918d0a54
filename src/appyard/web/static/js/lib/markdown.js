// A safe subset of Markdown for app readmes, built as DOM nodes (never HTML strings):
// headings, paragraphs, lists (nested by indentation), block quotes, code blocks, rules, and
// inline code, bold, italic and links. Only http(s) links become links; every text is a text
// node, so a readme cannot inject markup. Inline text: markdown-inline.js.

import { h } from "./dom.js";
import { inline } from "./markdown-inline.js";

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
