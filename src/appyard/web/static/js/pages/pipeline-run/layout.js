// Where each step of a run's graph goes: left to right, a column per depth in the DAG (a step
// sits one column right of its deepest need), and in a column, rows ordered by where their
// needs sit (fewer crossing edges), then by the document's order. Pure: numbers in, numbers out.

export const BOX_W = 208;
export const BOX_H = 86;
const GAP_X = 64;
const GAP_Y = 22;
const PAD = 14;

/** Depth of each step id: 0 for a step that needs nothing, else 1 + its deepest need's.
 *  Needs of steps not in the run are left out; a cycle (never in a checked pipeline) is cut. */
function depths(steps) {
  const ids = new Set(steps.map((s) => s.id));
  const needs = new Map(steps.map((s) => [s.id, (s.needs || []).filter((n) => ids.has(n) && n !== s.id)]));
  const depth = new Map();
  const state = new Map(); // id -> "open" while being walked
  for (const start of steps) {
    if (depth.has(start.id)) continue;
    const stack = [start.id];
    while (stack.length) {
      const id = stack[stack.length - 1];
      if (depth.has(id)) {
        stack.pop();
        continue;
      }
      state.set(id, "open");
      const todo = needs.get(id).filter((n) => !depth.has(n) && state.get(n) !== "open");
      if (todo.length) {
        stack.push(...todo);
        continue;
      }
      let d = 0;
      for (const n of needs.get(id)) if (depth.has(n)) d = Math.max(d, depth.get(n) + 1);
      depth.set(id, d);
      stack.pop();
    }
  }
  return depth;
}

/** ``{width, height, boxes: Map(id -> {x, y, col, row}), edges: [{from, to, d}]}`` of ``steps``
 *  (each ``{id, needs}``), in pixels; ``d`` is an SVG path from a need to its step. */
export function layout(steps) {
  const depth = depths(steps);
  const order = new Map(steps.map((s, i) => [s.id, i]));
  const columns = [];
  for (const s of steps) (columns[depth.get(s.id)] ||= []).push(s);
  const row = new Map();
  for (const col of columns) {
    const key = (s) => {
      const rs = (s.needs || []).filter((n) => row.has(n)).map((n) => row.get(n));
      return rs.length ? rs.reduce((a, b) => a + b, 0) / rs.length : -1;
    };
    col.sort((a, b) => key(a) - key(b) || order.get(a.id) - order.get(b.id));
    col.forEach((s, i) => row.set(s.id, i));
  }
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const boxes = new Map();
  columns.forEach((col, c) => {
    const offset = ((rows - col.length) * (BOX_H + GAP_Y)) / 2; // a short column sits in the middle
    col.forEach((s, r) => {
      boxes.set(s.id, { x: PAD + c * (BOX_W + GAP_X), y: PAD + offset + r * (BOX_H + GAP_Y), col: c, row: r });
    });
  });
  const edges = [];
  for (const s of steps) {
    const to = boxes.get(s.id);
    for (const n of new Set(s.needs || [])) {
      const from = boxes.get(n);
      if (!from || n === s.id) continue;
      const x1 = from.x + BOX_W + 8; // beyond a for_each group's stacked boxes
      const y1 = from.y + BOX_H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + BOX_H / 2;
      const bend = Math.max(24, (x2 - x1) / 2);
      edges.push({ from: n, to: s.id, d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` });
    }
  }
  return {
    width: PAD * 2 + columns.length * (BOX_W + GAP_X) - GAP_X + 8,
    height: PAD * 2 + rows * (BOX_H + GAP_Y) - GAP_Y + 8,
    boxes,
    edges,
  };
}
