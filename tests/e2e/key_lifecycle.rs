//! Keys over their life: rolled with a grace period, edited (a new limit applies from the next
//! request), and scoped to some agents.

use serde_json::{json, Value};

use crate::support::*;

fn patch(ws: &Workspace, key_id: &str, body: Value) -> Resp {
    ws.patch_key(key_id, body)
}

fn roll(ws: &Workspace, key_id: &str, body: Value) -> Resp {
    post(&format!("{}/api/settings/api-keys/{key_id}/roll", ws.base), Some(&ws.admin_token), body)
}

fn audit(ws: &Workspace) -> Vec<Value> {
    let r = get(&format!("{}/api/settings/audit-log", ws.base), Some(&ws.admin_token));
    r.expect(200);
    r.body["entries"].as_array().unwrap().clone()
}

/// A key as the create route returns it: `(secret, id)`.
fn key_with(ws: &Workspace, body: Value) -> (String, String) {
    ws.key_with(body)
}

#[test]
fn a_rolled_key_works_beside_its_successor_until_the_grace_period_ends() {
    let ws = Workspace::new();
    let agent = ws.agent("Renewal risk analyst.", None);
    let (old, old_id) =
        key_with(&ws, json!({ "name": "Warehouse sync", "rateLimitPerMinute": 40, "allowedAgentIds": [agent] }));
    chat(&old, json!({ "message": "before", "agentId": agent })).expect(200);

    let rolled_at = std::time::Instant::now();
    let rolled = roll(&ws, &old_id, json!({ "gracePeriodSeconds": 5 }));
    rolled.expect(201);
    let new = rolled.body["key"].as_str().unwrap().to_owned();
    let new_id = rolled.body["id"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert_eq!(rolled.body["name"], "Warehouse sync");
    assert_eq!(rolled.body["rateLimitPerMinute"], 40);
    assert_eq!(rolled.body["allowedAgentIds"], json!([agent]));
    assert_eq!(rolled.body["rolledFrom"], old_id.as_str());
    assert_eq!(rolled.body["previous"]["id"], old_id.as_str());
    assert!(rolled.body.get("lastUsedAt").is_none());

    // The list links the two; the roll is audited.
    let listed = ws.keys();
    let by_id = |id: &str| listed.iter().find(|k| k["id"] == id).unwrap().clone();
    assert_eq!(by_id(&old_id)["rolledTo"], new_id.as_str());
    assert_eq!(by_id(&old_id)["expiresAt"], rolled.body["previous"]["expiresAt"]);
    assert_eq!(by_id(&new_id)["rolledFrom"], old_id.as_str());
    assert!(listed.iter().all(|k| k.get("key").is_none()));
    let entry = audit(&ws).into_iter().find(|e| e["action"] == "api_key.rolled").unwrap();
    assert_eq!(entry["target"], new_id.as_str());
    assert_eq!(entry["details"]["rolledFrom"], old_id.as_str());
    assert_eq!(entry["details"]["gracePeriodSeconds"], 5);

    // Both work during the grace period (the scope came along).
    chat(&old, json!({ "message": "old, in grace", "agentId": agent })).expect(200);
    chat(&new, json!({ "message": "new", "agentId": agent })).expect(200);
    chat(&new, json!({ "message": "new, default assistant" })).expect(403);
    // Rolling it again: it already was.
    roll(&ws, &old_id, json!({})).expect_error(409, "API key already rolled");

    // Until the grace period is over: 5 s after the roll (long enough for the requests above
    // on a busy machine).
    let over = rolled_at + std::time::Duration::from_millis(5_300);
    std::thread::sleep(over.saturating_duration_since(std::time::Instant::now()));
    chat(&old, json!({ "message": "old, after grace", "agentId": agent })).expect_error(401, "API key expired");
    chat(&new, json!({ "message": "new, after grace", "agentId": agent })).expect(200);
    // Expired and unknown keys cannot be rolled.
    roll(&ws, &old_id, json!({})).expect_error(404, "API key not found");
    roll(&ws, "key_0000000000000000000000", json!({})).expect_error(404, "API key not found");
}

#[test]
fn roll_defaults_and_rules() {
    let ws = Workspace::new();
    let (old, old_id) = key_with(&ws, json!({ "name": "Default grace" }));
    // No body at all: a day of grace.
    let rolled =
        request("POST", &format!("/api/settings/api-keys/{old_id}/roll"), Some(&ws.admin_token), Body::None, &[]);
    rolled.expect(201);
    let until = rolled.body["previous"]["expiresAt"].as_str().unwrap();
    let hours = (chrono_like_secs(until) - now_secs()) / 3600.0;
    assert!((23.9..=24.1).contains(&hours), "{until}");
    chat(&old, json!({ "message": "still fine" })).expect(200);
    // Its successor deleted, the old key (still in grace) can be rolled again.
    let successor = rolled.body["id"].as_str().unwrap().to_owned();
    roll(&ws, &old_id, json!({})).expect_error(409, "API key already rolled");
    delete(&format!("/api/settings/api-keys/{successor}"), Some(&ws.admin_token)).expect(204);
    let again = roll(&ws, &old_id, json!({}));
    again.expect(201);
    assert_eq!(ws.keys().iter().find(|k| k["id"] == old_id.as_str()).unwrap()["rolledTo"], again.body["id"]);
    // Grace 0: the old key stops at once.
    let (other, other_id) = key_with(&ws, json!({ "name": "No grace" }));
    roll(&ws, &other_id, json!({ "gracePeriodSeconds": 0 })).expect(201);
    chat(&other, json!({ "message": "too late" })).expect_error(401, "API key expired");
    for bad in [
        json!({ "gracePeriodSeconds": -1 }),
        json!({ "gracePeriodSeconds": 604_801 }),
        json!({ "gracePeriodSeconds": "1" }),
    ] {
        let (_, id) = key_with(&ws, json!({ "name": "bad grace" }));
        let r = roll(&ws, &id, bad);
        r.expect(400);
        assert_eq!(r.body["details"]["field"], "gracePeriodSeconds");
    }
}

fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn chrono_like_secs(iso: &str) -> f64 {
    let n = |a: usize, b: usize| iso[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (y2, m2) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60) as f64 + iso[17..23].parse::<f64>().unwrap()
}

#[test]
fn a_new_limit_applies_from_the_next_request() {
    // Limits of a few requests per minute, so the bucket refills by much less than a request
    // while the test runs (a busy machine included): the counts below are exact.
    let ws = Workspace::new();
    let (key, id) = key_with(&ws, json!({ "name": "Edited", "rateLimitPerMinute": 4 }));
    for _ in 0..3 {
        assert_eq!(chat(&key, json!({ "message": "spend" })).expect(200).header("ratelimit-limit"), Some("4"));
    }
    // Lowered to 3: the three requests just made fill it.
    let r = patch(&ws, &id, json!({ "rateLimitPerMinute": 3 }));
    r.expect(200);
    assert_eq!(r.body["rateLimitPerMinute"], 3);
    let next = chat(&key, json!({ "message": "over" }));
    next.expect_error(429, "Rate limit exceeded");
    assert_eq!(next.header("ratelimit-limit"), Some("3"));
    // Raised to 10: room at once, and exactly 10 requests in all fit.
    patch(&ws, &id, json!({ "rateLimitPerMinute": 10 })).expect(200);
    let mut allowed = 3;
    loop {
        let r = get("/api/chats", Some(&key));
        if r.status == 429 {
            assert_eq!(r.header("ratelimit-limit"), Some("10"));
            break;
        }
        r.expect(200);
        assert_eq!(r.header("ratelimit-limit"), Some("10"));
        allowed += 1;
        assert!(allowed <= 10, "more than the limit got through");
    }
    assert_eq!(allowed, 10);
    // Null: back to the service default (60 on this Worker).
    patch(&ws, &id, json!({ "rateLimitPerMinute": null })).expect(200);
    assert_eq!(chat(&key, json!({ "message": "default" })).expect(200).header("ratelimit-limit"), Some("60"));

    // Audited with the old and new values.
    let changes: Vec<Value> = audit(&ws)
        .into_iter()
        .filter(|e| e["action"] == "api_key.updated")
        .map(|e| e["details"]["changes"]["rateLimitPerMinute"].clone())
        .collect();
    assert_eq!(changes, [json!({"from": 10, "to": null}), json!({"from": 3, "to": 10}), json!({"from": 4, "to": 3})]);

    // A never-used key edited before its first request: the new limit from the start.
    let (fresh, fresh_id) = key_with(&ws, json!({ "name": "Fresh" }));
    patch(&ws, &fresh_id, json!({ "rateLimitPerMinute": 2 })).expect(200);
    chat(&fresh, json!({ "message": "1" })).expect(200);
    chat(&fresh, json!({ "message": "2" })).expect(200);
    chat(&fresh, json!({ "message": "3" })).expect(429);
}

#[test]
fn edits_are_validated_and_audited() {
    let ws = Workspace::new();
    let (key, id) = key_with(&ws, json!({ "name": "Before" }));
    patch(&ws, &id, json!({})).expect(400);
    patch(&ws, "key_0000000000000000000000", json!({ "name": "x" })).expect_error(404, "API key not found");
    for (body, field) in [
        (json!({ "name": "" }), "name"),
        (json!({ "rateLimitPerMinute": 0 }), "rateLimitPerMinute"),
        (json!({ "expiresAt": "2001-01-01T00:00:00Z" }), "expiresAt"),
        (json!({ "allowedAgentIds": [] }), "allowedAgentIds"),
    ] {
        let r = patch(&ws, &id, body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}");
    }
    let r = patch(&ws, &id, json!({ "name": "After", "expiresAt": "2099-01-01T00:00:00Z" }));
    r.expect(200);
    assert_eq!(
        (r.body["name"].as_str(), r.body["expiresAt"].as_str()),
        (Some("After"), Some("2099-01-01T00:00:00.000Z"))
    );
    assert!(r.body.get("key").is_none());
    // `null`: no expiry.
    patch(&ws, &id, json!({ "expiresAt": null })).expect(200);
    assert_eq!(ws.keys()[0]["expiresAt"], Value::Null);
    chat(&key, json!({ "message": "still works" })).expect(200);
    let entry = audit(&ws)
        .into_iter()
        .find(|e| e["action"] == "api_key.updated" && e["details"]["changes"]["name"].is_object());
    let entry = entry.unwrap();
    assert_eq!(entry["details"]["changes"]["name"], json!({ "from": "Before", "to": "After" }));
    assert_eq!(entry["targetName"], "After");
    // Another workspace's admin cannot edit it.
    let other = Workspace::new();
    patch(&other, &id, json!({ "name": "Hijacked" })).expect(404);
}

#[test]
fn a_scoped_key_reaches_only_its_agents_and_never_calls_the_llm_otherwise() {
    let ws = Workspace::new();
    let allowed = ws.agent("You analyse renewal risk.", None);
    let other = ws.agent("You write emails.", None);
    let (scoped, scoped_id) = key_with(&ws, json!({ "name": "Renewal dashboard", "allowedAgentIds": [allowed] }));
    let open = ws.key();
    assert_eq!(ws.keys().iter().find(|k| k["id"] == scoped_id.as_str()).unwrap()["allowedAgentIds"], json!([allowed]));

    let tag = unique("scope-");
    let ok = chat(&scoped, json!({ "message": format!("{tag} allowed"), "agentId": allowed }));
    ok.expect(200);
    let own_chat = ok.body["chatId"].as_str().unwrap().to_owned();
    assert_eq!(stub::requests(&tag).len(), 1);

    let foreign = chat(&open, json!({ "message": "email please", "agentId": other })).expect(200).body["chatId"]
        .as_str()
        .unwrap()
        .to_owned();
    let assistant = chat(&open, json!({ "message": "hello" })).expect(200).body["chatId"].as_str().unwrap().to_owned();
    let chats_before = get("/api/chats?limit=100", Some(&open)).body["chats"].as_array().unwrap().len();

    // Every way out of the scope: 403, nothing stored, no LLM call.
    for body in [
        json!({ "message": format!("{tag} other agent"), "agentId": other }),
        json!({ "message": format!("{tag} default assistant") }),
        json!({ "message": format!("{tag} other agent's chat"), "chatId": foreign }),
        json!({ "message": format!("{tag} assistant's chat"), "chatId": assistant }),
        json!({ "message": format!("{tag} other agent's chat, own agent"), "chatId": foreign, "agentId": allowed }),
        json!({ "message": format!("{tag} streamed"), "agentId": other, "stream": true }),
    ] {
        chat(&scoped, body.clone()).expect_error(403, "Agent not allowed for this key");
    }
    assert_eq!(stub::requests(&tag).len(), 1, "a refused turn reached the LLM");
    assert_eq!(get("/api/chats?limit=100", Some(&open)).body["chats"].as_array().unwrap().len(), chats_before);
    assert_eq!(get(&format!("/api/chats/{foreign}"), Some(&open)).body["messages"].as_array().unwrap().len(), 2);

    // Reading: only its agents' chats; the others are not there for it.
    let listed = get("/api/chats?limit=100", Some(&scoped));
    listed.expect(200);
    let ids: Vec<&str> = listed.body["chats"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [own_chat.as_str()]);
    get(&format!("/api/chats/{own_chat}"), Some(&scoped)).expect(200);
    get(&format!("/api/chats/{foreign}"), Some(&scoped)).expect_error(404, "Chat not found");
    delete(&format!("/api/chats/{foreign}"), Some(&scoped)).expect_error(404, "Chat not found");
    get(&format!("/api/chats/{foreign}"), Some(&open)).expect(200);

    // Unknown agents are named, on create and on edit.
    let ghost = "agent_0000000000000000000000";
    let r = ws.create_key_with(json!({ "name": "x", "allowedAgentIds": [allowed, ghost] }));
    r.expect_error(400, "Unknown agent ids");
    assert_eq!(r.body["details"]["unknown"], json!([ghost]));
    let theirs = Workspace::new().agent("Not yours.", None);
    let r = patch(&ws, &scoped_id, json!({ "allowedAgentIds": [theirs] }));
    r.expect_error(400, "Unknown agent ids");
    assert_eq!(r.body["details"]["unknown"], json!([theirs]));

    // Widened by an edit: the other agent now works, audited from/to.
    patch(&ws, &scoped_id, json!({ "allowedAgentIds": [allowed, other] })).expect(200);
    chat(&scoped, json!({ "message": "now allowed", "agentId": other })).expect(200);
    patch(&ws, &scoped_id, json!({ "allowedAgentIds": null })).expect(200);
    chat(&scoped, json!({ "message": "all agents again" })).expect(200);

    // Deleting an agent removes it from scopes; a key left with none is refused, and told why.
    patch(&ws, &scoped_id, json!({ "allowedAgentIds": [allowed] })).expect(200);
    delete(&format!("/api/settings/agents/{allowed}"), Some(&ws.admin_token)).expect(204);
    assert_eq!(ws.keys().iter().find(|k| k["id"] == scoped_id.as_str()).unwrap()["allowedAgentIds"], json!([]));
    let refused = chat(&scoped, json!({ "message": "anyone?", "agentId": allowed }));
    refused.expect_error(403, "Agent not allowed for this key");
    assert!(refused.body["details"].as_str().unwrap().contains("deleted"), "{}", refused.raw);
}
