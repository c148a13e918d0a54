// Statuses of tasks, agents, pipeline runs and their steps: their order, their badges, and
// which state of a task is newer. A badge's colour is its status's, wherever it shows.

import { h } from "./dom.js";

export const TERMINAL = new Set(["finished", "error", "stopped"]);
export const STATUSES = [
  "queued",
  "consumed",
  "started",
  "terminating",
  "finished",
  "error",
  "stopped",
];
export const ACTIVE = STATUSES.filter((s) => !TERMINAL.has(s));

export function statusBadge(status) {
  return h("span", { class: `status status-${status}`, "data-status": status }, status);
}

/** A task's status badge, and ``ready`` beside it once a serving app said it is ready for
 * calls (it stays ``started``; ``ready`` is a flag of the task, not a status). */
export function taskBadges(task) {
  const badges = [statusBadge(task.status)];
  if (task.ready) badges.push(h("span", { class: "status status-ready", "data-ready": "true", title: "ready for calls" }, "ready"));
  return badges;
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

/** States of a pipeline run, and those it ends in (``docs/pipelines.md``, "States"). */
export const RUN_STATUSES = ["queued", "running", "terminating", "finished", "error", "stopped"];
export const RUN_ENDED = new Set(["finished", "error", "stopped"]);
export const RUN_ACTIVE = RUN_STATUSES.filter((s) => !RUN_ENDED.has(s));
/** States of a run's step; a step in one of STEP_ENDED runs no more (until a resume). */
export const STEP_STATES = ["pending", "running", "retrying", "finished", "error", "stopped", "skipped"];
export const STEP_ENDED = new Set(["finished", "error", "stopped", "skipped"]);
