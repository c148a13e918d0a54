// The signed-in user, their teams and the current team (kept across reloads).

import { api } from "./api.js";

const TEAM_KEY = "appyard.team";

export const session = {
  user: null, // UserInfo
  teams: [], // TeamInfo with the caller's role
  team: null, // the current TeamInfo
  workspaces: [], // of the current team
  async load() {
    this.user = await api("GET", "/users/me");
    this.teams = await api("GET", "/teams");
    const saved = Number(localStorage.getItem(TEAM_KEY));
    this.team = this.teams.find((t) => t.id === saved) || this.teams[0] || null;
    await this.loadWorkspaces();
  },
  async loadWorkspaces() {
    this.workspaces = this.team ? await api("GET", `/teams/${this.team.id}/workspaces`) : [];
  },
  async pickTeam(id) {
    this.team = this.teams.find((t) => t.id === Number(id)) || this.team;
    if (this.team) localStorage.setItem(TEAM_KEY, String(this.team.id));
    await this.loadWorkspaces();
  },
  get workspace() {
    return this.workspaces[0] || null;
  },
  /** Whether the user's role in the current team is at least ``need``. */
  can(need) {
    const rank = { viewer: 1, developer: 2, admin: 3 };
    const role = this.team?.role || "viewer";
    return rank[role] >= rank[need];
  },
};
