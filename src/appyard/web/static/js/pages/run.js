// The run dialog of a module, generated from its manifest: a field per option (with its
// default), the target, the agent, the release and the task name. Start -> the session page.

import { ApiError, api, h, session } from "../core.js";
import { TARGETS, optionsOf, showValue, targetsOf } from "./module.js";

/** A value the form cannot send, said beside the field ``key``. */
class FieldError extends Error {
  constructor(key, message) {
    super(message);
    this.key = key;
  }
}

const kindOf = (v) =>
  v === null ? "null" : Array.isArray(v) ? "array" : typeof v === "object" ? "object" : typeof v;

const FIXED = new Set(["task_name", "agent_id", "version"]);

export async function render(root, { id }, { signal, query }) {
  let mod = await api("GET", `/modules/${encodeURIComponent(id)}`, { signal });
  const releases = mod.meta?.releases || [];
  const team = session.team;
  const ws = session.workspace;
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/ecosystem" }, "Ecosystem"), " / ", h("a", { href: `#/apps/${mod.id}` }, mod.name), " / run"),
    h("h1", {}, `Run ${mod.name}`),
  );
  if (!session.can("developer")) {
    root.append(
      h(
        "p",
        { class: "card notice" },
        `You are a ${team?.role || "viewer"} in team ${team?.name || "–"}, so you cannot run apps. `,
        "You can browse apps and sessions; a team admin can make you a developer.",
      ),
    );
    return;
  }
  if (!ws || !releases.length) {
    root.append(h("p", { class: "card notice" }, !ws ? "The team has no workspace to run in." : "This app has no release to run."));
    return;
  }

  // -- fields and their errors ---------------------------------------------------------------
  const fields = new Map(); // key -> {input, err}
  let seq = 0;
  const field = (key, label, input, { help, check } = {}) => {
    input.id ||= `run-${++seq}`;
    const helpEl = help ? h("p", { class: "help", id: `${input.id}-help` }, help) : null;
    const err = h("p", { class: "field-error", id: `${input.id}-err`, hidden: true });
    input.setAttribute("aria-describedby", [helpEl?.id, err.id].filter(Boolean).join(" "));
    fields.set(key, { input, err });
    const lab = check ? h("label", { class: "check", for: input.id }, input, label) : h("label", { for: input.id }, label);
    return h("div", { class: "field" }, lab, check ? null : input, helpEl, err);
  };
  const topError = h("p", { class: "error", role: "alert", hidden: true });
  const clearErrors = () => {
    topError.hidden = true;
    for (const { input, err } of fields.values()) {
      input.removeAttribute("aria-invalid");
      err.textContent = "";
      err.hidden = true;
    }
  };
  const showError = (key, message) => {
    const f = fields.get(key);
    if (!f) {
      topError.textContent = message;
      topError.hidden = false;
      topError.scrollIntoView({ block: "nearest" });
      return;
    }
    f.input.setAttribute("aria-invalid", "true");
    f.err.textContent = message;
    f.err.hidden = false;
    f.input.focus();
  };

  // -- options ---------------------------------------------------------------------------------
  const optionInput = (o, value) => {
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
  };

  let options = [];
  const optionsBox = h("div", { class: "fields" });
  const buildOptions = (config, kept) => {
    options = optionsOf(config).map((o) => {
      const value = o.key in kept && kindOf(kept[o.key]) === kindOf(o.default) ? kept[o.key] : o.default;
      return { ...o, input: optionInput(o, value) };
    });
    optionsBox.replaceChildren(
      ...(options.length
        ? options.map((o) =>
            field(`opt:${o.key}`, o.title, o.input, {
              help: [o.title !== o.key ? o.key : "", o.help].filter(Boolean).join(" – "),
              check: kindOf(o.default) === "boolean" && !o.choices,
            }),
          )
        : [h("p", { class: "muted" }, "This app has no options.")]),
    );
  };
  const readOptions = () => {
    const state = {};
    for (const o of options) state[o.key] = o.input.read();
    return state;
  };

  // -- target ----------------------------------------------------------------------------------
  const once = (fn) => {
    let p;
    return () => (p ||= fn().catch(() => []));
  };
  const projects = once(() => api("GET", "/projects", { query: { workspace_id: ws.id }, signal }));
  const files = once(() => api("GET", `/teams/${team.id}/files`, { query: { path: "/", recursive: true }, signal }));
  const members = once(() => api("GET", `/teams/${team.id}/members`, { signal }));

  /** Put {id, name} items into a select; an empty list leaves it disabled, saying ``empty``. */
  const fill = (el, items, wanted, empty = "none") => {
    el.disabled = !items.length;
    el.replaceChildren(
      ...(items.length
        ? items.map((it) => h("option", { value: it.id, selected: String(it.id) === wanted }, it.name))
        : [h("option", { value: "" }, empty)]),
    );
  };
  /** The text of a select's chosen option ("" when there is nothing to choose). */
  const chosenText = (el) => (el.value ? el.selectedOptions[0]?.textContent || "" : "");
  /** ``on project “x”``: what a picker holds, as the run summary says it ("" for nothing). */
  const on = (what, el) => (chosenText(el) ? `on ${what} “${chosenText(el)}”` : "");
  const pick = (key, items, wanted) => {
    const el = h("select", {});
    fill(el, items, wanted);
    el.read = () => {
      if (!el.value) throw new FieldError(key, "Nothing to pick here yet.");
      return Number(el.value);
    };
    return el;
  };
  const pathInput = (key, paths, wanted) => {
    const list = h("datalist", { id: `run-${key}-list` }, paths.slice(0, 1000).map((p) => h("option", { value: p })));
    const el = h("input", { type: "text", list: list.id, value: wanted || "", autocomplete: "off", spellcheck: "false" });
    el.read = () => {
      const v = el.value.trim();
      if (!v) throw new FieldError(key, "Enter a path in team files (pick one from the list).");
      return v;
    };
    return [el, list];
  };

  // each builder returns {el, read} for one target kind
  const builders = {
    async images_project() {
      const el = pick("projectId", await projects(), query.get("projectId"));
      return {
        el: field("projectId", "Project", el, { help: (await projects()).length ? "" : `No images projects in workspace ${ws.name}.` }),
        read: () => ({ projectId: el.read() }),
        describe: () => on("project", el),
      };
    },
    async images_dataset() {
      const list = await projects();
      let projectId = query.get("projectId");
      if (!projectId && query.get("datasetId")) {
        const d = await api("GET", `/datasets/${Number(query.get("datasetId"))}`, { signal }).catch(() => null);
        projectId = d && String(d.project_id);
      }
      const proj = pick("datasetProject", list, projectId);
      const ds = pick("datasetId", [], null);
      const dsField = field("datasetId", "Dataset", ds, { help: " " });
      const dsHelp = dsField.querySelector(".help");
      let shown = null; // the project whose datasets the select holds
      const load = async () => {
        const want = proj.value;
        if (want === shown) return;
        shown = want;
        // the datasets of the project before are gone at once: none of them can start
        if (ds.options.length) fill(ds, [], null, "loading…");
        const items = want ? await api("GET", "/datasets", { query: { project_id: want }, signal }) : [];
        if (want !== proj.value) return; // another project was picked meanwhile
        fill(ds, items, query.get("datasetId"));
        dsHelp.textContent = items.length ? "" : "This project has no datasets.";
        showSummary();
      };
      proj.addEventListener("change", load);
      await load();
      return {
        el: h("div", {}, field("datasetProject", "Project of the dataset", proj, { help: list.length ? "" : `No images projects in workspace ${ws.name}.` }), dsField),
        read: () => ({ datasetId: ds.read() }),
        describe: () => (chosenText(ds) ? `${on("dataset", ds)} of project “${chosenText(proj)}”` : ""),
      };
    },
    async files_folder() {
      const paths = ["/", ...(await files()).filter((f) => f.is_dir).map((f) => f.path)];
      const [el, list] = pathInput("folder", paths, query.get("folder"));
      return {
        el: h("div", {}, field("folder", "Folder path", el, { help: "A folder path like /imports/shapes." }), list),
        read: () => ({ folder: el.read() }),
        describe: () => (el.value.trim() ? `on folder ${el.value.trim()}` : ""),
      };
    },
    async files_file() {
      const paths = (await files()).filter((f) => !f.is_dir).map((f) => f.path);
      const [el, list] = pathInput("file", paths, query.get("file"));
      return {
        el: h("div", {}, field("file", "File path", el, { help: "A file path like /exports/result.tar." }), list),
        read: () => ({ file: el.read() }),
        describe: () => (el.value.trim() ? `on file ${el.value.trim()}` : ""),
      };
    },
    async team() {
      return { el: h("p", {}, `Runs on team ${team.name}.`), read: () => ({ teamId: team.id }), describe: () => `on team “${team.name}”` };
    },
    async team_member() {
      const el = pick("memberId", (await members()).map((m) => ({ id: m.user_id, name: `${m.login} (${m.role})` })), query.get("memberId"));
      return { el: field("memberId", "Member", el), read: () => ({ memberId: el.read() }), describe: () => on("member", el) };
    },
    async ecosystem() {
      return { el: null, read: () => ({}), describe: () => "without a target" };
    },
  };

  let readTarget = () => ({});
  let describeTarget = null; // what Start starts on, as the form shows it now (null: no target)
  const targetBox = h("div", {});
  const summary = h("p", { class: "run-summary", id: "run-summary", "aria-live": "polite", hidden: true });
  const showSummary = () => {
    const what = describeTarget?.();
    summary.hidden = !describeTarget;
    summary.textContent = what ? `Starts ${what}.` : "Nothing to start on is picked yet.";
  };
  const buildTarget = async (config) => {
    const declared = targetsOf(config).filter((t) => builders[t]);
    const kinds = declared.filter((t) => t !== "ecosystem");
    readTarget = () => ({});
    describeTarget = null;
    if (!kinds.length) {
      targetBox.replaceChildren();
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
      fields.set("target", { input: set.querySelector("select, input") || set, err });
    } else {
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
      fields.set("target", { input: radios[0], err });
      sync();
    }
    targetBox.replaceChildren(set);
    showSummary();
  };

  // -- agent, release, name --------------------------------------------------------------------
  const agents = await api("GET", `/teams/${team.id}/agents`, { signal });
  agents.sort((a, b) => (a.status === b.status ? a.name.localeCompare(b.name) : a.status === "online" ? -1 : 1));
  const online = agents.filter((a) => a.status === "online").length;
  const agent = h(
    "select",
    {},
    h("option", { value: "" }, "Any online agent"),
    agents.map((a) =>
      h("option", { value: a.id }, `${a.name} – ${a.status}, ${a.running} of ${a.slots} slots busy`),
    ),
  );
  const release = h(
    "select",
    {},
    releases.map((r, i) => h("option", { value: r.version }, i === 0 ? `${r.version} (latest)` : r.version)),
  );
  const name = h("input", { type: "text", maxlength: 200, value: mod.slug.split("/").pop(), autocomplete: "off" });

  const build = async (config, kept = {}) => {
    for (const key of [...fields.keys()]) if (!FIXED.has(key)) fields.delete(key);
    buildOptions(config, kept);
    await buildTarget(config);
  };
  release.addEventListener("change", async () => {
    // the options and targets are those of the release picked
    let kept = {};
    try {
      kept = readOptions();
    } catch {
      /* an unreadable value is not kept */
    }
    try {
      mod = await api("GET", `/modules/${mod.id}`, { query: { version: release.value }, signal });
      await build(mod.config || {}, kept);
    } catch (e) {
      if (!signal.aborted) showError("version", e.message);
    }
  });

  const start = h("button", { type: "submit", class: "primary" }, "Start");
  const form = h(
    "form",
    { class: "card form run-form", novalidate: true, "aria-label": `Run ${mod.name}` },
    topError,
    h("fieldset", {}, h("legend", {}, "Options"), optionsBox),
    targetBox,
    h(
      "fieldset",
      {},
      h("legend", {}, "Session"),
      field("agent_id", "Agent", agent, {
        help: online ? "" : "No agent of the team is online: the session waits in the queue until one is (see Agents).",
      }),
      field("version", "Release", release),
      field("task_name", "Task name", name),
    ),
    h("div", { class: "actions" }, summary, start, h("a", { href: `#/apps/${mod.id}`, class: "button" }, "Cancel")),
  );
  start.setAttribute("aria-describedby", summary.id);
  form.addEventListener("input", showSummary);
  form.addEventListener("change", showSummary);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    let state;
    try {
      state = { ...readOptions(), ...readTarget() };
    } catch (e) {
      if (e instanceof FieldError) return showError(e.key, e.message);
      throw e;
    }
    const body = {
      workspace_id: ws.id,
      module_id: mod.id,
      version: release.value || undefined,
      agent_id: agent.value ? Number(agent.value) : undefined,
      task_name: name.value.trim() || undefined,
      params: { state },
    };
    start.disabled = true;
    try {
      const r = await api("POST", "/tasks", { json: body, signal });
      location.hash = `#/sessions/${r.task_id}`;
    } catch (e) {
      if (signal.aborted) return;
      const key = fieldKey(e, options);
      showError(key, messageFor(key, e));
    } finally {
      start.disabled = false;
    }
  });

  await build(mod.config || {});
  root.append(form);
}

/** What to say beside a picker the server refused. Its own words there are for API clients
 *  (they name SDK calls); here the user picked from lists, so what was picked is gone. */
const GONE = {
  agent_id: "This agent is not in the team any more: pick another one, or any online agent.",
  projectId: "This project is not in the team any more (removed meanwhile?): pick another one.",
  datasetId: "This dataset is not in the team any more (removed meanwhile?): pick another one.",
  memberId: "This member is not in the team any more: pick another one.",
};

function messageFor(key, e) {
  if (!(e instanceof ApiError) || e.status !== 422) return e.message;
  if (GONE[key]) return GONE[key];
  if (key === "folder" || key === "file") {
    const said = e.serverMessage.replace(/^params\.state\.\w+: /, "");
    if (/^there is no /.test(said)) return `There is no such ${key} in the team's files: pick one from the list.`;
    if (/ is a (file|folder) in /.test(said)) return `That path is not a ${key}: pick a ${key} from the list.`;
    return said.split(";")[0];
  }
  return e.message;
}

/** Which field of the form an API error is about ("" for none: said at the top). */
function fieldKey(e, options) {
  const f = e instanceof ApiError ? e.field : "";
  if (FIXED.has(f)) return f;
  if (f === "params" || f === "params.state") return "target";
  const m = /^params\.state\.([^.[]+)/.exec(f);
  if (!m) return "";
  if (options.some((o) => o.key === m[1])) return `opt:${m[1]}`;
  const target = Object.values(TARGETS).find((t) => t.key === m[1]);
  return target ? m[1] : "";
}
