// The ecosystem: every module as a card, filtered as you type (by name, slug or category).

import { api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { fmtTime } from "../lib/format.js";
import { categoriesOf, latestRelease } from "../lib/manifest.js";
import { tagList } from "../lib/views.js";

function card(mod) {
  const latest = latestRelease(mod);
  return h(
    "li",
    { class: "card eco-card", dataset: { slug: mod.slug } },
    h("h2", {}, h("a", { href: `#/apps/${mod.id}` }, mod.name)),
    h("p", { class: "slug muted" }, mod.slug),
    h("p", { class: "desc" }, mod.config?.description || "No description."),
    tagList(categoriesOf(mod)),
    h(
      "p",
      { class: "release muted" },
      latest ? ["Latest release ", h("strong", {}, latest.version), ` · ${fmtTime(latest.created_at)}`] : "No release yet",
    ),
  );
}

function searchBox(value) {
  const input = h("input", {
    type: "search",
    id: "eco-search",
    placeholder: "name, slug or category",
    autocomplete: "off",
    value,
  });
  const el = h("div", { class: "eco-search", role: "search" }, h("label", { for: "eco-search" }, "Search apps"), input);
  return { el, input };
}

export async function render(root, _params, { signal, query }) {
  const modules = await api("GET", "/modules", { signal });
  modules.sort((a, b) => a.name.localeCompare(b.name));
  const cards = modules.map((m) => ({
    el: card(m),
    text: [m.name, m.slug, ...categoriesOf(m)].join("\n").toLowerCase(),
  }));

  const list = h("ul", { class: "eco-grid", "aria-label": "Apps" }, cards.map((c) => c.el));
  const count = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const search = searchBox(query.get("q") || "");

  const filter = () => {
    const words = search.input.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const c of cards) {
      const on = words.every((w) => c.text.includes(w));
      c.el.hidden = !on;
      if (on) shown += 1;
    }
    count.textContent =
      shown === cards.length ? `${cards.length} apps` : `${shown} of ${cards.length} apps match`;
    // keep the filter in the address (Back comes back to it) without re-rendering the page
    const q = search.input.value.trim();
    history.replaceState(null, "", q ? `#/ecosystem?q=${encodeURIComponent(q)}` : "#/ecosystem");
  };
  search.input.addEventListener("input", filter);

  root.append(
    h("h1", {}, "Ecosystem"),
    search.el,
    count,
    modules.length ? list : h("p", { class: "muted" }, "No apps are published yet (appyard app publish PATH)."),
  );
  filter();
}
