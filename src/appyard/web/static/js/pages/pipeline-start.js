// Start a saved pipeline: a form built from its inputs (defaults prefilled) and the workspace to
// run in. The server checks everything; each of its problems shows beside its input (``inputs.X``)
// or, for the pipeline's own (a step's app gone from the catalog), in a list above the form.
// Started: on to the run's page.

import { session } from "../lib/account.js";
import { ApiError, api } from "../lib/api.js";
import { h } from "../lib/dom.js";
import { crumbs } from "../lib/views.js";
import { InputError, InputFields } from "./pipeline-start/inputs.js";

/** The input a problem's place names (``inputs.coef``, ``inputs.coef.x``), else null. */
function inputOf(at) {
  const m = /^inputs\.([^.[]+)/.exec(at || "");
  return m ? m[1] : null;
}

/** The value at a problem's place in the document (``steps[1].params.coef``), else undefined. */
function valueAt(doc, at) {
  let v = doc;
  for (const part of (at || "").match(/[^.[\]]+/g) || []) {
    if (v === null || typeof v !== "object") return undefined;
    v = v[/^\d+$/.test(part) && Array.isArray(v) ? Number(part) : part];
  }
  return v;
}

/** The input a problem is about: one it names, or the input a place holds whole
 *  (``trainSplitCoef: "${inputs.coef}"`` refused for the coef given); else null. */
function inputOfProblem(doc, at) {
  const named = inputOf(at);
  if (named) return { name: named, direct: true };
  const v = valueAt(doc, at);
  const m = typeof v === "string" ? /^\$\{\s*inputs\.([A-Za-z0-9_-]+)\s*\}$/.exec(v) : null;
  return m ? { name: m[1], direct: false } : null;
}

/** A fresh key for a start: a retried request (a double click) never makes two runs. */
function newKey() {
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export async function render(root, { id }, { signal }) {
  const pipe = await api("GET", `/pipelines/${encodeURIComponent(id)}`, { signal });
  if (signal.aborted) return;
  document.title = `Start ${pipe.name} · appyard`;
  const steps = Array.isArray(pipe.document?.steps) ? pipe.document.steps : [];
  root.append(
    crumbs(["Pipelines", "#/pipelines"], pipe.name, "start"),
    h("h1", {}, `Start ${pipe.name}`),
    h(
      "p",
      { class: "muted" },
      "Version ",
      h("code", {}, pipe.version),
      ` · ${steps.length} step${steps.length === 1 ? "" : "s"}: `,
      steps.map((s) => s.id).join(", "),
    ),
  );
  if (pipe.description) root.append(h("p", {}, pipe.description));
  const team = session.team;
  if (!session.can("developer")) {
    root.append(
      h(
        "p",
        { class: "card notice" },
        `You are a ${team?.role || "viewer"} in team ${team?.name || "–"}, so you cannot start pipelines. `,
        "A team admin can make you a developer.",
      ),
    );
    return;
  }
  if (!session.workspaces.length) {
    root.append(h("p", { class: "card notice" }, "The team has no workspace to run in."));
    return;
  }

  const fields = new InputFields(pipe.inputs);
  const workspace = h(
    "select",
    { id: "start-workspace", name: "workspace" },
    session.workspaces.map((w) => h("option", { value: w.id }, w.name)),
  );
  const top = h("div", { class: "error form-error", role: "alert", hidden: true });
  const start = h("button", { type: "submit", class: "primary" }, "Start");
  const form = h(
    "form",
    { class: "card form start-form", novalidate: true, "aria-label": `Start ${pipe.name}` },
    top,
    h("fieldset", {}, h("legend", {}, "Inputs"), fields.box),
    h("div", { class: "field" }, h("label", { for: workspace.id }, "Workspace"), workspace),
    h("div", { class: "actions" }, start, h("a", { href: "#/pipelines", class: "button" }, "Cancel")),
  );
  root.append(form);

  let key = newKey();
  const sayTop = (message, problems = []) => {
    top.replaceChildren(h("p", {}, message));
    if (problems.length) {
      top.append(h("ul", { class: "problems" }, problems.map((p) => h("li", {}, h("code", {}, p.at), ": ", p.reason))));
    }
    top.hidden = false;
    top.scrollIntoView({ block: "nearest" });
  };

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    fields.clear();
    top.hidden = true;
    let inputs;
    try {
      inputs = fields.read();
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      fields.show(e.input, e.message);
      fields.focusFirstError();
      return;
    }
    start.disabled = true;
    try {
      const run = await api("POST", "/pipeline-runs", {
        json: { workspace_id: Number(workspace.value), pipeline_id: pipe.id, inputs, idempotency_key: key },
        signal,
      });
      location.hash = `#/pipeline-runs/${run.id}`;
    } catch (e) {
      if (signal.aborted) return;
      key = newKey(); // nothing was started: the next try is a new start
      const problems = e instanceof ApiError && Array.isArray(e.details.problems) ? e.details.problems : [];
      const elsewhere = [];
      for (const p of problems) {
        const found = inputOfProblem(pipe.document, p.at);
        if (found && fields.has(found.name)) fields.show(found.name, found.direct ? p.reason : `${p.at}: ${p.reason}`);
        else elsewhere.push(p);
      }
      if (!problems.length) {
        const name = e instanceof ApiError ? inputOf(e.field) : null;
        if (name && fields.has(name)) fields.show(name, e.serverMessage || e.message);
        else sayTop(e.message);
      } else if (elsewhere.length) {
        sayTop(
          elsewhere.length === problems.length
            ? "The pipeline cannot start as it is:"
            : "The pipeline cannot start as it is; besides the inputs marked below:",
          elsewhere,
        );
      }
      fields.focusFirstError();
    } finally {
      start.disabled = false;
    }
  });
}
