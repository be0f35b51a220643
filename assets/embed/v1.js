/*! Attive embed widget v1: <attive-insight> and <attive-chat>, no dependencies. A classic
 * script on a versioned path (breaking changes go to v2). It uses short-lived embed tokens
 * (atvet_...) minted by the page's own backend: an API key never reaches the browser.
 * ASCII only (\u escapes), so a page in any encoding reads it right. */
(() => {
  "use strict";
  const registry = window.customElements;
  if (!registry || (registry.get("attive-insight") && registry.get("attive-chat"))) return;

  // The API is where this script came from; `currentScript` is only set while it first runs.
  const SCRIPT_ORIGIN = (() => {
    const s = document.currentScript || document.querySelector('script[src*="/embed/v1.js"]');
    try {
      return new URL(s.src).origin;
    } catch (_) {
      return "";
    }
  })();

  const config = () => window.attive || {};
  const apiBase = (el) => String(el.getAttribute("api-base") || config().baseUrl || SCRIPT_ORIGIN).replace(/\/+$/, "");

  // ---- Errors, in words

  const MESSAGES = {
    expired: "The session expired. Reload the page to continue.",
    unauthorized: "This page's access is no longer valid. Reload the page to continue.",
    // A refused origin gets no CORS header: the browser only says the fetch failed (a proxy's
    // error page would too, hence the second half).
    origin: "This page's address is not allowed to use this service, or the service refused the request.",
    network: "Could not reach the service. Check your connection and try again.",
    token: "Could not get access for this page. Reload the page to try again.",
    config: "This widget is not set up: it needs a token-url attribute or window.attive.getToken.",
    forbidden: "This page is not allowed to show this content.",
    not_found: "This content was not found.",
    upstream: "The assistant could not answer right now.",
    incomplete: "The answer was interrupted before it finished. Try again.",
    request: "Something went wrong.",
  };

  class Fail {
    constructor(code, message, retryAfter) {
      this.code = code;
      this.message = message || MESSAGES[code] || MESSAGES.request;
      this.retryAfter = retryAfter;
    }
  }

  // Why a response is not ok; `what` ("insight" or "chat") words some cases.
  async function failure(resp, what) {
    const body = await resp.json().catch(() => ({}));
    const msg = (body && typeof body.error === "string" && body.error) || "";
    const s = resp.status;
    if (s === 401) return new Fail(/expired/i.test(msg) ? "expired" : "unauthorized");
    if (s === 403) {
      if (/origin/i.test(msg)) return new Fail("origin");
      return new Fail("forbidden", what === "chat" ? "This page is not allowed to use this assistant." : null);
    }
    if (s === 404) {
      if (/^chat/i.test(msg)) return new Fail("not_found", "This conversation is no longer available. Send your message again to start a new one.");
      if (/^agent/i.test(msg)) return new Fail("not_found", "This assistant is no longer available.");
      return new Fail("not_found", what === "insight" ? "This insight was not found." : null);
    }
    if (s === 429) {
      const header = parseInt(resp.headers.get("Retry-After"), 10);
      const secs = Math.ceil(header >= 0 ? header : (body && body.details && body.details.retryAfterSeconds) || NaN);
      return secs >= 0
        ? new Fail("rate_limited", `Too many requests. Try again in ${Math.max(1, secs)} s.`, Math.max(1, secs))
        : new Fail("rate_limited", "Too many requests. Try again in a moment.", 30);
    }
    if (s >= 500) return new Fail("upstream", what === "insight" ? "This insight could not be loaded right now." : null);
    return new Fail("request", msg ? "Something went wrong: " + msg : null);
  }

  // ---- Embed tokens

  const EARLY_MS = 30000; // a token that expires within this is replaced before use
  const caches = new Map(); // token source (its URL, or the getToken function) -> its cache

  // The claims' expiry (epoch ms); when unreadable, a 401 will ask for another token.
  function expiryOf(token) {
    try {
      const payload = token.slice(6, token.lastIndexOf("."));
      const e = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))).e;
      return typeof e === "number" ? e : Infinity;
    } catch (_) {
      return Infinity;
    }
  }

  function tokenCache(el) {
    const url = el.getAttribute("token-url");
    const fn = config().getToken;
    const key = url ? new URL(url, document.baseURI).href : typeof fn === "function" ? fn : null;
    if (!key) throw new Fail("config");
    if (!caches.has(key)) caches.set(key, { token: "", exp: 0, pending: null, load: url ? () => loadFromUrl(key) : () => fn() });
    return caches.get(key);
  }

  // The page's backend, with the page's cookies: it decides who gets a token.
  async function loadFromUrl(url) {
    let resp;
    try {
      resp = await fetch(url, { method: "POST", credentials: "same-origin", headers: { Accept: "application/json" } });
    } catch (_) {
      throw new Fail("network");
    }
    if (!resp.ok) throw new Fail("token");
    return resp.json();
  }

  async function load(cache) {
    let v;
    try {
      v = await cache.load();
    } catch (e) {
      throw e instanceof Fail ? e : new Fail("token");
    }
    const token = typeof v === "string" ? v : v && v.token;
    if (typeof token !== "string" || token.indexOf("atvet_") !== 0) {
      // Likely an API key given to the page: refuse to send it anywhere.
      console.warn("attive: the token source must return an embed token (atvet_...)");
      throw new Fail("token");
    }
    cache.token = token;
    // Tokens live 60 s at least: a fresh one that looks expired means a clock running ahead.
    cache.exp = Math.max(expiryOf(token), Date.now() + EARLY_MS + 15000);
    return token;
  }

  // A token good for EARLY_MS more, one fetch at a time per source; never `refused` (401) again.
  function getToken(cache, refused) {
    if (cache.token && cache.token !== refused && cache.exp - Date.now() > EARLY_MS) return Promise.resolve(cache.token);
    if (!cache.pending) cache.pending = load(cache).finally(() => (cache.pending = null));
    return cache.pending;
  }

  // An API call with the element's token: on a 401, one new token and one retry. A fetch that
  // throws is told apart: the service unreachable, or it refused this origin.
  async function request(el, path, init) {
    const base = apiBase(el);
    if (!base) throw new Fail("config");
    const cache = tokenCache(el);
    let refused = "";
    for (;;) {
      const token = await getToken(cache, refused);
      const headers = Object.assign({}, init.headers, { Authorization: "Bearer " + token });
      let resp;
      try {
        resp = await fetch(base + path, Object.assign({}, init, { headers, cache: "no-store", credentials: "omit" }));
      } catch (err) {
        if (init.signal && init.signal.aborted) throw err;
        throw new Fail((await reachable(base)) ? "origin" : "network");
      }
      if (resp.status !== 401 || refused) return resp;
      refused = token;
    }
  }

  // An opaque request needs no CORS: it succeeds whenever the service answers.
  const reachable = (base) =>
    fetch(base + "/api/health", { method: "HEAD", mode: "no-cors", cache: "no-store", credentials: "omit" }).then(
      () => true,
      () => false
    );

  // ---- DOM, never through innerHTML: answers and titles are untrusted text

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (name === "text") el.textContent = v;
      else el.setAttribute(name, v === true ? "" : v);
    }
    el.append(...children.filter((c) => c != null));
    return el;
  }

  function safeUrl(u) {
    try {
      const url = new URL(u);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_) {
      return null;
    }
  }

  const NEW_TAB = { target: "_blank", rel: "noopener noreferrer" };

  // The cited sources (all when the API does not say), numbered as the [S#] markers.
  function sourceList(sources) {
    const items = {};
    const ol = h("ol", { part: "sources", class: "sources", "aria-label": "Sources" });
    (Array.isArray(sources) ? sources : []).forEach((s, i) => {
      if (!s || s.cited === false) return;
      const n = i + 1;
      const url = safeUrl(s.url);
      const title = String(s.title || s.externalId || "Source " + n);
      const li = h("li", { value: n, tabindex: "-1", part: "source" });
      li.append(url ? h("a", Object.assign({ href: url }, NEW_TAB), title, h("span", { class: "sr", text: " (opens in a new tab)" })) : title);
      if (s.kind) li.append(" ", h("span", { class: "muted", text: String(s.kind) }));
      ol.append((items[n] = li));
    });
    return { ol: ol.firstChild ? ol : null, items };
  }

  // [S#]: a superscript link to the source's page, else to its list entry.
  function marker(n, source, item) {
    const url = safeUrl(source.url);
    const label = "Source " + n + (source.title ? ": " + source.title : "");
    const text = "[" + n + "]";
    if (url) return h("sup", { part: "marker" }, h("a", Object.assign({ href: url, "aria-label": label + " (opens in a new tab)" }, NEW_TAB), text));
    if (!item) return h("sup", { part: "marker", text });
    const a = h("a", { href: "#", "aria-label": label }, text);
    // Fragment links cannot reach into a shadow root: move there by hand.
    a.addEventListener("click", (e) => {
      e.preventDefault();
      item.scrollIntoView({ block: "nearest" });
      item.focus();
    });
    return h("sup", { part: "marker" }, a);
  }

  // Inline text: **bold**, `code` and [S#] markers; the rest as text nodes.
  function inline(parent, line, sources, items) {
    const re = /\*\*([^*]+)\*\*|`([^`]+)`|\[S(\d+)\]/g;
    let last = 0;
    let m;
    while ((m = re.exec(line))) {
      parent.append(line.slice(last, m.index));
      last = re.lastIndex;
      const source = m[3] && sources && sources[m[3] - 1];
      if (m[1] != null) parent.append(h("strong", { text: m[1] }));
      else if (m[2] != null) parent.append(h("code", { text: m[2] }));
      else parent.append(source ? marker(+m[3], source, items[m[3]]) : m[0]);
    }
    parent.append(line.slice(last));
  }

  // Paragraphs and lists: the light Markdown models write.
  function richText(text, sources, items) {
    const frag = document.createDocumentFragment();
    let block = null;
    let kind = "";
    for (const line of String(text || "").replace(/\r\n?/g, "\n").split("\n")) {
      const item = /^\s*(?:[-*\u2022]|(\d+)[.)])\s+(.*)$/.exec(line);
      const heading = /^\s*#{1,6}\s+(.*)$/.exec(line);
      if (!line.trim()) {
        block = null;
      } else if (item) {
        const want = item[1] ? "ol" : "ul";
        if (!block || kind !== want) frag.append((block = h(want, { start: item[1] })));
        kind = want;
        const li = h("li");
        inline(li, item[2], sources, items);
        block.append(li);
      } else if (heading) {
        const p = h("p", { class: "heading" });
        inline(p, heading[1], sources, items);
        frag.append(p);
        block = null;
      } else {
        if (!block || kind !== "p") frag.append((block = h("p")));
        else block.append(h("br"));
        kind = "p";
        inline(block, line, sources, items);
      }
    }
    return frag;
  }

  // Answer and sources into `box` (while streaming, no list: markers link to pages only).
  function renderAnswer(box, text, sources, withList) {
    const list = withList ? sourceList(sources) : { ol: null, items: {} };
    box.replaceChildren(h("div", { part: "answer", class: "answer" }, richText(text, sources, list.items)));
    if (list.ol) box.append(h("p", { class: "muted label", "aria-hidden": "true", text: "Sources" }), list.ol);
  }

  const rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat("en", { numeric: "auto" }) : null;
  const UNITS = [["year", 31536e3], ["month", 2592e3], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function ago(t) {
    const s = Math.min(0, Math.round((t - Date.now()) / 1000));
    if (!rtf) return new Date(t).toLocaleString();
    const unit = UNITS.find((u) => -s >= u[1]);
    return unit ? rtf.format(Math.round(s / unit[1]), unit[0]) : "just now";
  }

  // ---- Styles, themable through --attive-* custom properties

  const ACCENT = "var(--attive-accent,#0969da)";
  const BORDER = "1px solid var(--attive-border,#d0d7de)";
  const RADIUS = "var(--attive-radius,8px)";
  const MUTED = "var(--attive-muted,#656d76)";
  const CSS = `
:host{display:block;box-sizing:border-box;font-family:var(--attive-font,system-ui,-apple-system,"Segoe UI",Roboto,sans-serif);line-height:1.5;
color:var(--attive-fg,#1f2328);background:var(--attive-bg,#fff);border:${BORDER};border-radius:${RADIUS};padding:16px}
:host([hidden]){display:none}*{box-sizing:border-box}a{color:${ACCENT}}
:focus-visible,.sources li:focus{outline:2px solid ${ACCENT};outline-offset:2px}
.title{font-weight:600;font-size:1.1em;margin:0 0 8px}.title:empty,.meta:empty,.status:empty,.log:empty{display:none}
.muted,.note,.thinking{color:${MUTED};font-size:.875em}.status{margin:0 0 8px}.error{color:var(--attive-error,#cf222e)}
.answer p,.answer ul,.answer ol{margin:0 0 .6em}.answer ul,.answer ol{padding-left:1.4em}.answer .heading{font-weight:600}
.msg .answer>:last-child{margin-bottom:0}code{font-family:ui-monospace,monospace;font-size:.9em}
sup{line-height:0}sup a{text-decoration:none;font-size:.85em;padding:0 1px}
.label{margin:.6em 0 .2em}.sources{margin:0;padding-left:1.6em;font-size:.925em}.meta{margin:.8em 0 0}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.log{display:flex;flex-direction:column;gap:12px;max-height:var(--attive-chat-height,420px);overflow-y:auto;margin:0 0 12px}
.msg{overflow-wrap:anywhere}.user{align-self:flex-end;max-width:85%;white-space:pre-wrap;padding:6px 12px;border:${BORDER};border-radius:${RADIUS}}
form{display:flex;flex-direction:column;gap:6px}label{font-weight:600;font-size:.925em}.row{display:flex;gap:8px;align-items:flex-end}
textarea{flex:1;font:inherit;color:inherit;background:var(--attive-bg,#fff);border:${BORDER};border-radius:${RADIUS};padding:8px;resize:vertical}
button{font:inherit;font-weight:600;color:var(--attive-accent-fg,#fff);background:${ACCENT};border:0;border-radius:${RADIUS};padding:8px 16px;cursor:pointer}
button:disabled{opacity:.55;cursor:default}`;

  function shadow(host) {
    const root = host.attachShadow({ mode: "open" });
    root.append(h("style", { text: CSS }));
    return root;
  }

  // Seen by pages, styles and tests: `state`, and on failure `data-error`.
  function setState(host, state, fail) {
    host.setAttribute("state", state);
    if (fail) host.setAttribute("data-error", fail.code);
    else host.removeAttribute("data-error");
  }

  // ---- <attive-insight insight="ins_...">

  class AttiveInsight extends HTMLElement {
    static get observedAttributes() {
      return ["insight", "token-url", "api-base"];
    }

    constructor() {
      super();
      this._title = h("div", { part: "title", class: "title", role: "heading", "aria-level": "3" });
      this._status = h("p", { part: "status", class: "status", role: "status" });
      this._body = h("div", { part: "body" });
      this._meta = h("p", { part: "meta", class: "meta muted" });
      shadow(this).append(this._title, this._status, this._body, this._meta);
      this._data = null;
      this._etag = "";
      this._polls = 0; // pending polls in a row, to back off
      this._idle = 0; // revalidations in a row with no due time to go by, to back off
      this._seq = 0;
      this._onVisible = () => !document.hidden && this._due && this.refresh();
    }

    connectedCallback() {
      document.addEventListener("visibilitychange", this._onVisible);
      // "Generated 5 minutes ago" moves on by itself.
      clearInterval(this._clock);
      this._clock = setInterval(() => this._renderMeta(), 60000);
      this._queue();
    }

    disconnectedCallback() {
      document.removeEventListener("visibilitychange", this._onVisible);
      clearInterval(this._clock);
      clearTimeout(this._timer);
      if (this._abort) this._abort.abort();
    }

    attributeChangedCallback(name, old, value) {
      if (old === value) return;
      if (name === "insight" && this._data) {
        this._data = null;
        this._etag = this._title.textContent = this._meta.textContent = "";
        this._body.replaceChildren();
      }
      this._queue();
    }

    // One fetch for an upgrade's attributes and connection together.
    _queue() {
      if (this._queued) return;
      this._queued = true;
      queueMicrotask(() => {
        this._queued = false;
        if (this.isConnected) this.refresh();
      });
    }

    // Fetch now (revalidating what is shown); resolves whatever the outcome.
    async refresh() {
      const id = this.getAttribute("insight");
      clearTimeout(this._timer);
      this._due = false;
      if (this._abort) this._abort.abort();
      const abort = (this._abort = new AbortController());
      const seq = ++this._seq;
      if (!id) return this._fail(new Fail("config", "This widget is not set up: it needs an insight attribute."));
      if (!this._data) {
        setState(this, "loading");
        this._status.textContent = "Loading\u2026";
        this._status.className = "status muted";
      }
      const headers = { Accept: "application/json" };
      if (this._data && this._etag) headers["If-None-Match"] = this._etag;
      try {
        const resp = await request(this, "/api/insights/" + encodeURIComponent(id), { headers, signal: abort.signal });
        if (resp.status !== 304 && !resp.ok) throw await failure(resp, "insight");
        const changed = resp.status !== 304;
        const data = changed ? await resp.json() : this._data;
        if (seq !== this._seq) return;
        if (changed) this._etag = resp.headers.get("ETag") || "";
        this._data = data;
        this._render();
        this._schedule(this._nextDelay(resp, changed));
      } catch (e) {
        if (seq !== this._seq || abort.signal.aborted) return;
        const fail = e instanceof Fail ? e : new Fail("request");
        this._fail(fail);
        // A limit lifts, an outage ends: try again by itself.
        if (fail.code === "rate_limited") this._schedule(fail.retryAfter * 1000 + 500);
        else if (fail.code === "upstream" || fail.code === "network") this._schedule(60000);
      }
    }

    // Next look: soon while pending (backing off), else after the next refresh is due.
    _nextDelay(resp, changed) {
      if (this._data.status === "pending") return Math.min(5000 * Math.pow(1.5, this._polls++), 60000);
      this._polls = 0;
      if (changed) this._idle = 0;
      const m = /max-age=(\d+)/.exec(resp.headers.get("Cache-Control") || "");
      const due = m && +m[1] > 0 ? +m[1] * 1000 : Date.parse(this._data.nextRefreshAt) - Date.now();
      if (!(due > 0)) return Math.min(60000 * Math.pow(2, this._idle++), 900000);
      return Math.min(Math.max(due + 10000, 30000), 6 * 3600000);
    }

    _schedule(ms) {
      clearTimeout(this._timer);
      // A hidden tab does not poll: it catches up when shown.
      this._timer = setTimeout(() => (document.hidden ? (this._due = true) : this.refresh()), ms);
    }

    _fail(fail) {
      setState(this, "error", fail);
      this._status.textContent = fail.message;
      this._status.className = "status error";
    }

    _render() {
      const d = this._data || {};
      const pending = d.status === "pending" || d.answer == null;
      setState(this, pending ? "pending" : d.status === "stale" ? "stale" : "ready");
      this._title.textContent = d.name || "";
      this._status.className = "status muted";
      this._status.textContent = pending
        ? "Preparing this insight\u2026"
        : d.status === "stale"
          ? "This answer could not be refreshed, so it may be out of date."
          : "";
      if (pending) this._body.replaceChildren();
      else renderAnswer(this._body, d.answer, d.sources, true);
      this._renderMeta();
    }

    _renderMeta() {
      const t = this._data && this._data.answer != null && Date.parse(this._data.generatedAt);
      if (!t) return this._meta.replaceChildren();
      const iso = new Date(t);
      this._meta.replaceChildren("Generated ", h("time", { datetime: iso.toISOString(), title: iso.toLocaleString(), text: ago(t) }));
    }
  }

  // ---- <attive-chat agent="agent_...">

  class AttiveChat extends HTMLElement {
    static get observedAttributes() {
      return ["agent", "label", "placeholder"];
    }

    constructor() {
      super();
      this._log = h("div", { part: "log", class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
      this._status = h("p", { part: "status", class: "status error", role: "status" });
      this._label = h("label", { part: "label", for: "message" });
      this._input = h("textarea", { id: "message", part: "input", rows: "2", maxlength: "10000" });
      this._send = h("button", { type: "submit", part: "send", text: "Send" });
      const form = h("form", { part: "form" }, this._label, h("div", { class: "row" }, this._input, this._send));
      shadow(this).append(this._log, this._status, form);
      this._chatId = null;
      this._busy = false;
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        this._input.focus(); // the disabled button would lose it
        this._submit();
      });
      // Enter sends, Shift+Enter is a new line (not while an input method composes).
      this._input.addEventListener("keydown", (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this._submit();
        }
      });
      this._words();
    }

    connectedCallback() {
      if (!this.hasAttribute("state")) setState(this, "ready");
    }

    attributeChangedCallback(name, old, value) {
      // Another agent is another conversation.
      if (name === "agent" && old !== value && this._chatId) this.reset();
      this._words();
    }

    _words() {
      this._label.textContent = this.getAttribute("label") || "Ask a question";
      const ph = this.getAttribute("placeholder");
      if (ph) this._input.setAttribute("placeholder", ph);
      else this._input.removeAttribute("placeholder");
    }

    // The chat this element continues (null until an answer starts).
    get chatId() {
      return this._chatId;
    }

    // Start a new conversation.
    reset() {
      this._chatId = null;
      this._log.replaceChildren();
      this._status.textContent = "";
      if (!this._busy) setState(this, "ready");
    }

    _submit() {
      const text = this._input.value;
      if (this._busy || !text.trim()) return;
      this._input.value = "";
      this.send(text);
    }

    // Ask `text`; resolves once the answer is complete or has failed.
    async send(text) {
      text = String(text).trim();
      if (this._busy || !text) return;
      this._busy = this._send.disabled = true;
      this._status.textContent = "";
      setState(this, "streaming");
      const asked = h("div", { part: "message user", class: "msg user" }, h("span", { class: "sr", text: "You: " }), text);
      const box = h("div", { class: "thinking", text: "Thinking\u2026" });
      const msg = h("div", { part: "message assistant", class: "msg assistant", "aria-busy": "true" }, h("span", { class: "sr", text: "Assistant: " }), box);
      this._log.append(asked, msg);
      this._scroll(true);
      const turn = { text: "", sources: [], box, msg, started: false, done: false, closed: false };

      const body = { message: text, stream: true };
      const agent = this.getAttribute("agent");
      // A chat stays with the agent it started with: only the first message names it.
      if (this._chatId) body.chatId = this._chatId;
      else if (agent) body.agentId = agent;
      try {
        const resp = await request(this, "/api/chat", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
          body: JSON.stringify(body),
        });
        if (!resp.ok || !resp.body) throw await failure(resp, "chat");
        await this._read(resp.body.getReader(), turn);
        setState(this, "ready");
      } catch (e) {
        const fail = e instanceof Fail ? e : new Fail(turn.started ? "incomplete" : "network");
        if (fail.code === "not_found") this._chatId = null;
        setState(this, "error", fail);
        this._status.textContent = fail.message;
        if (!turn.text) msg.remove();
        // Refused before it started: the question goes back to the input, to send again.
        if (!turn.started) {
          asked.remove();
          if (!this._input.value) this._input.value = text;
        }
      }
      const stick = this._atEnd();
      turn.closed = true;
      msg.removeAttribute("aria-busy");
      if (turn.text) {
        box.className = "";
        renderAnswer(box, turn.text, turn.sources, turn.done);
      }
      this._busy = this._send.disabled = false;
      this._scroll(stick);
    }

    // Server-Sent Events by hand (EventSource cannot send Authorization). ":" lines are pings.
    // Resolves on `done`; throws on `error` or on an end without `done`.
    async _read(reader, turn) {
      const decoder = new TextDecoder();
      let buffer = "";
      let event = "";
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) throw new Fail("incomplete");
        buffer += decoder.decode(value, { stream: true });
        const lines = buffer.split("\n");
        buffer = lines.pop();
        for (let line of lines) {
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {
            const end = data.length ? this._event(event || "message", data.join("\n"), turn) : null;
            event = "";
            data = [];
            if (end) {
              // One terminal event ends a stream.
              reader.cancel().catch(() => {});
              if (end instanceof Fail) throw end;
              return;
            }
          } else if (line[0] !== ":") {
            const i = line.indexOf(":");
            const field = i < 0 ? line : line.slice(0, i);
            const v = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
            if (field === "event") event = v;
            else if (field === "data") data.push(v);
          }
        }
      }
    }

    // Returns true for `done`, a Fail for `error`, nothing to go on.
    _event(name, json, turn) {
      let d;
      try {
        d = JSON.parse(json);
      } catch (_) {
        return;
      }
      if (name === "start" || name === "done") {
        turn.started = true;
        if (d.chatId) this._chatId = d.chatId;
        if (Array.isArray(d.sources)) turn.sources = d.sources;
        if (name === "done") return (turn.done = true);
      } else if (name === "delta" && typeof d.text === "string") {
        turn.text += d.text;
        this._paint(turn);
      } else if (name === "tool") {
        // What the agent looked up, as a note above the answer.
        const n = d.resultCount;
        const count = typeof n === "number" ? ` (${n} ${n === 1 ? "result" : "results"})` : "";
        turn.msg.insertBefore(h("p", { part: "tool", class: "note", text: "Looked up " + String(d.name || "records").replace(/_/g, " ") + count }), turn.box);
      } else if (name === "error") {
        if (d.details && d.details.code === "chat_not_found") this._chatId = null;
        return new Fail("upstream");
      }
    }

    // Deltas come faster than frames: draw at most once a frame.
    _paint(turn) {
      if (turn.frame) return;
      turn.frame = requestAnimationFrame(() => {
        turn.frame = 0;
        if (turn.closed) return;
        const stick = this._atEnd();
        turn.box.className = "";
        renderAnswer(turn.box, turn.text, turn.sources, false);
        this._scroll(stick);
      });
    }

    // Follow the answer as it grows, unless the reader scrolled up.
    _atEnd() {
      const log = this._log;
      return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    }

    _scroll(stick) {
      if (stick) this._log.scrollTop = this._log.scrollHeight;
    }
  }

  if (!registry.get("attive-insight")) registry.define("attive-insight", AttiveInsight);
  if (!registry.get("attive-chat")) registry.define("attive-chat", AttiveChat);
})();
