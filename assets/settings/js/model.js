// The API's vocabulary and pure readings of its objects (keys, agents). No DOM.

// The kinds of workspace knowledge records, in the API's order.
export const KINDS = ["deal", "account", "contact", "note", "feedback", "document"];
// The tools an agent may be given, in the API's order, each with its word in the agents table.
export const TOOLS = { search_records: "search", query_records: "query", aggregate_records: "aggregate" };

// Rolling gives the new key the old one's name, so buttons and notes also name the prefix.
export const keyLabel = (k) => `${k.name} (${k.prefix}…)`;

export const expired = (k, now = Date.now()) => k.expiresAt != null && Date.parse(k.expiresAt) <= now;

// Agents a key may use, by name; an id no longer in the workspace shows as such. A list left
// empty by deleted agents lets the key reach nothing until it is edited.
export function agentsLabel(ids, names) {
  if (!ids) return "All";
  if (ids.length === 0) return "None";
  return ids.map((id) => names.get(id) || `${id} (deleted)`).join(", ");
}

export function knowledgeLabel(k) {
  if (k && k.enabled === false) return "Off";
  if (!k || !k.kinds || KINDS.every((kind) => k.kinds.includes(kind))) return "All";
  return k.kinds.join(", ");
}

// `provider/model` lines as the API takes them; null when a line is not of that shape.
export function fallbackTargets(text) {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  const targets = lines.map((l) => {
    const at = l.indexOf("/");
    return at > 0 && at < l.length - 1 ? { provider: l.slice(0, at), model: l.slice(at + 1) } : null;
  });
  return targets.length <= 3 && targets.every(Boolean) ? targets : null;
}
