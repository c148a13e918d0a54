// The line under a section where the server's refusal of an action shows (as its message).

import { h } from "../../lib/dom.js";

/** {el, show(error), clear()}: ``el`` is an alert, hidden until an error shows. */
export function notice() {
  const el = h("p", { class: "error admin-error", role: "alert", hidden: true });
  return {
    el,
    show(e) {
      el.textContent = e instanceof Error ? e.message : String(e);
      el.hidden = false;
    },
    clear() {
      el.hidden = true;
      el.textContent = "";
    },
  };
}
