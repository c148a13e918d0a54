// A run's head: its title and status, and Stop and Resume for developers and admins, each shown
// only while the run's status allows it (Stop: queued or running; Resume: ended error or stopped).

import { session } from "../../lib/account.js";
import { h } from "../../lib/dom.js";
import { statusBadge } from "../../lib/status.js";
import { crumbs } from "../../lib/views.js";

export function runHead(id) {
  const title = h("span", {}, `Run #${id}`);
  const statusSlot = h("span", { class: "status-slot", role: "status", "aria-label": "Status", "aria-live": "polite" });
  const stopBtn = h("button", { type: "button", class: "danger", hidden: true }, "Stop");
  const resumeBtn = h("button", { type: "button", class: "primary", hidden: true }, "Resume");
  const els = [
    crumbs(["Pipelines", "#/pipelines"], `Run #${id}`),
    h("div", { class: "session-head" }, h("h1", {}, title), statusSlot, h("span", { class: "spacer" }), stopBtn, resumeBtn),
  ];
  return {
    els,
    stopBtn,
    resumeBtn,
    show(run) {
      title.textContent = `Run #${run.id} · ${run.pipeline_name}`;
      document.title = `Run #${run.id} ${run.pipeline_name} · appyard`;
      statusSlot.replaceChildren(statusBadge(run.status));
      const dev = session.can("developer");
      stopBtn.hidden = !(dev && (run.status === "queued" || run.status === "running"));
      resumeBtn.hidden = !(dev && (run.status === "error" || run.status === "stopped"));
    },
    /** Move focus to the status (the button that had it may hide). */
    focusStatus() {
      statusSlot.setAttribute("tabindex", "-1");
      statusSlot.focus();
    },
  };
}
