// Sessions: the team's tasks, newest first, filtered by app and status (kept in the hash query),
// paginated with the API's cursor, and live: the team stream updates rows in place and adds new
// tasks at the top of the first page. No polling: the only timer ticks the shown durations.

import {
  ApiError,
  STATUSES,
  TERMINAL,
  api,
  errorBox,
  fmtDuration,
  fmtTime,
  h,
  session,
  sse,
  statusBadge,
} from "../core.js";

const PAGE_SIZE = 25;
const ACTIVE = STATUSES.filter((s) => !TERMINAL.has(s));

/** Names of a team's modules, agents and members, looked up once (again for an unknown id). */
export class Names {
  constructor(teamId, signal) {
    this.teamId = teamId;
    this.signal = signal;
    this.modules = new Map();
    this.agents = new Map();
    this.users = new Map();
    this.asked = new Set();
  }

  async load() {
    await Promise.all([this.reload("modules"), this.reload("agents"), this.reload("users")]);
  }

  async reload(kind) {
    const signal = this.signal;
    try {
      if (kind === "modules") {
        for (const m of await api("GET", "/modules", { signal })) this.modules.set(m.id, m);
      } else if (kind === "agents") {
        for (const a of await api("GET", `/teams/${this.teamId}/agents`, { signal })) this.agents.set(a.id, a);
      } else {
        for (const u of await api("GET", `/teams/${this.teamId}/members`, { signal })) this.users.set(u.user_id, u);
      }
    } catch (e) {
      if (signal.aborted) return;
      // names are a nicety: the ids still show
    }
  }

  /** Whether a task names something not known yet; then ``refresh()`` looks once more. */
  missing(task) {
    const out = [];
    if (!this.modules.has(task.module_id)) out.push("modules");
    if (task.agent_id != null && !this.agents.has(task.agent_id)) out.push("agents");
    if (!this.users.has(task.user_id)) out.push("users");
    return out.filter((k) => !this.asked.has(`${k}:${k === "modules" ? task.module_id : k === "agents" ? task.agent_id : task.user_id}`));
  }

  async refresh(task) {
    const kinds = this.missing(task);
    if (!kinds.length) return false;
    for (const k of kinds) {
      const id = k === "modules" ? task.module_id : k === "agents" ? task.agent_id : task.user_id;
      this.asked.add(`${k}:${id}`);
    }
    await Promise.all(kinds.map((k) => this.reload(k)));
    return true;
  }

  module(id) {
    return this.modules.get(id)?.name || `module ${id}`;
  }
  agent(id) {
    if (id == null) return "–";
    return this.agents.get(id)?.name || `agent ${id}`;
  }
  user(id) {
    return this.users.get(id)?.login || `user ${id}`;
  }
}

/** Whether ``a`` is an older state of a task than ``b`` (by ``updated_at``). */
export function older(a, b) {
  return Date.parse(a.updated_at) < Date.parse(b.updated_at);
}

export function progressText(p) {
  if (!p) return "";
  const num = (x) => x.toLocaleString(undefined, { maximumFractionDigits: 1 });
  const count = p.total != null ? `${num(p.current)} / ${num(p.total)}` : num(p.current);
  return p.message ? `${count} ${p.message}` : count;
}

function progressCell(p) {
  if (!p) return "";
  const wrap = h("div", { class: "cell-progress" });
  if (p.total) {
    wrap.append(h("progress", { max: p.total, value: Math.min(p.current, p.total), "aria-hidden": "true" }));
  }
  wrap.append(h("span", { class: "muted" }, progressText(p)));
  return wrap;
}

function statusFilterOptions(selected) {
  const opts = [
    ["", "All statuses"],
    [ACTIVE.join(","), "Not ended"],
    [[...TERMINAL].join(","), "Ended"],
    ...STATUSES.map((s) => [s, s]),
  ];
  return opts.map(([v, label]) => h("option", { value: v, selected: v === selected }, label));
}

export async function render(root, _params, ctx) {
  const { signal } = ctx;
  const team = session.team;
  root.append(h("h1", {}, "Sessions"));
  if (!team) {
    root.append(h("p", { class: "muted" }, "You are not a member of any team yet."));
    return;
  }

  // -- state ---------------------------------------------------------------------------------
  const filters = {
    app: ctx.query.get("app") || "",
    status: ctx.query.get("status") || "",
  };
  let cursors = [null]; // cursor of each page shown so far; the last is the current page's
  let nextCursor = null;
  const rows = new Map(); // task id -> {task, tr, cells}
  let order = []; // task ids of the page, newest first
  let loaded = false;
  let pending = []; // stream events that came while a page was loading
  let loadSeq = 0;
  const names = new Names(team.id, signal);

  // -- the frame -----------------------------------------------------------------------------
  const appSelect = h("select", { id: "filter-app", name: "app" }, h("option", { value: "" }, "All apps"));
  const statusSelect = h("select", { id: "filter-status", name: "status" }, statusFilterOptions(filters.status));
  if (filters.status && !statusSelect.querySelector("option:checked")?.value) {
    statusSelect.append(h("option", { value: filters.status, selected: true }, filters.status));
  }
  const filterBar = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter sessions", onsubmit: (ev) => ev.preventDefault() },
    h("label", {}, h("span", {}, "App"), appSelect),
    h("label", {}, h("span", {}, "Status"), statusSelect),
    h("span", { class: "live muted", "aria-live": "polite" }),
  );
  const liveNote = filterBar.querySelector(".live");
  const tbody = h("tbody");
  const table = h(
    "table",
    { class: "sessions" },
    h("caption", { class: "sr-only" }, "Sessions of the team, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["ID", "Status", "App", "Name", "Agent", "User", "Started", "Duration", "Progress"].map((t) =>
          h("th", { scope: "col" }, t),
        ),
      ),
    ),
    tbody,
  );
  const empty = h("p", { class: "muted empty", hidden: true });
  const errorSlot = h("div");
  const prev = h("button", { type: "button", disabled: true }, "Previous");
  const next = h("button", { type: "button", disabled: true }, "Next");
  const pageLabel = h("span", { class: "muted" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages" }, prev, pageLabel, next);
  const wrap = h("div", { class: "table-wrap" }, table);
  root.append(filterBar, errorSlot, wrap, empty, pager);

  // -- rows ----------------------------------------------------------------------------------
  const startOf = (t) => t.started_at || t.created_at;

  function makeRow(task) {
    const link = h("a", { href: `#/sessions/${task.id}`, class: "row-link" }, `#${task.id}`);
    const cells = {
      id: h("td", { class: "num" }, link),
      status: h("td"),
      app: h("td"),
      name: h("td", { class: "name" }),
      agent: h("td"),
      user: h("td"),
      start: h("td", { class: "nowrap" }),
      duration: h("td", { class: "nowrap num" }),
      progress: h("td"),
    };
    const tr = h(
      "tr",
      {
        class: "clickable",
        dataset: { taskId: task.id },
        onclick: (ev) => {
          if (ev.target.closest("a, button") || String(window.getSelection() || "")) return;
          location.hash = `#/sessions/${task.id}`;
        },
      },
      Object.values(cells),
    );
    const row = { task, tr, cells };
    fill(row, task);
    return row;
  }

  function fill(row, task) {
    const old = row.filled;
    const { cells } = row;
    row.task = task;
    if (!old || old.status !== task.status) {
      cells.status.replaceChildren(statusBadge(task.status));
      row.tr.dataset.status = task.status;
    }
    cells.app.textContent = names.module(task.module_id);
    cells.name.textContent = task.name;
    cells.name.title = task.description || task.name;
    cells.agent.textContent = names.agent(task.agent_id);
    cells.user.textContent = names.user(task.user_id);
    const at = startOf(task);
    if (!old || startOf(old) !== at) {
      cells.start.replaceChildren(h("time", { datetime: at }, fmtTime(at)));
      cells.start.title = task.started_at ? "started" : "created (not started yet)";
    }
    cells.duration.textContent = fmtDuration(task.started_at, task.ended_at);
    if (!old || JSON.stringify(old.progress) !== JSON.stringify(task.progress)) {
      cells.progress.replaceChildren(progressCell(task.progress));
    }
    row.filled = task;
  }

  function refillNames() {
    for (const row of rows.values()) fill(row, row.task);
  }

  function matches(task) {
    if (filters.app && String(task.module_id) !== filters.app) return false;
    if (filters.status && !filters.status.split(",").includes(task.status)) return false;
    return true;
  }

  function showEmpty() {
    empty.hidden = order.length > 0;
    empty.textContent =
      filters.app || filters.status ? "No sessions match these filters." : "No sessions yet: start an app from the ecosystem.";
  }

  function updatePager() {
    const n = cursors.length;
    prev.disabled = n <= 1;
    next.disabled = !nextCursor;
    pageLabel.textContent = `Page ${n}`;
    pager.hidden = n <= 1 && !nextCursor;
  }

  signal.addEventListener("abort", () => root.removeAttribute("aria-busy")); // root is shared

  // -- loading a page ------------------------------------------------------------------------
  async function loadPage() {
    const my = ++loadSeq;
    loaded = false;
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
          cursor: cursors[cursors.length - 1],
        },
        signal,
      });
    } catch (e) {
      if (signal.aborted || my !== loadSeq) return;
      root.removeAttribute("aria-busy");
      errorSlot.replaceChildren(errorBox(e));
      return;
    }
    if (signal.aborted || my !== loadSeq) return;
    root.removeAttribute("aria-busy");
    rows.clear();
    order = [];
    for (const task of page.items) {
      rows.set(task.id, makeRow(task));
      order.push(task.id);
    }
    tbody.replaceChildren(...order.map((id) => rows.get(id).tr));
    nextCursor = page.next_cursor;
    loaded = true;
    updatePager();
    showEmpty();
    for (const task of page.items) lookUpNames(task);
    const queued = pending;
    pending = [];
    for (const t of queued) apply(t);
    tick();
  }

  function lookUpNames(task) {
    if (names.missing(task).length) names.refresh(task).then((changed) => changed && refillNames());
  }

  // -- live changes --------------------------------------------------------------------------
  function apply(task) {
    if (task.team_id !== team.id) return;
    if (!loaded) {
      pending.push(task);
      return;
    }
    const row = rows.get(task.id);
    if (row) {
      if (older(task, row.task)) return; // an older state than the one shown
      fill(row, task);
      return;
    }
    // a task not shown: it joins the first page when it matches and belongs there
    if (cursors.length > 1 || !matches(task)) return;
    const full = order.length >= PAGE_SIZE;
    if (full && task.id < order[order.length - 1]) return;
    const fresh = makeRow(task);
    lookUpNames(task);
    let i = order.findIndex((id) => id < task.id);
    if (i < 0) i = order.length;
    order.splice(i, 0, task.id);
    rows.set(task.id, fresh);
    const before = rows.get(order[i + 1]);
    tbody.insertBefore(fresh.tr, before ? before.tr : null);
    fresh.tr.classList.add("fresh");
    setTimeout(() => fresh.tr.classList.remove("fresh"), 1500);
    if (order.length > PAGE_SIZE) {
      const dropped = order.pop();
      rows.get(dropped).tr.remove();
      rows.delete(dropped);
      nextCursor = String(order[order.length - 1]);
      updatePager();
    }
    showEmpty();
    tick();
  }

  async function follow() {
    let lastId = null; // the id (an updated_at) of the last event: a reconnect resumes there
    let attempts = 0;
    try {
      await sse("/tasks/stream", {
        signal,
        onState: (state) => {
          // the table is live while the stream is open; say so plainly when it is not
          if (state === "open") liveNote.textContent = "";
          else if (state === "broken") {
            liveNote.textContent = "Live updates are interrupted, so the table may be out of date. Reconnecting…";
          }
        },
        query: () => {
          attempts += 1;
          // a reconnect resumes after the last event; without one, the page is read again
          if (attempts > 1 && !lastId) setTimeout(() => !signal.aborted && loadPage(), 300);
          return { team_id: team.id, after: lastId || undefined };
        },
        onEvent: (type, data, id) => {
          if (type !== "task") return;
          if (id) lastId = id;
          apply(data);
        },
      });
    } catch (e) {
      if (signal.aborted) return;
      liveNote.textContent =
        e instanceof ApiError && (e.status === 404 || e.status === 422)
          ? "Live updates are not available on this server."
          : `Live updates stopped: ${e.message}`;
    }
  }

  // -- durations of running tasks tick while the page is shown ----------------------------------
  function tick() {
    for (const row of rows.values()) {
      const t = row.task;
      if (t.started_at && !t.ended_at) row.cells.duration.textContent = fmtDuration(t.started_at, null);
    }
  }
  const timer = setInterval(() => {
    if (!document.hidden) tick();
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(timer));

  // -- controls ------------------------------------------------------------------------------
  function setFilters() {
    filters.app = appSelect.value;
    filters.status = statusSelect.value;
    const q = new URLSearchParams();
    if (filters.app) q.set("app", filters.app);
    if (filters.status) q.set("status", filters.status);
    const qs = q.toString();
    // the filters live in the address (a reload keeps them) without re-rendering the page
    history.replaceState(null, "", `#/sessions${qs ? "?" + qs : ""}`);
    cursors = [null];
    loadPage();
  }
  appSelect.addEventListener("change", setFilters);
  statusSelect.addEventListener("change", setFilters);
  next.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    loadPage().then(() => !signal.aborted && next.disabled && prev.focus());
  });
  prev.addEventListener("click", () => {
    if (cursors.length <= 1) return;
    cursors.pop();
    loadPage().then(() => !signal.aborted && prev.disabled && next.focus());
  });

  // -- go --------------------------------------------------------------------------------------
  follow(); // opened before the first page is read, so no change falls between the two
  await names.load();
  if (signal.aborted) return;
  const mods = [...names.modules.values()].sort((a, b) => a.name.localeCompare(b.name));
  appSelect.append(...mods.map((m) => h("option", { value: m.id, selected: String(m.id) === filters.app }, m.name)));
  if (filters.app && !names.modules.has(Number(filters.app))) {
    appSelect.append(h("option", { value: filters.app, selected: true }, `module ${filters.app}`));
  }
  await loadPage();
}
