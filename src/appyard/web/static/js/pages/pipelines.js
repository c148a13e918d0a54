// Pipelines: the team's saved pipelines (Start opens a form of a pipeline's inputs), and its
// runs, newest first, filtered by status and pipeline (kept in the address), paginated with the
// API's cursor, and live: a change of a run's session makes the page read that run again
// (pipelines/live.js), so rows change in place and new runs join the top of the first page.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { errorBox, h } from "../lib/dom.js";
import { Names } from "../lib/names.js";
import { Pager, showLoadFailure } from "../lib/pager.js";
import { everySecond } from "../lib/time.js";
import { filterBar, filtersFrom, isFiltered, matches } from "./pipelines/filters.js";
import { followTeamTasks, runLooker } from "./pipelines/live.js";
import { PAGE_SIZE, RunTable } from "./pipelines/runs.js";
import { savedSection } from "./pipelines/saved.js";

export async function render(root, _params, ctx) {
  const { signal } = ctx;
  const team = session.team;
  document.title = "Pipelines · appyard";
  root.append(h("h1", {}, "Pipelines"));
  if (!team) {
    root.append(h("p", { class: "muted" }, "You are not a member of any team yet."));
    return;
  }

  const saved = savedSection();
  const savedError = h("div");
  const filters = filtersFrom(ctx.query);
  const names = new Names(team.id, signal);
  const table = new RunTable(names);
  const pager = new Pager(signal, () => loadPage());
  const bar = filterBar(filters, () => {
    pager.reset();
    loadPage();
  });
  const errorSlot = h("div");
  root.append(
    saved.el,
    savedError,
    h("section", { "aria-labelledby": "runs-h" }, h("h2", { id: "runs-h" }, "Runs"), bar.el, errorSlot, table.el, table.empty, pager.el),
  );
  signal.addEventListener("abort", () => root.removeAttribute("aria-busy")); // root is shared

  const known = new Set(); // names of the saved pipelines
  async function loadSaved() {
    let list;
    try {
      list = await api("GET", `/teams/${team.id}/pipelines`, { signal });
    } catch (e) {
      if (!signal.aborted) savedError.replaceChildren(errorBox(e));
      return;
    }
    if (signal.aborted) return;
    savedError.replaceChildren();
    saved.show(list);
    for (const p of list) known.add(p.name);
    bar.offer(known);
  }

  let loaded = false;
  let failed = false; // the last load failed: no rows stand, nothing is queued for them
  let pending = []; // runs read while a page was loading
  let loadSeq = 0;

  async function loadPage() {
    const my = ++loadSeq;
    loaded = false;
    failed = false;
    errorSlot.replaceChildren();
    root.setAttribute("aria-busy", "true");
    let page;
    try {
      page = await api("GET", `/teams/${team.id}/pipeline-runs`, {
        query: {
          status: filters.status || undefined,
          name: filters.pipeline || undefined,
          limit: PAGE_SIZE,
          cursor: pager.cursor,
        },
        signal,
      });
    } catch (e) {
      if (signal.aborted || my !== loadSeq) return;
      root.removeAttribute("aria-busy");
      failed = true; // the stream's changes meanwhile are not kept: the next load reads them
      pending = [];
      showLoadFailure(table, errorSlot, e, () => loadPage());
      return;
    }
    if (signal.aborted || my !== loadSeq) return;
    root.removeAttribute("aria-busy");
    table.show(page.items);
    pager.nextCursor = page.next_cursor;
    loaded = true;
    pager.update();
    table.showEmpty(isFiltered(filters));
    const queued = pending;
    pending = [];
    for (const r of queued) apply(r);
    table.tick();
  }

  function apply(run) {
    if (run.team_id !== team.id) return;
    if (!known.has(run.pipeline_name)) {
      known.add(run.pipeline_name); // a pipeline saved since the page was read
      loadSaved();
    }
    if (!loaded) {
      if (!failed) pending.push(run);
      return;
    }
    if (table.update(run)) return;
    if (!pager.onFirstPage || !matches(run, filters) || !table.admits(run)) return;
    if (table.insert(run)) {
      pager.nextCursor = String(table.lastId);
      pager.update();
    }
    table.showEmpty(isFiltered(filters));
  }

  everySecond(signal, () => table.tick());
  const looker = runLooker(signal, apply);
  // opened before the first page is read, so no change falls between the two
  followTeamTasks(team.id, { signal, note: bar.liveNote, onTask: looker.task, reload: loadPage });
  await Promise.all([names.reload("users"), loadSaved()]);
  if (signal.aborted) return;
  await loadPage();
}
