// A module's page: what it is, its readme, releases, options and targets; Run for developers.

import { session } from "../lib/account.js";
import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { fmtSize, fmtTime } from "../lib/format.js";
import { TARGETS, categoriesOf, optionsOf, showValue, targetsOf } from "../lib/manifest.js";
import { renderMarkdown } from "../lib/markdown.js";
import { dataTable } from "../lib/table.js";
import { crumbs, tagList } from "../lib/views.js";

function section(title, id, ...body) {
  return h("section", { class: "mod-section", "aria-labelledby": id }, h("h2", { id }, title), body);
}

function head(mod, releases) {
  const config = mod.config || {};
  return h(
    "div",
    { class: "module-head" },
    h(
      "div",
      {},
      h("h1", {}, mod.name),
      h("p", { class: "slug muted" }, mod.slug),
      config.description ? h("p", { class: "desc" }, config.description) : null,
      tagList(categoriesOf(mod)),
    ),
    session.can("developer") && releases.length
      ? h("a", { class: "button primary run", href: `#/apps/${mod.id}/run` }, "Run")
      : null,
  );
}

function readmeSection(mod) {
  // the readme usually begins with the app's name as a heading: the page has it already
  const readme = (mod.readme || "").replace(/^\s*#\s+(.*)\n/, (line, title) =>
    title.trim() === mod.name.trim() ? "" : line,
  );
  return section(
    "Readme",
    "m-readme",
    readme.trim()
      ? h("div", { class: "card readme" }, renderMarkdown(readme, { top: 3 }))
      : h("p", { class: "muted" }, "This app has no readme."),
  );
}

function optionRow(o) {
  return h(
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
  );
}

function optionsSection(options) {
  return section(
    "Options",
    "m-options",
    options.length
      ? dataTable(["Option", "Default", "About"], h("tbody", {}, options.map(optionRow)))
      : h("p", { class: "muted" }, "This app has no options."),
  );
}

function targetsSection(targets) {
  return section(
    "Targets",
    "m-targets",
    targets.length
      ? h(
          "ul",
          { class: "targets" },
          targets.map((t) => h("li", {}, h("code", {}, t), " – ", TARGETS[t]?.label || "unknown to this server")),
        )
      : h("p", { class: "muted" }, "No targets declared: it runs without one."),
  );
}

function releaseRow(r, i) {
  return h(
    "tr",
    {},
    h("td", {}, r.version, i === 0 ? h("span", { class: "muted" }, " (latest)") : null),
    h("td", {}, fmtTime(r.created_at)),
    h("td", {}, fmtSize(r.size)),
    h("td", {}, h("code", { title: r.sha256 }, r.sha256.slice(0, 12))),
  );
}

function releasesSection(releases) {
  return section(
    "Releases",
    "m-releases",
    releases.length
      ? dataTable(["Version", "Published", "Size", "sha256"], h("tbody", {}, releases.map(releaseRow)))
      : h("p", { class: "muted" }, "No release yet."),
  );
}

export async function render(root, { id }, { signal }) {
  const mod = await api("GET", `/modules/${encodeURIComponent(id)}`, { signal });
  const config = mod.config || {};
  const releases = mod.meta?.releases || [];
  root.append(
    crumbs(["Ecosystem", "#/ecosystem"], mod.slug),
    head(mod, releases),
    readmeSection(mod),
    optionsSection(optionsOf(config)),
    targetsSection(targetsOf(config)),
    releasesSection(releases),
  );
}
