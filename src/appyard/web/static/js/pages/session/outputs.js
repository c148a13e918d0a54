// A session's outputs (a team file to download, a value) and a serving app's page.

import { download } from "../../lib/api.js";
import { h, toast } from "../../lib/dom.js";
import { externalLink } from "../../lib/links.js";
import { TERMINAL } from "../../lib/status.js";
import { detail } from "../../lib/views.js";

function outputValue(teamId, key, value) {
  if (value && typeof value === "object" && value.type === "team_file" && typeof value.path === "string") {
    const base = value.path.split("/").filter(Boolean).pop() || key;
    const btn = h(
      "button",
      {
        type: "button",
        class: "download",
        onclick: async () => {
          btn.disabled = true;
          try {
            await download(`/teams/${teamId}/files/content`, { path: value.path }, base);
          } catch (e) {
            toast(`Download failed: ${e.message}`, "error");
          } finally {
            btn.disabled = false;
          }
        },
      },
      `Download ${base}`,
    );
    return [btn, " ", h("code", { class: "muted" }, value.path)];
  }
  if (value !== null && typeof value === "object") return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
  return h("code", {}, JSON.stringify(value));
}

export function outputsSection() {
  const el = h("section", { "aria-labelledby": "outputs-h", hidden: true });
  let shown = null;
  const show = (task) => {
    // a serving app's page is there while the session runs; once it has ended, it is gone
    const appPage = TERMINAL.has(task.status) ? null : task.ready_url;
    const key = JSON.stringify([task.outputs, appPage]);
    if (key === shown) return;
    shown = key;
    const entries = Object.entries(task.outputs || {});
    el.hidden = !entries.length && !appPage;
    const list = h("dl", { class: "outputs" });
    if (appPage) {
      // only an http(s) address is a link (an older server stored whatever an app said)
      list.append(...detail("App page", externalLink(appPage)));
    }
    for (const [k, v] of entries) list.append(...detail(k, outputValue(task.team_id, k, v)));
    el.replaceChildren(h("h2", { id: "outputs-h" }, "Outputs"), list);
  };
  return { el, show };
}
