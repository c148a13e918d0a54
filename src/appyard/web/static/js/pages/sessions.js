// Sessions: the team's tasks, newest first, filtered by app and status (kept in the hash query),
// paginated with the API's cursor, and live: the team stream updates rows in place and adds new
// tasks at the top of the first page. No polling: the only timer ticks the shown durations.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { Names } from "../lib/names.js";
import { Pager, showLoadFailure } from "../lib/pager.js";
import { everySecond } from "../lib/time.js";
import { filterBar, filtersFrom, isFiltered, matches } from "./sessions/filters.js";
import { followTeam } from "./sessions/live.js";
import { PAGE_SIZE, SessionTable } from "./sessions/table.js";

export async function render(root, _params, ctx) {
  const { signal } = ctx;
  const team = session.team;
  root.append(h("h1", {}, "Sessions"));
  if (!team) {
    root.append(h("p", { class: "muted" }, "You are not a member of any team yet."));
    return;
  }

  const filters = filtersFrom(ctx.query);
  const names = new Names(team.id, signal);
  const table = new SessionTable(names);
  const pager = new Pager(signal, () => loadPage());
  const bar = filterBar(filters, () => {
    pager.reset();
    loadPage();
  });
  const errorSlot = h("div");
  root.append(bar.el, errorSlot, table.el, table.empty, pager.el);
  signal.addEventListener("abort", () => root.removeAttribute("aria-busy")); // root is shared

  let loaded = false;
  let failed = false; // the last load failed: no rows stand, nothing is queued for them
  let pending = []; // stream events that came while a page was loading
  let loadSeq = 0;

  async function loadPage() {
    const my = ++loadSeq;
    loaded = false;
    failed = false;
    errorSlot.replaceChildren();
    root.setAttribute("aria-busy", "true");
    let page;
    try {
      page = await api("GET", "/tasks", {
        query: {
          team_id: team.id,
          module_id: filters.app || undefined,
          status: filters.status || undefined,
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
    for (const task of page.items) lookUpNames(task);
    const queued = pending;
    pending = [];
    for (const t of queued) apply(t);
    table.tick();
  }

  function lookUpNames(task) {
    if (names.missing(task).length) names.refresh(task).then((changed) => changed && table.refill());
  }

  function apply(task) {
    if (task.team_id !== team.id) return;
    if (!loaded) {
      if (!failed) pending.push(task);
      return;
    }
    if (table.update(task)) return;
    // a task not shown: it joins the first page when it matches and belongs there
    if (!pager.onFirstPage || !matches(task, filters) || !table.admits(task)) return;
    if (table.insert(task)) {
      pager.nextCursor = String(table.lastId);
      pager.update();
    }
    lookUpNames(task);
    table.showEmpty(isFiltered(filters));
    table.tick();
  }

  everySecond(signal, () => table.tick());
  // opened before the first page is read, so no change falls between the two
  followTeam(team.id, { signal, note: bar.liveNote, apply, reload: loadPage });
  await names.load();
  if (signal.aborted) return;
  bar.addApps(names.modules);
  await loadPage();
}
