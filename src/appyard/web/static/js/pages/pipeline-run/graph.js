// A run's graph as SVG, laid out left to right (layout.js): each step a box coloured by its
// state (the status colours), a for_each step a stack of boxes with its items' counts and a bar
// of them, each need an edge. A box is a button that selects its step (its attempts show below
// the graph); the session pill in a box (the step's newest session) is a link to that session.
// Drawn again on each change of the run; focus stays on the step or pill that had it.

import { h } from "../../lib/dom.js";
import { itemsText, latestAttempt, stateText } from "../../lib/pipelines.js";
import { BOX_H, BOX_W, layout } from "./layout.js";

const NS = "http://www.w3.org/2000/svg";

/** An SVG element: ``s("rect", {x: 1}, child, ...)``; strings become text nodes. */
function s(tag, attrs, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** ``text`` cut to ``n`` characters (with an ellipsis). */
const cut = (text, n) => (text.length > n ? text.slice(0, n - 1) + "…" : text);

const ITEM_KINDS = ["finished", "error", "stopped", "running", "pending"];

/** A bar of a for_each step's items: a segment per kind, as wide as its share. */
function itemsBar(items, x, y, w) {
  const parts = [s("rect", { class: "bar-bg", x, y, width: w, height: 8, rx: 4 })];
  let at = x;
  for (const k of ITEM_KINDS) {
    const n = items[k] || 0;
    if (!n || !items.total) continue;
    const width = (w * n) / items.total;
    parts.push(s("rect", { class: `bar-${k}`, x: at, y, width, height: 8 }));
    at += width;
  }
  return parts;
}

function stepLabel(step) {
  const a = latestAttempt(step);
  const parts = [`Step ${step.id}`, step.app, step.items ? itemsText(step.items) : stateText(step)];
  if (a && !step.items) parts.push(`session #${a.task_id}`);
  return parts.join(", ");
}

function stepBox(step, box, selected, onSelect) {
  const { x, y } = box;
  const group = Boolean(step.items);
  const parts = [];
  if (group) {
    // a stack: the step runs once per item
    parts.push(s("rect", { class: "box stack", x: x + 8, y: y + 8, width: BOX_W, height: BOX_H, rx: 8 }));
    parts.push(s("rect", { class: "box stack", x: x + 4, y: y + 4, width: BOX_W, height: BOX_H, rx: 8 }));
  }
  parts.push(s("rect", { class: "box", x, y, width: BOX_W, height: BOX_H, rx: 8 }));
  parts.push(s("text", { class: "step-id", x: x + 12, y: y + 22 }, cut(step.id, 22)));
  parts.push(s("text", { class: "step-app", x: x + 12, y: y + 40 }, cut(step.app, 28)));
  if (group) {
    const it = step.items;
    const counted = `${it.finished}/${it.total} finished`;
    const line = step.state === "finished" ? counted : `${step.state} · ${counted}`;
    parts.push(s("text", { class: "step-state", x: x + 12, y: y + 58 }, cut(line, 30)));
    parts.push(...itemsBar(it, x + 12, y + 68, BOX_W - 24));
  } else {
    parts.push(s("text", { class: "step-state", x: x + 12, y: y + 58 }, cut(stateText(step), 30)));
  }
  const g = s(
    "g",
    {
      class: `step st-${step.state}${group ? " group" : ""}${selected ? " selected" : ""}`,
      role: "button",
      tabindex: 0,
      "aria-pressed": selected ? "true" : "false",
      "aria-label": stepLabel(step),
      "data-step": step.id,
      "data-state": step.state,
      onclick: () => onSelect(step.id),
      onkeydown: (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          onSelect(step.id);
        }
      },
    },
    s("title", {}, `${step.id} (${step.app}): ${step.items ? itemsText(step.items) : stateText(step)}`),
    parts,
  );
  const out = [g];
  const a = latestAttempt(step);
  if (a && !group) {
    const label = `#${a.task_id}`;
    const w = 18 + label.length * 7.5;
    const px = x + BOX_W - 10 - w;
    const py = y + BOX_H - 26;
    out.push(
      s(
        "a",
        {
          class: "session-pill",
          href: `#/sessions/${a.task_id}`,
          "aria-label": `Session #${a.task_id} of step ${step.id}`,
          "data-step": step.id,
        },
        s("title", {}, `Open session #${a.task_id} (attempt ${a.n})`),
        s("rect", { x: px, y: py, width: w, height: 18, rx: 9 }),
        s("text", { x: px + w / 2, y: py + 13, "text-anchor": "middle" }, label),
      ),
    );
  }
  return out;
}

/** The graph's box: ``show(run, selected)`` draws it; ``onSelect(stepId)`` on a box's click. */
export function runGraph(onSelect) {
  const wrap = h("div", { class: "graph-wrap" });
  let shape = null; // the layout, made once: a run's steps and needs do not change
  return {
    el: wrap,
    show(run, selected) {
      shape ||= layout(run.steps);
      const focused = document.activeElement;
      const refocus = wrap.contains(focused)
        ? { step: focused.getAttribute?.("data-step"), pill: focused.classList?.contains("session-pill") }
        : null;
      const byId = new Map(run.steps.map((st) => [st.id, st]));
      const edges = shape.edges.map((e) => {
        const from = byId.get(e.from);
        const hl = selected && (e.from === selected || e.to === selected);
        return s("path", {
          class: `edge from-${from ? from.state : "pending"}${hl ? " hl" : ""}`,
          d: e.d,
          "marker-end": hl ? "url(#arrow-hl)" : "url(#arrow)",
        });
      });
      const boxes = run.steps.flatMap((st) => stepBox(st, shape.boxes.get(st.id), st.id === selected, onSelect));
      const svg = s(
        "svg",
        {
          class: "run-graph",
          width: shape.width,
          height: shape.height,
          viewBox: `0 0 ${shape.width} ${shape.height}`,
          role: "group",
          "aria-label": `Steps of run #${run.id}`,
        },
        s(
          "defs",
          {},
          s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" }, s("path", { class: "arrow", d: "M0,0 L10,5 L0,10 z" })),
          s("marker", { id: "arrow-hl", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" }, s("path", { class: "arrow hl", d: "M0,0 L10,5 L0,10 z" })),
        ),
        s("g", { class: "edges" }, edges),
        s("g", { class: "steps" }, boxes),
      );
      const { scrollLeft, scrollTop } = wrap;
      wrap.replaceChildren(svg);
      wrap.scrollLeft = scrollLeft;
      wrap.scrollTop = scrollTop;
      if (refocus?.step) {
        const sel = refocus.pill ? `a.session-pill[data-step="${CSS.escape(refocus.step)}"]` : `g.step[data-step="${CSS.escape(refocus.step)}"]`;
        svg.querySelector(sel)?.focus();
      }
    },
  };
}
