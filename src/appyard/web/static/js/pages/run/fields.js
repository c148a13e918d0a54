// The run form's fields by key, each with its help and its error line, and the form's own error.

import { h } from "../../lib/dom.js";

/** A value the form cannot send, said beside the field ``key``. */
export class FieldError extends Error {
  constructor(key, message) {
    super(message);
    this.key = key;
  }
}

export class Fields {
  constructor() {
    this.map = new Map(); // key -> {input, err}
    this.seq = 0;
    this.top = h("p", { class: "error", role: "alert", hidden: true }); // an error of no field
  }

  /** A labelled field of ``input`` (a checkbox inside its label when ``check``). */
  field(key, label, input, { help, check } = {}) {
    input.id ||= `run-${++this.seq}`;
    const helpEl = help ? h("p", { class: "help", id: `${input.id}-help` }, help) : null;
    const err = h("p", { class: "field-error", id: `${input.id}-err`, hidden: true });
    input.setAttribute("aria-describedby", [helpEl?.id, err.id].filter(Boolean).join(" "));
    this.map.set(key, { input, err });
    const lab = check ? h("label", { class: "check", for: input.id }, input, label) : h("label", { for: input.id }, label);
    return h("div", { class: "field" }, lab, check ? null : input, helpEl, err);
  }

  /** Say errors of ``key`` in ``err``, focusing ``input``. */
  set(key, input, err) {
    this.map.set(key, { input, err });
  }

  /** Forget every field but those of ``keys`` (the others are built again). */
  keep(keys) {
    for (const key of [...this.map.keys()]) if (!keys.has(key)) this.map.delete(key);
  }

  clear() {
    this.top.hidden = true;
    for (const { input, err } of this.map.values()) {
      input.removeAttribute("aria-invalid");
      err.textContent = "";
      err.hidden = true;
    }
  }

  /** Say ``message`` beside the field ``key``, or at the top when there is no such field. */
  show(key, message) {
    const f = this.map.get(key);
    if (!f) {
      this.top.textContent = message;
      this.top.hidden = false;
      this.top.scrollIntoView({ block: "nearest" });
      return;
    }
    f.input.setAttribute("aria-invalid", "true");
    f.err.textContent = message;
    f.err.hidden = false;
    f.input.focus();
  }
}
