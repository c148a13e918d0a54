// The rows of one page of pipeline runs, newest first: replaced by a page read, updated in place
// as runs change, and joined at the top by new runs.

import { h } from "../../lib/dom.js";
import { fmtDuration, fmtTime } from "../../lib/format.js";
import { stepsText } from "../../lib/pipelines.js";
import { statusBadge } from "../../lib/status.js";
import { dataTable } from "../../lib/table.js";

export const PAGE_SIZE = 25;
const COLUMNS = ["Run", "Status", "Pipeline", "Steps", "Started", "Duration", "By"];

const startOf = (r) => r.started_at || r.created_at;

function runRow(run, names) {
  const cells = {
    id: h("td", { class: "num" }, h("a", { href: `#/pipeline-runs/${run.id}`, class: "row-link" }, `#${run.id}`)),
    status: h("td"),
    pipeline: h("td", { class: "name" }),
    steps: h("td", { class: "steps" }),
    start: h("td", { class: "nowrap" }),
    duration: h("td", { class: "nowrap num" }),
    by: h("td"),
  };
  const tr = h(
    "tr",
    {
      class: "clickable",
      dataset: { runId: run.id },
      onclick: (ev) => {
        if (ev.target.closest("a, button") || String(window.getSelection() || "")) return;
        location.hash = `#/pipeline-runs/${run.id}`;
      },
    },
    Object.values(cells),
  );
  const row = { run, tr, cells };
  fillRow(row, run, names);
  return row;
}

function fillRow(row, run, names) {
  const { cells } = row;
  row.run = run;
  row.tr.dataset.status = run.status;
  cells.status.replaceChildren(statusBadge(run.status));
  cells.pipeline.replaceChildren(run.pipeline_name, " ", h("code", { class: "muted" }, run.pipeline_version));
  cells.steps.textContent = stepsText(run);
  const at = startOf(run);
  cells.start.replaceChildren(h("time", { datetime: at }, fmtTime(at)));
  cells.duration.textContent = fmtDuration(run.started_at, run.ended_at);
  cells.by.textContent = names.user(run.created_by);
}

export class RunTable {
  constructor(names) {
    this.names = names;
    this.rows = new Map(); // run id -> {run, tr, cells}
    this.order = []; // run ids of the page, newest first
    this.tbody = h("tbody");
    const caption = h("caption", { class: "sr-only" }, "Runs of the team's pipelines, newest first");
    this.el = dataTable(COLUMNS, this.tbody, { attrs: { class: "runs sessions", "aria-label": "Runs" }, caption });
    this.empty = h("p", { class: "muted empty", hidden: true });
  }

  show(runs) {
    this.rows.clear();
    this.order = [];
    for (const run of runs) {
      this.rows.set(run.id, runRow(run, this.names));
      this.order.push(run.id);
    }
    this.tbody.replaceChildren(...this.order.map((id) => this.rows.get(id).tr));
  }

  /** Show ``run`` in its row; false when it has none. */
  update(run) {
    const row = this.rows.get(run.id);
    if (!row) return false;
    fillRow(row, run, this.names);
    return true;
  }

  /** Whether a run not shown belongs on this (first) page: a full page takes newer ones only. */
  admits(run) {
    return !(this.order.length >= PAGE_SIZE && run.id < this.lastId);
  }

  /** Add a row for ``run`` in id order, flashed; true when the oldest row fell off the page. */
  insert(run) {
    const { order, rows } = this;
    const fresh = runRow(run, this.names);
    let i = order.findIndex((id) => id < run.id);
    if (i < 0) i = order.length;
    order.splice(i, 0, run.id);
    rows.set(run.id, fresh);
    const before = rows.get(order[i + 1]);
    this.tbody.insertBefore(fresh.tr, before ? before.tr : null);
    fresh.tr.classList.add("fresh");
    setTimeout(() => fresh.tr.classList.remove("fresh"), 1500);
    if (order.length <= PAGE_SIZE) return false;
    const dropped = order.pop();
    rows.get(dropped).tr.remove();
    rows.delete(dropped);
    return true;
  }

  get lastId() {
    return this.order[this.order.length - 1];
  }

  refill() {
    for (const row of this.rows.values()) fillRow(row, row.run, this.names);
  }

  /** Redraw the durations of running runs. */
  tick() {
    for (const row of this.rows.values()) {
      const r = row.run;
      if (r.started_at && !r.ended_at) row.cells.duration.textContent = fmtDuration(r.started_at, null);
    }
  }

  showEmpty(filtered) {
    this.empty.hidden = this.order.length > 0;
    this.empty.textContent = filtered ? "No runs match these filters." : "No runs yet: start a saved pipeline above.";
  }
}
