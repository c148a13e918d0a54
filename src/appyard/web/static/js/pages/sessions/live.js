// The team's task stream: every change of the team's tasks, resumed after a dropped connection.

import { ApiError } from "../../lib/api.js";
import { sse } from "../../lib/sse.js";

/** Follow the team's tasks into ``apply(task)``. A stream re-opened with nothing to resume
 *  from calls ``reload()``; ``note`` says plainly when the table is not live. */
export async function followTeam(teamId, { signal, note, apply, reload }) {
  let lastId = null; // the id (an updated_at) of the last event: a reconnect resumes there
  let attempts = 0;
  try {
    await sse("/tasks/stream", {
      signal,
      onState: (state) => {
        // the table is live while the stream is open; say so plainly when it is not
        if (state === "open") note.textContent = "";
        else if (state === "broken") {
          note.textContent = "Live updates are interrupted, so the table may be out of date. Reconnecting…";
        }
      },
      query: () => {
        attempts += 1;
        // a reconnect resumes after the last event; without one, the page is read again
        if (attempts > 1 && !lastId) setTimeout(() => !signal.aborted && reload(), 300);
        return { team_id: teamId, after: lastId || undefined };
      },
      onEvent: (type, data, id) => {
        if (type !== "task") return;
        if (id) lastId = id;
        apply(data);
      },
    });
  } catch (e) {
    if (signal.aborted) return;
    note.textContent =
      e instanceof ApiError && (e.status === 404 || e.status === 422)
        ? "Live updates are not available on this server."
        : `Live updates stopped: ${e.message}`;
  }
}
