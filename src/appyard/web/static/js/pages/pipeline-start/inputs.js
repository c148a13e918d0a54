// The start form's fields, one per input of the pipeline, prefilled with its default. An input
// whose default is a string is sent as the text typed; any other is read as JSON (a number,
// true/false, a list, an object); an input without a default takes JSON, or else the text as a
// string. An empty field is not sent: the default applies (the server says when one is missing).

import { h } from "../../lib/dom.js";

/** A value the form cannot send, said beside its input. */
export class InputError extends Error {
  constructor(name, message) {
    super(message);
    this.input = name;
  }
}

function kindOf(spec) {
  if (!spec || !("default" in spec)) return "any";
  return typeof spec.default === "string" ? "text" : "json";
}

const HINTS = {
  text: "Text.",
  json: "A JSON value: a number, true or false, a list [..], an object {..}, or \"text\" in quotes.",
  any: "Required. A JSON value (a number, true, a list…), or else text.",
};

export class InputFields {
  /** ``inputs``: the pipeline's inputs (name -> {default?, description?}). */
  constructor(inputs) {
    this.fields = new Map(); // name -> {input, err, kind}
    this.box = h("div", { class: "inputs" });
    const entries = Object.entries(inputs || {});
    if (!entries.length) {
      this.box.append(h("p", { class: "muted" }, "This pipeline has no inputs."));
      return;
    }
    let n = 0;
    for (const [name, spec] of entries) {
      const kind = kindOf(spec);
      const id = `input-${++n}`;
      const value = kind === "text" ? spec.default : kind === "json" ? JSON.stringify(spec.default) : "";
      const long = kind === "json" && spec.default !== null && typeof spec.default === "object";
      const input = long
        ? h("textarea", { id, name, rows: Math.min(8, Math.ceil(value.length / 50) + 1), spellcheck: "false" })
        : h("input", { id, name, type: "text", spellcheck: kind === "text" ? null : "false", autocomplete: "off" });
      input.value = value;
      const help = h("p", { class: "help", id: `${id}-help` }, spec?.description ? `${spec.description} ` : "", HINTS[kind]);
      const err = h("p", { class: "field-error", id: `${id}-err`, hidden: true });
      input.setAttribute("aria-describedby", `${id}-help ${id}-err`);
      this.fields.set(name, { input, err, kind });
      this.box.append(h("div", { class: "field", dataset: { input: name } }, h("label", { for: id }, name), input, help, err));
    }
  }

  /** The inputs to send; an InputError for a value that is not JSON where JSON is needed. */
  read() {
    const out = {};
    for (const [name, { input, kind }] of this.fields) {
      const raw = input.value;
      if (raw.trim() === "") continue;
      if (kind === "text") {
        out[name] = raw;
        continue;
      }
      try {
        out[name] = JSON.parse(raw);
      } catch (e) {
        if (kind === "any") out[name] = raw;
        else throw new InputError(name, `Not a JSON value: ${e.message}. Text goes in double quotes.`);
      }
    }
    return out;
  }

  has(name) {
    return this.fields.has(name);
  }

  clear() {
    for (const { input, err } of this.fields.values()) {
      input.removeAttribute("aria-invalid");
      err.replaceChildren();
      err.hidden = true;
    }
  }

  /** Say ``message`` beside the input ``name`` (after what is said there already). */
  show(name, message) {
    const f = this.fields.get(name);
    f.input.setAttribute("aria-invalid", "true");
    f.err.append(f.err.childNodes.length ? h("br") : "", message);
    f.err.hidden = false;
  }

  /** Focus the first input with an error. */
  focusFirstError() {
    for (const { input } of this.fields.values()) {
      if (input.getAttribute("aria-invalid") === "true") {
        input.focus();
        return;
      }
    }
  }
}
