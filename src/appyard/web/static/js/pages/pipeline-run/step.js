// The selected step under the graph: its state and reason, needs, items, every attempt with its
// session (a click on an attempt's row opens that session), and its outputs.

import { h } from "../../lib/dom.js";
import { fmtDuration, fmtTime } from "../../lib/format.js";
import { SKIP_REASONS, itemsText } from "../../lib/pipelines.js";
import { statusBadge } from "../../lib/status.js";
import { dataTable } from "../../lib/table.js";

/** Attempts listed at most (a for_each step may have thousands): the newest ones. */
const MAX_ROWS = 200;

function attemptRow(a, group) {
  const link = a.task_id != null ? h("a", { href: `#/sessions/${a.task_id}`, class: "row-link" }, `#${a.task_id}`) : h("span", { class: "muted" }, "–");
  return h(
    "tr",
    {
      class: a.task_id != null ? "clickable" : null,
      dataset: { attempt: a.n, ...(a.task_id != null ? { taskId: a.task_id } : {}) },
      onclick: (ev) => {
        if (a.task_id == null || ev.target.closest("a, button") || String(window.getSelection() || "")) return;
        location.hash = `#/sessions/${a.task_id}`;
      },
    },
    h("td", { class: "num" }, String(a.n)),
    group ? h("td", { class: "num" }, a.item != null ? String(a.item) : "–") : null,
    h("td", {}, statusBadge(a.status)),
    h("td", { class: "num" }, link),
    h("td", { class: "nowrap" }, a.started_at ? h("time", { datetime: a.started_at }, fmtTime(a.started_at)) : "–"),
    h("td", { class: "nowrap num" }, fmtDuration(a.started_at, a.ended_at)),
    h("td", { class: "attempt-error" }, a.error ? h("div", { class: "error-lines" }, a.error) : ""),
  );
}

export function stepPanel() {
  const el = h("section", { class: "step-panel", "aria-labelledby": "step-h", hidden: true });
  return {
    el,
    show(step) {
      el.hidden = !step;
      if (!step) return;
      const group = Boolean(step.items);
      const facts = [h("code", {}, step.app)];
      if ((step.needs || []).length) facts.push(" · needs ", step.needs.join(", "));
      const attempts = step.attempts || [];
      // an error's reason is its last attempt's error most often: said once, in the table
      const reason =
        step.reason && step.state === "skipped"
          ? `Skipped: ${SKIP_REASONS[step.reason] || step.reason}.`
          : step.reason && !attempts.some((a) => a.error === step.reason)
            ? step.reason
            : null;
      const shown = attempts.slice(-MAX_ROWS).reverse(); // newest first
      const columns = ["Attempt", ...(group ? ["Item"] : []), "Status", "Session", "Started", "Duration", "Error"];
      const parts = [
        h("div", { class: "session-head" }, h("h2", { id: "step-h" }, `Step ${step.id}`), statusBadge(step.state)),
        h("p", { class: "muted step-facts" }, facts),
        reason ? h("p", { class: step.state === "error" ? "error step-reason" : "step-reason" }, reason) : null,
        group ? h("p", { class: "step-items" }, `Items: ${itemsText(step.items)}`) : null,
      ];
      if (attempts.length) {
        parts.push(
          dataTable(columns, h("tbody", {}, shown.map((a) => attemptRow(a, group))), {
            attrs: { class: "attempts sessions", "aria-label": `Attempts of step ${step.id}` },
          }),
        );
        if (attempts.length > shown.length) parts.push(h("p", { class: "muted" }, `The newest ${shown.length} of ${attempts.length} attempts.`));
      } else {
        parts.push(h("p", { class: "muted" }, "No attempt yet: the step has not started."));
      }
      if (step.outputs != null && (Array.isArray(step.outputs) ? step.outputs.length : Object.keys(step.outputs).length)) {
        parts.push(h("h3", {}, "Outputs"), h("pre", { class: "json" }, JSON.stringify(step.outputs, null, 2)));
      }
      el.replaceChildren(...parts.filter(Boolean));
    },
  };
}
