// Settings page for workspace admins: API keys and their usage, agents, workspace knowledge,
// dashboards and the audit log, through the settings JSON routes only. The entry module: sign
// in, the tabs, and each tab's module (js/). The admin token lives in sessionStorage (this tab
// only); a newly created key is held in the reveal dialog and nowhere else.

import { agentsTab } from "./js/agents.js";
import { api, forgetToken, storeToken, token } from "./js/api.js";
import { auditTab } from "./js/audit.js";
import { dashboardsTab } from "./js/dashboards.js";
import { $ } from "./js/dom.js";
import { keysTab } from "./js/keys.js";
import { knowledgeTab } from "./js/knowledge.js";
import { guarded, onSignOut, signOut } from "./js/session.js";
import { usageTab } from "./js/usage.js";

// In the order of the tab list.
const TABS = [keysTab, usageTab, agentsTab, knowledgeTab, dashboardsTab, auditTab];
const NAMES = TABS.map((t) => t.name);

async function signIn(event) {
  event.preventDefault();
  const value = $("admin-token").value.trim();
  const err = $("sign-in-error");
  err.hidden = true;
  storeToken(value);
  try {
    await api("GET", "/api/settings/api-keys");
  } catch (e) {
    forgetToken();
    err.textContent = e.status === 401 ? "That admin token was not accepted. Check it and try again." : e.message;
    err.hidden = false;
    return;
  }
  $("admin-token").value = "";
  showApp();
}

function showApp() {
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  selectTab("keys");
}

function selectTab(name) {
  for (const t of NAMES) {
    const tab = $(`tab-${t}`);
    const on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(`panel-${t}`).hidden = !on;
  }
  guarded(TABS[NAMES.indexOf(name)].load);
}

function onTabKey(event) {
  const i = NAMES.indexOf(event.target.id.replace("tab-", ""));
  let next = null;
  if (event.key === "ArrowRight") next = NAMES[(i + 1) % NAMES.length];
  if (event.key === "ArrowLeft") next = NAMES[(i + NAMES.length - 1) % NAMES.length];
  if (event.key === "Home") next = NAMES[0];
  if (event.key === "End") next = NAMES[NAMES.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(next);
    $(`tab-${next}`).focus();
  }
}

function start() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut(""));
  for (const t of NAMES) {
    $(`tab-${t}`).addEventListener("click", () => selectTab(t));
    $(`tab-${t}`).addEventListener("keydown", onTabKey);
  }
  for (const tab of TABS) {
    if (tab.wire) tab.wire();
    if (tab.reset) onSignOut(tab.reset);
  }
  if (token()) showApp();
  else $("admin-token").focus();
}

// A module runs once the document is parsed (modules are deferred); the check keeps that true
// wherever the script tag goes.
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
