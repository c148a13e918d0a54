// The runs table's filters, by status and pipeline (its name: every version), kept in the
// page's address.

import { h } from "../../lib/dom.js";
import { RUN_ACTIVE, RUN_ENDED, RUN_STATUSES } from "../../lib/status.js";

/** The filters in the address: {status, pipeline} ("" for all). */
export function filtersFrom(query) {
  return { status: query.get("status") || "", pipeline: query.get("pipeline") || "" };
}

export function isFiltered(filters) {
  return Boolean(filters.status || filters.pipeline);
}

export function matches(run, filters) {
  if (filters.pipeline && run.pipeline_name !== filters.pipeline) return false;
  if (filters.status && !filters.status.split(",").includes(run.status)) return false;
  return true;
}

function statusOptions(selected) {
  const opts = [
    ["", "All statuses"],
    [RUN_ACTIVE.join(","), "Not ended"],
    [[...RUN_ENDED].join(","), "Ended"],
    ...RUN_STATUSES.map((s) => [s, s]),
  ];
  return opts.map(([v, label]) => h("option", { value: v, selected: v === selected }, label));
}

function keepInAddress(filters) {
  const q = new URLSearchParams();
  if (filters.status) q.set("status", filters.status);
  if (filters.pipeline) q.set("pipeline", filters.pipeline);
  const qs = q.toString();
  history.replaceState(null, "", `#/pipelines${qs ? "?" + qs : ""}`);
}

/** The filter bar with a place for the live note. A pick changes ``filters`` in place and
 *  calls ``onChange``; ``offer(names)`` lists the pipelines' names once they are known. */
export function filterBar(filters, onChange) {
  const statusSelect = h("select", { id: "filter-run-status", name: "status" }, statusOptions(filters.status));
  if (filters.status && !statusSelect.querySelector("option:checked")?.value) {
    statusSelect.append(h("option", { value: filters.status, selected: true }, filters.status));
  }
  const pipeSelect = h("select", { id: "filter-pipeline", name: "pipeline" });
  const liveNote = h("span", { class: "live muted", "aria-live": "polite" });
  const el = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: (ev) => ev.preventDefault() },
    h("label", {}, h("span", {}, "Status"), statusSelect),
    h("label", {}, h("span", {}, "Pipeline"), pipeSelect),
    liveNote,
  );
  const changed = () => {
    filters.status = statusSelect.value;
    filters.pipeline = pipeSelect.value;
    keepInAddress(filters);
    onChange();
  };
  statusSelect.addEventListener("change", changed);
  pipeSelect.addEventListener("change", changed);

  const offer = (names) => {
    const all = [...new Set([...names, ...(filters.pipeline ? [filters.pipeline] : [])])].sort();
    pipeSelect.replaceChildren(
      h("option", { value: "" }, "All pipelines"),
      ...all.map((n) => h("option", { value: n, selected: n === filters.pipeline }, n)),
    );
  };
  offer([]);
  return { el, liveNote, offer };
}
