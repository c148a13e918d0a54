// The team's saved pipelines (the newest version of each name): name, version, steps, inputs,
// when saved; Start opens the form of its inputs (developers and admins).

import { session } from "../../lib/account.js";
import { h } from "../../lib/dom.js";
import { fmtTime } from "../../lib/format.js";
import { dataTable } from "../../lib/table.js";

function row(p) {
  const steps = Array.isArray(p.document?.steps) ? p.document.steps.length : 0;
  const inputs = Object.keys(p.inputs || {});
  return h(
    "tr",
    { dataset: { pipelineId: p.id, pipeline: p.name } },
    h(
      "th",
      { scope: "row" },
      h("span", { class: "pipe-name" }, p.name),
      p.description ? h("div", { class: "muted pipe-desc" }, p.description) : null,
    ),
    h("td", {}, h("code", {}, p.version)),
    h("td", { class: "num" }, String(steps)),
    h("td", {}, inputs.length ? inputs.join(", ") : h("span", { class: "muted" }, "none")),
    h("td", { class: "nowrap" }, h("time", { datetime: p.created_at }, fmtTime(p.created_at))),
    session.can("developer")
      ? h(
          "td",
          { class: "actions-cell" },
          h("a", { class: "button", href: `#/pipelines/${p.id}/run`, "aria-label": `Start ${p.name}` }, "Start"),
        )
      : null,
  );
}

/** {el, show(pipelines)}: the saved pipelines' table (or a line saying there are none). */
export function savedSection() {
  const tbody = h("tbody");
  const columns = ["Name", "Version", "Steps", "Inputs", "Saved"];
  if (session.can("developer")) columns.push("Actions");
  const table = dataTable(columns, tbody, { attrs: { class: "pipelines", "aria-labelledby": "saved-h" } });
  const empty = h(
    "p",
    { class: "muted empty", hidden: true },
    "No saved pipelines yet: save one with ",
    h("code", {}, "appyard pipeline run FILE"),
    " or the SDK's ",
    h("code", {}, "api.pipeline.create"),
    " (docs/pipelines.md).",
  );
  const el = h("section", { "aria-labelledby": "saved-h" }, h("h2", { id: "saved-h" }, "Saved pipelines"), table, empty);
  return {
    el,
    show(pipelines) {
      tbody.replaceChildren(...pipelines.map(row));
      table.hidden = !pipelines.length;
      empty.hidden = pipelines.length > 0;
    },
  };
}
