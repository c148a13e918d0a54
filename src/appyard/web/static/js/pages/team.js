// The current team: its members and roles and, for a team admin, its live tokens. A team
// admin removes members and revokes tokens; an instance admin also disables and enables users.
// The API decides: a refusal shows as its message.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { errorBox, h } from "../lib/dom.js";
import { membersSection } from "./team/members.js";
import { tokensSection } from "./team/tokens.js";

export async function render(root, _params, { signal }) {
  const team = session.team;
  root.append(h("h1", {}, team ? `Team ${team.name}` : "Team"));
  if (!team) {
    root.append(errorBox("You are a member of no team yet: ask a team admin to add you."));
    return;
  }
  const admin = session.can("admin");
  const ctx = { team, signal, reload: () => load() };
  const members = membersSection(ctx);
  const tokens = admin ? tokensSection(ctx) : null;
  root.append(members.el);
  if (tokens) root.append(tokens.el);

  async function load() {
    const [m, agents, tk] = await Promise.all([
      api("GET", `/teams/${team.id}/members`, { signal }),
      admin ? api("GET", `/teams/${team.id}/agents`, { signal }) : [],
      admin ? api("GET", "/tokens", { query: { team_id: team.id }, signal }) : [],
    ]);
    if (signal.aborted) return;
    m.sort((a, b) => a.login.localeCompare(b.login));
    members.show(m);
    tokens?.show(tk, m, agents);
  }
  await load();
}
