// Times, durations, sizes and progress as the pages write them.

export function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, {
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

export function fmtDuration(fromIso, toIso) {
  if (!fromIso) return "–";
  const end = toIso ? new Date(toIso) : new Date();
  let s = Math.max(0, Math.round((end - new Date(fromIso)) / 1000));
  const hh = Math.floor(s / 3600);
  s -= hh * 3600;
  const mm = Math.floor(s / 60);
  s -= mm * 60;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s}s`;
  return `${s}s`;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** ``HH:MM:SS.mmm`` in local time. */
export function fmtClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

export function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** A task's progress: ``3 / 10 images`` (no total: ``3 images``). */
export function progressText(p) {
  if (!p) return "";
  const num = (x) => x.toLocaleString(undefined, { maximumFractionDigits: 1 });
  const count = p.total != null ? `${num(p.current)} / ${num(p.total)}` : num(p.current);
  return p.message ? `${count} ${p.message}` : count;
}
