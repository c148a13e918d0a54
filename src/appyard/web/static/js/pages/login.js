// Sign in with a login and password (mints a token, revoked at sign-out) or with a token.

import { ApiError, api, auth, h } from "../core.js";
import { signedIn } from "../main.js";

export async function render(root) {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const fail = (e) => {
    error.textContent = e instanceof ApiError ? e.message : String(e);
    error.hidden = false;
  };
  const done = async () => {
    await signedIn();
    location.hash = "#/ecosystem";
  };

  const byPassword = h(
    "form",
    {
      class: "card form",
      "aria-label": "Sign in with a password",
      onsubmit: async (ev) => {
        ev.preventDefault();
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
      },
    },
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

  const byToken = h(
    "form",
    {
      class: "card form",
      "aria-label": "Sign in with a token",
      onsubmit: async (ev) => {
        ev.preventDefault();
        const token = new FormData(ev.target).get("token").trim();
        auth.save(token, null);
        try {
          await done();
        } catch (e) {
          auth.clear();
          fail(e);
        }
      },
    },
    h("h2", {}, "Or with an API token"),
    h("label", {}, "Token", h("input", { name: "token", type: "password", autocomplete: "off", required: true })),
    h("p", { class: "muted" }, "appyard up writes one to ~/appyard.env (API_TOKEN)."),
    h("button", { type: "submit" }, "Use the token"),
  );

  root.append(h("div", { class: "login" }, h("h1", {}, "appyard"), error, byPassword, byToken));
  root.querySelector("input")?.focus();
}
