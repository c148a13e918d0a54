// A session's log as a virtualized list: 100,000 lines cost ~a hundred DOM nodes.

import { h, saveFile } from "../../lib/dom.js";
import { fmtClock } from "../../lib/format.js";

/** Height of one log line in px: the same as ``--log-line`` in css/sessions.css. */
const LINE_HEIGHT = 18;
const MARGIN = 40; // lines rendered above and below the visible ones

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

  /** Stop redrawing (the page is left). */
  close() {
    this.resizeObserver.disconnect();
    cancelAnimationFrame(this.frame);
  }

  /** Say how the log is: "loading…", "live", "complete", ... */
  say(text) {
    this.state.textContent = text;
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
    this.say("complete");
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
    t.textContent = fmtClock(line.t);
    el.append(t, line.text);
    return el;
  }

  save() {
    const text = this.lines.map((l) => `${l.t} ${l.level.toUpperCase().padEnd(7)} ${l.text}`).join("\n") + "\n";
    saveFile(new Blob([text], { type: "text/plain" }), `task-${this.taskId}.log`);
  }
}
