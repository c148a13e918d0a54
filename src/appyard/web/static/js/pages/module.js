// A module's page: what it is, its readme, releases, options and targets; Run for developers.

import { api, fmtTime, h, session } from "../core.js";
import { renderMarkdown } from "../markdown.js";
import { categoriesOf } from "./ecosystem.js";

/** What each target of ``context_menu.target`` means, and the state key it fills. */
export const TARGETS = {
  ecosystem: { label: "No target (from the ecosystem)", key: null },
  images_project: { label: "An images project", key: "projectId" },
  images_dataset: { label: "An images dataset", key: "datasetId" },
  files_folder: { label: "A team-files folder", key: "folder" },
  files_file: { label: "A team-files file", key: "file" },
  team: { label: "The team", key: "teamId" },
  team_member: { label: "A team member", key: "memberId" },
};

/** The manifest's targets, in its order (a single string counts as a list of one). */
export function targetsOf(config) {
  const raw = config?.context_menu?.target ?? [];
  return (Array.isArray(raw) ? raw : [raw]).map(String);
}

/** The options: [{key, default, title, help, choices}] from modal_template_state (+ _options). */
export function optionsOf(config) {
  const state = config?.modal_template_state;
  const extra = config?.modal_template_options || {};
  if (!state || typeof state !== "object") return [];
  return Object.entries(state).map(([key, value]) => {
    const o = (extra && typeof extra[key] === "object" && extra[key]) || {};
    return {
      key,
      default: value,
      title: typeof o.title === "string" && o.title ? o.title : key,
      help: typeof o.help === "string" ? o.help : "",
      choices: Array.isArray(o.choices) && o.choices.length ? o.choices.map(choice) : null,
    };
  });
}

/** A choice is a bare value or {value, label}. */
function choice(c) {
  if (c && typeof c === "object" && "value" in c) return { value: c.value, label: String(c.label ?? c.value) };
  return { value: c, label: String(c) };
}

export function showValue(v) {
  return JSON.stringify(v) ?? "null";
}

function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

function section(title, id, ...body) {
  return h("section", { class: "mod-section", "aria-labelledby": id }, h("h2", { id }, title), body);
}

export async function render(root, { id }, { signal }) {
  const mod = await api("GET", `/modules/${encodeURIComponent(id)}`, { signal });
  const config = mod.config || {};
  const releases = mod.meta?.releases || [];
  const options = optionsOf(config);
  const targets = targetsOf(config);
  const cats = categoriesOf(mod);

  // the readme usually begins with the app's name as a heading: the page has it already
  const readme = (mod.readme || "").replace(/^\s*#\s+(.*)\n/, (line, title) =>
    title.trim() === mod.name.trim() ? "" : line,
  );

  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/ecosystem" }, "Ecosystem"), " / ", mod.slug),
    h(
      "div",
      { class: "module-head" },
      h(
        "div",
        {},
        h("h1", {}, mod.name),
        h("p", { class: "slug muted" }, mod.slug),
        config.description ? h("p", { class: "desc" }, config.description) : null,
        cats.length ? h("ul", { class: "tags", "aria-label": "Categories" }, cats.map((c) => h("li", {}, c))) : null,
      ),
      session.can("developer") && releases.length
        ? h("a", { class: "button primary run", href: `#/apps/${mod.id}/run` }, "Run")
        : null,
    ),
    section(
      "Readme",
      "m-readme",
      readme.trim()
        ? h("div", { class: "card readme" }, renderMarkdown(readme, { top: 3 }))
        : h("p", { class: "muted" }, "This app has no readme."),
    ),
    section(
      "Options",
      "m-options",
      options.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              {},
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Option"), h("th", { scope: "col" }, "Default"), h("th", { scope: "col" }, "About"))),
              h(
                "tbody",
                {},
                options.map((o) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, o.title !== o.key ? [o.title, h("br"), h("code", {}, o.key)] : h("code", {}, o.key)),
                    h("td", {}, h("code", {}, showValue(o.default))),
                    h(
                      "td",
                      {},
                      o.help || null,
                      o.choices ? h("div", { class: "muted" }, "Choices: ", o.choices.map((c) => c.label).join(", ")) : null,
                    ),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "This app has no options."),
    ),
    section(
      "Targets",
      "m-targets",
      targets.length
        ? h(
            "ul",
            { class: "targets" },
            targets.map((t) =>
              h("li", {}, h("code", {}, t), " – ", TARGETS[t]?.label || "unknown to this server"),
            ),
          )
        : h("p", { class: "muted" }, "No targets declared: it runs without one."),
    ),
    section(
      "Releases",
      "m-releases",
      releases.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              {},
              h("thead", {}, h("tr", {}, ["Version", "Published", "Size", "sha256"].map((t) => h("th", { scope: "col" }, t)))),
              h(
                "tbody",
                {},
                releases.map((r, i) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, r.version, i === 0 ? h("span", { class: "muted" }, " (latest)") : null),
                    h("td", {}, fmtTime(r.created_at)),
                    h("td", {}, fmtSize(r.size)),
                    h("td", {}, h("code", { title: r.sha256 }, r.sha256.slice(0, 12))),
                  ),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No release yet."),
    ),
  );
}
