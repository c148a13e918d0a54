// Small view pieces several pages show: breadcrumbs, category tags, term/description pairs.

import { h } from "./dom.js";

/** ``Ecosystem / Hello / run``: each part a text or a [text, href] link. */
export function crumbs(...parts) {
  const nodes = parts.map((p) => (Array.isArray(p) ? h("a", { href: p[1] }, p[0]) : p));
  return h("p", { class: "crumbs" }, nodes.flatMap((n, i) => (i ? [" / ", n] : [n])));
}

/** A module's categories as tags (none: nothing). */
export function tagList(cats) {
  return cats.length ? h("ul", { class: "tags", "aria-label": "Categories" }, cats.map((c) => h("li", {}, c))) : null;
}

/** One entry of a description list: [dt, dd]. */
export function detail(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}
