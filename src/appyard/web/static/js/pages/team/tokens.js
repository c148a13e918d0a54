// The team's live tokens (members', agents', running sessions'), for a team admin: what each
// is and whose, never its secret; Revoke asks first.

import { auth } from "../../lib/auth.js";
import { api } from "../../lib/api.js";
import { confirmAction } from "../../lib/confirm.js";
import { h, toast } from "../../lib/dom.js";
import { fmtTime } from "../../lib/format.js";
import { dataTable } from "../../lib/table.js";
import { notice } from "./notice.js";

const KIND = { user: "user", agent: "agent", task: "session" };

/** Whose a token is, in words: a member's login, an agent's name, a session (and its user). */
function owner(t, names) {
  if (t.kind === "agent") return `agent ${names.agents.get(t.agent_id) || `#${t.agent_id}`}`;
  const user = names.users.get(t.user_id) || `user #${t.user_id}`;
  if (t.kind === "task") return [h("a", { href: `#/sessions/${t.task_id}` }, `session #${t.task_id}`), ` (${user})`];
  return user;
}

function ownerText(t, names) {
  if (t.kind === "agent") return `agent ${names.agents.get(t.agent_id) || `#${t.agent_id}`}`;
  if (t.kind === "task") return `session #${t.task_id}`;
  return names.users.get(t.user_id) || `user #${t.user_id}`;
}

/** ``ctx``: {team, signal, reload}. */
export function tokensSection(ctx) {
  const { signal, reload } = ctx;
  const error = notice();
  const tbody = h("tbody", {});
  const empty = h("p", { class: "muted", hidden: true }, "The team has no live tokens.");
  const heading = h("h2", { id: "tokens-h", tabindex: "-1" }, "Tokens");
  let names = { users: new Map(), agents: new Map() };

  const revoke = async (t) => {
    error.clear();
    const mine = t.id === auth.tokenId;
    const ok = await confirmAction({
      title: `Revoke token “${t.name}” of ${ownerText(t, names)}?`,
      text: mine
        ? "This is the token this browser is signed in with: revoking it signs you out here."
        : "Whatever uses it (a script, an agent, a browser, an app) is refused from its next call on. This cannot be undone.",
      verb: "Revoke",
    }, signal);
    if (!ok || signal.aborted) return;
    try {
      await api("DELETE", `/tokens/${t.id}`, { signal });
      toast(`Token “${t.name}” is revoked.`);
      await reload();
      heading.focus();
    } catch (e) {
      if (!signal.aborted) error.show(e);
    }
  };

  const row = (t) =>
    h(
      "tr",
      { dataset: { tokenId: t.id } },
      h("th", { scope: "row" }, t.name, t.id === auth.tokenId ? h("span", { class: "muted" }, " (this browser)") : null),
      h("td", {}, KIND[t.kind] || t.kind),
      h("td", {}, owner(t, names)),
      h("td", { class: "nowrap" }, h("time", { datetime: t.created_at }, fmtTime(t.created_at))),
      h(
        "td",
        { class: "actions-cell" },
        h("button", { type: "button", "aria-label": `Revoke token ${t.name} of ${ownerText(t, names)}`, onclick: () => revoke(t) }, "Revoke"),
      ),
    );

  const el = h(
    "section",
    { "aria-labelledby": "tokens-h" },
    heading,
    h(
      "p",
      { class: "help muted" },
      "Every token acting in the team now: members' sign-ins and API tokens, agents', and running sessions'. A token's secret is shown only once, when it is made; it is never listed.",
    ),
    dataTable(["Name", "Kind", "Owner", "Created", "Actions"], tbody, { attrs: { "aria-label": "Tokens", class: "tokens" } }),
    empty,
    error.el,
  );
  return {
    el,
    /** ``members`` and ``agents`` of the team name the owners. */
    show(tokens, members, agents) {
      names = {
        users: new Map(members.map((m) => [m.user_id, m.login])),
        agents: new Map(agents.map((a) => [a.id, a.name])),
      };
      tbody.replaceChildren(...tokens.map(row));
      empty.hidden = tokens.length > 0;
    },
  };
}
