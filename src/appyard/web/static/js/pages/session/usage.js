// What a session uses: CPU, memory and (where the agent reads one) GPU, each its latest figure
// and a sparkline of the session's history (inline SVG: no chart library). Shown once the
// agent has reported a sample; redrawn with every record the task's watch brings.

import { h } from "../../lib/dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 160;
const H = 36;

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

const fmtMb = (v) => (v >= 1000 ? `${(v / 1024).toFixed(1)} GB` : `${Math.round(v)} MB`);
const fmtPct = (v) => `${Math.round(v)}%`;

/** A sparkline of ``values`` (nulls skipped), scaled to its own peak (at least ``floor``). */
function sparkline(values, floor, label) {
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "spark", role: "img", "aria-label": label });
  const pts = values.map((v, i) => [i, v]).filter(([, v]) => v != null);
  if (pts.length === 0) return box;
  const top = Math.max(floor, ...pts.map(([, v]) => v));
  const n = Math.max(values.length - 1, 1);
  const xy = pts.map(([i, v]) => `${((i / n) * (W - 2) + 1).toFixed(1)},${(H - 1 - (v / top) * (H - 2)).toFixed(1)}`);
  if (xy.length === 1) xy.push(xy[0].replace(/^[^,]+/, String(W - 1)));
  box.append(
    svg("polygon", { points: `1,${H - 1} ${xy.join(" ")} ${W - 1},${H - 1}`, class: "spark-area" }),
    svg("polyline", { points: xy.join(" "), class: "spark-line" }),
  );
  return box;
}

export function usageSection() {
  const el = h("section", { class: "card usage-box", "aria-labelledby": "usage-h", hidden: true });
  const show = (task) => {
    const u = task.usage;
    el.hidden = !u;
    if (!u) return;
    const hist = task.usage_history && task.usage_history.length ? task.usage_history : [u];
    const charts = [
      ["CPU", "usage-cpu", fmtPct(u.cpu_percent), hist.map((x) => x.cpu_percent), 100],
      ["Memory", "usage-memory", fmtMb(u.memory_mb), hist.map((x) => x.memory_mb), 1],
    ];
    if (hist.some((x) => x.gpu_memory_mb != null) || u.gpu_memory_mb != null) {
      charts.push(["GPU memory", "usage-gpu-memory", fmtMb(u.gpu_memory_mb ?? 0), hist.map((x) => x.gpu_memory_mb), 1]);
      charts.push(["GPU", "usage-gpu", fmtPct(u.gpu_percent ?? 0), hist.map((x) => x.gpu_percent), 100]);
    }
    el.replaceChildren(
      h("h2", { id: "usage-h" }, "Usage"),
      h(
        "div",
        { class: "usage-charts" },
        charts.map(([name, id, now, values, floor]) =>
          h(
            "figure",
            { class: "usage-chart", id },
            h("figcaption", {}, `${name} `, h("strong", { class: "num" }, now)),
            sparkline(values, floor, `${name} over the session, now ${now}`),
          ),
        ),
      ),
      h("p", { class: "muted" }, `Sampled ${new Date(u.sampled_at).toLocaleTimeString()} · ${hist.length} points over the session`),
    );
  };
  return { el, show };
}
