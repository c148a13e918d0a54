// The run form's target: the one kind the manifest declares, or a radio button per kind with
// only the ticked kind's picker shown; and the line above Start saying what it starts on.

import { h } from "../../lib/dom.js";
import { TARGETS, targetsOf } from "../../lib/manifest.js";
import { FieldError } from "./fields.js";
import { targetBuilders } from "./targets.js";

export function targetPart({ fields, query, ws, team, signal }) {
  let readTarget = () => ({});
  let describeTarget = null; // what Start starts on, as the form shows it now (null: no target)
  const box = h("div", {});
  const summary = h("p", { class: "run-summary", id: "run-summary", "aria-live": "polite", hidden: true });
  const showSummary = () => {
    const what = describeTarget?.();
    summary.hidden = !describeTarget;
    summary.textContent = what ? `Starts ${what}.` : "Nothing to start on is picked yet.";
  };
  const builders = targetBuilders({ fields, query, ws, team, signal, changed: showSummary });

  /** One radio button per kind; using a picker ticks its kind. */
  const choice = (set, kinds, parts, err) => {
    // a target given in the address is picked (a dataset rather than its project)
    const given = (t) => TARGETS[t].key && query.has(TARGETS[t].key);
    const byQuery = given("images_dataset") ? kinds.indexOf("images_dataset") : kinds.findIndex(given);
    const first = Math.max(0, byQuery);
    const radios = kinds.map((t, i) => h("input", { type: "radio", name: "run-target", value: t, checked: i === first }));
    // only the chosen target's picker shows
    const panels = parts.map((p) => h("div", { class: "target-panel" }, p.el));
    const chosen = () => radios.findIndex((r) => r.checked);
    const sync = () => {
      panels.forEach((p, i) => (p.hidden = i !== chosen()));
      showSummary();
    };
    radios.forEach((r) => r.addEventListener("change", sync));
    // using a picker chooses its target: what starts is always the target ticked
    panels.forEach((p, i) => {
      const choose = () => {
        if (radios[i].checked) return;
        radios[i].checked = true;
        sync();
      };
      p.addEventListener("focusin", choose);
      p.addEventListener("change", choose);
    });
    kinds.forEach((t, i) => set.append(h("label", { class: "check" }, radios[i], TARGETS[t].label), panels[i]));
    // read at Start from the radio ticked then, and only from its picker, which is the one shown
    readTarget = () => {
      const at = chosen();
      if (at < 0 || panels[at].hidden) throw new FieldError("target", "Choose a target.");
      return parts[at].read();
    };
    describeTarget = () => (chosen() < 0 ? "" : parts[chosen()].describe());
    fields.set("target", radios[0], err);
    sync();
  };

  /** The target part of ``config`` (a release's manifest). */
  const build = async (config) => {
    const declared = targetsOf(config).filter((t) => builders[t]);
    const kinds = declared.filter((t) => t !== "ecosystem");
    readTarget = () => ({});
    describeTarget = null;
    if (!kinds.length) {
      box.replaceChildren();
      showSummary();
      return;
    }
    if (declared.includes("ecosystem")) kinds.push("ecosystem");
    const parts = await Promise.all(kinds.map((t) => builders[t]()));
    const err = h("p", { class: "field-error", id: "run-target-err", hidden: true });
    const legend = h("legend", {}, kinds.length > 1 ? "Target" : `Target: ${TARGETS[kinds[0]].label.toLowerCase()}`);
    const set = h("fieldset", { class: "target", "aria-describedby": err.id }, legend, err);
    if (kinds.length === 1) {
      set.append(parts[0].el);
      readTarget = parts[0].read;
      describeTarget = parts[0].describe;
      fields.set("target", set.querySelector("select, input") || set, err);
    } else {
      choice(set, kinds, parts, err);
    }
    box.replaceChildren(set);
    showSummary();
  };

  return { box, summary, showSummary, build, read: () => readTarget() };
}
