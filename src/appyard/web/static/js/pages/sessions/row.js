// One row of the sessions table; filled again in place when the task changes.

import { h } from "../../lib/dom.js";
import { fmtDuration, fmtTime, progressText } from "../../lib/format.js";
import { taskBadges } from "../../lib/status.js";

const startOf = (t) => t.started_at || t.created_at;

function progressCell(p) {
  if (!p) return "";
  const wrap = h("div", { class: "cell-progress" });
  if (p.total) {
    wrap.append(h("progress", { max: p.total, value: Math.min(p.current, p.total), "aria-hidden": "true" }));
  }
  wrap.append(h("span", { class: "muted" }, progressText(p)));
  return wrap;
}

/** A row of ``task``: {task, tr, cells}; a click anywhere but a link or button opens it. */
export function sessionRow(task, names) {
  const link = h("a", { href: `#/sessions/${task.id}`, class: "row-link" }, `#${task.id}`);
  const cells = {
    id: h("td", { class: "num" }, link),
    status: h("td"),
    app: h("td"),
    name: h("td", { class: "name" }),
    agent: h("td"),
    user: h("td"),
    start: h("td", { class: "nowrap" }),
    duration: h("td", { class: "nowrap num" }),
    progress: h("td"),
  };
  const tr = h(
    "tr",
    {
      class: "clickable",
      dataset: { taskId: task.id },
      onclick: (ev) => {
        if (ev.target.closest("a, button") || String(window.getSelection() || "")) return;
        location.hash = `#/sessions/${task.id}`;
      },
    },
    Object.values(cells),
  );
  const row = { task, tr, cells };
  fillRow(row, task, names);
  return row;
}

/** Show ``task`` in ``row``; cells whose value did not change keep their nodes. */
export function fillRow(row, task, names) {
  const old = row.filled;
  const { cells } = row;
  row.task = task;
  if (!old || old.status !== task.status || old.ready !== task.ready) {
    cells.status.replaceChildren(...taskBadges(task));
    row.tr.dataset.status = task.status;
  }
  cells.app.textContent = names.module(task.module_id);
  cells.name.textContent = task.name;
  cells.name.title = task.description || task.name;
  cells.agent.textContent = names.agent(task.agent_id);
  cells.user.textContent = names.user(task.user_id);
  const at = startOf(task);
  if (!old || startOf(old) !== at) {
    cells.start.replaceChildren(h("time", { datetime: at }, fmtTime(at)));
    cells.start.title = task.started_at ? "started" : "created (not started yet)";
  }
  cells.duration.textContent = fmtDuration(task.started_at, task.ended_at);
  if (!old || JSON.stringify(old.progress) !== JSON.stringify(task.progress)) {
    cells.progress.replaceChildren(progressCell(task.progress));
  }
  row.filled = task;
}

/** Redraw the duration of a running task. */
export function tickRow(row) {
  const t = row.task;
  if (t.started_at && !t.ended_at) row.cells.duration.textContent = fmtDuration(t.started_at, null);
}
