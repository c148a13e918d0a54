// The header around every page: the team picker, who is signed in, and signing out.

import { session } from "./lib/account.js";
import { api } from "./lib/api.js";
import { auth } from "./lib/auth.js";
import { h } from "./lib/dom.js";

function fillHeader() {
  const select = document.getElementById("team-select");
  select.replaceChildren(
    ...session.teams.map((t) =>
      h("option", { value: t.id, selected: t.id === session.team?.id }, `${t.name} (${t.role})`),
    ),
  );
  document.getElementById("who").textContent = session.user ? session.user.login : "";
}

/** Load the signed-in user and their teams into the header (the login page calls it once a
 *  token is saved). */
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

/** Wire the header's controls; ``onTeam`` redraws the page after another team is picked. */
export function wireHeader(onTeam) {
  document.getElementById("sign-out").addEventListener("click", signOut);
  document.getElementById("team-select").addEventListener("change", async (ev) => {
    await session.pickTeam(ev.target.value);
    fillHeader();
    onTeam();
  });
}
