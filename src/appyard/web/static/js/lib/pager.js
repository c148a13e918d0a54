// Previous / Next over the API's cursor pages (the sessions and the pipeline runs tables).

import { errorBox, h } from "./dom.js";

export class Pager {
  /** ``load()`` reads the page of ``cursor``; focus stays on a pager button when one disables. */
  constructor(signal, load) {
    this.cursors = [null]; // cursor of each page shown so far; the last is the current page's
    this.nextCursor = null;
    this.prev = h("button", { type: "button", disabled: true }, "Previous");
    this.next = h("button", { type: "button", disabled: true }, "Next");
    this.label = h("span", { class: "muted" });
    this.el = h("nav", { class: "pager", "aria-label": "Pages" }, this.prev, this.label, this.next);
    this.next.addEventListener("click", () => {
      if (!this.nextCursor) return;
      this.cursors.push(this.nextCursor);
      load().then(() => !signal.aborted && this.next.disabled && this.prev.focus());
    });
    this.prev.addEventListener("click", () => {
      if (this.cursors.length <= 1) return;
      this.cursors.pop();
      load().then(() => !signal.aborted && this.prev.disabled && this.next.focus());
    });
  }

  get cursor() {
    return this.cursors[this.cursors.length - 1];
  }

  get onFirstPage() {
    return this.cursors.length <= 1;
  }

  reset() {
    this.cursors = [null];
  }

  update() {
    const n = this.cursors.length;
    this.prev.disabled = n <= 1;
    this.next.disabled = !this.nextCursor;
    this.label.textContent = `Page ${n}`;
    this.el.hidden = n <= 1 && !this.nextCursor;
  }
}

/** A page of a list that could not be read: ``table`` shows no rows (those on screen belonged
 *  to other filters or another page) and not its "none" either, ``slot`` says why with a
 *  "Try again" button that calls ``retry``. */
export function showLoadFailure(table, slot, error, retry) {
  table.show([]);
  table.empty.hidden = true;
  slot.replaceChildren(errorBox(error), h("button", { type: "button", onclick: retry }, "Try again"));
}
