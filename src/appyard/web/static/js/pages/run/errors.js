// Which field of the run form an API error is about, and what to say there.

import { ApiError } from "../../lib/api.js";
import { TARGETS } from "../../lib/manifest.js";

/** Fields of the session itself, kept when the options and the target are built again. */
export const FIXED = new Set(["task_name", "agent_id", "version"]);

/** What to say beside a picker the server refused. Its own words there are for API clients
 *  (they name SDK calls); here the user picked from lists, so what was picked is gone. */
const GONE = {
  agent_id: "This agent is not in the team any more: pick another one, or any online agent.",
  projectId: "This project is not in the team any more (removed meanwhile?): pick another one.",
  datasetId: "This dataset is not in the team any more (removed meanwhile?): pick another one.",
  memberId: "This member is not in the team any more: pick another one.",
};

export function messageFor(key, e) {
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
export function fieldKey(e, options) {
  const f = e instanceof ApiError ? e.field : "";
  if (FIXED.has(f)) return f;
  if (f === "params" || f === "params.state") return "target";
  const m = /^params\.state\.([^.[]+)/.exec(f);
  if (!m) return "";
  if (options.some((o) => o.key === m[1])) return `opt:${m[1]}`;
  const target = Object.values(TARGETS).find((t) => t.key === m[1]);
  return target ? m[1] : "";
}
