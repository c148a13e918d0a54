// Filling a session's log: pages of what is logged already (fast), then the live stream.

import { api } from "../../lib/api.js";
import { sse } from "../../lib/sse.js";

const BACKLOG_PAGE = 10000; // lines per request while catching up (the API's largest page)

/** What the log's label says of each state of its stream. */
const SAID = {
  open: "live",
  broken: "not live: reconnecting…",
  refused: "not live",
};

/** Catch ``view`` (a LogView) up with the task's log, then follow the stream from its last
 *  line. ``onState`` hears the stream's state (see ``sse``); the log's own label follows it. */
export async function followLog(view, signal, onState) {
  signal.addEventListener("abort", () => view.close());
  try {
    for (;;) {
      const page = await api("GET", `/tasks/${view.taskId}/logs`, {
        query: { after: view.lastSeq, limit: BACKLOG_PAGE },
        signal,
      });
      if (signal.aborted) return;
      view.add(page.items);
      if (page.ended) {
        view.end();
        return;
      }
      if (page.items.length < BACKLOG_PAGE) break;
    }
    await sse(`/tasks/${view.taskId}/logs/stream`, {
      signal,
      onState: (state, error) => {
        if (SAID[state] && !view.ended) view.say(SAID[state]);
        onState?.(state, error);
      },
      query: () => ({ after: view.lastSeq }),
      onEvent: (type, data) => {
        if (type === "log") view.add([data]);
        else if (type === "end") view.end();
      },
    });
  } catch (e) {
    if (signal.aborted) return;
    view.say(`log unavailable: ${e.message}`);
    onState?.("refused", e);
  }
}
