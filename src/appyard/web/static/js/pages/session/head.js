// A session's head: its title, its status and Stop, which asks for a confirmation first.

import { session } from "../../lib/account.js";
import { h } from "../../lib/dom.js";
import { TERMINAL, taskBadges } from "../../lib/status.js";
import { crumbs } from "../../lib/views.js";

export function sessionHead(id) {
  const title = h("span");
  const statusSlot = h("span", { class: "status-slot", role: "status", "aria-label": "Status", "aria-live": "polite" });
  const stopBtn = h("button", { type: "button", class: "danger", hidden: true }, "Stop");
  const els = [
    crumbs(["Sessions", "#/sessions"], `#${id}`),
    h("div", { class: "session-head" }, h("h1", {}, title), statusSlot, h("span", { class: "spacer" }), stopBtn),
  ];
  return {
    els,
    stopBtn,
    showTitle(task) {
      title.textContent = task.name ? `#${task.id} ${task.name}` : `Session #${task.id}`;
      document.title = `#${task.id} ${task.name} · appyard`;
    },
    showStatus(task) {
      statusSlot.replaceChildren(...taskBadges(task));
      stopBtn.hidden = !(session.can("developer") && !TERMINAL.has(task.status) && task.status !== "terminating");
    },
    /** Move focus to the status (Stop, which had it, may hide). */
    focusStatus() {
      statusSlot.setAttribute("tabindex", "-1");
      statusSlot.focus();
    },
  };
}

/** The modal confirmation of Stop; ``onStop`` runs once the user confirms. */
export function stopDialog(taskId, onStop) {
  const cancel = h("button", { type: "button", autofocus: true }, "Cancel");
  const stop = h("button", { type: "button", class: "danger" }, "Stop");
  const dialog = h(
    "dialog",
    { class: "confirm", "aria-labelledby": "stop-h", "aria-describedby": "stop-d" },
    h("h2", { id: "stop-h" }, `Stop session #${taskId}?`),
    h(
      "p",
      { id: "stop-d" },
      "The app is asked to stop (SIGTERM); after its grace period it is killed. The session ends as stopped.",
    ),
    h("div", { class: "actions" }, cancel, stop),
  );
  cancel.addEventListener("click", () => dialog.close());
  stop.addEventListener("click", () => {
    dialog.close(); // focus goes back to the Stop button, then to the status once it is hidden
    onStop();
  });
  return dialog;
}
