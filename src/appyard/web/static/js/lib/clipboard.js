// Copying a text the page shows (a command with a token in it).

import { toast } from "./dom.js";

/** Copy ``text``; over plain http (no clipboard API) select ``el`` so Ctrl+C does the rest. */
export async function copy(text, el) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied.");
  } catch {
    const range = document.createRange();
    range.selectNodeContents(el);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    toast("Selected: press Ctrl+C to copy.");
  }
}
