// What the pipeline pages share: how a run's steps stand, in numbers and in words.

import { STEP_STATES } from "./status.js";

/** Why a step was skipped, in words. */
export const SKIP_REASONS = {
  upstream_failed: "a step it needs failed",
  run_stopped: "the run was stopped",
  when_not_met: "its when rule was not met",
};

/** The same, in as few words as fit a box of the graph. */
const SKIP_SHORT = { upstream_failed: "upstream failed", run_stopped: "run stopped", when_not_met: "when not met" };

/** The order states are told in: what runs, then how steps ended, then what waits. */
const TOLD = ["finished", "running", "retrying", "error", "stopped", "skipped", "pending"];

/** ``{state: count}`` of a run's steps, in the order they are told (states with none left out). */
export function stepCounts(run) {
  const counts = {};
  for (const s of run.steps || []) counts[s.state] = (counts[s.state] || 0) + 1;
  const order = [...TOLD, ...STEP_STATES.filter((s) => !TOLD.includes(s))];
  return Object.fromEntries(order.filter((s) => counts[s]).map((s) => [s, counts[s]]));
}

/** ``2 of 3 finished · 1 running``: how a run's steps stand. */
export function stepsText(run) {
  const total = (run.steps || []).length;
  const counts = stepCounts(run);
  const parts = [`${counts.finished || 0} of ${total} finished`];
  for (const [state, n] of Object.entries(counts)) if (state !== "finished") parts.push(`${n} ${state}`);
  return parts.join(" · ");
}

/** The newest attempt of a step that has a session (null: none yet). */
export function latestAttempt(step) {
  const attempts = step.attempts || [];
  for (let i = attempts.length - 1; i >= 0; i--) if (attempts[i].task_id != null) return attempts[i];
  return null;
}

/** ``3 of 10 finished · 1 error · 2 running · 4 pending`` of a for_each step's items. */
export function itemsText(items) {
  const parts = [`${items.finished} of ${items.total} finished`];
  for (const k of ["error", "stopped", "running", "pending"]) if (items[k]) parts.push(`${items[k]} ${k}`);
  return parts.join(" · ");
}

/** A step's state in a few words: ``running · attempt 2``, ``skipped: run stopped``. */
export function stateText(step) {
  const n = (step.attempts || []).reduce((m, a) => Math.max(m, a.n), 0);
  if (step.state === "skipped") return `skipped: ${SKIP_SHORT[step.reason] || step.reason || "–"}`;
  if (!step.items && n > 1) return `${step.state} · attempt ${n}`;
  return step.state;
}
