// The team's agents (online or not, slots, running tasks) and, for developers, adding one.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { h, toast } from "../lib/dom.js";
import { fmtTime } from "../lib/format.js";
import { agentBadge, sortAgents } from "../lib/status.js";
import { dataTable } from "../lib/table.js";
import { addAgent } from "./agents/add.js";

// How the agent runs apps: "none" stands out (its apps see what the agent's user sees).
function isolation(mode) {
  if (mode === "none") {
    return h(
      "span",
      { class: "status status-error", title: "Apps on this agent are not sandboxed: they can read what its user can." },
      "not sandboxed",
    );
  }
  return mode || "–";
}

function agentRow(a) {
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
  );
}

export async function render(root, _params, { signal }) {
  const team = session.team;
  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true }, "The team has no agents yet.");
  const summary = h("p", { class: "muted", role: "status" });
  const load = async () => {
    const agents = sortAgents(await api("GET", `/teams/${team.id}/agents`, { signal }));
    tbody.replaceChildren(...agents.map(agentRow));
    empty.hidden = agents.length > 0;
    summary.textContent = `${agents.filter((a) => a.status === "online").length} of ${agents.length} online`;
  };
  const columns = ["Name", "Status", "Slots", "Running", "Host", "Version", "Sandbox", "Last seen"];

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
  );
  await load();

  if (!session.can("developer")) return;
  root.append(...addAgent(team, signal, load));
}
