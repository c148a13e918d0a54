// One session: status and timeline, what ran where, params, progress, outputs, error, and the
// log (a virtualized list: 100,000 lines cost ~a hundred DOM nodes). Live over server-sent
// events: the task's watch and its log stream; while either is broken the page says so.
// Stop asks for a confirmation first.

import { TERMINAL, api, download, errorBox, fmtDuration, fmtTime, h, session, sse, statusBadge, toast } from "../core.js";
import { Names, older, progressText } from "./sessions.js";

/** Height of one log line in px: the same as ``--log-line`` in css/sessions.css. */
export const LINE_HEIGHT = 18;
const MARGIN = 40; // lines rendered above and below the visible ones
const BACKLOG_PAGE = 10000; // lines per request while catching up (the API's largest page)

const TIMELINE = [
  ["created_at", "queued"],
  ["consumed_at", "consumed"],
  ["started_at", "started"],
  ["deployed_at", "deployed"],
  ["terminating_at", "terminating"],
  ["ended_at", null], // named by the final status
];

export async function render(root, params, ctx) {
  const { signal } = ctx;
  const id = Number(params.id);
  if (!Number.isInteger(id) || id < 1) {
    root.append(h("h1", {}, "Session"), errorBox(`No session ${params.id}.`));
    return;
  }
  let task = await api("GET", `/tasks/${id}`, { signal });
  if (signal.aborted) return;
  const names = new Names(task.team_id, signal);
  await names.load();
  if (signal.aborted) return;

  // -- header and details --------------------------------------------------------------------
  const statusSlot = h("span", { class: "status-slot", role: "status", "aria-label": "Status", "aria-live": "polite" });
  const stopBtn = h("button", { type: "button", class: "danger", hidden: true }, "Stop");
  const title = h("span");
  const liveNote = h("p", { class: "live-note", role: "alert", hidden: true });
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/sessions" }, "Sessions"), " / ", `#${id}`),
    h("div", { class: "session-head" }, h("h1", {}, title), statusSlot, h("span", { class: "spacer" }), stopBtn),
    liveNote,
  );

  const details = h("dl", { class: "details" });
  const timeline = h("ol", { class: "timeline", "aria-label": "Timeline" });
  const duration = h("span", { class: "num" });
  const progressBox = h("section", { class: "progress-box", "aria-label": "Progress", hidden: true });
  const outputsBox = h("section", { "aria-labelledby": "outputs-h", hidden: true });
  const errorSection = h("section", { "aria-labelledby": "error-h", hidden: true });
  const paramsBox = h("section", { "aria-labelledby": "params-h" });
  root.append(
    h(
      "div",
      { class: "session-grid" },
      h("section", { class: "card", "aria-label": "Details" }, details),
      h(
        "section",
        { class: "card", "aria-labelledby": "timeline-h" },
        h("h2", { id: "timeline-h" }, "Timeline"),
        timeline,
        h("p", { class: "muted duration" }, "Duration ", duration),
      ),
    ),
    progressBox,
    errorSection,
    outputsBox,
    paramsBox,
  );

  function detail(label, value) {
    return [h("dt", {}, label), h("dd", {}, value)];
  }

  function showDetails() {
    title.textContent = task.name ? `#${task.id} ${task.name}` : `Session #${task.id}`;
    document.title = `#${task.id} ${task.name} · appyard`;
    const mod = names.modules.get(task.module_id);
    details.replaceChildren(
      ...detail("App", [h("a", { href: `#/apps/${task.module_id}` }, names.module(task.module_id)), h("span", { class: "muted" }, ` ${task.version}`)]),
      ...detail("Agent", names.agent(task.agent_id)),
      ...detail("User", names.user(task.user_id)),
      ...detail("Name", task.name || "–"),
      ...(task.description ? detail("Description", task.description) : []),
      ...(task.attempt > 1 ? detail("Attempt", String(task.attempt)) : []),
      ...(task.exit_code != null ? detail("Exit code", String(task.exit_code)) : []),
    );
    if (!mod) names.refresh(task).then((changed) => changed && !signal.aborted && showDetails());
  }

  function showStatus() {
    statusSlot.replaceChildren(statusBadge(task.status));
    stopBtn.hidden = !(session.can("developer") && !TERMINAL.has(task.status) && task.status !== "terminating");
    const items = [];
    for (const [key, label] of TIMELINE) {
      if (!task[key]) continue;
      const name = label || task.status;
      items.push(
        h(
          "li",
          { class: `tl tl-${name}`, dataset: { step: name } },
          h("span", { class: "tl-label" }, name),
          h("time", { datetime: task[key] }, fmtTime(task[key])),
        ),
      );
    }
    timeline.replaceChildren(...items);
    duration.textContent = fmtDuration(task.started_at, task.ended_at);
  }

  function showProgress() {
    const p = task.progress;
    progressBox.hidden = !p;
    if (!p) return;
    const bar = h("progress", { id: "task-progress", "aria-label": "Progress" });
    if (p.total) {
      bar.max = p.total;
      bar.value = Math.min(p.current, p.total);
    }
    const pct = p.total ? ` (${Math.round((100 * Math.min(p.current, p.total)) / p.total)}%)` : "";
    progressBox.replaceChildren(bar, h("span", { class: "progress-text" }, progressText(p) + pct));
  }

  function showError() {
    errorSection.hidden = !task.error;
    if (task.error) {
      errorSection.replaceChildren(h("h2", { id: "error-h" }, "Error"), h("pre", { class: "error-text" }, task.error));
    }
  }

  function outputValue(key, value) {
    if (value && typeof value === "object" && value.type === "team_file" && typeof value.path === "string") {
      const base = value.path.split("/").filter(Boolean).pop() || key;
      const btn = h(
        "button",
        {
          type: "button",
          class: "download",
          onclick: async () => {
            btn.disabled = true;
            try {
              await download(`/teams/${task.team_id}/files/content`, { path: value.path }, base);
            } catch (e) {
              toast(`Download failed: ${e.message}`, "error");
            } finally {
              btn.disabled = false;
            }
          },
        },
        `Download ${base}`,
      );
      return [btn, " ", h("code", { class: "muted" }, value.path)];
    }
    if (value !== null && typeof value === "object") return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
    return h("code", {}, JSON.stringify(value));
  }

  let shownOutputs = null;
  function showOutputs() {
    // a serving app's page is there while the session runs; once it has ended, it is gone
    const appPage = TERMINAL.has(task.status) ? null : task.ready_url;
    const key = JSON.stringify([task.outputs, appPage]);
    if (key === shownOutputs) return;
    shownOutputs = key;
    const entries = Object.entries(task.outputs || {});
    outputsBox.hidden = !entries.length && !appPage;
    const list = h("dl", { class: "outputs" });
    if (appPage) {
      list.append(...detail("App page", h("a", { href: appPage, target: "_blank", rel: "noopener" }, appPage)));
    }
    for (const [k, v] of entries) list.append(...detail(k, outputValue(k, v)));
    outputsBox.replaceChildren(h("h2", { id: "outputs-h" }, "Outputs"), list);
  }

  function showParams() {
    const state = task.params && typeof task.params === "object" && "state" in task.params ? task.params.state : task.params;
    paramsBox.replaceChildren(h("h2", { id: "params-h" }, "Params"), h("pre", { class: "json" }, JSON.stringify(state ?? {}, null, 2)));
  }

  function showAll() {
    showDetails();
    showStatus();
    showProgress();
    showError();
    showOutputs();
  }
  showAll();
  showParams();

  // -- the log -------------------------------------------------------------------------------
  const log = new LogView(id);
  root.append(log.el);

  // -- is what is shown live? ------------------------------------------------------------------
  // each stream's state (sse's onState); the note says when one is broken or refused
  const streams = { status: "open", log: "open" };
  const problems = {};
  const showLive = () => {
    const refused = Object.keys(streams).find((k) => streams[k] === "refused");
    const broken = Object.values(streams).includes("broken");
    liveNote.hidden = !refused && !broken;
    liveNote.textContent = refused
      ? `Live updates have stopped, so the status and log shown may be out of date. ${problems[refused]}`
      : broken
        ? "The live connection to the server is broken, so the status and log shown may be out of date. Reconnecting…"
        : "";
  };
  const onState = (name) => (state, error) => {
    streams[name] = state;
    if (error) problems[name] = error.message;
    showLive();
  };

  // -- stop ----------------------------------------------------------------------------------
  const dialog = stopDialog(task, async () => {
    try {
      const r = await api("POST", `/tasks/${id}/stop`, { signal });
      toast(r.status === "terminating" ? "Stopping the session…" : `Session ${r.status}.`);
      if (r.status !== task.status) {
        // the watch brings the whole record in a moment; show the new status now
        task = { ...task, status: r.status };
        showStatus();
      }
      statusSlot.setAttribute("tabindex", "-1");
      statusSlot.focus();
    } catch (e) {
      if (!signal.aborted) toast(`Stop failed: ${e.message}`, "error");
    }
  });
  root.append(dialog);
  stopBtn.addEventListener("click", () => dialog.showModal());
  signal.addEventListener("abort", () => dialog.open && dialog.close());

  // -- live ----------------------------------------------------------------------------------
  const timer = setInterval(() => {
    if (!document.hidden && task.started_at && !task.ended_at) duration.textContent = fmtDuration(task.started_at, null);
  }, 1000);
  signal.addEventListener("abort", () => clearInterval(timer));

  if (!TERMINAL.has(task.status)) {
    sse(`/tasks/${id}/watch`, {
      signal,
      onState: onState("status"),
      onEvent: (type, data) => {
        if (type !== "task" || older(data, task)) return;
        const wasTerminal = TERMINAL.has(task.status);
        task = data;
        showAll();
        if (!wasTerminal && TERMINAL.has(task.status)) clearInterval(timer);
      },
    }).catch(() => {}); // said by onState
  }
  log.follow(signal, onState("log"));
}

function stopDialog(task, onStop) {
  const cancel = h("button", { type: "button", autofocus: true }, "Cancel");
  const stop = h("button", { type: "button", class: "danger" }, "Stop");
  const dialog = h(
    "dialog",
    { class: "confirm", "aria-labelledby": "stop-h", "aria-describedby": "stop-d" },
    h("h2", { id: "stop-h" }, `Stop session #${task.id}?`),
    h(
      "p",
      { id: "stop-d" },
      "The app is asked to stop (SIGTERM); after its grace period it is killed. The session ends as stopped.",
    ),
    h("div", { class: "actions" }, cancel, stop),
  );
  cancel.addEventListener("click", () => dialog.close());
  stop.addEventListener("click", () => {
    dialog.close(); // focus goes back to the Stop button, then to the status once it is hidden
    onStop();
  });
  return dialog;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** ``HH:MM:SS.mmm`` in local time. */
function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

// -- a virtualized log ---------------------------------------------------------------------------

/** The lines live in an array; the DOM holds a spacer as tall as all of them and only the
 *  visible window (plus a margin) of line elements, redrawn on scroll and on new lines. */
export class LogView {
  constructor(taskId) {
    this.taskId = taskId;
    this.lines = []; // {seq, t, level, text}
    this.lastSeq = 0;
    this.ended = false;
    this.following = true;
    this.maxLen = 0;
    this.drawn = { first: -1, last: -1, count: -1 };
    this.lastTop = 0;
    this.frame = 0;

    this.count = h("span", { class: "log-count muted", "aria-live": "off" }, "0 lines");
    this.state = h("span", { class: "log-state muted" }, "loading…");
    this.followBtn = h("button", { type: "button", class: "log-follow", hidden: true }, "Follow");
    this.saveBtn = h("button", { type: "button" }, "Save log");
    this.window = h("div", { class: "log-window" });
    this.spacer = h("div", { class: "log-spacer" }, this.window);
    this.box = h("div", {
      class: "log",
      tabindex: "0",
      role: "region",
      "aria-label": "Log (arrow keys and Page Up/Down scroll; End follows)",
    }, this.spacer);
    this.el = h(
      "section",
      { class: "log-section", "aria-labelledby": "log-h" },
      h("div", { class: "log-head" }, h("h2", { id: "log-h" }, "Log"), this.count, this.state, h("span", { class: "spacer" }), this.followBtn, this.saveBtn),
      this.box,
    );
    this.box.addEventListener("scroll", () => this.onScroll(), { passive: true });
    this.followBtn.addEventListener("click", () => {
      this.following = true;
      this.toBottom();
      this.box.focus();
    });
    this.saveBtn.addEventListener("click", () => this.save());
    this.resizeObserver = new ResizeObserver(() => this.schedule());
    this.resizeObserver.observe(this.box);
  }

  /** Catch up with pages of the log (fast), then follow the live stream from the last line.
   *  ``onState`` hears the stream's state (see ``sse``); the log's own label follows it. */
  async follow(signal, onState) {
    const said = {
      open: "live",
      broken: "not live: reconnecting…",
      refused: "not live",
    };
    signal.addEventListener("abort", () => {
      this.resizeObserver.disconnect();
      cancelAnimationFrame(this.frame);
    });
    try {
      for (;;) {
        const page = await api("GET", `/tasks/${this.taskId}/logs`, {
          query: { after: this.lastSeq, limit: BACKLOG_PAGE },
          signal,
        });
        if (signal.aborted) return;
        this.add(page.items);
        if (page.ended) {
          this.end();
          return;
        }
        if (page.items.length < BACKLOG_PAGE) break;
      }
      await sse(`/tasks/${this.taskId}/logs/stream`, {
        signal,
        onState: (state, error) => {
          if (said[state] && !this.ended) this.state.textContent = said[state];
          onState?.(state, error);
        },
        query: () => ({ after: this.lastSeq }),
        onEvent: (type, data) => {
          if (type === "log") this.add([data]);
          else if (type === "end") this.end();
        },
      });
    } catch (e) {
      if (signal.aborted) return;
      this.state.textContent = `log unavailable: ${e.message}`;
      onState?.("refused", e);
    }
  }

  add(items) {
    let added = 0;
    for (const line of items) {
      if (line.seq <= this.lastSeq) continue; // a resumed stream may repeat one
      this.lines.push(line);
      this.lastSeq = line.seq;
      if (line.text.length > this.maxLen) this.maxLen = line.text.length;
      added += 1;
    }
    if (added) this.schedule();
  }

  end() {
    this.ended = true;
    this.state.textContent = "complete";
    this.schedule();
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  toBottom() {
    this.box.scrollTop = this.box.scrollHeight;
    this.lastTop = this.box.scrollTop;
    this.draw();
  }

  onScroll() {
    const top = this.box.scrollTop;
    const atBottom = top + this.box.clientHeight >= this.box.scrollHeight - LINE_HEIGHT;
    if (top < this.lastTop - 1 && !atBottom) this.following = false; // the user went up
    else if (atBottom) this.following = true;
    this.lastTop = top;
    this.followBtn.hidden = this.following;
    this.schedule();
  }

  /** Size the spacer to every line, draw the lines in view (and a margin) only. */
  draw() {
    const n = this.lines.length;
    const height = n * LINE_HEIGHT;
    if (this.spacer.style.height !== `${height}px`) {
      this.spacer.style.height = `${height}px`;
      // a stable width for horizontal scrolling: the longest line in characters
      this.spacer.style.minWidth = `calc(${this.maxLen + 16}ch + 1rem)`;
    }
    if (this.following) {
      const bottom = Math.max(0, height - this.box.clientHeight);
      if (this.box.scrollTop !== bottom) {
        this.box.scrollTop = bottom;
        this.lastTop = this.box.scrollTop;
      }
    }
    this.followBtn.hidden = this.following;
    this.count.textContent = `${n.toLocaleString()} line${n === 1 ? "" : "s"}`;
    const top = this.box.scrollTop;
    const view = this.box.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / LINE_HEIGHT) - MARGIN);
    const last = Math.min(n, Math.ceil((top + view) / LINE_HEIGHT) + MARGIN);
    const d = this.drawn;
    // nothing new in view: keep the nodes (new lines below the window only grow the spacer)
    if (d.first === first && d.last === last && (d.count === n || last < n)) return;
    const nodes = [];
    for (let i = first; i < last; i++) nodes.push(this.lineNode(this.lines[i]));
    this.window.style.transform = `translateY(${first * LINE_HEIGHT}px)`;
    this.window.replaceChildren(...nodes);
    this.drawn = { first, last, count: n };
  }

  lineNode(line) {
    const el = document.createElement("div");
    el.className = `ll ll-${line.level}`;
    const t = document.createElement("span");
    t.className = "lt";
    t.textContent = clock(line.t);
    el.append(t, line.text);
    return el;
  }

  save() {
    const text = this.lines.map((l) => `${l.t} ${l.level.toUpperCase().padEnd(7)} ${l.text}`).join("\n") + "\n";
    const a = h("a", { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: `task-${this.taskId}.log` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
  }
}
