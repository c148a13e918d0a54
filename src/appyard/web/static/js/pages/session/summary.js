// A session's details (app, agent, user, ...) and its timeline with the duration.

import { h } from "../../lib/dom.js";
import { fmtDuration, fmtTime } from "../../lib/format.js";
import { detail } from "../../lib/views.js";

const TIMELINE = [
  ["created_at", "queued"],
  ["consumed_at", "consumed"],
  ["started_at", "started"],
  ["ready_at", "ready"], // a serving app said it is ready for calls (a flag, not a status)
  ["terminating_at", "terminating"],
  ["ended_at", null], // named by the final status
];

function timelineItems(task) {
  const items = [];
  for (const [key, label] of TIMELINE) {
    if (!task[key]) continue;
    const name = label || task.status;
    items.push(
      h(
        "li",
        { class: `tl tl-${name}`, dataset: { step: name } },
        h("span", { class: "tl-label" }, name),
        h("time", { datetime: task[key] }, fmtTime(task[key])),
      ),
    );
  }
  return items;
}

/** What a session asked of its agent's machine, in words ("2 GPUs, 4096 MB memory, zone=b"). */
function needsText(r) {
  const parts = [];
  if (r.gpus) parts.push(`${r.gpus} GPU${r.gpus === 1 ? "" : "s"}${r.gpu_memory_mb ? ` of ${r.gpu_memory_mb} MB` : ""}`);
  if (r.memory_mb) parts.push(`${r.memory_mb} MB memory`);
  if (r.cpus) parts.push(`${r.cpus} CPUs`);
  for (const [k, v] of Object.entries(r.agent_labels || {})) parts.push(`${k}=${v}`);
  return parts.join(", ");
}

/** ``names`` of the task's team; a name not known yet is looked up once, then shown. */
export function sessionSummary(names, signal) {
  const details = h("dl", { class: "details" });
  const timeline = h("ol", { class: "timeline", "aria-label": "Timeline" });
  const duration = h("span", { class: "num" });
  const el = h(
    "div",
    { class: "session-grid" },
    h("section", { class: "card", "aria-label": "Details" }, details),
    h(
      "section",
      { class: "card", "aria-labelledby": "timeline-h" },
      h("h2", { id: "timeline-h" }, "Timeline"),
      timeline,
      h("p", { class: "muted duration" }, "Duration ", duration),
    ),
  );
  let shown = null; // the task the details show
  const showDetails = (task) => {
    shown = task;
    details.replaceChildren(
      ...detail("App", [h("a", { href: `#/apps/${task.module_id}` }, names.module(task.module_id)), h("span", { class: "muted" }, ` ${task.version}`)]),
      ...detail("Agent", names.agent(task.agent_id)),
      ...detail("User", names.user(task.user_id)),
      ...detail("Name", task.name || "–"),
      ...(task.description ? detail("Description", task.description) : []),
      ...(task.pipeline_run_id != null
        ? detail(
            "Pipeline",
            h(
              "a",
              { href: `#/pipeline-runs/${task.pipeline_run_id}${task.pipeline_step ? `?step=${encodeURIComponent(task.pipeline_step)}` : ""}` },
              `Pipeline run ${task.pipeline_run_id}, step ${task.pipeline_step ?? "–"}`,
            ),
          )
        : []),
      ...(task.wait_reason ? detail("Waits", h("span", { class: "wait-reason" }, task.wait_reason)) : []),
      ...(task.resources && Object.keys(task.resources).length ? detail("Needs", needsText(task.resources)) : []),
      ...(task.gpus && task.gpus.length ? detail("GPUs", task.gpus.map((g) => `#${g.index} ${g.uuid}`).join(", ")) : []),
      ...(task.attempt > 1 ? detail("Attempt", String(task.attempt)) : []),
      ...(task.exit_code != null ? detail("Exit code", String(task.exit_code)) : []),
    );
    if (!names.modules.has(task.module_id)) {
      names.refresh(task).then((changed) => changed && !signal.aborted && showDetails(shown));
    }
  };
  return {
    el,
    showDetails,
    showTimeline(task) {
      timeline.replaceChildren(...timelineItems(task));
      duration.textContent = fmtDuration(task.started_at, task.ended_at);
    },
    /** Redraw the duration of a running task. */
    tick(task) {
      if (task.started_at && !task.ended_at) duration.textContent = fmtDuration(task.started_at, null);
    },
  };
}
