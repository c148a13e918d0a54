// The team's agents (online or not, slots, running tasks, their machines and labels) and, for
// developers, adding one.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { sse } from "../lib/sse.js";
import { h, toast } from "../lib/dom.js";
import { fmtTime } from "../lib/format.js";
import { agentBadge, sortAgents } from "../lib/status.js";
import { dataTable } from "../lib/table.js";
import { addAgent } from "./agents/add.js";
import { rotateToken } from "./agents/rotate.js";

// How the agent runs apps: "none" stands out (its apps see what the agent's user sees).
function isolation(mode) {
  if (mode === "none") {
    return h(
      "span",
      { class: "status status-error", title: "Apps on this agent are not sandboxed: they can read what its user can." },
      "not sandboxed",
    );
  }
  if (mode === "user") {
    return h(
      "span",
      { class: "status status-queued", title: "No sandbox here: each app runs as an unprivileged user of its own, which cannot read the agent's files." },
      "own user",
    );
  }
  return mode || "–";
}

// Megabytes as people read them (as `appyard agent list` does): "512 MB", "7.8 GB", "80 GB".
function fmtMb(mb) {
  if (mb == null) return "–";
  if (mb < 1024) return `${mb} MB`;
  const [value, unit] = mb < 1024 * 1024 ? [mb / 1024, "GB"] : [mb / 1024 / 1024, "TB"];
  return `${value.toFixed(value < 10 ? 1 : 0)} ${unit}`;
}

// Total memory, with what is available now beside it.
function memory(a) {
  if (a.memory_mb == null) return "–";
  const free = a.memory_available_mb != null ? ` (${fmtMb(a.memory_available_mb)} free)` : "";
  return `${fmtMb(a.memory_mb)}${free}`;
}

function disk(a) {
  if (a.disk_free_mb == null) return "–";
  return h("span", { title: `of ${fmtMb(a.disk_total_mb)} in the agent's work folder` }, fmtMb(a.disk_free_mb));
}

// One line per GPU: index, model, memory; "0" for an agent that reported none.
function gpus(a) {
  if (!a.gpus || a.gpus.length === 0) return a.inventory_at ? "0" : "–";
  return h(
    "ul",
    { class: "gpu-list", "aria-label": `${a.gpus.length} GPUs` },
    ...a.gpus.map((g) =>
      h(
        "li",
        { title: g.uuid, class: g.task_id ? "gpu-held" : "gpu-free" },
        `${g.index}: ${g.name} (${fmtMb(g.memory_mb)}) `,
        g.task_id ? h("a", { href: `#/sessions/${g.task_id}` }, `held by #${g.task_id}`) : h("span", { class: "muted" }, "free"),
      ),
    ),
  );
}

function labels(a) {
  const entries = Object.entries(a.labels || {}).sort(([x], [y]) => (x < y ? -1 : 1));
  if (entries.length === 0) return "–";
  return h("span", {}, ...entries.flatMap(([k, v], i) => [i ? " " : "", h("code", {}, `${k}=${v}`)]));
}

function agentRow(a, rotate) {
  return h(
    "tr",
    { dataset: { agentId: a.id } },
    h("th", { scope: "row" }, a.name),
    h("td", {}, agentBadge(a.status)),
    h("td", { class: "num" }, a.slots),
    h("td", { class: "num" }, a.running),
    h("td", { class: "num" }, a.cpus ?? "–"),
    h("td", {}, memory(a)),
    h("td", {}, disk(a)),
    h("td", {}, gpus(a)),
    h("td", {}, labels(a)),
    h("td", {}, a.hostname || "–"),
    h("td", {}, a.version || "–"),
    h("td", {}, isolation(a.isolation)),
    h("td", {}, fmtTime(a.last_seen_at)),
    rotate ? h("td", { class: "actions-cell" }, rotate.button(a)) : null,
  );
}

export async function render(root, _params, { signal }) {
  const team = session.team;
  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true }, "The team has no agents yet.");
  const summary = h("p", { class: "muted", role: "status" });
  const rotate = session.can("admin") ? rotateToken(signal) : null; // team admins rotate tokens
  const note = h("p", { class: "muted", role: "status" });
  const show = (list) => {
    const agents = sortAgents(list);
    tbody.replaceChildren(...agents.map((a) => agentRow(a, rotate)));
    empty.hidden = agents.length > 0;
    summary.textContent = `${agents.filter((a) => a.status === "online").length} of ${agents.length} online`;
  };
  const load = async () => show(await api("GET", `/teams/${team.id}/agents`, { signal }));
  const columns = [
    "Name",
    "Status",
    "Slots",
    "Running",
    "CPUs",
    "Memory",
    "Disk free",
    "GPUs",
    "Labels",
    "Host",
    "Version",
    "Sandbox",
    "Last seen",
  ];
  if (rotate) columns.push("Token");

  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Agents"),
      h("button", { type: "button", onclick: () => load().catch((e) => toast(e.message, "error")) }, "Refresh"),
    ),
    summary,
    note,
    dataTable(columns, tbody, { attrs: { "aria-label": "Agents" } }),
    empty,
    ...(rotate ? [rotate.el] : []), // DOM append writes "undefined" for a missing one
  );
  await load();
  // live: the list again whenever an agent or what its sessions hold changes (pushed)
  sse(`/teams/${team.id}/agents/stream`, {
    signal,
    onState: (state) => {
      if (state === "open") note.textContent = "";
      else if (state === "broken") note.textContent = "Live updates are interrupted; reconnecting…";
    },
    onEvent: (type, data) => type === "agents" && show(data.agents),
  }).catch((e) => {
    if (!signal.aborted) note.textContent = `Live updates stopped: ${e.message}`;
  });

  if (!session.can("developer")) return;
  root.append(...addAgent(team, signal, load));
}
