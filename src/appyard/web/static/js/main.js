// The single page: hash routes -> page modules. Leaving a page aborts its signal, which
// closes its live streams.
//
// A page module (pages/<name>.js) composes view functions: its own in pages/<name>/, shared
// ones in lib/. Pages never import each other; what two pages share belongs in lib/.

import { session } from "./lib/account.js";
import { auth, toLogin } from "./lib/auth.js";
import { errorBox, h } from "./lib/dom.js";
import { signedIn, wireHeader } from "./shell.js";

// pattern -> module; ``:name`` parts become params
const ROUTES = [
  ["/login", "./pages/login.js"],
  ["/ecosystem", "./pages/ecosystem.js"],
  ["/apps/:id", "./pages/module.js"],
  ["/apps/:id/run", "./pages/run.js"],
  ["/sessions", "./pages/sessions.js"],
  ["/sessions/:id", "./pages/session.js"],
  ["/pipelines", "./pages/pipelines.js"],
  ["/pipelines/:id/run", "./pages/pipeline-start.js"],
  ["/pipeline-runs/:id", "./pages/pipeline-run.js"],
  ["/agents", "./pages/agents.js"],
  ["/team", "./pages/team.js"],
];

let current = null; // AbortController of the page shown

function match(path) {
  for (const [pattern, module] of ROUTES) {
    const names = [];
    const re = new RegExp(
      "^" +
        pattern.replace(/:([a-z]+)/g, (_, n) => {
          names.push(n);
          return "([^/]+)";
        }) +
        "$",
    );
    const m = path.match(re);
    if (m) {
      const params = Object.fromEntries(names.map((n, i) => [n, decodeURIComponent(m[i + 1])]));
      return { module, params };
    }
  }
  return null;
}

function splitHash() {
  const raw = location.hash.replace(/^#/, "") || "/ecosystem";
  const [path, qs] = raw.split("?");
  return { path, query: new URLSearchParams(qs || "") };
}

function markNav(path) {
  for (const a of document.querySelectorAll("[data-nav]")) {
    const on =
      path.startsWith("/" + a.dataset.nav) ||
      (a.dataset.nav === "ecosystem" && path.startsWith("/apps")) ||
      (a.dataset.nav === "pipelines" && path.startsWith("/pipeline-runs"));
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

async function show() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const { path, query } = splitHash();
  const main = document.getElementById("main");
  const signedIn = Boolean(auth.token && session.user);
  if (!signedIn && path !== "/login") {
    toLogin(); // the page asked for comes back after signing in
    return;
  }
  document.getElementById("top").hidden = !signedIn;
  markNav(path);
  const found = match(path);
  main.replaceChildren();
  if (!found) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "No page at ", path, "."));
    return;
  }
  try {
    const page = await import(found.module);
    if (controller.signal.aborted) return;
    await page.render(main, found.params, { signal: controller.signal, query });
  } catch (e) {
    if (controller.signal.aborted) return;
    main.append(errorBox(e));
  }
}

async function boot() {
  wireHeader(show);
  if (auth.token) {
    try {
      await signedIn();
    } catch {
      auth.clear();
    }
  }
  window.addEventListener("hashchange", show);
  show();
}

boot();
