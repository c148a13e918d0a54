// Names of a team's modules, agents and members, for pages that show tasks by their ids.

import { api } from "./api.js";

/** Names of a team's modules, agents and members, looked up once (again for an unknown id). */
export class Names {
  constructor(teamId, signal) {
    this.teamId = teamId;
    this.signal = signal;
    this.modules = new Map();
    this.agents = new Map();
    this.users = new Map();
    this.asked = new Set();
  }

  async load() {
    await Promise.all([this.reload("modules"), this.reload("agents"), this.reload("users")]);
  }

  async reload(kind) {
    const signal = this.signal;
    try {
      if (kind === "modules") {
        for (const m of await api("GET", "/modules", { signal })) this.modules.set(m.id, m);
      } else if (kind === "agents") {
        for (const a of await api("GET", `/teams/${this.teamId}/agents`, { signal })) this.agents.set(a.id, a);
      } else {
        for (const u of await api("GET", `/teams/${this.teamId}/members`, { signal })) this.users.set(u.user_id, u);
      }
    } catch (e) {
      if (signal.aborted) return;
      // names are a nicety: the ids still show
    }
  }

  /** Whether a task names something not known yet; then ``refresh()`` looks once more. */
  missing(task) {
    const out = [];
    if (!this.modules.has(task.module_id)) out.push("modules");
    if (task.agent_id != null && !this.agents.has(task.agent_id)) out.push("agents");
    if (!this.users.has(task.user_id)) out.push("users");
    return out.filter((k) => !this.asked.has(`${k}:${k === "modules" ? task.module_id : k === "agents" ? task.agent_id : task.user_id}`));
  }

  async refresh(task) {
    const kinds = this.missing(task);
    if (!kinds.length) return false;
    for (const k of kinds) {
      const id = k === "modules" ? task.module_id : k === "agents" ? task.agent_id : task.user_id;
      this.asked.add(`${k}:${id}`);
    }
    await Promise.all(kinds.map((k) => this.reload(k)));
    return true;
  }

  module(id) {
    return this.modules.get(id)?.name || `module ${id}`;
  }
  agent(id) {
    if (id == null) return "–";
    return this.agents.get(id)?.name || `agent ${id}`;
  }
  user(id) {
    return this.users.get(id)?.login || `user ${id}`;
  }
}
