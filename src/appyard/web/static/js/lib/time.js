// Waiting and ticking that stop with the page.

/** Resolve after ``ms``, or at once when ``signal`` aborts. */
export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Call ``fn`` every second while the tab is visible, until ``signal`` aborts or the returned
 *  function is called. The only timer a page needs: running durations redraw with it. */
export function everySecond(signal, fn) {
  const timer = setInterval(() => {
    if (!document.hidden) fn();
  }, 1000);
  const stop = () => clearInterval(timer);
  signal.addEventListener("abort", stop);
  return stop;
}
