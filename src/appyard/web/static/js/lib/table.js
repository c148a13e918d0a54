// A data table in a box that scrolls sideways on a narrow screen.

import { h } from "./dom.js";

/** ``columns``: the header texts; ``body``: the tbody (rows may change later); ``attrs``: of
 *  the table; ``caption``: an optional caption element. */
export function dataTable(columns, body, { attrs = {}, caption = null } = {}) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      attrs,
      caption,
      h("thead", {}, h("tr", {}, columns.map((t) => h("th", { scope: "col" }, t)))),
      body,
    ),
  );
}
