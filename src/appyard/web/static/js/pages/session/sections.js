// A session's progress, error and params, each a section shown when there is something to show.

import { h } from "../../lib/dom.js";
import { progressText } from "../../lib/format.js";

export function progressSection() {
  const el = h("section", { class: "progress-box", "aria-label": "Progress", hidden: true });
  const show = (task) => {
    const p = task.progress;
    el.hidden = !p;
    if (!p) return;
    const bar = h("progress", { id: "task-progress", "aria-label": "Progress" });
    if (p.total) {
      bar.max = p.total;
      bar.value = Math.min(p.current, p.total);
    }
    const pct = p.total ? ` (${Math.round((100 * Math.min(p.current, p.total)) / p.total)}%)` : "";
    el.replaceChildren(bar, h("span", { class: "progress-text" }, progressText(p) + pct));
  };
  return { el, show };
}

export function errorSection() {
  const el = h("section", { "aria-labelledby": "error-h", hidden: true });
  const show = (task) => {
    el.hidden = !task.error;
    if (task.error) {
      el.replaceChildren(h("h2", { id: "error-h" }, "Error"), h("pre", { class: "error-text" }, task.error));
    }
  };
  return { el, show };
}

export function paramsSection() {
  const el = h("section", { "aria-labelledby": "params-h" });
  const show = (task) => {
    const state = task.params && typeof task.params === "object" && "state" in task.params ? task.params.state : task.params;
    el.replaceChildren(h("h2", { id: "params-h" }, "Params"), h("pre", { class: "json" }, JSON.stringify(state ?? {}, null, 2)));
  };
  return { el, show };
}
