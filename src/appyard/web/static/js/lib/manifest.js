// What a module's manifest (config.json) and releases say: categories, options, targets.

/** What each target of ``context_menu.target`` means, and the state key it fills. */
export const TARGETS = {
  ecosystem: { label: "No target (from the ecosystem)", key: null },
  images_project: { label: "An images project", key: "projectId" },
  images_dataset: { label: "An images dataset", key: "datasetId" },
  files_folder: { label: "A team-files folder", key: "folder" },
  files_file: { label: "A team-files file", key: "file" },
  team: { label: "The team", key: "teamId" },
  team_member: { label: "A team member", key: "memberId" },
};

export function latestRelease(mod) {
  return (mod.meta?.releases || [])[0] || null;
}

export function categoriesOf(mod) {
  const cats = mod.config?.categories;
  return Array.isArray(cats) ? cats.map(String) : [];
}

/** The manifest's targets, in its order (a single string counts as a list of one). */
export function targetsOf(config) {
  const raw = config?.context_menu?.target ?? [];
  return (Array.isArray(raw) ? raw : [raw]).map(String);
}

/** The options: [{key, default, title, help, choices}] from modal_template_state (+ _options). */
export function optionsOf(config) {
  const state = config?.modal_template_state;
  const extra = config?.modal_template_options || {};
  if (!state || typeof state !== "object") return [];
  return Object.entries(state).map(([key, value]) => {
    const o = (extra && typeof extra[key] === "object" && extra[key]) || {};
    return {
      key,
      default: value,
      title: typeof o.title === "string" && o.title ? o.title : key,
      help: typeof o.help === "string" ? o.help : "",
      choices: Array.isArray(o.choices) && o.choices.length ? o.choices.map(choice) : null,
    };
  });
}

/** A choice is a bare value or {value, label}. */
function choice(c) {
  if (c && typeof c === "object" && "value" in c) return { value: c.value, label: String(c.label ?? c.value) };
  return { value: c, label: String(c) };
}

/** A value as JSON text, the way options show and compare their values. */
export function showValue(v) {
  return JSON.stringify(v) ?? "null";
}
