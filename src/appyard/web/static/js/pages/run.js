// The run dialog of a module, generated from its manifest: a field per option (with its
// default), the target, the agent, the release and the task name. Start -> the session page.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { sortAgents } from "../lib/status.js";
import { crumbs } from "../lib/views.js";
import { FIXED, fieldKey, messageFor } from "./run/errors.js";
import { FieldError, Fields } from "./run/fields.js";
import { OptionFields } from "./run/options.js";
import { sessionFields } from "./run/session-fields.js";
import { targetPart } from "./run/target.js";

/** Why the user cannot run this app here (null: they can). */
function cannotRun(team, ws, releases) {
  if (!session.can("developer")) {
    return h(
      "p",
      { class: "card notice" },
      `You are a ${team?.role || "viewer"} in team ${team?.name || "–"}, so you cannot run apps. `,
      "You can browse apps and sessions; a team admin can make you a developer.",
    );
  }
  if (!ws || !releases.length) {
    return h("p", { class: "card notice" }, !ws ? "The team has no workspace to run in." : "This app has no release to run.");
  }
  return null;
}

export async function render(root, { id }, { signal, query }) {
  let mod = await api("GET", `/modules/${encodeURIComponent(id)}`, { signal });
  const releases = mod.meta?.releases || [];
  const team = session.team;
  const ws = session.workspace;
  root.append(
    crumbs(["Ecosystem", "#/ecosystem"], [mod.name, `#/apps/${mod.id}`], "run"),
    h("h1", {}, `Run ${mod.name}`),
  );
  const refusal = cannotRun(team, ws, releases);
  if (refusal) {
    root.append(refusal);
    return;
  }

  const fields = new Fields();
  const options = new OptionFields(fields);
  const target = targetPart({ fields, query, ws, team, signal });
  const agents = sortAgents(await api("GET", `/teams/${team.id}/agents`, { signal }));
  const chosen = sessionFields(fields, mod, agents, releases);

  const build = async (config, kept = {}) => {
    fields.keep(FIXED);
    options.build(config, kept);
    await target.build(config);
  };
  chosen.release.addEventListener("change", async () => {
    // the options and targets are those of the release picked
    let kept = {};
    try {
      kept = options.read();
    } catch {
      /* an unreadable value is not kept */
    }
    try {
      mod = await api("GET", `/modules/${mod.id}`, { query: { version: chosen.release.value }, signal });
      await build(mod.config || {}, kept);
    } catch (e) {
      if (!signal.aborted) fields.show("version", e.message);
    }
  });

  const start = h("button", { type: "submit", class: "primary" }, "Start");
  const form = h(
    "form",
    { class: "card form run-form", novalidate: true, "aria-label": `Run ${mod.name}` },
    fields.top,
    h("fieldset", {}, h("legend", {}, "Options"), options.box),
    target.box,
    chosen.el,
    h("div", { class: "actions" }, target.summary, start, h("a", { href: `#/apps/${mod.id}`, class: "button" }, "Cancel")),
  );
  start.setAttribute("aria-describedby", target.summary.id);
  form.addEventListener("input", target.showSummary);
  form.addEventListener("change", target.showSummary);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fields.clear();
    let state;
    try {
      state = { ...options.read(), ...target.read() };
    } catch (e) {
      if (e instanceof FieldError) return fields.show(e.key, e.message);
      throw e;
    }
    const body = {
      workspace_id: ws.id,
      module_id: mod.id,
      version: chosen.release.value || undefined,
      agent_id: chosen.agent.value ? Number(chosen.agent.value) : undefined,
      task_name: chosen.name.value.trim() || undefined,
      params: { state },
    };
    start.disabled = true;
    try {
      const r = await api("POST", "/tasks", { json: body, signal });
      location.hash = `#/sessions/${r.task_id}`;
    } catch (e) {
      if (signal.aborted) return;
      const key = fieldKey(e, options.list);
      fields.show(key, messageFor(key, e));
    } finally {
      start.disabled = false;
    }
  });

  await build(mod.config || {});
  root.append(form);
}
