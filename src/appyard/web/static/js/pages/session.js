// One session: status and timeline, what ran where, params, progress, outputs, error, and the
// log. Live over server-sent events: the task's watch and its log stream; while either is
// broken the page says so. Stop asks for a confirmation first.

import { api } from "../lib/api.js";
import { errorBox, h, toast } from "../lib/dom.js";
import { Names } from "../lib/names.js";
import { sse } from "../lib/sse.js";
import { TERMINAL, older } from "../lib/status.js";
import { everySecond } from "../lib/time.js";
import { sessionHead, stopDialog } from "./session/head.js";
import { liveNote } from "./session/live.js";
import { followLog } from "./session/log-follow.js";
import { LogView } from "./session/log-view.js";
import { outputsSection } from "./session/outputs.js";
import { errorSection, paramsSection, progressSection } from "./session/sections.js";
import { sessionSummary } from "./session/summary.js";
import { usageSection } from "./session/usage.js";

export async function render(root, params, ctx) {
  const { signal } = ctx;
  const id = Number(params.id);
  if (!Number.isInteger(id) || id < 1) {
    root.append(h("h1", {}, "Session"), errorBox(`No session ${params.id}.`));
    return;
  }
  let task = await api("GET", `/tasks/${id}`, { signal });
  if (signal.aborted) return;
  const names = new Names(task.team_id, signal);
  await names.load();
  if (signal.aborted) return;

  const head = sessionHead(id);
  const live = liveNote();
  const summary = sessionSummary(names, signal);
  const progress = progressSection();
  const usage = usageSection();
  const error = errorSection();
  const outputs = outputsSection();
  const paramsBox = paramsSection();
  root.append(...head.els, live.el, summary.el, progress.el, usage.el, error.el, outputs.el, paramsBox.el);

  const showStatus = () => {
    head.showStatus(task);
    summary.showTimeline(task);
  };
  const showAll = () => {
    head.showTitle(task);
    summary.showDetails(task);
    showStatus();
    progress.show(task);
    usage.show(task);
    error.show(task);
    outputs.show(task);
  };
  showAll();
  paramsBox.show(task);

  const log = new LogView(id);
  root.append(log.el);

  const dialog = stopDialog(id, async () => {
    try {
      const r = await api("POST", `/tasks/${id}/stop`, { signal });
      toast(r.status === "terminating" ? "Stopping the session…" : `Session ${r.status}.`);
      if (r.status !== task.status) {
        // the watch brings the whole record in a moment; show the new status now
        task = { ...task, status: r.status };
        showStatus();
      }
      head.focusStatus();
    } catch (e) {
      if (!signal.aborted) toast(`Stop failed: ${e.message}`, "error");
    }
  });
  root.append(dialog);
  head.stopBtn.addEventListener("click", () => dialog.showModal());
  signal.addEventListener("abort", () => dialog.open && dialog.close());

  const stopTicking = everySecond(signal, () => summary.tick(task));
  if (!TERMINAL.has(task.status)) {
    sse(`/tasks/${id}/watch`, {
      signal,
      onState: live.onState("status"),
      onEvent: (type, data) => {
        if (type !== "task" || older(data, task)) return;
        const wasTerminal = TERMINAL.has(task.status);
        task = data;
        showAll();
        if (!wasTerminal && TERMINAL.has(task.status)) stopTicking();
      },
    }).catch(() => {}); // said by onState
  }
  followLog(log, signal, live.onState("log"));
}
