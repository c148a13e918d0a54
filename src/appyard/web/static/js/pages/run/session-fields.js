// The run form's session fields: the agent, the release and the task name.

import { h } from "../../lib/dom.js";

/** ``agents`` sorted (online first); ``releases`` newest first. */
export function sessionFields(fields, mod, agents, releases) {
  const online = agents.filter((a) => a.status === "online").length;
  const agent = h(
    "select",
    {},
    h("option", { value: "" }, "Any online agent"),
    agents.map((a) =>
      h("option", { value: a.id }, `${a.name} – ${a.status}, ${a.running} of ${a.slots} slots busy`),
    ),
  );
  const release = h(
    "select",
    {},
    releases.map((r, i) => h("option", { value: r.version }, i === 0 ? `${r.version} (latest)` : r.version)),
  );
  const name = h("input", { type: "text", maxlength: 200, value: mod.slug.split("/").pop(), autocomplete: "off" });
  const el = h(
    "fieldset",
    {},
    h("legend", {}, "Session"),
    fields.field("agent_id", "Agent", agent, {
      help: online ? "" : "No agent of the team is online: the session waits in the queue until one is (see Agents).",
    }),
    fields.field("version", "Release", release),
    fields.field("task_name", "Task name", name),
  );
  return { el, agent, release, name };
}
