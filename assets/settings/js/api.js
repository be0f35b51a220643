// The settings JSON routes: the admin token (sessionStorage, this tab only) and one call.
// Nothing here runs at import time.

const TOKEN_KEY = "attive.adminToken";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function storeToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

// The part of an error's `details` worth a sentence: a field's rule, and any list of names
// (such as the agent ids a key cannot be scoped to, which the admin has to fix).
export function detailText(details) {
  if (typeof details === "string") return details;
  if (!details || typeof details !== "object") return "";
  const parts = details.rule ? [`${details.field} ${details.rule}`] : [];
  for (const [name, value] of Object.entries(details)) {
    if (Array.isArray(value) && value.length && value.every((v) => typeof v === "string")) parts.push(`${name}: ${value.join(", ")}`);
  }
  return parts.join("; ");
}

export class ApiError extends Error {
  constructor(status, body) {
    const extra = detailText(body && body.details);
    super((body && body.error ? body.error : `Request failed (${status})`) + (extra && !String(body.error).includes(extra) ? `: ${extra}` : ""));
    this.status = status;
    this.body = body;
  }
}

export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: "The service could not be reached. Check your connection and try again." });
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => null);
  if (!resp.ok) throw new ApiError(resp.status, data);
  return data;
}
