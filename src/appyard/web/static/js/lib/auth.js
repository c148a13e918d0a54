// The user's token, kept in the browser's storage, and the way to the sign-in page.

const TOKEN_KEY = "appyard.token";
const TOKEN_ID_KEY = "appyard.tokenId";

export const auth = {
  get token() {
    return localStorage.getItem(TOKEN_KEY);
  },
  get tokenId() {
    const v = localStorage.getItem(TOKEN_ID_KEY);
    return v ? Number(v) : null;
  },
  save(token, tokenId) {
    localStorage.setItem(TOKEN_KEY, token);
    if (tokenId) localStorage.setItem(TOKEN_ID_KEY, String(tokenId));
    else localStorage.removeItem(TOKEN_ID_KEY);
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_ID_KEY);
  },
};

/** To the sign-in page; the page shown comes back after signing in (``?next=``). */
export function toLogin() {
  const raw = location.hash.replace(/^#/, "");
  if (raw.startsWith("/login")) return;
  location.hash = raw && raw !== "/" ? `#/login?next=${encodeURIComponent(raw)}` : "#/login";
}
