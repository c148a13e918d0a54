// The team's members with their roles; for a team admin, Remove; for an instance admin,
// Disable and Enable. Each asks first; a refusal shows as the server's message.

import { session } from "../../lib/account.js";
import { api } from "../../lib/api.js";
import { confirmAction } from "../../lib/confirm.js";
import { h, toast } from "../../lib/dom.js";
import { dataTable } from "../../lib/table.js";
import { notice } from "./notice.js";

function stateBadge(m) {
  return m.disabled
    ? h("span", { class: "status status-error", title: "Signs in no more; no token of theirs works." }, "disabled")
    : h("span", { class: "status status-finished" }, "active");
}

/** ``ctx``: {team, signal, reload}; ``reload`` reads the page's data again after a change. */
export function membersSection(ctx) {
  const { team, signal, reload } = ctx;
  const teamAdmin = session.can("admin");
  const instanceAdmin = Boolean(session.user?.is_admin);
  const error = notice();
  const tbody = h("tbody", {});
  const heading = h("h2", { id: "members-h", tabindex: "-1" }, "Members");
  const columns = ["Login", "Role", "State"];
  if (teamAdmin || instanceAdmin) columns.push("Actions");

  // run ``call`` once the user confirmed; then read the page again, or show the refusal
  const act = async (question, call, done, leaving = false) => {
    error.clear();
    if (!(await confirmAction(question, signal)) || signal.aborted) return;
    try {
      await call();
      toast(done);
      if (leaving) {
        location.reload(); // out of the team: the page starts again with the teams left
        return;
      }
      await reload();
      heading.focus();
    } catch (e) {
      if (!signal.aborted) error.show(e);
    }
  };

  const actions = (m) => {
    const cell = h("td", { class: "actions-cell" });
    const self = m.user_id === session.user?.id;
    if (teamAdmin) {
      cell.append(
        h(
          "button",
          {
            type: "button",
            "aria-label": `Remove ${m.login}`,
            onclick: () =>
              act(
                {
                  title: self ? `Leave team ${team.name}?` : `Remove ${m.login} from team ${team.name}?`,
                  text: `${self ? "You lose" : `${m.login} loses`} access to the team at once: no token of theirs acts in it any more. Sessions already started keep running.`,
                  verb: "Remove",
                },
                () => api("DELETE", `/teams/${team.id}/members/${m.user_id}`, { signal }),
                `${m.login} is no longer a member of ${team.name}.`,
                self,
              ),
          },
          "Remove",
        ),
      );
    }
    if (instanceAdmin && !self) {
      const verb = m.disabled ? "Enable" : "Disable";
      const text = m.disabled
        ? `${m.login} can sign in again. Tokens revoked when they were disabled stay revoked.`
        : `${m.login} can sign in no more, and every token of theirs stops working at once, in every team. Enabling them later brings no old token back.`;
      cell.append(
        h(
          "button",
          {
            type: "button",
            "aria-label": `${verb} ${m.login}`,
            onclick: () =>
              act(
                { title: `${verb} user ${m.login}?`, text, verb },
                () => api("POST", `/users/${m.user_id}/${verb.toLowerCase()}`, { signal }),
                `${m.login} is ${verb.toLowerCase()}d.`,
              ),
          },
          verb,
        ),
      );
    }
    return cell;
  };

  const row = (m) =>
    h(
      "tr",
      { dataset: { userId: m.user_id } },
      h("th", { scope: "row" }, m.login, m.user_id === session.user?.id ? h("span", { class: "muted" }, " (you)") : null),
      h("td", {}, m.role),
      h("td", {}, stateBadge(m)),
      columns.length > 3 ? actions(m) : null,
    );

  const el = h(
    "section",
    { "aria-labelledby": "members-h" },
    heading,
    teamAdmin
      ? null
      : h("p", { class: "muted" }, "A team admin manages the members and the tokens of the team."),
    dataTable(columns, tbody, { attrs: { "aria-label": "Members", class: "members" } }),
    error.el,
  );
  return {
    el,
    show(members) {
      tbody.replaceChildren(...members.map(row));
    },
  };
}
