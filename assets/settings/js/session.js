// Signing out, and how a tab's request reports an error: on the page's error line, or in the
// dialog the admin is looking at; a token no longer accepted signs out.

import { forgetToken } from "./api.js";
import { $ } from "./dom.js";

export const SIGNED_OUT = "Your admin token is no longer accepted. Sign in again.";

// What each tab forgets on sign out (a half-edited form, the last search, a report): it
// belongs to the workspace signed out of.
const resets = [];

export function onSignOut(reset) {
  resets.push(reset);
}

export function showError(message) {
  const el = $("app-error");
  el.textContent = message || "";
  el.hidden = !message;
}

export async function guarded(fn) {
  showError("");
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return signOut(SIGNED_OUT);
    showError(e.message);
  }
}

// A dialog's request shows its error in the dialog, where the admin is looking (the page's
// error line is behind the backdrop).
export async function inDialog(errorId, fn) {
  const el = $(errorId);
  el.hidden = true;
  try {
    await fn();
  } catch (e) {
    if (e.status === 401) return signOut(SIGNED_OUT);
    el.textContent = e.message;
    el.hidden = false;
  }
}

export function signOut(message) {
  forgetToken();
  for (const dialog of document.querySelectorAll("dialog")) if (dialog.open) dialog.close();
  for (const reset of resets) reset();
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  const err = $("sign-in-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("admin-token").focus();
}
