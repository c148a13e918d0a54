// Adding an agent: a name, then its token shown once with the command to run on the machine.

import { ApiError, api } from "../../lib/api.js";
import { copy } from "../../lib/clipboard.js";
import { h } from "../../lib/dom.js";

function created(agent) {
  const command = `appyard agent run --server ${location.origin} --token ${agent.token} --slots 4`;
  const code = h("code", {}, command);
  return h(
    "section",
    { class: "card created", "aria-labelledby": "agent-created", tabindex: "-1" },
    h("h3", { id: "agent-created" }, `Agent ${agent.name} is added`),
    h("p", {}, "Run this on the machine (with appyard installed). The token is shown only now: keep it secret."),
    h("pre", { class: "codeblock", tabindex: "0" }, code),
    h("button", { type: "button", onclick: () => copy(command, code) }, "Copy the command"),
  );
}

/** The form and the place its result shows; ``reload`` reads the agents again once one is added. */
export function addAgent(team, signal, reload) {
  const result = h("div", {});
  const error = h("p", { class: "field-error", id: "agent-name-err", hidden: true });
  const name = h("input", { id: "agent-name", name: "name", maxlength: 100, required: true, autocomplete: "off", "aria-describedby": "agent-name-help agent-name-err" });
  const submit = h("button", { type: "submit", class: "primary" }, "Add the agent");
  const fail = (msg) => {
    error.textContent = msg;
    error.hidden = false;
    name.setAttribute("aria-invalid", "true");
    name.focus();
  };
  const onsubmit = async (ev) => {
    ev.preventDefault();
    error.hidden = true;
    name.removeAttribute("aria-invalid");
    if (!name.value.trim()) return fail("Give the agent a name, such as the machine's.");
    submit.disabled = true;
    try {
      const agent = await api("POST", `/teams/${team.id}/agents`, { json: { name: name.value.trim() }, signal });
      const box = created(agent);
      result.replaceChildren(box);
      box.focus();
      name.value = "";
      await reload();
    } catch (e) {
      if (!signal.aborted) fail(e instanceof ApiError ? e.message : String(e));
    } finally {
      submit.disabled = false;
    }
  };
  const form = h(
    "form",
    { class: "card form add-agent", "aria-labelledby": "add-agent", novalidate: true, onsubmit },
    h("h2", { id: "add-agent" }, "Add an agent"),
    h("p", { class: "help", id: "agent-name-help" }, `One agent per machine; it runs team ${team.name}'s sessions.`),
    h("div", { class: "field" }, h("label", { for: "agent-name" }, "Name"), name, error),
    h("div", { class: "actions" }, submit),
  );
  return [form, result];
}
