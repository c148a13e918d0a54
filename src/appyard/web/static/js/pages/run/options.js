// The run form's options: a field per option of the release's manifest, with its default.

import { h } from "../../lib/dom.js";
import { optionsOf, showValue } from "../../lib/manifest.js";
import { FieldError } from "./fields.js";

const kindOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "object" ? "object" : typeof v;

/** The input of option ``o`` holding ``value``; its ``read()`` gives the value to send. */
function optionInput(o, value) {
  const kind = kindOf(o.default);
  if (o.choices) {
    const at = Math.max(0, o.choices.findIndex((c) => showValue(c.value) === showValue(value)));
    const el = h("select", {}, o.choices.map((c, i) => h("option", { value: i, selected: i === at }, c.label)));
    el.read = () => o.choices[Number(el.value)].value;
    return el;
  }
  if (kind === "boolean") {
    const el = h("input", { type: "checkbox", checked: value === true });
    el.read = () => el.checked;
    return el;
  }
  if (kind === "number") {
    const el = h("input", { type: "number", step: "any", value: String(value), inputmode: "decimal" });
    el.read = () => {
      if (el.value === "" || el.validity.badInput) throw new FieldError(`opt:${o.key}`, "Enter a number.");
      return Number(el.value);
    };
    return el;
  }
  if (kind === "string" || kind === "null") {
    const el = h("input", { type: "text", value: value ?? "", autocomplete: "off" });
    el.read = () => (kind === "null" && el.value === "" ? null : el.value);
    return el;
  }
  const el = h("textarea", { rows: 4, spellcheck: "false" }, JSON.stringify(value, null, 2));
  el.read = () => {
    try {
      const v = JSON.parse(el.value);
      if (kindOf(v) === kind) return v;
    } catch {
      /* said below */
    }
    throw new FieldError(`opt:${o.key}`, `Enter a JSON ${kind}.`);
  };
  return el;
}

export class OptionFields {
  constructor(fields) {
    this.fields = fields;
    this.list = []; // the options shown, each with its input
    this.box = h("div", { class: "fields" });
  }

  /** Fields of ``config``'s options; a value in ``kept`` of the same kind stays. */
  build(config, kept) {
    this.list = optionsOf(config).map((o) => {
      const value = o.key in kept && kindOf(kept[o.key]) === kindOf(o.default) ? kept[o.key] : o.default;
      return { ...o, input: optionInput(o, value) };
    });
    this.box.replaceChildren(
      ...(this.list.length
        ? this.list.map((o) =>
            this.fields.field(`opt:${o.key}`, o.title, o.input, {
              help: [o.title !== o.key ? o.key : "", o.help].filter(Boolean).join(" – "),
              check: kindOf(o.default) === "boolean" && !o.choices,
            }),
          )
        : [h("p", { class: "muted" }, "This app has no options.")]),
    );
  }

  /** The state the options give; a FieldError for a value the form cannot send. */
  read() {
    const state = {};
    for (const o of this.list) state[o.key] = o.input.read();
    return state;
  }
}
