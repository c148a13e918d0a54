// A modal confirmation (Escape or Cancel closes it) for an action that cannot be undone.

import { h } from "./dom.js";

let seq = 0;

/** Ask ``title`` (with ``text`` under it) before ``action``; resolves true once the user
 *  confirmed, false when they did not. ``verb`` names the confirming button. The dialog is
 *  removed from the page once closed (and closed when ``signal`` aborts: the page is left);
 *  focus goes back where it was. */
export function confirmAction({ title, text, verb }, signal) {
  const n = ++seq;
  const cancel = h("button", { type: "button", autofocus: true }, "Cancel");
  const ok = h("button", { type: "button", class: "danger" }, verb);
  const dialog = h(
    "dialog",
    { class: "confirm", "aria-labelledby": `confirm-h-${n}`, "aria-describedby": `confirm-d-${n}` },
    h("h2", { id: `confirm-h-${n}` }, title),
    h("p", { id: `confirm-d-${n}` }, text),
    h("div", { class: "actions" }, cancel, ok),
  );
  return new Promise((resolve) => {
    let answer = false;
    cancel.addEventListener("click", () => dialog.close());
    ok.addEventListener("click", () => {
      answer = true;
      dialog.close();
    });
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(answer);
    });
    signal?.addEventListener("abort", () => dialog.open && dialog.close());
    document.body.append(dialog);
    dialog.showModal();
  });
}
