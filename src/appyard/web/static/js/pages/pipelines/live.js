// The runs table live, without polling. There is no stream of a team's runs, but every change
// of a run comes with a change of one of its sessions (a step's session queued, started, ended;
// a stop or a resume moves sessions too), and the team's task stream tells those, each with its
// ``pipeline_run_id``. So a session's change makes the page read its run again; and when the run
// read does not show that change yet (the server advances a run a moment after its session
// ended), the run's watch is followed until it does, then closed.

import { ApiError, api } from "../../lib/api.js";
import { sse } from "../../lib/sse.js";
import { RUN_ENDED, TERMINAL } from "../../lib/status.js";

/** Whether ``run`` shows what its sessions' changes in ``seen`` (task id -> status) said. */
function showsAll(run, seen) {
  const attempts = new Map();
  for (const step of run.steps) for (const a of step.attempts) if (a.task_id != null) attempts.set(a.task_id, a);
  for (const [taskId, status] of seen) {
    const a = attempts.get(taskId);
    if (!a) return false;
    if (TERMINAL.has(status) && (a.status === "pending" || a.status === "running")) return false;
  }
  return true;
}

/** Runs changing, into ``onRun(run)``: ``task(t)`` hears a session's change from the team's
 *  task stream; its run is read again (one look at a time per run). */
export function runLooker(signal, onRun) {
  const runs = new Map(); // run id -> {seen: Map(task id -> status), busy}

  async function look(runId) {
    const entry = runs.get(runId);
    if (entry.busy || signal.aborted) return;
    entry.busy = true;
    const seen = new Map(entry.seen);
    try {
      const run = await api("GET", `/pipeline-runs/${runId}`, { signal });
      onRun(run);
      if (!showsAll(run, seen) && !RUN_ENDED.has(run.status)) {
        const conn = new AbortController();
        const drop = () => conn.abort();
        signal.addEventListener("abort", drop);
        try {
          await sse(`/pipeline-runs/${runId}/watch`, {
            signal: conn.signal,
            onEvent: (type, data) => {
              if (type !== "run") return;
              onRun(data);
              if (showsAll(data, seen)) conn.abort();
            },
          });
        } finally {
          signal.removeEventListener("abort", drop);
        }
      }
      for (const [taskId, status] of seen) if (entry.seen.get(taskId) === status) entry.seen.delete(taskId);
    } catch (e) {
      if (signal.aborted) return;
      // not ours to see (404), or the server out of reach: the stream's reconnection reloads
      entry.seen.clear();
    } finally {
      entry.busy = false;
    }
    // changes heard meanwhile: look again
    if (entry.seen.size && !signal.aborted) look(runId);
  }

  return {
    task(t) {
      if (t.pipeline_run_id == null) return;
      let entry = runs.get(t.pipeline_run_id);
      if (!entry) runs.set(t.pipeline_run_id, (entry = { seen: new Map(), busy: false }));
      entry.seen.set(t.id, t.status);
      look(t.pipeline_run_id);
    },
  };
}

/** Follow the team's task stream into ``onTask(task)``; ``note`` says when it is not live.
 *  A stream re-opened with nothing to resume from calls ``reload()``. */
export async function followTeamTasks(teamId, { signal, note, onTask, reload }) {
  let lastId = null;
  let attempts = 0;
  try {
    await sse("/tasks/stream", {
      signal,
      onState: (state) => {
        if (state === "open") note.textContent = "";
        else if (state === "broken") {
          note.textContent = "Live updates are interrupted, so the table may be out of date. Reconnecting…";
        }
      },
      query: () => {
        attempts += 1;
        if (attempts > 1 && !lastId) setTimeout(() => !signal.aborted && reload(), 300);
        return { team_id: teamId, after: lastId || undefined };
      },
      onEvent: (type, data, id) => {
        if (type !== "task") return;
        if (id) lastId = id;
        onTask(data);
      },
    });
  } catch (e) {
    if (signal.aborted) return;
    note.textContent =
      e instanceof ApiError && (e.status === 404 || e.status === 422)
        ? "Live updates are not available on this server."
        : `Live updates stopped: ${e.message}`;
  }
}
