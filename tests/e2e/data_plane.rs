//! Each workspace in its own database: placement, the key formats, isolation in the local state,
//! and the move of workspaces that still live in D1 (on a Worker of their own,
//! `ATTIVE_LEGACY_URL`, started with `NEW_WORKSPACE_DATA_PLANE=d1`, so its workspaces are made
//! exactly as before the split: rows in D1, keys of the first format).

use serde_json::{json, Value};

use crate::support::*;

fn legacy_base() -> String {
    std::env::var("ATTIVE_LEGACY_URL").expect("ATTIVE_LEGACY_URL is set by tests/e2e.sh")
}

fn chat_on(base: &str, key: &str, body: Value) -> Resp {
    post(&format!("{base}/api/chat"), Some(key), body)
}

#[test]
fn placement_is_chosen_at_creation_shown_and_checked() {
    let op = operator_token();
    let url = format!("{}/api/admin/workspaces", base_url());
    for (given, shown) in [
        (json!({ "name": unique("p-") }), json!("auto")),
        (json!({ "name": unique("p-"), "placement": "weur" }), json!("weur")),
        (json!({ "name": unique("p-"), "placement": { "jurisdiction": "eu" } }), json!({ "jurisdiction": "eu" })),
    ] {
        let r = post(&url, Some(&op), given);
        r.expect(201);
        assert_eq!(r.body["placement"], shown, "{}", r.raw);
        assert_eq!(r.body["dataPlane"], "object");
    }
    for bad in [json!("mars"), json!({ "jurisdiction": "us" }), json!(7)] {
        let r = post(&url, Some(&op), json!({ "name": unique("p-"), "placement": bad }));
        r.expect_error(400, "Invalid request: placement must be \"auto\", a location hint (wnam, enam, sam, weur, eeur, apac, oc, afr, me) or {\"jurisdiction\": \"eu\"}");
    }
}

/// A key of the current format reaches its workspace's object with no D1 statement, in an EU
/// workspace too; a key whose locator was changed is refused (its checksum), and one made up
/// with a valid checksum for a workspace nobody created finds no key there.
#[test]
fn new_keys_carry_their_workspace_and_chat_without_d1() {
    let op = operator_token();
    let created = post(
        &format!("{}/api/admin/workspaces", base_url()),
        Some(&op),
        json!({ "name": unique("eu-"), "placement": { "jurisdiction": "eu" } }),
    );
    created.expect(201);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let admin = post(
        &format!("{}/api/admin/workspaces/{id}/admins", base_url()),
        Some(&op),
        json!({ "name": "Eve", "email": "eve@example.com" }),
    );
    admin.expect(201);
    let token = admin.body["token"].as_str().unwrap();
    let key = post(&format!("{}/api/settings/api-keys", base_url()), Some(token), json!({ "name": "eu" }));
    key.expect(201);
    let key = key.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("atv2_") && key[35..].starts_with('e'), "the locator says EU: {key}");
    let r = chat_on(&base_url(), &key, json!({ "message": "hello from the EU" }));
    r.expect(200);
    let timing = r.header("server-timing").unwrap_or_default();
    assert!(timing.contains("d1;desc=\"round trips\";dur=0"), "{timing}");
    assert!(timing.contains("ws;desc=\"workspace object round trips\";dur=2"), "{timing}");
    // The workspace id is visible in the key (not a secret) but cannot be edited.
    let tampered: String = key
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 40 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    chat_on(&base_url(), &tampered, json!({ "message": "x" })).expect_error(401, "Invalid API key");
}

/// Workspace A's object holds only A's rows: a chat of B never lands in a database A uses.
#[test]
fn a_workspace_object_holds_only_its_own_rows() {
    let (a, b) = (Workspace::new(), Workspace::new());
    let tag_a = unique("only-a-");
    let tag_b = unique("only-b-");
    chat_on(&base_url(), &a.key(), json!({ "message": tag_a })).expect(200);
    chat_on(&base_url(), &b.key(), json!({ "message": tag_b })).expect(200);
    let dir = std::env::var("ATTIVE_MAIN_STATE").expect("ATTIVE_MAIN_STATE is set by tests/e2e.sh");
    let script = r#"
import glob, os, sqlite3, sys
hits = {}
for f in glob.glob(os.path.join(sys.argv[1], "**", "*.sqlite"), recursive=True):
    if "-Workspace" not in f or f.endswith("metadata.sqlite"):
        continue
    db = sqlite3.connect(f, timeout=10)
    try:
        ws = [r[0] for r in db.execute("SELECT id FROM workspaces")]
        found = [r[0] for r in db.execute("SELECT content FROM messages WHERE content IN (?, ?)", (sys.argv[2], sys.argv[3]))]
    except sqlite3.OperationalError:
        continue
    finally:
        db.close()
    if found:
        hits[f] = (ws, found)
for f, (ws, found) in hits.items():
    print(",".join(ws), "|", ",".join(found))
"#;
    let out = std::process::Command::new("python3").args(["-c", script, &dir, &tag_a, &tag_b]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "each message is in exactly one object: {text}");
    assert!(lines.contains(&format!("{} | {tag_a}", a.id).as_str()), "{text}");
    assert!(lines.contains(&format!("{} | {tag_b}", b.id).as_str()), "{text}");
}

/// Every read route of a workspace, as a customer and its admin see them.
fn reads(ws: &Workspace, key: &str, chat_id: &str, agent_id: &str) -> Vec<Value> {
    let b = &ws.base;
    let t = Some(ws.admin_token.as_str());
    let mut keys = get(&format!("{b}/api/settings/api-keys"), t).body.clone();
    // When a key was last used is written after each response, and its request count grows
    // with these very reads (checked through the usage route): not part of what is compared.
    for k in keys["keys"].as_array_mut().into_iter().flatten() {
        if let Some(o) = k.as_object_mut() {
            o.remove("lastUsedAt");
            o.remove("requests30d");
        }
    }
    vec![
        // First: the key requests below are counted in it.
        get(&format!("{b}/api/settings/usage"), t).body.clone(),
        get(&format!("{b}/api/chats"), Some(key)).body.clone(),
        get(&format!("{b}/api/chats/{chat_id}"), Some(key)).body.clone(),
        keys,
        get(&format!("{b}/api/settings/agents"), t).body.clone(),
        get(&format!("{b}/api/settings/agents/{agent_id}"), t).body.clone(),
        get(&format!("{b}/api/settings/audit-log"), t).body.clone(),
        get(&format!("{b}/api/settings/knowledge/records"), t).body.clone(),
        get(&format!("{b}/api/settings/knowledge/stats"), t).body.clone(),
        get(&format!("{b}/api/settings/knowledge/search?q=renewal"), t).body.clone(),
        get(&format!("{b}/v1/models"), Some(key)).body.clone(),
    ]
}

fn move_once(workspace_id: &str, pages: u32) -> Resp {
    post(
        &format!("{}/api/admin/data-plane/move", legacy_base()),
        Some(&operator_token()),
        json!({ "workspaceId": workspace_id, "pages": pages }),
    )
}

/// A workspace made and filled as before the split is moved page by page; while it moves its
/// requests get 503 with Retry-After and another workspace is not affected; afterwards every
/// read route answers exactly as before, its old key and its chats keep working.
#[test]
fn a_workspace_in_d1_moves_to_its_own_database_with_every_answer_unchanged() {
    let base = legacy_base();
    let (ws, other) = (Workspace::on(&base), Workspace::on(&base));
    let key = ws.key();
    let other_key = other.key();
    assert!(key.starts_with("atv_") && key.len() == 40, "a workspace on D1 mints keys of the first format: {key}");
    let agent = post(
        &format!("{base}/api/settings/agents"),
        Some(&ws.admin_token),
        json!({ "name": "Mover", "instructions": "Answer briefly." }),
    );
    agent.expect(201);
    let agent_id = agent.body["id"].as_str().unwrap().to_owned();
    let records: Vec<Value> = (0..250)
        .map(|i| json!({ "kind": "deal", "externalId": format!("d{i}"), "title": format!("Renewal {i}"), "body": "A renewal at risk.", "amount": i }))
        .collect();
    for chunk in records.chunks(100) {
        ws.put_records(json!(chunk)).expect(200);
    }
    let first = chat_on(&base, &key, json!({ "message": "How is the renewal?" }));
    first.expect(200);
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    for i in 0..3 {
        chat_on(&base, &key, json!({ "message": format!("and then {i}?"), "chatId": chat_id })).expect(200);
    }
    chat_on(&base, &key, json!({ "message": "agent?", "agentId": agent_id })).expect(200);
    let before = reads(&ws, &key, &chat_id, &agent_id);
    assert!(before[7]["records"].as_array().is_some_and(|r| !r.is_empty()), "{}", before[7]);

    // One page: the move has begun and is not done.
    let started = move_once(&ws.id, 1);
    started.expect(200);
    assert_eq!(started.body["dataPlane"], "moving", "{}", started.raw);
    let waiting = chat_on(&base, &key, json!({ "message": "during the move" }));
    waiting.expect_error(503, "Workspace is being moved");
    assert!(waiting.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()), "{}", waiting.raw);
    get(&format!("{base}/api/settings/agents"), Some(&ws.admin_token)).expect_error(503, "Workspace is being moved");
    // Another workspace is not affected, and cannot be moved meanwhile.
    chat_on(&base, &other_key, json!({ "message": "not moving" })).expect(200);
    move_once(&other.id, 1).expect_error(409, "Another workspace is being moved");
    let progress = get(&format!("{base}/api/admin/data-plane"), Some(&operator_token()));
    progress.expect(200);
    let row =
        progress.body["workspaces"].as_array().unwrap().iter().find(|w| w["id"] == ws.id.as_str()).cloned().unwrap();
    assert_eq!(row["dataPlane"], "moving");
    assert!(row["move"]["step"].is_string(), "{row}");

    // Run again until it is done (resumable: each run continues where the last stopped).
    let mut done = None;
    for _ in 0..40 {
        let r = move_once(&ws.id, 3);
        r.expect(200);
        if r.body["dataPlane"] == "object" {
            done = Some(r.body.clone());
            break;
        }
    }
    let done = done.expect("the move finished");
    for (table, n) in done["verified"].as_object().unwrap() {
        assert_eq!(n["d1"], n["object"], "{table}: {done}");
    }
    assert_eq!(done["verified"]["knowledge_records"]["object"], 250, "{done}");
    assert_eq!(done["verified"]["messages"]["object"], 10, "{done}");
    // Running it again is harmless.
    move_once(&ws.id, 3).expect(200);

    let after = reads(&ws, &key, &chat_id, &agent_id);
    for (i, (b, a)) in before.iter().zip(&after).enumerate().skip(1) {
        assert_eq!(b, a, "read route {i} changed across the move");
    }
    // Usage: the same, plus the three key requests of the first reading (the 503 during the
    // move found no database to count in).
    let requests = |u: &Value| u["totals"]["requests"].as_i64().unwrap_or(-1);
    assert_eq!(requests(&after[0]), requests(&before[0]) + 3, "{}\n{}", before[0], after[0]);
    // The old key still works: one D1 lookup (the index), then the workspace's object.
    let r = chat_on(&base, &key, json!({ "message": "after the move", "chatId": chat_id }));
    r.expect(200);
    let timing = r.header("server-timing").unwrap_or_default();
    assert!(timing.contains("d1;desc=\"round trips\";dur=1"), "{timing}");
    assert!(timing.contains("ws;desc=\"workspace object round trips\";dur=2"), "{timing}");
    // New keys of a moved workspace carry its locator.
    assert!(ws.key().starts_with("atv2_"));
    // And the other workspace moves too.
    let mut moved = false;
    for _ in 0..20 {
        let r = move_once(&other.id, 10);
        r.expect(200);
        if r.body["dataPlane"] == "object" {
            moved = true;
            break;
        }
    }
    assert!(moved);
    chat_on(&base, &other_key, json!({ "message": "moved too" })).expect(200);
}

/// Deleting a workspace on its own object refuses its keys at once and leaves its object empty.
#[test]
fn a_deleted_workspace_s_keys_are_refused_and_a_second_delete_is_404() {
    let ws = Workspace::new();
    let key = ws.key();
    chat_on(&base_url(), &key, json!({ "message": "before" })).expect(200);
    let url = format!("{}/api/admin/workspaces/{}", base_url(), ws.id);
    delete(&url, Some(&operator_token())).expect(204);
    chat_on(&base_url(), &key, json!({ "message": "after" })).expect_error(401, "Invalid API key");
    delete(&url, Some(&operator_token())).expect_error(404, "Workspace not found");
}

/// Runs a Python snippet over the main Worker's workspace database of `workspace_id` (argv[2]);
/// prints what it prints.
fn on_workspace_file(workspace_id: &str, body: &str) -> String {
    let dir = std::env::var("ATTIVE_MAIN_STATE").expect("ATTIVE_MAIN_STATE is set by tests/e2e.sh");
    let script = format!(
        r#"
import glob, os, sqlite3, sys
found = 0
for f in glob.glob(os.path.join(sys.argv[1], "**", "*.sqlite"), recursive=True):
    if "-Workspace" not in f or f.endswith("metadata.sqlite"):
        continue
    db = sqlite3.connect(f, timeout=10)
    try:
        mine = db.execute("SELECT 1 FROM workspaces WHERE id = ?", (sys.argv[2],)).fetchone()
    except sqlite3.OperationalError:
        mine = None
    if mine:
        found += 1
{body}
        db.commit()
    db.close()
assert found == 1, found
"#
    );
    let out = std::process::Command::new("python3").args(["-c", &script, &dir, workspace_id]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// An object whose database is on the previous schema is brought to the current one before it
/// serves, its data intact.
#[test]
fn an_object_on_the_previous_schema_is_upgraded_with_its_data() {
    let ws = Workspace::new();
    let key = ws.key();
    let first = chat_on(&base_url(), &key, json!({ "message": "before the upgrade" }));
    first.expect(200);
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    // Back to schema 1: what migrations 2 and 3 added is gone, and so are their records.
    let rolled = on_workspace_file(
        &ws.id,
        "        db.execute('DROP INDEX chats_by_age')\n        db.execute('DROP INDEX chats_by_embed_user')\n        db.execute('DROP TABLE imports')\n        db.execute('DELETE FROM _migrations WHERE id > 1')\n        print(sorted(r[0] for r in db.execute('SELECT id FROM _migrations')))",
    );
    assert_eq!(rolled.trim(), "[1]");
    let next = chat_on(&base_url(), &key, json!({ "message": "after the upgrade", "chatId": chat_id }));
    next.expect(200);
    let after = on_workspace_file(
        &ws.id,
        "        print(sorted(r[0] for r in db.execute('SELECT id FROM _migrations')))\n        print(sorted(r[0] for r in db.execute(\"SELECT name FROM sqlite_master WHERE name LIKE 'chats_by_%' OR name = 'imports'\")))\n        print(db.execute('SELECT COUNT(*) FROM messages').fetchone()[0])",
    );
    let lines: Vec<&str> = after.lines().collect();
    assert_eq!(lines.first().copied(), Some("[1, 2, 3]"), "{after}");
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.contains("chats_by_age") && l.contains("chats_by_embed_user") && l.contains("imports")),
        "{after}"
    );
    assert_eq!(lines.get(2).copied(), Some("4"), "both turns are there: {after}");
    let chat = get(&format!("{}/api/chats/{chat_id}", base_url()), Some(&key));
    chat.expect(200);
    assert_eq!(chat.body["messages"].as_array().map(Vec::len), Some(4));
}
