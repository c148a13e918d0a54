// The rows of one page of sessions, newest first: replaced by a page read, updated in place
// by the stream, and joined at the top by new tasks.

import { h } from "../../lib/dom.js";
import { older } from "../../lib/status.js";
import { dataTable } from "../../lib/table.js";
import { fillRow, sessionRow, tickRow } from "./row.js";

export const PAGE_SIZE = 25;
const COLUMNS = ["ID", "Status", "App", "Name", "Agent", "User", "Started", "Duration", "Progress"];

export class SessionTable {
  constructor(names) {
    this.names = names;
    this.rows = new Map(); // task id -> {task, tr, cells}
    this.order = []; // task ids of the page, newest first
    this.tbody = h("tbody");
    const caption = h("caption", { class: "sr-only" }, "Sessions of the team, newest first");
    this.el = dataTable(COLUMNS, this.tbody, { attrs: { class: "sessions" }, caption });
    this.empty = h("p", { class: "muted empty", hidden: true });
  }

  /** Show a page of tasks instead of the rows shown. */
  show(tasks) {
    this.rows.clear();
    this.order = [];
    for (const task of tasks) {
      this.rows.set(task.id, sessionRow(task, this.names));
      this.order.push(task.id);
    }
    this.tbody.replaceChildren(...this.order.map((id) => this.rows.get(id).tr));
  }

  /** Update the row of ``task`` unless what it shows is newer; false when it has no row. */
  update(task) {
    const row = this.rows.get(task.id);
    if (!row) return false;
    if (!older(task, row.task)) fillRow(row, task, this.names);
    return true;
  }

  /** Whether a task not shown belongs on this (first) page: a full page takes newer ones only. */
  admits(task) {
    return !(this.order.length >= PAGE_SIZE && task.id < this.lastId);
  }

  /** Add a row for ``task`` in id order, flashed; true when the oldest row fell off the page. */
  insert(task) {
    const { order, rows } = this;
    const fresh = sessionRow(task, this.names);
    let i = order.findIndex((id) => id < task.id);
    if (i < 0) i = order.length;
    order.splice(i, 0, task.id);
    rows.set(task.id, fresh);
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

  /** Fill every row again (names became known). */
  refill() {
    for (const row of this.rows.values()) fillRow(row, row.task, this.names);
  }

  tick() {
    for (const row of this.rows.values()) tickRow(row);
  }

  showEmpty(filtered) {
    this.empty.hidden = this.order.length > 0;
    this.empty.textContent = filtered ? "No sessions match these filters." : "No sessions yet: start an app from the ecosystem.";
  }
}
