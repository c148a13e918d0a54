// A session's outputs (a team file to download, a value) and a serving app's page.

import { api, download } from "../../lib/api.js";
import { h, toast } from "../../lib/dom.js";
import { httpHref } from "../../lib/links.js";
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

/** The app's own page, through the server (``/apps/{id}/``, docs/web.md): a click asks for a
 *  ticket and opens the page with it in a new tab, where it becomes the page's own cookie.
 *  The page runs on an origin of its own (or sandboxed): it cannot read this page's token. */
function appPageLink(taskId) {
  const link = h(
    "a",
    {
      href: `/apps/${taskId}/`,
      target: "_blank",
      rel: "noopener noreferrer",
      class: "app-page",
      onclick: async (ev) => {
        ev.preventDefault();
        // opened now, within the click (a tab opened after an await may be blocked)
        const tab = window.open("about:blank", "_blank");
        try {
          const page = await api("POST", `/tasks/${taskId}/app-page`);
          const href = httpHref(page.url);
          if (!href) throw new Error("the server sent no page address");
          if (tab) {
            tab.opener = null;
            tab.location.href = href;
          } else {
            window.location.assign(href);
          }
        } catch (e) {
          if (tab) tab.close();
          toast(`Cannot open the app page: ${e.message}`, "error");
        }
      },
    },
    "Open the app page",
  );
  return link;
}

export function outputsSection() {
  const el = h("section", { "aria-labelledby": "outputs-h", hidden: true });
  let shown = null;
  const show = (task) => {
    // a serving app's page is there while the session runs; once it has ended, it is gone
    const serving = task.ready || task.ready_url || task.status === "deployed";
    const appPage = TERMINAL.has(task.status) || !serving ? null : task.id;
    const key = JSON.stringify([task.outputs, appPage]);
    if (key === shown) return;
    shown = key;
    const entries = Object.entries(task.outputs || {});
    el.hidden = !entries.length && !appPage;
    const list = h("dl", { class: "outputs" });
    if (appPage) {
      list.append(...detail("App page", appPageLink(task.id)));
    }
    for (const [k, v] of entries) list.append(...detail(k, outputValue(task.team_id, k, v)));
    el.replaceChildren(h("h2", { id: "outputs-h" }, "Outputs"), list);
  };
  return { el, show };
}
