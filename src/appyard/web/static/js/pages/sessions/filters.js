// The sessions table's filters, by app and status, kept in the page's address.

import { h } from "../../lib/dom.js";
import { ACTIVE, STATUSES, TERMINAL } from "../../lib/status.js";

/** The filters in the address: {app, status} ("" for all). */
export function filtersFrom(query) {
  return { app: query.get("app") || "", status: query.get("status") || "" };
}

export function isFiltered(filters) {
  return Boolean(filters.app || filters.status);
}

export function matches(task, filters) {
  if (filters.app && String(task.module_id) !== filters.app) return false;
  if (filters.status && !filters.status.split(",").includes(task.status)) return false;
  return true;
}

function statusOptions(selected) {
  const opts = [
    ["", "All statuses"],
    [ACTIVE.join(","), "Not ended"],
    [[...TERMINAL].join(","), "Ended"],
    ...STATUSES.map((s) => [s, s]),
  ];
  return opts.map(([v, label]) => h("option", { value: v, selected: v === selected }, label));
}

function keepInAddress(filters) {
  const q = new URLSearchParams();
  if (filters.app) q.set("app", filters.app);
  if (filters.status) q.set("status", filters.status);
  const qs = q.toString();
  // the filters live in the address (a reload keeps them) without re-rendering the page
  history.replaceState(null, "", `#/sessions${qs ? "?" + qs : ""}`);
}

/** The filter bar, with a place for the live note. A pick changes ``filters`` in place and
 *  calls ``onChange``; ``addApps(modules)`` offers the apps once they are known. */
export function filterBar(filters, onChange) {
  const appSelect = h("select", { id: "filter-app", name: "app" }, h("option", { value: "" }, "All apps"));
  const statusSelect = h("select", { id: "filter-status", name: "status" }, statusOptions(filters.status));
  if (filters.status && !statusSelect.querySelector("option:checked")?.value) {
    statusSelect.append(h("option", { value: filters.status, selected: true }, filters.status));
  }
  const liveNote = h("span", { class: "live muted", "aria-live": "polite" });
  const el = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter sessions", onsubmit: (ev) => ev.preventDefault() },
    h("label", {}, h("span", {}, "App"), appSelect),
    h("label", {}, h("span", {}, "Status"), statusSelect),
    liveNote,
  );
  const changed = () => {
    filters.app = appSelect.value;
    filters.status = statusSelect.value;
    keepInAddress(filters);
    onChange();
  };
  appSelect.addEventListener("change", changed);
  statusSelect.addEventListener("change", changed);

  const addApps = (modules) => {
    const mods = [...modules.values()].sort((a, b) => a.name.localeCompare(b.name));
    appSelect.append(...mods.map((m) => h("option", { value: m.id, selected: String(m.id) === filters.app }, m.name)));
    if (filters.app && !modules.has(Number(filters.app))) {
      appSelect.append(h("option", { value: filters.app, selected: true }, `module ${filters.app}`));
    }
  };
  return { el, liveNote, addApps };
}
