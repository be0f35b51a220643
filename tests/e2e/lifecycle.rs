//! A workspace's data over its life: the export (NDJSON, every kind of row), the operator's
//! backup and restore into an empty workspace (every read route answering as before, the keys
//! working after the source is gone), chat retention swept by the scheduled job, and the
//! erasure of one embed user's chats.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attive_api::domain::time::{parse_iso, to_iso};
use attive_api::domain::token::{Token, TokenKind};
use serde_json::{json, Value};

use crate::support::sse;
use crate::support::*;

const NDJSON: &str = "application/x-ndjson";
const ORIGIN: &str = "https://dash.example.com";
/// The kinds of row of an export, in the order their lines come.
const TYPES: [&str; 8] = ["agent", "apiKey", "record", "chat", "message", "insight", "usageDay", "auditEntry"];
const DAY_MS: i64 = 86_400_000;

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A request whose body is sent exactly as given, with its own `Content-Type`.
fn send_raw(method: &str, path: &str, token: Option<&str>, content_type: &str, body: &str) -> Resp {
    request(method, path, token, Body::Raw(body), &[("Content-Type", content_type)])
}

/// `POST /api/admin/workspaces/{id}/import` with the operator token.
fn import(workspace_id: &str, body: &str) -> Resp {
    import_as(workspace_id, Some(&operator_token()), body)
}

fn import_as(workspace_id: &str, token: Option<&str>, body: &str) -> Resp {
    send_raw("POST", &format!("/api/admin/workspaces/{workspace_id}/import"), token, NDJSON, body)
}

/// A parsed export: its text as received and its lines.
struct Export {
    raw: String,
    lines: Vec<Value>,
}

impl Export {
    fn end(&self) -> &Value {
        self.lines.last().expect("an end line")
    }

    fn counts(&self) -> &Value {
        &self.end()["counts"]
    }

    fn count(&self, kind: &str) -> i64 {
        self.counts()[kind].as_i64().unwrap_or(-1)
    }

    fn of(&self, kind: &str) -> Vec<&Value> {
        self.lines.iter().filter(|l| l["type"] == kind).collect()
    }

    fn ids(&self, kind: &str) -> Vec<String> {
        self.of(kind).iter().map(|l| l["id"].as_str().unwrap_or_else(|| panic!("no id: {l}")).to_owned()).collect()
    }

    fn find(&self, kind: &str, id: &str) -> &Value {
        self.lines
            .iter()
            .find(|l| l["type"] == kind && l["id"] == id)
            .unwrap_or_else(|| panic!("no {kind} line with id {id}"))
    }

    /// The text of the lines, without parsing them again (for edits that keep the rest as sent).
    fn raw_lines(&self) -> Vec<&str> {
        self.raw.strip_suffix('\n').unwrap_or(&self.raw).split('\n').collect()
    }
}

/// Checks everything every export is: NDJSON, newline-terminated, the header first, the kinds
/// in order, the `end` line last with all eight counts matching the lines.
#[track_caller]
fn parse_export(r: &Resp, workspace_id: &str) -> Export {
    r.expect(200);
    let content_type = r.header("content-type").unwrap_or("");
    assert!(content_type.starts_with(NDJSON), "Content-Type {content_type:?}");
    let disposition = r.header("content-disposition").unwrap_or("");
    assert_eq!(disposition, format!("attachment; filename=\"{workspace_id}-{}.ndjson\"", &to_iso(now_ms())[..10]));
    assert!(r.raw.ends_with('\n'), "the last line is newline-terminated: {}", r.raw);
    let lines: Vec<Value> = r.raw[..r.raw.len() - 1]
        .split('\n')
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("line {} is not JSON ({e}): {l}", i + 1));
            assert!(v.is_object() && v["type"].is_string(), "line {} has no type: {l}", i + 1);
            v
        })
        .collect();
    assert!(lines.len() >= 2, "{}", r.raw);
    let header = &lines[0];
    assert_eq!(header["type"], "export", "{header}");
    assert_eq!(header["version"], 1, "{header}");
    assert_eq!(header["workspaceId"], workspace_id, "{header}");
    let at = header["exportedAt"].as_str().and_then(parse_iso).unwrap_or_else(|| panic!("exportedAt: {header}"));
    assert!((at - now_ms()).abs() < 300_000, "exportedAt is now: {header}");
    let end = lines.last().unwrap();
    assert_eq!(end["type"], "end", "{end}");
    let keys: BTreeSet<&str> = end["counts"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, TYPES.iter().copied().collect::<BTreeSet<_>>(), "{end}");
    let middle = &lines[1..lines.len() - 1];
    let mut last = 0;
    for line in middle {
        let kind = line["type"].as_str().unwrap();
        let at = TYPES.iter().position(|t| *t == kind).unwrap_or_else(|| panic!("unknown type {kind}: {line}"));
        assert!(at >= last, "{kind} after {}: {line}", TYPES[last]);
        last = at;
    }
    for kind in TYPES {
        let n = middle.iter().filter(|l| l["type"] == kind).count();
        assert_eq!(end["counts"][kind].as_u64(), Some(n as u64), "{kind}: {end}");
    }
    Export { raw: r.raw.clone(), lines }
}

#[track_caller]
fn admin_export(ws: &Workspace) -> Export {
    parse_export(&get(&format!("{}/api/settings/export", ws.base), Some(&ws.admin_token)), &ws.id)
}

#[track_caller]
fn operator_export(workspace_id: &str) -> Export {
    let r = get(&format!("/api/admin/workspaces/{workspace_id}/export"), Some(&operator_token()));
    parse_export(&r, workspace_id)
}

fn ndjson(lines: &[Value]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn key_hash(key: &str) -> String {
    Token::parse(TokenKind::ApiKey, key).unwrap().hash()
}

/// Each `(id, secret)` key has its line with the SHA-256 of its secret.
#[track_caller]
fn assert_key_hashes(ex: &Export, keys: &[(&str, &str)]) {
    for line in ex.of("apiKey") {
        let hash = line["keyHash"].as_str().unwrap_or_else(|| panic!("no keyHash: {line}"));
        assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{line}");
    }
    for (id, secret) in keys {
        assert_eq!(ex.find("apiKey", id)["keyHash"], key_hash(secret), "key {id}");
    }
}

#[track_caller]
fn ok(path: &str, token: Option<&str>) -> Value {
    let r = get(path, token);
    r.expect(200);
    r.body.clone()
}

fn usage(ws: &Workspace) -> Value {
    ok(&format!("{}/api/settings/usage", ws.base), Some(&ws.admin_token))
}

/// The usage route once it stops changing: a key's successful reads are counted just after
/// their response, so a count may land a moment later (admin reads are not counted).
fn settled_usage(ws: &Workspace) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = usage(ws);
    loop {
        thread::sleep(Duration::from_millis(400));
        let now = usage(ws);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "usage still changing: {now}");
        last = now;
    }
}

/// The keys list without `lastUsedAt`: written to KV after requests, at most once a minute,
/// by key id, so it depends on when the last request ran, not on the workspace's data.
fn keys_view(ws: &Workspace) -> Value {
    let mut keys = ok(&format!("{}/api/settings/api-keys", ws.base), Some(&ws.admin_token));
    for k in keys["keys"].as_array_mut().expect("keys") {
        k.as_object_mut().unwrap().remove("lastUsedAt");
    }
    keys
}

/// Where two JSON values first differ, as a path.
fn difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let names: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for name in names {
                match (x.get(name), y.get(name)) {
                    (Some(p), Some(q)) => {
                        if let Some(d) = difference(p, q, &format!("{path}.{name}")) {
                            return Some(d);
                        }
                    }
                    (p, q) => return Some(format!("{path}.{name}: {p:?} vs {q:?}")),
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!("{path}: {} items vs {}", x.len(), y.len()));
            }
            x.iter().zip(y).enumerate().find_map(|(i, (p, q))| difference(p, q, &format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {a} vs {b}")),
    }
}

#[track_caller]
fn assert_same(label: &str, source: &Value, target: &Value) {
    if let Some(d) = difference(source, target, "") {
        panic!("{label}: the target differs from the source at {d}");
    }
}

/// What identifies the rows read one by one.
struct Ids {
    agents: Vec<String>,
    records: Vec<String>,
    insights: Vec<String>,
}

/// Every admin read route of a workspace, labelled; the usage route first, before anything a
/// key does could add to it.
fn admin_reads(ws: &Workspace, ids: &Ids) -> Vec<(String, Value)> {
    let b = ws.base.as_str();
    let t = Some(ws.admin_token.as_str());
    let mut out = vec![
        ("usage".to_owned(), usage(ws)),
        ("api keys".to_owned(), keys_view(ws)),
        ("agents".to_owned(), ok(&format!("{b}/api/settings/agents"), t)),
    ];
    for id in &ids.agents {
        out.push((format!("agent {id}"), ok(&format!("{b}/api/settings/agents/{id}"), t)));
    }
    out.push(("audit log".to_owned(), ok(&format!("{b}/api/settings/audit-log?limit=100"), t)));
    out.push(("records, first page".to_owned(), ok(&format!("{b}/api/settings/knowledge/records"), t)));
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 100, "the records list never ended");
        let path = match &cursor {
            None => format!("{b}/api/settings/knowledge/records?limit=100"),
            Some(c) => format!("{b}/api/settings/knowledge/records?limit=100&cursor={c}"),
        };
        let body = ok(&path, t);
        cursor = body["nextCursor"].as_str().map(str::to_owned);
        out.push((format!("records page {page}"), body));
        if cursor.is_none() {
            break;
        }
    }
    for id in &ids.records {
        out.push((format!("record {id}"), ok(&format!("{b}/api/settings/knowledge/records/{id}"), t)));
    }
    out.push(("knowledge stats".to_owned(), ok(&format!("{b}/api/settings/knowledge/stats"), t)));
    out.push(("search zephyr".to_owned(), ok(&format!("{b}/api/settings/knowledge/search?q=zephyr&limit=50"), t)));
    out.push((
        "search renewal procurement".to_owned(),
        ok(&format!("{b}/api/settings/knowledge/search?q=renewal%20procurement"), t),
    ));
    out.push(("insights".to_owned(), ok(&format!("{b}/api/settings/insights"), t)));
    for id in &ids.insights {
        out.push((format!("insight {id}"), ok(&format!("{b}/api/settings/insights/{id}"), t)));
    }
    out
}

/// The chat routes with `key`: the list and each chat.
fn chat_reads(key: &str, chat_ids: &[String]) -> Vec<(String, Value)> {
    let mut out = vec![("chats".to_owned(), ok("/api/chats?limit=100", Some(key)))];
    for id in chat_ids {
        out.push((format!("chat {id}"), ok(&format!("/api/chats/{id}"), Some(key))));
    }
    out
}

#[track_caller]
fn assert_all_same(source: &[(String, Value)], target: &[(String, Value)]) {
    let labels = |r: &[(String, Value)]| r.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>();
    assert_eq!(labels(source), labels(target), "the same routes were read");
    for ((label, s), (_, t)) in source.iter().zip(target) {
        assert_same(label, s, t);
    }
}

/// 2,000 records of three kinds with every field used; twenty deals mention "zephyr", each a
/// different number of times, so a search for it finds them in one order only.
fn records() -> Vec<Value> {
    let stages = ["Discovery", "Proposal", "Negotiation", "Closed Won", "Closed Lost"];
    let owners = ["Dana", "Lee", "Kim", "Ana"];
    let tiers = ["gold", "silver"];
    let texts = [
        "Quarterly renewal discussion with procurement and legal.",
        "Expansion into two new regions, pending budget approval.",
        "Champion left; the renewal is at risk until a new sponsor signs.",
        "Security review passed, waiting for the order form.",
        "Pilot went well, the team asks for more seats.",
    ];
    (0..2000usize)
        .map(|i| {
            let mut body = texts[i % 5].to_owned();
            if i % 100 == 0 {
                body.push_str(&" zephyr".repeat(i / 100 + 1));
            }
            match i % 4 {
                0 | 1 => {
                    let stage = stages[i % 5];
                    let status = match stage {
                        "Closed Won" => "won",
                        "Closed Lost" => "lost",
                        _ => "open",
                    };
                    let mut r = json!({
                        "kind": "deal",
                        "externalId": format!("deal-{i}"),
                        "title": format!("Deal {i} for Account {}", i % 97),
                        "body": body,
                        "url": format!("https://crm.example/deals/{i}"),
                        "source": "crm",
                        "accountName": format!("Account {}", i % 97),
                        "amount": ((i * 7919) % 100_000) as f64 + 0.25,
                        "currency": if i % 3 == 0 { "EUR" } else { "USD" },
                        "stage": stage,
                        "status": status,
                        "closeDate": format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28),
                        "owner": owners[i % 4],
                        "properties": { "tier": tiers[i % 2], "seats": i % 50, "renewal": i % 3 == 0 },
                    });
                    if i % 10 == 0 {
                        r["sourceUpdatedAt"] = json!(iso_in(-3_600 - i as i64));
                    }
                    r
                }
                2 => json!({
                    "kind": "account",
                    "externalId": format!("account-{i}"),
                    "title": format!("Account {i}"),
                    "body": body,
                    "owner": owners[i % 4],
                    "properties": { "employees": i * 3, "region": "EMEA" },
                }),
                _ => json!({ "kind": "note", "externalId": format!("note-{i}"), "title": format!("Note {i}"), "body": body }),
            }
        })
        .collect()
}

fn agent_with(ws: &Workspace, body: Value) -> String {
    let r = post(&format!("{}/api/settings/agents", ws.base), Some(&ws.admin_token), body);
    r.expect(201);
    r.body["id"].as_str().unwrap().to_owned()
}

fn chat_id(r: &Resp) -> String {
    r.expect(200);
    r.body["chatId"].as_str().unwrap_or_else(|| panic!("no chatId: {}", r.raw)).to_owned()
}

fn embed_token(key: &str, user: &str) -> String {
    let r = post("/api/embed-tokens", Some(key), json!({ "origins": [ORIGIN], "chat": true, "user": user }));
    r.expect(201);
    r.body["token"].as_str().unwrap().to_owned()
}

fn embed_chat(token: &str, body: Value) -> Resp {
    request("POST", "/api/chat", Some(token), Body::Json(body), &[("Origin", ORIGIN)])
}

fn audit_entries(ws: &Workspace, action: &str) -> Vec<Value> {
    let log = ok(&format!("{}/api/settings/audit-log?limit=100", ws.base), Some(&ws.admin_token));
    log["entries"].as_array().unwrap().iter().filter(|e| e["action"] == action).cloned().collect()
}

fn run_scheduled() {
    let r = get(&format!("{}/__scheduled?cron=*+*+*+*+*", base_url()), None);
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[track_caller]
fn assert_empty(ws: &Workspace) {
    let ex = admin_export(ws);
    for kind in TYPES {
        assert_eq!(ex.count(kind), 0, "{kind}: {}", ex.end());
    }
}

/// A small workspace with a key, an agent, records and a chat of two turns, and its operator
/// export.
fn small_source() -> (Workspace, Export) {
    let ws = Workspace::new();
    ws.agent("Answer briefly.", None);
    let key = ws.key();
    ws.put_records(json!([
        { "kind": "deal", "externalId": "d1", "title": "Acme renewal", "body": "Renewal at risk.", "amount": 1200, "currency": "USD" },
        { "kind": "note", "externalId": "n1", "title": "Call notes", "body": "They asked for a discount." },
    ]))
    .expect(200);
    let id = chat_id(&chat(&key, json!({ "message": "How is the Acme renewal?" })));
    chat(&key, json!({ "message": "And the discount?", "chatId": id })).expect(200);
    settled_usage(&ws);
    let ex = operator_export(&ws.id);
    (ws, ex)
}

/// The export lists every kind of row in order, the `end` line counts them, the admin's has
/// no hash and no secret, and the operator's is the same with each key's hash.
#[test]
fn an_export_lists_every_row_in_order_and_only_the_operator_s_has_key_hashes() {
    let ws = Workspace::new();
    let agent = ws.agent("Answer in one line.", Some("export-model"));
    let (key, key_id) = ws.key_with(json!({ "name": unique("export-"), "rateLimitPerMinute": 30 }));
    ws.put_records(json!([
        { "kind": "deal", "externalId": "d1", "title": "Acme renewal", "body": "At risk.", "amount": 1200.5, "currency": "USD", "stage": "Proposal", "status": "open", "closeDate": "2025-06-30", "owner": "Dana", "properties": { "tier": "gold" } },
        { "kind": "account", "externalId": "a1", "title": "Acme", "url": "https://crm.example/a1" },
        { "kind": "note", "externalId": "n1", "title": "Call notes", "body": "Asked for a discount." },
    ]))
    .expect(200);
    let first = chat(&key, json!({ "message": "How is Acme?", "agentId": agent }));
    let the_chat = chat_id(&first);
    chat(&key, json!({ "message": "And the discount?", "chatId": the_chat })).expect(200);
    settled_usage(&ws);

    let ex = admin_export(&ws);
    for (kind, n) in [("agent", 1), ("apiKey", 1), ("record", 3), ("chat", 1), ("message", 4), ("insight", 0)] {
        assert_eq!(ex.count(kind), n, "{kind}: {}", ex.end());
    }
    assert!(ex.count("usageDay") >= 1, "{}", ex.end());
    assert!(ex.count("auditEntry") >= 3, "{}", ex.end());
    // No hash and no secret, anywhere.
    assert!(!ex.raw.contains("keyHash"), "{}", ex.raw);
    assert!(!ex.raw.contains(&key) && !ex.raw.contains(&key_hash(&key)), "{}", ex.raw);

    let a = ex.find("agent", &agent);
    let read = ok(&format!("/api/settings/agents/{agent}"), Some(&ws.admin_token));
    for field in ["id", "name", "instructions", "model"] {
        assert_eq!(a[field], read[field], "{field}: {a} vs {read}");
    }
    for field in ["createdAt", "updatedAt"] {
        assert!(a[field].as_str().and_then(parse_iso).is_some(), "{field}: {a}");
    }
    let k = ex.find("apiKey", &key_id);
    assert!(k["prefix"].as_str().is_some_and(|p| !p.is_empty() && key.starts_with(p)), "{k}");
    assert_eq!(k["rateLimitPerMinute"], 30, "{k}");
    assert_eq!(k["createdByAdminId"], ws.admin_id.as_str(), "{k}");
    assert!(k["createdAt"].as_str().and_then(parse_iso).is_some(), "{k}");
    let deal = ex.of("record").into_iter().find(|r| r["externalId"] == "d1").unwrap().clone();
    assert_eq!(
        (deal["kind"].clone(), deal["title"].clone(), deal["amount"].clone(), deal["closeDate"].clone()),
        (json!("deal"), json!("Acme renewal"), json!(1200.5), json!("2025-06-30")),
        "{deal}"
    );
    assert_eq!(deal["properties"], json!({ "tier": "gold" }), "{deal}");
    let c = ex.find("chat", &the_chat);
    assert_eq!(c["agentId"], agent.as_str(), "{c}");
    assert_eq!(c["title"], "How is Acme?", "{c}");
    let messages = ex.of("message");
    assert!(messages.iter().all(|m| m["chatId"] == the_chat.as_str()), "{messages:?}");
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert!(messages.iter().all(|m| m["status"] == "complete" && m["usageEstimated"] == false), "{messages:?}");
    assert_eq!(messages[1]["id"], first.body["messageId"], "{:?}", messages[1]);
    assert_eq!(messages[1]["content"], first.body["response"], "{:?}", messages[1]);
    assert_eq!(messages[1]["model"], "export-model", "{:?}", messages[1]);
    let today = &iso_in(0)[..10];
    let day = ex.of("usageDay").into_iter().find(|u| u["keyId"] == key_id.as_str()).unwrap().clone();
    assert_eq!(day["day"], today, "{day}");
    assert!(day["requests"].as_i64().unwrap_or(0) >= 2, "{day}");
    let actions: Vec<&str> = ex.of("auditEntry").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"api_key.created") && actions.contains(&"agent.created"), "{actions:?}");

    // The operator's backup: the same lines, each key with the SHA-256 of its secret.
    let backup = operator_export(&ws.id);
    assert_key_hashes(&backup, &[(&key_id, &key)]);
    assert!(!backup.raw.contains(&key), "never the secret itself");
    assert_eq!(backup.lines.len(), ex.lines.len());
    for (i, (mine, theirs)) in ex.lines.iter().zip(&backup.lines).enumerate().skip(1) {
        let mut theirs = theirs.clone();
        if let Some(o) = theirs.as_object_mut() {
            o.remove("keyHash");
        }
        assert_same(&format!("line {}", i + 1), mine, &theirs);
    }
}

/// A workspace admin exports their own workspace only; the operator routes take the operator
/// token only, and name a workspace that exists.
#[test]
fn an_admin_exports_only_its_own_workspace_and_backups_need_the_operator_token() {
    let (a, b) = (Workspace::new(), Workspace::new());
    let agent_a = a.agent("For A.", None);
    let agent_b = b.agent("For B.", None);
    let ex = admin_export(&a);
    assert_eq!(ex.ids("agent"), std::slice::from_ref(&agent_a));
    assert!(!ex.raw.contains(&agent_b) && !ex.raw.contains(&b.id), "{}", ex.raw);
    assert_eq!(admin_export(&b).ids("agent"), std::slice::from_ref(&agent_b));
    // Naming another workspace does not reach it.
    let r = get(&format!("/api/settings/export?workspaceId={}", b.id), Some(&a.admin_token));
    if r.status == 200 {
        assert_eq!(parse_export(&r, &a.id).ids("agent"), std::slice::from_ref(&agent_a));
    } else {
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.raw);
        assert!(!r.raw.contains(&agent_b));
    }
    get("/api/settings/export", None).expect_error(401, "Missing admin token");
    get("/api/settings/export", Some(&a.key())).expect_error(401, "Invalid admin token");

    // The operator routes: not with a workspace admin's token, nor without one.
    let backup = operator_export(&a.id);
    for (token, error) in [
        (None, "Missing admin token"),
        (Some(a.admin_token.as_str()), "Invalid admin token"),
        (Some(b.admin_token.as_str()), "Invalid admin token"),
        (Some("wrong"), "Invalid admin token"),
    ] {
        get(&format!("/api/admin/workspaces/{}/export", b.id), token).expect_error(401, error);
        get(&format!("/api/admin/workspaces/{}/export", a.id), token).expect_error(401, error);
        let empty = Workspace::new();
        import_as(&empty.id, token, &backup.raw).expect_error(401, error);
        assert_empty(&empty);
    }
    // A workspace that does not exist (any more).
    let gone = post("/api/admin/workspaces", Some(&operator_token()), json!({ "name": unique("gone-") }));
    gone.expect(201);
    let gone = gone.body["id"].as_str().unwrap().to_owned();
    delete(&format!("/api/admin/workspaces/{gone}"), Some(&operator_token())).expect(204);
    get(&format!("/api/admin/workspaces/{gone}/export"), Some(&operator_token()))
        .expect_error(404, "Workspace not found");
}

/// The main one: a workspace with every kind of data is backed up by the operator and restored
/// into an empty workspace; every read route then answers as the source's did, and once the
/// source is deleted its keys work in the target.
#[test]
fn an_operator_backup_restores_into_an_empty_workspace_with_every_read_unchanged() {
    let src = Workspace::new();
    let admin = Some(src.admin_token.as_str());
    let analyst = agent_with(
        &src,
        json!({
            "name": unique("analyst-"),
            "instructions": "You analyse the pipeline.",
            "tools": ["query_records"],
            "knowledge": { "enabled": true, "kinds": ["deal", "note"] },
        }),
    );
    let writer = agent_with(
        &src,
        json!({
            "name": unique("writer-"),
            "instructions": "Answer in one line.",
            "model": "stub-alt-model",
            "fallbacks": [{ "provider": "default", "model": "stub-fallback-model" }],
        }),
    );
    let (k1, k1_id) = src.key_with(json!({ "name": "Primary" }));
    let (k2, k2_id) = src.key_with(json!({
        "name": "Writer only",
        "allowedAgentIds": [writer],
        "rateLimitPerMinute": 50,
        "expiresAt": iso_in(30 * 86_400),
    }));
    let all = records();
    for batch in all.chunks(500) {
        let r = src.put_records(json!(batch));
        r.expect(200);
        assert_eq!(r.body["results"].as_array().map(Vec::len), Some(500));
    }

    // A chat whose answer used a tool.
    let tag = unique("rt-tool-");
    let arguments =
        json!({ "kind": "deal", "filters": { "status": "open" }, "sortBy": "amount", "order": "desc", "limit": 5 });
    stub::script(
        &tag,
        json!([
            { "tool_calls": [{ "name": "query_records", "arguments": arguments }], "usage": { "prompt_tokens": 11, "completion_tokens": 7 } },
            { "reply": "The five largest open deals are listed.", "usage": { "prompt_tokens": 13, "completion_tokens": 9 } },
        ]),
    );
    let tool_chat =
        chat_id(&chat(&k1, json!({ "message": format!("{tag} What are the top open deals?"), "agentId": analyst })));
    // One over three turns.
    let long_chat = chat_id(&chat(&k1, json!({ "message": "How is the zephyr renewal going?" })));
    for i in 0..2 {
        chat(&k1, json!({ "message": format!("And then, step {i}?"), "chatId": long_chat })).expect(200);
    }
    // One whose answer is incomplete: the provider's stream ends early.
    let tag = unique("rt-cut-");
    stub::script(&tag, json!([{ "chunks": ["Partial ", "answer ", "never ", "finished"], "truncate_after": 2 }]));
    let s = sse::chat(&k1, json!({ "message": format!("{tag} stream it"), "stream": true }), &[], None);
    s.assert_well_formed();
    assert_eq!(s.last().name, "error", "{:?}", s.last().data);
    let cut_chat = s.events[0].data["chatId"].as_str().unwrap().to_owned();
    // One with the scoped key, and one of an embed viewer.
    let writer_chat =
        chat_id(&chat(&k2, json!({ "message": "Summarise the pipeline in one line.", "agentId": writer })));
    let viewer = embed_token(&k1, "viewer-7");
    let viewer_chat = chat_id(&embed_chat(&viewer, json!({ "message": "What changed this week?" })));
    // A failure, for the usage's error column.
    chat(&k1, json!({ "message": "x", "chatId": "chat_nope" })).expect_error(404, "Chat not found");
    // An insight, answered.
    let tag = unique("rt-ins-");
    stub::script(
        &tag,
        json!([{ "reply": "The pipeline is healthy [S1].", "usage": { "prompt_tokens": 21, "completion_tokens": 5 } }]),
    );
    let r = post(
        "/api/settings/insights",
        admin,
        json!({ "name": "Pipeline health", "prompt": format!("How healthy is the zephyr pipeline? {tag}"), "agentId": writer, "refreshSeconds": 86_400 }),
    );
    r.expect(201);
    let insight = r.body["id"].as_str().unwrap().to_owned();
    let started = Instant::now();
    while ok(&format!("/api/settings/insights/{insight}"), admin)["status"] != "fresh" {
        assert!(started.elapsed() < Duration::from_secs(20), "the insight was never answered");
        thread::sleep(Duration::from_millis(100));
    }
    // An edit, for the audit log's changes.
    request(
        "PATCH",
        &format!("/api/settings/agents/{writer}"),
        admin,
        Body::Json(json!({ "name": unique("writer-renamed-") })),
        &[],
    )
    .expect(200);
    let chats = vec![tool_chat.clone(), long_chat.clone(), cut_chat.clone(), writer_chat.clone(), viewer_chat.clone()];
    settled_usage(&src);

    // The backup.
    let ex = operator_export(&src.id);
    for (kind, n) in [("agent", 2), ("apiKey", 2), ("record", 2000), ("chat", 5), ("message", 14), ("insight", 1)] {
        assert_eq!(ex.count(kind), n, "{kind}: {}", ex.end());
    }
    assert!(ex.count("usageDay") >= 2, "{}", ex.end());
    assert!(ex.count("auditEntry") >= 10, "{}", ex.end());
    assert_key_hashes(&ex, &[(&k1_id, &k1), (&k2_id, &k2)]);
    assert!(!ex.raw.contains(&k1) && !ex.raw.contains(&k2));
    assert_eq!(ex.find("apiKey", &k2_id)["allowedAgentIds"], json!([writer]));
    assert_eq!(ex.find("agent", &analyst)["tools"], json!(["query_records"]));
    let viewer_line = ex.find("chat", &viewer_chat);
    assert_eq!(
        (viewer_line["embedUser"].clone(), viewer_line["embedKeyId"].clone()),
        (json!("viewer-7"), json!(k1_id))
    );
    let answers = |chat: &str| -> Vec<Value> {
        ex.of("message").into_iter().filter(|m| m["chatId"] == chat && m["role"] == "assistant").cloned().collect()
    };
    let cut = &answers(&cut_chat)[0];
    assert_eq!((cut["status"].clone(), cut["usageEstimated"].clone()), (json!("incomplete"), json!(true)), "{cut}");
    assert_eq!(answers(&tool_chat)[0]["toolCalls"][0]["name"], "query_records");
    assert_eq!(answers(&long_chat).len(), 3);
    let ins = ex.find("insight", &insight);
    assert_eq!(ins["answer"], "The pipeline is healthy [S1].", "{ins}");

    // Restored into an empty workspace; a second import of the same backup changes nothing.
    let dst = Workspace::new();
    let r = import(&dst.id, &ex.raw);
    r.expect(200);
    assert_eq!(&r.body["counts"], ex.counts(), "{}", r.raw);
    let again = import(&dst.id, &ex.raw);
    again.expect(200);
    assert_eq!(&again.body["counts"], ex.counts(), "{}", again.raw);

    // Every admin read, the usage first (nothing a key did since the backup is in either).
    let ids = Ids {
        agents: vec![analyst.clone(), writer.clone()],
        records: ex.ids("record").into_iter().step_by(199).chain(ex.ids("record").last().cloned()).collect(),
        insights: vec![insight.clone()],
    };
    let source = admin_reads(&src, &ids);
    let target = admin_reads(&dst, &ids);
    assert_eq!(source.iter().filter(|(l, _)| l.starts_with("records page")).count(), 20, "2,000 records, 100 a page");
    let found = &source.iter().find(|(l, _)| l == "search zephyr").unwrap().1;
    assert_eq!(found["results"].as_array().map(Vec::len), Some(20), "{found}");
    assert_all_same(&source, &target);
    // The chat routes: the keys reach the source while it exists, so read it now, and the
    // target once the source is gone.
    let source_chats = chat_reads(&k1, &chats);
    let source_scoped = chat_reads(&k2, std::slice::from_ref(&writer_chat));
    assert_eq!(source_chats[0].1["chats"].as_array().map(Vec::len), Some(5));

    delete(&format!("/api/admin/workspaces/{}", src.id), Some(&operator_token())).expect(204);
    get(&format!("/api/admin/workspaces/{}/export", src.id), Some(&operator_token()))
        .expect_error(404, "Workspace not found");
    assert_all_same(&source_chats, &chat_reads(&k1, &chats));
    assert_all_same(&source_scoped, &chat_reads(&k2, std::slice::from_ref(&writer_chat)));

    // The old keys work in the target, with their scope.
    let usage_before = usage(&dst);
    let new_chat = chat_id(&chat(&k1, json!({ "message": "Hello from the restored workspace" })));
    chat(&k1, json!({ "message": "And the next step?", "chatId": long_chat })).expect(200);
    chat(&k2, json!({ "message": "Anything?" })).expect_error(403, "Agent not allowed for this key");
    let scoped_chat = chat_id(&chat(&k2, json!({ "message": "One line, please.", "agentId": writer })));
    let long = ok(&format!("/api/chats/{long_chat}"), Some(&k1));
    assert_eq!(long["messages"].as_array().map(Vec::len), Some(8), "{long}");
    let listed: Vec<String> = ok("/api/chats?limit=100", Some(&k1))["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed.len(), 7, "{listed:?}");
    assert!(listed.contains(&new_chat) && listed.contains(&scoped_chat), "{listed:?}");
    let after = admin_export(&dst);
    assert_eq!((after.count("chat"), after.count("message")), (7, 20), "{}", after.end());
    assert!(after.ids("chat").contains(&new_chat), "{:?}", after.ids("chat"));
    // Their requests are counted in the target.
    let k1_requests = |u: &Value| {
        u["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["keyId"] == k1_id.as_str())
            .map_or(-1, |k| k["requests"].as_i64().unwrap_or(-1))
    };
    assert!(k1_requests(&usage(&dst)) >= k1_requests(&usage_before) + 2, "{}", usage(&dst));
}

/// An admin's export has no hashes: restored, its keys are listed but authenticate nothing.
#[test]
fn an_admin_export_restores_keys_that_are_listed_but_no_longer_authenticate() {
    let src = Workspace::new();
    let (key, _) = src.key_with(json!({ "name": unique("listed-") }));
    let id = chat_id(&chat(&key, json!({ "message": "Keep this chat" })));
    let before = ok(&format!("/api/chats/{id}"), Some(&key));
    settled_usage(&src);
    let ex = admin_export(&src);
    let dst = Workspace::new();
    let r = import(&dst.id, &ex.raw);
    r.expect(200);
    assert_eq!(&r.body["counts"], ex.counts(), "{}", r.raw);
    assert_same("api keys", &keys_view(&src), &keys_view(&dst));

    delete(&format!("/api/admin/workspaces/{}", src.id), Some(&operator_token())).expect(204);
    chat(&key, json!({ "message": "Still there?" })).expect_error(401, "Invalid API key");
    get("/api/chats", Some(&key)).expect_error(401, "Invalid API key");
    // The target holds the chat, for a key of its own.
    let fresh = dst.key();
    assert_same("chat", &before, &ok(&format!("/api/chats/{id}"), Some(&fresh)));
}

/// A malformed line or a cut-off export is refused with the line it failed at, and nothing of
/// it is kept: the same workspace takes a correct import afterwards.
#[test]
fn a_malformed_or_truncated_import_is_refused_whole_with_its_line() {
    let (_src, ex) = small_source();
    let raw = ex.raw_lines();
    let at = |kind: &str| ex.lines.iter().position(|l| l["type"] == kind).unwrap();
    let (agent, record, message) = (at("agent"), at("record"), at("message"));
    let replaced = |i: usize, with: &str| -> String {
        raw.iter().enumerate().map(|(j, l)| format!("{}\n", if j == i { with } else { l })).collect()
    };
    let edited = |i: usize, edit: &dyn Fn(&mut Value)| -> String {
        let mut v = ex.lines[i].clone();
        edit(&mut v);
        replaced(i, &v.to_string())
    };
    let cut = |n: usize| -> String { raw[..n].iter().map(|l| format!("{l}\n")).collect() };
    let cases: Vec<(&str, String, usize)> = vec![
        ("not JSON", replaced(agent, "{not json"), agent + 1),
        ("an unknown type", replaced(record, r#"{"type":"spaceship","id":"x"}"#), record + 1),
        ("a message of no earlier chat", edited(message, &|m| m["chatId"] = json!("chat_doesnotexist")), message + 1),
        (
            "an agent without its id",
            edited(agent, &|a| {
                a.as_object_mut().unwrap().remove("id");
            }),
            agent + 1,
        ),
        ("no end line", cut(raw.len() - 1), raw.len()),
        ("cut after a message", cut(message + 1), message + 2),
    ];
    let dst = Workspace::new();
    for (what, body, line) in cases {
        let r = import(&dst.id, &body);
        r.expect_error(400, "Invalid import");
        assert_eq!(r.body["details"]["line"], line, "{what}: {}", r.raw);
        assert!(r.body["details"]["rule"].as_str().is_some_and(|s| !s.is_empty()), "{what}: {}", r.raw);
        assert_empty(&dst);
    }
    let r = import(&dst.id, &ex.raw);
    r.expect(200);
    assert_eq!(&r.body["counts"], ex.counts(), "{}", r.raw);
    let restored = admin_export(&dst);
    for kind in TYPES {
        assert_eq!(restored.count(kind), ex.count(kind), "{kind}");
    }
}

/// A workspace that holds anything is not a target.
#[test]
fn an_import_into_a_workspace_that_holds_data_is_refused() {
    let (_src, ex) = small_source();
    let with_agent = Workspace::new();
    let agent = with_agent.agent("Mine.", None);
    import(&with_agent.id, &ex.raw).expect_error(409, "Workspace is not empty");
    let kept = admin_export(&with_agent);
    assert_eq!(kept.ids("agent"), [agent]);
    assert_eq!((kept.count("chat"), kept.count("record")), (0, 0), "{}", kept.end());
    let with_key = Workspace::new();
    with_key.key();
    import(&with_key.id, &ex.raw).expect_error(409, "Workspace is not empty");
    assert_eq!(admin_export(&with_key).count("chat"), 0);
    // Restored once, another backup does not go on top.
    let restored = Workspace::new();
    import(&restored.id, &ex.raw).expect(200);
    let (_other, other_ex) = small_source();
    import(&restored.id, &other_ex.raw).expect_error(409, "Workspace is not empty");
    assert_eq!(admin_export(&restored).ids("chat"), ex.ids("chat"));
}

/// Chats whose last message is older than the workspace's retention are deleted by the
/// scheduled job, with an audit entry counting them; newer chats and usage stay.
#[test]
fn chats_past_the_retention_are_swept_by_the_scheduled_job() {
    let src = Workspace::new();
    let key = src.key();
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let id = chat_id(&chat(&key, json!({ "message": format!("Question {i}") })));
            if i % 2 == 0 {
                chat(&key, json!({ "message": format!("Follow-up {i}"), "chatId": id })).expect(200);
            }
            id
        })
        .collect();
    let (old, recent) = ids.split_at(3);
    settled_usage(&src);
    let ex = operator_export(&src.id);
    assert_eq!(ex.ids("chat").into_iter().collect::<HashSet<_>>(), ids.iter().cloned().collect::<HashSet<_>>());

    // Three chats from 400 days ago, two from 10 days ago; nothing else changes.
    let now = now_ms();
    let base: HashMap<&str, i64> = ids
        .iter()
        .enumerate()
        .map(|(j, id)| {
            let age = if j < 3 { 400 } else { 10 };
            (id.as_str(), now - age * DAY_MS + j as i64 * 60_000)
        })
        .collect();
    let mut lines = ex.lines.clone();
    let mut counts: HashMap<String, i64> = HashMap::new();
    for line in lines.iter_mut().filter(|l| l["type"] == "message") {
        let chat = line["chatId"].as_str().unwrap().to_owned();
        let n = counts.entry(chat.clone()).or_insert(0);
        *n += 1;
        line["createdAt"] = json!(to_iso(base[chat.as_str()] + *n * 1_000));
    }
    for line in lines.iter_mut().filter(|l| l["type"] == "chat") {
        let chat = line["id"].as_str().unwrap().to_owned();
        line["createdAt"] = json!(to_iso(base[chat.as_str()]));
        line["updatedAt"] = json!(to_iso(base[chat.as_str()] + counts[&chat] * 1_000));
    }
    let recent_messages: i64 = recent.iter().map(|c| counts[c]).sum();
    let dst = Workspace::new();
    let r = import(&dst.id, &ndjson(&lines));
    r.expect(200);
    assert_eq!(&r.body["counts"], ex.counts(), "{}", r.raw);

    let admin = Some(dst.admin_token.as_str());
    let settings = ok("/api/settings/workspace", admin);
    assert_eq!(settings["id"], dst.id.as_str(), "{settings}");
    assert_eq!(settings["chatRetentionDays"], Value::Null, "{settings}");
    assert!(settings["name"].is_string() && settings["createdAt"].as_str().and_then(parse_iso).is_some(), "{settings}");
    let patch = |body: Value| request("PATCH", "/api/settings/workspace", admin, Body::Json(body), &[]);
    for bad in [json!(0), json!(3651), json!("365"), json!(1.5)] {
        let r = patch(json!({ "chatRetentionDays": bad }));
        r.expect(400);
        assert_eq!(r.body["details"]["field"], "chatRetentionDays", "{bad}: {}", r.raw);
    }
    assert_eq!(ok("/api/settings/workspace", admin)["chatRetentionDays"], Value::Null);
    let usage_before = usage(&dst);
    let r = patch(json!({ "chatRetentionDays": 365 }));
    r.expect(200);
    assert_eq!((r.body["id"].clone(), r.body["chatRetentionDays"].clone()), (json!(dst.id), json!(365)), "{}", r.raw);
    assert_eq!(ok("/api/settings/workspace", admin)["chatRetentionDays"], 365);

    // Other tests run the job too: run it until the sweep shows, for at most ten seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        run_scheduled();
        let ex = admin_export(&dst);
        let swept: i64 = audit_entries(&dst, "chats.expired")
            .iter()
            .map(|e| e["details"]["deletedChats"].as_i64().unwrap_or(0))
            .sum();
        if ex.count("chat") <= 2 && swept >= 3 {
            break ex;
        }
        assert!(Instant::now() < deadline, "the old chats were never swept: {}", ex.end());
        thread::sleep(Duration::from_millis(300));
    };
    let kept: HashSet<String> = after.ids("chat").into_iter().collect();
    assert_eq!(kept, recent.iter().cloned().collect::<HashSet<_>>(), "old: {old:?}");
    assert_eq!(after.count("message"), recent_messages, "{}", after.end());
    assert!(after.of("message").iter().all(|m| recent.iter().any(|c| m["chatId"] == c.as_str())));
    let expired = audit_entries(&dst, "chats.expired");
    let deleted: i64 = expired.iter().map(|e| e["details"]["deletedChats"].as_i64().unwrap_or(0)).sum();
    assert_eq!(deleted, 3, "{expired:?}");
    // Usage is kept; the settings edit back to no retention.
    assert_same("usage", &usage_before, &usage(&dst));
    let r = patch(json!({ "name": "Renamed", "chatRetentionDays": null }));
    r.expect(200);
    assert_eq!((r.body["name"].clone(), r.body["chatRetentionDays"].clone()), (json!("Renamed"), Value::Null));
    let settings = ok("/api/settings/workspace", admin);
    assert_eq!((settings["name"].clone(), settings["chatRetentionDays"].clone()), (json!("Renamed"), Value::Null));
}

/// An admin erases one embed user's chats: theirs go, everyone else's stay, and the audit log
/// says how many.
#[test]
fn erasure_deletes_one_embed_user_s_chats_only() {
    let ws = Workspace::new();
    let admin = Some(ws.admin_token.as_str());
    let (key, key_id) = ws.key_with(json!({ "name": unique("embed-") }));
    let (u1, u2) = (embed_token(&key, "u-1"), embed_token(&key, "u-2"));
    // Each viewer's second chat is sent with an Idempotency-Key: a retry would replay it.
    let retried = |token: &str, who: &str| {
        let body = json!({ "message": format!("{who} asks once") });
        let extra = [("Origin", ORIGIN), ("Idempotency-Key", who)];
        request("POST", "/api/chat", Some(token), Body::Json(body), &extra)
    };
    let first = chat_id(&embed_chat(&u1, json!({ "message": "u-1 asks" })));
    let u1_chats = vec![first, chat_id(&retried(&u1, "u-1"))];
    let u2_chat = chat_id(&retried(&u2, "u-2"));
    let replay = retried(&u1, "u-1");
    assert_eq!((replay.header("idempotent-replayed"), chat_id(&replay)), (Some("true"), u1_chats[1].clone()));
    let key_chat = chat_id(&chat(&key, json!({ "message": "the key asks" })));
    // The export says whose they are.
    let ex = admin_export(&ws);
    for id in &u1_chats {
        let line = ex.find("chat", id);
        assert_eq!((line["embedUser"].clone(), line["embedKeyId"].clone()), (json!("u-1"), json!(key_id)), "{line}");
    }
    assert_eq!(ex.find("chat", &u2_chat)["embedUser"], "u-2");
    assert!(ex.find("chat", &key_chat).get("embedUser").is_none_or(Value::is_null));

    for body in [json!({}), json!({ "embedUser": "" }), json!({ "embedUser": null })] {
        post("/api/settings/erasure", admin, body.clone()).expect(400);
    }
    post("/api/settings/erasure", Some(&key), json!({ "embedUser": "u-1" })).expect(401);
    let r = post("/api/settings/erasure", admin, json!({ "embedUser": "u-1" }));
    r.expect(200);
    assert_eq!(r.body["deletedChats"], 2, "{}", r.raw);
    for id in &u1_chats {
        get(&format!("/api/chats/{id}"), Some(&key)).expect_error(404, "Chat not found");
    }
    ok(&format!("/api/chats/{u2_chat}"), Some(&key));
    ok(&format!("/api/chats/{key_chat}"), Some(&key));
    let theirs = request("GET", "/api/chats", Some(&u1), Body::None, &[("Origin", ORIGIN)]);
    theirs.expect(200);
    assert_eq!(theirs.body["chats"], json!([]), "{}", theirs.raw);
    let listed = ok("/api/chats?limit=100", Some(&key));
    let listed: HashSet<&str> = listed["chats"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [u2_chat.as_str(), key_chat.as_str()].into_iter().collect::<HashSet<&str>>());
    let entries = audit_entries(&ws, "chats.erased");
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["details"]["deletedChats"], 2, "{entries:?}");
    // Nothing left to erase.
    let r = post("/api/settings/erasure", admin, json!({ "embedUser": "u-1" }));
    r.expect(200);
    assert_eq!(r.body["deletedChats"], 0, "{}", r.raw);
    // The erased chat's stored result went too: the retry runs afresh into a new chat, while
    // the other viewer's retry still replays hers.
    let again = retried(&u1, "u-1");
    assert_eq!(again.header("idempotent-replayed"), None, "{}", again.raw);
    assert_ne!(chat_id(&again), u1_chats[1]);
    let kept = retried(&u2, "u-2");
    assert_eq!((kept.header("idempotent-replayed"), chat_id(&kept)), (Some("true"), u2_chat.clone()));
}
