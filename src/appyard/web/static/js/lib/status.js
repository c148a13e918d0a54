// Statuses of tasks and agents: their order, their badges, and which state of a task is newer.

import { h } from "./dom.js";

export const TERMINAL = new Set(["finished", "error", "stopped"]);
export const STATUSES = [
  "queued",
  "consumed",
  "started",
  "deployed",
  "terminating",
  "finished",
  "error",
  "stopped",
];
export const ACTIVE = STATUSES.filter((s) => !TERMINAL.has(s));

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status);
}

export function agentBadge(status) {
  return h("span", { class: `status agent-${status}`, "data-status": status }, status);
}

/** Whether ``a`` is an older state of a task than ``b`` (by ``updated_at``). */
export function older(a, b) {
  return Date.parse(a.updated_at) < Date.parse(b.updated_at);
}

/** Sort agents in place: online ones first, then by name. */
export function sortAgents(agents) {
  return agents.sort((a, b) => (a.status === b.status ? a.name.localeCompare(b.name) : a.status === "online" ? -1 : 1));
}
