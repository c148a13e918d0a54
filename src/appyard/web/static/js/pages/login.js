// Sign in with a login and password (mints a token, revoked at sign-out) or with a token;
// then on to the page asked for (``#/login?next=/sessions/2``), else the ecosystem.

import { ApiError, api } from "../lib/api.js";
import { auth } from "../lib/auth.js";
import { h } from "../lib/dom.js";
import { signedIn } from "../shell.js";

/** The page to go to after signing in: a route of this UI from ``?next=``, else none. */
export function nextRoute(query) {
  const next = query?.get("next") || "";
  return /^\/[A-Za-z]/.test(next) && !/^\/login\b/.test(next) ? next : null;
}

function passwordForm(onsubmit) {
  return h(
    "form",
    { class: "card form", "aria-label": "Sign in with a password", onsubmit },
    h("h2", {}, "Sign in"),
    h("label", {}, "Login", h("input", { name: "login", autocomplete: "username", required: true })),
    h(
      "label",
      {},
      "Password",
      h("input", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    ),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
}

function tokenForm(onsubmit) {
  return h(
    "form",
    { class: "card form", "aria-label": "Sign in with a token", onsubmit },
    h("h2", {}, "Or with an API token"),
    h("label", {}, "Token", h("input", { name: "token", type: "password", autocomplete: "off", required: true })),
    h("p", { class: "muted" }, "appyard up writes one to ~/appyard.env (API_TOKEN)."),
    h("button", { type: "submit" }, "Use the token"),
  );
}

export async function render(root, _params, { query } = {}) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  let byToken = false; // which form failed: a refused token is the pasted one
  const fail = (e) => {
    error.textContent =
      byToken && e instanceof ApiError && e.status === 401
        ? "This token is not valid: it is unknown or was revoked. Check it, or sign in with your login and password."
        : e instanceof ApiError
          ? e.message
          : String(e);
    error.hidden = false;
  };
  const done = async () => {
    await signedIn();
    location.hash = `#${nextRoute(query) || "/ecosystem"}`;
  };

  const byPassword = passwordForm(async (ev) => {
    ev.preventDefault();
    byToken = false;
    const f = new FormData(ev.target);
    try {
      const t = await api("POST", "/auth/login", {
        json: { login: f.get("login"), password: f.get("password") },
      });
      auth.save(t.token, t.id);
      await done();
    } catch (e) {
      auth.clear();
      fail(e);
    }
  });

  const byTokenForm = tokenForm(async (ev) => {
    ev.preventDefault();
    byToken = true;
    const token = new FormData(ev.target).get("token").trim();
    auth.save(token, null);
    try {
      await done();
    } catch (e) {
      auth.clear();
      fail(e);
    }
  });

  root.append(h("div", { class: "login" }, h("h1", {}, "appyard"), error, byPassword, byTokenForm));
  root.querySelector("input")?.focus();
}
