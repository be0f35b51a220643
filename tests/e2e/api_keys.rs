//! API keys: created once, stored hashed, listed without secrets, revoked at once.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::*;

const FIELDS: [&str; 12] = [
    "id",
    "name",
    "prefix",
    "createdBy",
    "createdAt",
    "lastUsedAt",
    "expiresAt",
    "rateLimitPerMinute",
    "allowedAgentIds",
    "rolledFrom",
    "rolledTo",
    "requests30d",
];

#[test]
fn a_key_is_shown_once_and_listed_with_every_field_but_no_secret() {
    let ws = Workspace::new();
    let r = ws.create_key_with(
        json!({ "name": "Production Integration", "expiresAt": "2099-01-01T00:00:00Z", "rateLimitPerMinute": 120 }),
    );
    r.expect(201);
    let key = r.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("atv2_") && key.len() == 64, "{key}");
    assert_eq!(r.body["prefix"], &key[..12]);
    assert_eq!(r.body["createdBy"], "Ada Admin");
    assert_eq!(r.body["expiresAt"], "2099-01-01T00:00:00.000Z");
    assert_eq!(r.body["rateLimitPerMinute"], 120);

    let list = get("/api/settings/api-keys", Some(&ws.admin_token));
    list.expect(200);
    assert!(!list.raw.contains(&key), "the list leaks the key");
    assert!(!list.raw.contains(&key[12..]), "the list leaks part of the key beyond its prefix");
    let keys = list.body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let listed = keys[0].as_object().unwrap();
    let mut names: Vec<&str> = listed.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut expected = FIELDS.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(listed["name"], "Production Integration");
    assert_eq!(listed["lastUsedAt"], Value::Null);
}

#[test]
fn the_list_is_newest_first() {
    let ws = Workspace::new();
    for name in ["first", "second", "third"] {
        ws.create_key_with(json!({ "name": name })).expect(201);
        std::thread::sleep(Duration::from_millis(5));
    }
    let names: Vec<Value> = ws.keys().iter().map(|k| k["name"].clone()).collect();
    assert_eq!(names, [json!("third"), json!("second"), json!("first")]);
}

#[test]
fn using_a_key_sets_last_used_and_deleting_it_revokes_it_at_once() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&key, json!({ "message": "What are the top deals in our pipeline?" })).expect(200);
    // The write happens after the response (waitUntil); give it a moment.
    let mut last_used = Value::Null;
    for _ in 0..50 {
        last_used = ws.keys()[0]["lastUsedAt"].clone();
        if !last_used.is_null() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(last_used.as_str().is_some_and(|t| t.ends_with('Z')), "lastUsedAt: {last_used}");

    let id = ws.keys()[0]["id"].as_str().unwrap().to_owned();
    delete(&format!("/api/settings/api-keys/{id}"), Some(&ws.admin_token)).expect(204);
    chat(&key, json!({ "message": "still there?" })).expect_error(401, "Invalid API key");
    get("/api/chats", Some(&key)).expect_error(401, "Invalid API key");
    assert!(ws.keys().is_empty());
    delete(&format!("/api/settings/api-keys/{id}"), Some(&ws.admin_token)).expect_error(404, "API key not found");
}

#[test]
fn admin_tokens_and_api_keys_are_not_interchangeable() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&ws.admin_token, json!({ "message": "hi" })).expect_error(401, "Invalid API key");
    get("/api/settings/api-keys", Some(&key)).expect_error(401, "Invalid admin token");
    get("/api/settings/api-keys", None).expect_error(401, "Missing admin token");
}

#[test]
fn every_kind_of_bad_key_gets_the_same_401() {
    let ws = Workspace::new();
    let key = ws.key();
    request("POST", "/api/chat", None, Body::Json(json!({ "message": "hi" })), &[])
        .expect_error(401, "Missing API key");
    let mut flipped = key.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'a' { b'b' } else { b'a' };
    let flipped = String::from_utf8(flipped).unwrap();
    let basic = format!("Basic {key}");
    for bad in ["nonsense", "atv_0000", flipped.as_str()] {
        let r = chat(bad, json!({ "message": "hi" }));
        r.expect_error(401, "Invalid API key");
        assert!(r.body.get("details").is_none());
    }
    let r = request("POST", "/api/chat", None, Body::Json(json!({ "message": "hi" })), &[("Authorization", &basic)]);
    r.expect_error(401, "Invalid API key");
}

#[test]
fn bad_bodies_name_the_field_and_create_nothing() {
    let ws = Workspace::new();
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "x".repeat(101) }), "name"),
        (json!({ "name": 5 }), "name"),
        (json!({ "name": "ok", "expiresAt": "2001-01-01T00:00:00Z" }), "expiresAt"),
        (json!({ "name": "ok", "expiresAt": "next week" }), "expiresAt"),
        (json!({ "name": "ok", "rateLimitPerMinute": 0 }), "rateLimitPerMinute"),
        (json!({ "name": "ok", "rateLimitPerMinute": 100_001 }), "rateLimitPerMinute"),
        (json!({ "name": "ok", "rateLimitPerMinute": "10" }), "rateLimitPerMinute"),
    ] {
        let r = ws.create_key_with(body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.raw);
    }
    request("POST", "/api/settings/api-keys", Some(&ws.admin_token), Body::Raw("{oops"), &[])
        .expect_error(400, "Malformed JSON");
    assert!(ws.keys().is_empty());
}

#[test]
fn an_expired_key_is_told_so() {
    let ws = Workspace::new();
    let soon = iso_in(Duration::from_secs(2));
    let r = ws.create_key_with(json!({ "name": "short-lived", "expiresAt": soon }));
    r.expect(201);
    let key = r.body["key"].as_str().unwrap().to_owned();
    chat(&key, json!({ "message": "quick" })).expect(200);
    std::thread::sleep(Duration::from_millis(2500));
    chat(&key, json!({ "message": "too late" })).expect_error(401, "API key expired");
}

#[test]
fn the_audit_log_records_key_changes_newest_first() {
    let ws = Workspace::new();
    let r = ws.create_key_with(json!({ "name": "audited" }));
    let id = r.body["id"].as_str().unwrap().to_owned();
    delete(&format!("/api/settings/api-keys/{id}"), Some(&ws.admin_token)).expect(204);
    let log = get("/api/settings/audit-log", Some(&ws.admin_token));
    log.expect(200);
    let entries = log.body["entries"].as_array().unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["api_key.deleted", "api_key.created"]);
    assert!(entries.iter().all(|e| e["target"] == id.as_str() && e["actor"] == "Ada Admin"));
    // The deleted key is still named: the entries keep its name and display prefix.
    let prefix = r.body["prefix"].as_str().unwrap();
    assert!(prefix.starts_with("atv2_"));
    for e in entries {
        assert_eq!((e["targetName"].as_str(), e["targetPrefix"].as_str()), (Some("audited"), Some(prefix)), "{e}");
    }
    assert!(ws.keys().is_empty());
    // Another workspace sees none of it.
    let other = Workspace::new();
    let theirs = get("/api/settings/audit-log", Some(&other.admin_token));
    assert!(theirs.body["entries"].as_array().unwrap().is_empty());
}

/// An ISO 8601 UTC time `ahead` from now, formatted by the service's own formatter.
fn iso_in(ahead: Duration) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap() + ahead;
    attive_api::domain::time::to_iso(now.as_millis() as i64)
}
