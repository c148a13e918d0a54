// The team's agents (online or not, slots, running tasks) and, for developers, adding one:
// its token is shown once, with the command to run on the machine.

import { ApiError, api, fmtTime, h, session, toast } from "../core.js";

function agentRow(a) {
  return h(
    "tr",
    { dataset: { agentId: a.id } },
    h("th", { scope: "row" }, a.name),
    h("td", {}, h("span", { class: `status agent-${a.status}`, "data-status": a.status }, a.status)),
    h("td", { class: "num" }, a.slots),
    h("td", { class: "num" }, a.running),
    h("td", {}, a.hostname || "–"),
    h("td", {}, a.version || "–"),
    h("td", {}, fmtTime(a.last_seen_at)),
  );
}

/** Copy ``text``; over plain http (no clipboard API) select it so Ctrl+C does the rest. */
async function copy(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied.");
  } catch {
    const range = document.createRange();
    range.selectNodeContents(el);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    toast("Selected: press Ctrl+C to copy.");
  }
}

function created(agent) {
  const command = `appyard agent run --server ${location.origin} --token ${agent.token} --slots 4`;
  const code = h("code", {}, command);
  const box = h(
    "section",
    { class: "card created", "aria-labelledby": "agent-created", tabindex: "-1" },
    h("h3", { id: "agent-created" }, `Agent ${agent.name} is added`),
    h("p", {}, "Run this on the machine (with appyard installed). The token is shown only now: keep it secret."),
    h("pre", { class: "codeblock", tabindex: "0" }, code),
    h("button", { type: "button", onclick: () => copy(command, code) }, "Copy the command"),
  );
  return box;
}

export async function render(root, _params, { signal }) {
  const team = session.team;
  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true }, "The team has no agents yet.");
  const summary = h("p", { class: "muted", role: "status" });
  const load = async () => {
    const agents = await api("GET", `/teams/${team.id}/agents`, { signal });
    agents.sort((a, b) => (a.status === b.status ? a.name.localeCompare(b.name) : a.status === "online" ? -1 : 1));
    tbody.replaceChildren(...agents.map(agentRow));
    empty.hidden = agents.length > 0;
    summary.textContent = `${agents.filter((a) => a.status === "online").length} of ${agents.length} online`;
  };
  const table = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "aria-label": "Agents" },
      h(
        "thead",
        {},
        h("tr", {}, ["Name", "Status", "Slots", "Running", "Host", "Version", "Last seen"].map((t) => h("th", { scope: "col" }, t))),
      ),
      tbody,
    ),
  );

  root.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Agents"),
      h("button", { type: "button", onclick: () => load().catch((e) => toast(e.message, "error")) }, "Refresh"),
    ),
    summary,
    table,
    empty,
  );
  await load();

  if (!session.can("developer")) return;
  const result = h("div", {});
  const error = h("p", { class: "field-error", id: "agent-name-err", hidden: true });
  const name = h("input", { id: "agent-name", name: "name", maxlength: 100, required: true, autocomplete: "off", "aria-describedby": "agent-name-help agent-name-err" });
  const submit = h("button", { type: "submit", class: "primary" }, "Add the agent");
  const form = h(
    "form",
    {
      class: "card form add-agent",
      "aria-labelledby": "add-agent",
      novalidate: true,
      onsubmit: async (ev) => {
        ev.preventDefault();
        error.hidden = true;
        name.removeAttribute("aria-invalid");
        const fail = (msg) => {
          error.textContent = msg;
          error.hidden = false;
          name.setAttribute("aria-invalid", "true");
          name.focus();
        };
        if (!name.value.trim()) return fail("Give the agent a name, such as the machine's.");
        submit.disabled = true;
        try {
          const agent = await api("POST", `/teams/${team.id}/agents`, { json: { name: name.value.trim() }, signal });
          const box = created(agent);
          result.replaceChildren(box);
          box.focus();
          name.value = "";
          await load();
        } catch (e) {
          if (!signal.aborted) fail(e instanceof ApiError ? e.message : String(e));
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("h2", { id: "add-agent" }, "Add an agent"),
    h("p", { class: "help", id: "agent-name-help" }, `One agent per machine; it runs team ${team.name}'s sessions.`),
    h("div", { class: "field" }, h("label", { for: "agent-name" }, "Name"), name, error),
    h("div", { class: "actions" }, submit),
  );
  root.append(form, result);
}
