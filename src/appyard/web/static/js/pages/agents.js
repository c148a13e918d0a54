// The team's agents (online or not, slots, running tasks) and, for developers, adding one.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
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

function agentRow(a, rotate) {
  return h(
    "tr",
    { dataset: { agentId: a.id } },
    h("th", { scope: "row" }, a.name),
    h("td", {}, agentBadge(a.status)),
    h("td", { class: "num" }, a.slots),
    h("td", { class: "num" }, a.running),
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
  const load = async () => {
    const agents = sortAgents(await api("GET", `/teams/${team.id}/agents`, { signal }));
    tbody.replaceChildren(...agents.map((a) => agentRow(a, rotate)));
    empty.hidden = agents.length > 0;
    summary.textContent = `${agents.filter((a) => a.status === "online").length} of ${agents.length} online`;
  };
  const columns = ["Name", "Status", "Slots", "Running", "Host", "Version", "Sandbox", "Last seen"];
  if (rotate) columns.push("Token");

  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Agents"),
      h("button", { type: "button", onclick: () => load().catch((e) => toast(e.message, "error")) }, "Refresh"),
    ),
    summary,
    dataTable(columns, tbody, { attrs: { "aria-label": "Agents" } }),
    empty,
    rotate?.el,
  );
  await load();

  if (!session.can("developer")) return;
  root.append(...addAgent(team, signal, load));
}
