// Rotating an agent's token (team admins): asked first; the new token is shown once, with the
// command that runs the agent with it. A refusal shows as the server's message.

import { api } from "../../lib/api.js";
import { copy } from "../../lib/clipboard.js";
import { confirmAction } from "../../lib/confirm.js";
import { h } from "../../lib/dom.js";

function rotated(agent, token) {
  const command = `appyard agent run --server ${location.origin} --token ${token.token} --slots ${agent.slots || 4}`;
  const code = h("code", {}, command);
  return h(
    "section",
    { class: "card created", "aria-labelledby": "agent-rotated", tabindex: "-1" },
    h("h3", { id: "agent-rotated" }, `New token for agent ${agent.name}`),
    h(
      "p",
      {},
      "The agent's old token no longer works: run the agent again with this command (or its token). The token is shown only now: copy it and keep it secret.",
    ),
    h("pre", { class: "codeblock", tabindex: "0" }, code),
    h("button", { type: "button", onclick: () => copy(command, code) }, "Copy the command"),
  );
}

/** {el, button(agent)}: ``el`` is where the new token or a refusal shows; ``button`` makes a
 *  row's Rotate token button. */
export function rotateToken(signal) {
  const el = h("div", {});
  const fail = (e) => el.replaceChildren(h("p", { class: "error admin-error", role: "alert" }, e.message || String(e)));
  const rotate = async (agent) => {
    el.replaceChildren();
    const ok = await confirmAction({
      title: `Rotate the token of agent ${agent.name}?`,
      text: "A new token is made and every older token of the agent stops working at once: the agent, if it runs, is refused on its next call until it is run again with the new token.",
      verb: "Rotate token",
    }, signal);
    if (!ok || signal.aborted) return;
    try {
      const token = await api("POST", `/agents/${agent.id}/token`, { signal });
      const box = rotated(agent, token);
      el.replaceChildren(box);
      box.focus();
    } catch (e) {
      if (!signal.aborted) fail(e);
    }
  };
  return {
    el,
    button: (agent) =>
      h("button", { type: "button", "aria-label": `Rotate token of ${agent.name}`, onclick: () => rotate(agent) }, "Rotate token"),
  };
}
