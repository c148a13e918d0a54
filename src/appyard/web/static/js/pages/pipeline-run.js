// One pipeline run: its status, Stop and Resume (each asked first), its details and inputs, the
// graph of its steps, and the selected step's attempts with their sessions. Live over the run's
// watch (server-sent events) while it runs: every change redraws the graph; while the stream is
// broken the page says so. Once it ended, a long-poll waits for a resume (from anywhere). The
// selected step is kept in the address (``?step=``).

import { api } from "../lib/api.js";
import { confirmAction } from "../lib/confirm.js";
import { errorBox, h, toast } from "../lib/dom.js";
import { Names } from "../lib/names.js";
import { sse } from "../lib/sse.js";
import { RUN_ENDED } from "../lib/status.js";
import { everySecond, sleep } from "../lib/time.js";
import { runDetails } from "./pipeline-run/details.js";
import { runGraph } from "./pipeline-run/graph.js";
import { runHead } from "./pipeline-run/head.js";
import { stepPanel } from "./pipeline-run/step.js";

const ASK = {
  stop: (id) => ({
    title: `Stop run #${id}?`,
    text: "Every running step's session is asked to stop (SIGTERM), and killed after its grace period; steps not started yet are skipped. The run ends as stopped.",
    verb: "Stop run",
  }),
  resume: (id) => ({
    title: `Resume run #${id}?`,
    text: "The steps that did not finish run again, each with a new attempt. Finished steps keep their outputs and do not run again.",
    verb: "Resume run",
  }),
};

/** The step to show first: the one asked for, else one that failed or runs, else the first. */
function firstPick(run, asked) {
  if (asked && run.steps.some((s) => s.id === asked)) return asked;
  const pick = run.steps.find((s) => s.state === "error") || run.steps.find((s) => s.state === "running" || s.state === "retrying");
  return (pick || run.steps[0])?.id || null;
}

export async function render(root, params, ctx) {
  const { signal, query } = ctx;
  const id = Number(params.id);
  if (!Number.isInteger(id) || id < 1) {
    root.append(h("h1", {}, "Pipeline run"), errorBox(`No pipeline run ${params.id}.`));
    return;
  }
  let run = await api("GET", `/pipeline-runs/${id}`, { signal });
  if (signal.aborted) return;
  const names = new Names(run.team_id, signal);
  await names.reload("users");
  if (signal.aborted) return;

  let selected = firstPick(run, query.get("step"));
  const head = runHead(id);
  const refusal = h("p", { class: "error admin-error", role: "alert", hidden: true });
  const live = h("p", { class: "live-note", role: "alert", hidden: true });
  const details = runDetails(names);
  const graph = runGraph((stepId) => {
    selected = stepId;
    history.replaceState(null, "", `#/pipeline-runs/${id}?step=${encodeURIComponent(stepId)}`);
    showRun();
  });
  const panel = stepPanel();
  root.append(
    ...head.els,
    refusal,
    live,
    details.errorEl,
    h(
      "section",
      { "aria-labelledby": "graph-h" },
      h("h2", { id: "graph-h" }, "Steps"),
      h("p", { class: "muted graph-help" }, "Select a step to see its attempts; a step's session number opens its session."),
      graph.el,
    ),
    panel.el,
    details.el,
  );

  function showRun() {
    head.show(run);
    details.show(run);
    graph.show(run, selected);
    panel.show(run.steps.find((s) => s.id === selected) || null);
  }
  showRun();

  let following = false;
  let refused = false; // the watch was refused (4xx): not tried again
  function follow() {
    if (following || refused || RUN_ENDED.has(run.status) || signal.aborted) return;
    following = true;
    sse(`/pipeline-runs/${id}/watch`, {
      signal,
      onState: (state, error) => {
        if (state === "refused") refused = true;
        live.hidden = state !== "broken" && state !== "refused";
        live.textContent =
          state === "refused"
            ? `Live updates have stopped, so the run shown may be out of date. ${error?.message || ""}`
            : "The live connection to the server is broken, so the run shown may be out of date. Reconnecting…";
      },
      onEvent: (type, data) => {
        if (type !== "run") return;
        run = data;
        showRun();
      },
    })
      .catch(() => {}) // said by onState
      .finally(() => {
        following = false;
        // a resume may have come after the end the stream saw: follow the run again
        if (!RUN_ENDED.has(run.status)) follow();
        else awaitResume();
      });
  }

  // An ended run comes back with a resume, from this page or from anywhere else: a long-poll
  // on the run answers the moment it is running again (and says after 25 s that it is not).
  let awaiting = false;
  async function awaitResume() {
    if (awaiting) return;
    awaiting = true;
    try {
      while (!signal.aborted && !refused && RUN_ENDED.has(run.status)) {
        let r;
        try {
          r = await api("GET", `/pipeline-runs/${id}/wait`, {
            query: { until: "queued,running,terminating", timeout: 25 },
            signal,
          });
        } catch (e) {
          if (signal.aborted || (e.status >= 400 && e.status < 500)) return;
          await sleep(2000, signal); // the server is out of reach: the watch's note says so later
          continue;
        }
        if (signal.aborted) return;
        if (following) break; // resumed from this page: the watch shows it already
        // a run resumed and ended again between two looks is caught by comparing
        if (!r.timed_out || JSON.stringify(r.run) !== JSON.stringify(run)) {
          run = r.run;
          showRun();
        }
      }
    } finally {
      awaiting = false;
    }
    follow();
  }

  async function act(kind, button) {
    refusal.hidden = true;
    if (!(await confirmAction(ASK[kind](id), signal)) || signal.aborted) return;
    button.disabled = true;
    try {
      const r = await api("POST", `/pipeline-runs/${id}/${kind}`, { signal });
      run = r;
      showRun();
      toast(kind === "stop" ? (r.status === "terminating" ? "Stopping the run…" : `Run ${r.status}.`) : "Resuming the run…");
      head.focusStatus();
      follow();
    } catch (e) {
      if (signal.aborted) return;
      refusal.textContent = e.message; // the server's own words (a 409 says why)
      refusal.hidden = false;
    } finally {
      button.disabled = false;
    }
  }
  head.stopBtn.addEventListener("click", () => act("stop", head.stopBtn));
  head.resumeBtn.addEventListener("click", () => act("resume", head.resumeBtn));

  everySecond(signal, () => details.tick(run));
  if (RUN_ENDED.has(run.status)) awaitResume();
  else follow();
}
