// Ready-to-paste code that embeds an insight in a customer's page, pure: no DOM, so Node can
// test it. The customer's server mints a short-lived embed token with an API key (which never
// reaches the browser) and hands it to the widget at TOKEN_PATH; the page loads the widget.

// Stand-ins the customer replaces: the origin of their page, and the path on their own site
// that answers with a freshly minted token.
export const APP_ORIGIN = "https://your-app.example";
export const TOKEN_PATH = "/attive-token";

// A word in single quotes for a POSIX shell.
const shellQuote = (text) => `'${text.replace(/'/g, `'\\''`)}'`;
// A string literal that JavaScript and Python both read as this string.
const literal = (text) => JSON.stringify(text);
const htmlAttr = (text) => text.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

// `origin`: where this service answers (the settings page's own origin). Returns the server
// call in three flavours, each {id, label, text}, and the page's HTML.
export function embedSnippets(origin, insightId) {
  const base = origin.replace(/\/+$/, "");
  const url = `${base}/api/embed-tokens`;
  const body = `{"origins": [${literal(APP_ORIGIN)}], "insightIds": [${literal(insightId)}]}`;

  const curl = [
    `# On your server: mint a short-lived embed token, and answer ${TOKEN_PATH} with this JSON.`,
    `curl -sS -X POST ${shellQuote(url)} \\`,
    `  -H "Authorization: Bearer $ATTIVE_API_KEY" \\`,
    `  -H 'Content-Type: application/json' \\`,
    `  -d ${shellQuote(body)}`,
  ].join("\n");

  const python = [
    "import json",
    "import os",
    "import urllib.request",
    "",
    "",
    "def mint_embed_token():",
    `    """A short-lived embed token for the page: answer ${TOKEN_PATH} with this JSON."""`,
    `    body = ${body}`,
    "    request = urllib.request.Request(",
    `        ${literal(url)},`,
    "        data=json.dumps(body).encode(),",
    "        headers={",
    '            "Authorization": "Bearer " + os.environ["ATTIVE_API_KEY"],',
    '            "Content-Type": "application/json",',
    "        },",
    '        method="POST",',
    "    )",
    "    with urllib.request.urlopen(request, timeout=10) as response:",
    '        return json.load(response)  # {"token": "atvet_…", "expiresAt": "…", ...}',
  ].join("\n");

  const node = [
    `// On your server (Node 18+): a short-lived embed token for the page; answer ${TOKEN_PATH}`,
    "// with this JSON.",
    "async function mintEmbedToken() {",
    `  const response = await fetch(${literal(url)}, {`,
    '    method: "POST",',
    "    headers: {",
    "      Authorization: `Bearer ${process.env.ATTIVE_API_KEY}`,",
    '      "Content-Type": "application/json",',
    "    },",
    `    body: JSON.stringify({ origins: [${literal(APP_ORIGIN)}], insightIds: [${literal(insightId)}] }),`,
    "  });",
    "  if (!response.ok) throw new Error(`Embed token refused: ${response.status} ${await response.text()}`);",
    '  return response.json(); // { token: "atvet_…", expiresAt: "…", ... }',
    "}",
  ].join("\n");

  const html = [
    `<script src="${htmlAttr(`${base}/embed/v1.js`)}" async></script>`,
    `<attive-insight insight="${htmlAttr(insightId)}" token-url="${TOKEN_PATH}"></attive-insight>`,
  ].join("\n");

  return {
    server: [
      { id: "curl", label: "curl", text: curl },
      { id: "python", label: "Python (standard library)", text: python },
      { id: "node", label: "JavaScript (Node 18+)", text: node },
    ],
    html,
  };
}
