// A picker per target kind: each builder gives {el, read, describe} for one kind of target.

import { api } from "../../lib/api.js";
import { h } from "../../lib/dom.js";
import { chosenText, fill, on, pathInput, pick } from "./pickers.js";

/** ``fn()`` once, its answer kept (a failure counts as an empty list). */
const once = (fn) => {
  let p;
  return () => (p ||= fn().catch(() => []));
};

/** ``changed()`` runs when a picker's choices change on their own (a project's datasets came). */
export function targetBuilders({ fields, query, ws, team, signal, changed }) {
  const field = (...args) => fields.field(...args);
  const projects = once(() => api("GET", "/projects", { query: { workspace_id: ws.id }, signal }));
  const files = once(() => api("GET", `/teams/${team.id}/files`, { query: { path: "/", recursive: true }, signal }));
  const members = once(() => api("GET", `/teams/${team.id}/members`, { signal }));
  const noProjects = (list) => (list.length ? "" : `No images projects in workspace ${ws.name}.`);

  return {
    async images_project() {
      const el = pick("projectId", await projects(), query.get("projectId"));
      return {
        el: field("projectId", "Project", el, { help: noProjects(await projects()) }),
        read: () => ({ projectId: el.read() }),
        describe: () => on("project", el),
      };
    },
    async images_dataset() {
      const list = await projects();
      let projectId = query.get("projectId");
      if (!projectId && query.get("datasetId")) {
        const d = await api("GET", `/datasets/${Number(query.get("datasetId"))}`, { signal }).catch(() => null);
        projectId = d && String(d.project_id);
      }
      const proj = pick("datasetProject", list, projectId);
      const ds = pick("datasetId", [], null);
      const dsField = field("datasetId", "Dataset", ds, { help: " " });
      const dsHelp = dsField.querySelector(".help");
      let shown = null; // the project whose datasets the select holds
      const load = async () => {
        const want = proj.value;
        if (want === shown) return;
        shown = want;
        // the datasets of the project before are gone at once: none of them can start
        if (ds.options.length) fill(ds, [], null, "loading…");
        const items = want ? await api("GET", "/datasets", { query: { project_id: want }, signal }) : [];
        if (want !== proj.value) return; // another project was picked meanwhile
        fill(ds, items, query.get("datasetId"));
        dsHelp.textContent = items.length ? "" : "This project has no datasets.";
        changed();
      };
      proj.addEventListener("change", load);
      await load();
      return {
        el: h("div", {}, field("datasetProject", "Project of the dataset", proj, { help: noProjects(list) }), dsField),
        read: () => ({ datasetId: ds.read() }),
        describe: () => (chosenText(ds) ? `${on("dataset", ds)} of project “${chosenText(proj)}”` : ""),
      };
    },
    async files_folder() {
      const paths = ["/", ...(await files()).filter((f) => f.is_dir).map((f) => f.path)];
      const [el, list] = pathInput("folder", paths, query.get("folder"));
      return {
        el: h("div", {}, field("folder", "Folder path", el, { help: "A folder path like /imports/shapes." }), list),
        read: () => ({ folder: el.read() }),
        describe: () => (el.value.trim() ? `on folder ${el.value.trim()}` : ""),
      };
    },
    async files_file() {
      const paths = (await files()).filter((f) => !f.is_dir).map((f) => f.path);
      const [el, list] = pathInput("file", paths, query.get("file"));
      return {
        el: h("div", {}, field("file", "File path", el, { help: "A file path like /exports/result.tar." }), list),
        read: () => ({ file: el.read() }),
        describe: () => (el.value.trim() ? `on file ${el.value.trim()}` : ""),
      };
    },
    async team() {
      return { el: h("p", {}, `Runs on team ${team.name}.`), read: () => ({ teamId: team.id }), describe: () => `on team “${team.name}”` };
    },
    async team_member() {
      const el = pick("memberId", (await members()).map((m) => ({ id: m.user_id, name: `${m.login} (${m.role})` })), query.get("memberId"));
      return { el: field("memberId", "Member", el), read: () => ({ memberId: el.read() }), describe: () => on("member", el) };
    },
    async ecosystem() {
      return { el: null, read: () => ({}), describe: () => "without a target" };
    },
  };
}
