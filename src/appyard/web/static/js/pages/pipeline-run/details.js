// A run's details (pipeline, who started it, its times, inputs) and its error (``errorEl``).

import { h } from "../../lib/dom.js";
import { fmtDuration, fmtTime } from "../../lib/format.js";
import { stepsText } from "../../lib/pipelines.js";
import { detail } from "../../lib/views.js";

export function runDetails(names) {
  const details = h("dl", { class: "details" });
  const duration = h("span", { class: "num" });
  const inputs = h("pre", { class: "json" });
  const error = h("pre", { class: "error-text" });
  const errorBox = h("section", { "aria-labelledby": "run-error-h", hidden: true }, h("h2", { id: "run-error-h" }, "Error"), error);
  const el = h(
    "div",
    { class: "session-grid run-details" },
    h("section", { class: "card", "aria-label": "Details" }, details),
    h("section", { class: "card", "aria-labelledby": "run-inputs-h" }, h("h2", { id: "run-inputs-h" }, "Inputs"), inputs),
  );
  return {
    el,
    errorEl: errorBox,
    show(run) {
      const filter = `#/pipelines?pipeline=${encodeURIComponent(run.pipeline_name)}`;
      details.replaceChildren(
        ...detail("Pipeline", [h("a", { href: filter, title: "Runs of this pipeline" }, run.pipeline_name), " ", h("code", { class: "muted" }, run.pipeline_version)]),
        ...detail("Steps", stepsText(run)),
        ...detail("Started by", names.user(run.created_by)),
        ...detail("Created", h("time", { datetime: run.created_at }, fmtTime(run.created_at))),
        ...(run.started_at ? detail("Started", h("time", { datetime: run.started_at }, fmtTime(run.started_at))) : []),
        ...(run.ended_at ? detail("Ended", h("time", { datetime: run.ended_at }, fmtTime(run.ended_at))) : []),
        ...detail("Duration", duration),
      );
      duration.textContent = fmtDuration(run.started_at, run.ended_at);
      inputs.textContent = JSON.stringify(run.inputs || {}, null, 2);
      errorBox.hidden = !run.error;
      error.textContent = run.error || "";
    },
    /** Redraw the duration of a running run. */
    tick(run) {
      if (run.started_at && !run.ended_at) duration.textContent = fmtDuration(run.started_at, null);
    },
  };
}
