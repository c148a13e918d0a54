// Pickers of what a run starts on: selects of {id, name} items and paths with suggestions.

import { h } from "../../lib/dom.js";
import { FieldError } from "./fields.js";

/** Put {id, name} items into a select; an empty list leaves it disabled, saying ``empty``. */
export function fill(el, items, wanted, empty = "none") {
  el.disabled = !items.length;
  el.replaceChildren(
    ...(items.length
      ? items.map((it) => h("option", { value: it.id, selected: String(it.id) === wanted }, it.name))
      : [h("option", { value: "" }, empty)]),
  );
}

/** The text of a select's chosen option ("" when there is nothing to choose). */
export const chosenText = (el) => (el.value ? el.selectedOptions[0]?.textContent || "" : "");

/** ``on project “x”``: what a picker holds, as the run summary says it ("" for nothing). */
export const on = (what, el) => (chosenText(el) ? `on ${what} “${chosenText(el)}”` : "");

/** A select of ``items`` whose ``read()`` gives the id picked. */
export function pick(key, items, wanted) {
  const el = h("select", {});
  fill(el, items, wanted);
  el.read = () => {
    if (!el.value) throw new FieldError(key, "Nothing to pick here yet.");
    return Number(el.value);
  };
  return el;
}

/** A path input suggesting ``paths``, and its datalist: [input, datalist]. */
export function pathInput(key, paths, wanted) {
  const list = h("datalist", { id: `run-${key}-list` }, paths.slice(0, 1000).map((p) => h("option", { value: p })));
  const el = h("input", { type: "text", list: list.id, value: wanted || "", autocomplete: "off", spellcheck: "false" });
  el.read = () => {
    const v = el.value.trim();
    if (!v) throw new FieldError(key, "Enter a path in team files (pick one from the list).");
    return v;
  };
  return [el, list];
}
