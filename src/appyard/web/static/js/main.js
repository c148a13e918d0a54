// The single page: hash routes -> page modules. Leaving a page aborts its signal, which
// closes its live streams.

import { api, auth, errorBox, h, session, toLogin } from "./core.js";

// pattern -> [module, export]; ``:name`` parts become params
const ROUTES = [
  ["/login", "./pages/login.js"],
  ["/ecosystem", "./pages/ecosystem.js"],
  ["/apps/:id", "./pages/module.js"],
  ["/apps/:id/run", "./pages/run.js"],
  ["/sessions", "./pages/sessions.js"],
  ["/sessions/:id", "./pages/session.js"],
  ["/agents", "./pages/agents.js"],
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
    const on = path.startsWith("/" + a.dataset.nav) || (a.dataset.nav === "ecosystem" && path.startsWith("/apps"));
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

function fillHeader() {
  const select = document.getElementById("team-select");
  select.replaceChildren(
    ...session.teams.map((t) =>
      h("option", { value: t.id, selected: t.id === session.team?.id }, `${t.name} (${t.role})`),
    ),
  );
  document.getElementById("who").textContent = session.user ? session.user.login : "";
}

/** Called by the login page once a token is saved. */
export async function signedIn() {
  await session.load();
  fillHeader();
}

async function signOut() {
  const id = auth.tokenId;
  if (id) {
    // a token minted by the password sign-in is revoked; a pasted one is only forgotten
    await api("DELETE", `/tokens/${id}`).catch(() => {});
  }
  auth.clear();
  session.user = null;
  location.hash = "#/login";
}

async function boot() {
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("team-select").addEventListener("change", async (ev) => {
    await session.pickTeam(ev.target.value);
    fillHeader();
    show();
  });
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
