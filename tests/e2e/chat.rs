//! `POST /api/chat`: the seed's contract, agents, history, the LLM call and its failures.

use std::thread;

use serde_json::{json, Value};

use crate::support::*;

fn roles_and_contents(request: &Value) -> Vec<(String, String)> {
    request["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect()
}

fn messages_of(key: &str, chat_id: &str) -> Vec<Value> {
    let r = get(&format!("/api/chats/{chat_id}"), Some(key));
    r.expect(200);
    r.body["messages"].as_array().unwrap().clone()
}

#[test]
fn a_new_chat_then_a_continuation_sends_the_full_history_in_order() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("hist-");
    let agent = ws.agent(&format!("You analyse renewal risk. {tag}"), Some("agent-model-1"));

    let first = chat(&key, json!({ "message": "What are the top deals?", "agentId": agent }));
    first.expect(200);
    let mut fields: Vec<&str> = first.body.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    // The seed's three fields, and the sources (none: this workspace holds no records).
    assert_eq!(fields, ["chatId", "messageId", "response", "sources"]);
    assert_eq!(first.body["sources"], json!([]));
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    assert!(chat_id.starts_with("chat_") && first.body["messageId"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(first.body["response"], "Stub reply to: What are the top deals?");

    let second = chat(&key, json!({ "message": "Can you break that down by region?", "chatId": chat_id }));
    second.expect(200);
    assert_eq!(second.body["chatId"], chat_id.as_str());
    // The critical path: one round trip to the workspace's object and one call to the key's
    // limiter before the LLM, one batch after it, and no D1 statement at all.
    let timing = second.header("server-timing").unwrap_or_default();
    for part in [
        "auth-read;dur=",
        "rate-limit;dur=",
        "llm;dur=",
        "persist;dur=",
        "d1;desc=\"round trips\";dur=0",
        "ws;desc=\"workspace object round trips\";dur=2",
        "do;desc=\"durable object calls\";dur=1",
    ] {
        assert!(timing.contains(part), "{part} missing in Server-Timing: {timing}");
    }

    let seen = stub::requests(&tag);
    assert_eq!(seen.len(), 2);
    let system = format!("You analyse renewal risk. {tag}");
    assert_eq!(
        roles_and_contents(&seen[1]),
        [
            ("system".to_owned(), system.clone()),
            ("user".to_owned(), "What are the top deals?".to_owned()),
            ("assistant".to_owned(), "Stub reply to: What are the top deals?".to_owned()),
            ("user".to_owned(), "Can you break that down by region?".to_owned()),
        ]
    );
    assert_eq!(seen[1]["body"]["model"], "agent-model-1");
    assert_eq!(seen[1]["path"], "/v1/chat/completions");
    assert_eq!(seen[1]["authorization"], format!("Bearer {}", llm_api_key()).as_str());

    let stored = messages_of(&key, &chat_id);
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3]["id"], second.body["messageId"]);
    assert_eq!(stored[3]["model"], "agent-model-1");
    assert!(stored[3]["promptTokens"].as_i64().is_some() && stored[3]["latencyMs"].as_i64().is_some());
}

#[test]
fn without_an_agent_the_default_assistant_and_model_are_used() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("default-");
    chat(&key, json!({ "message": format!("hello {tag}"), "agentId": null, "chatId": null, "extra": true }))
        .expect(200);
    let seen = stub::requests(&tag);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body"]["model"], "stub-default-model");
    assert_eq!(
        roles_and_contents(&seen[0])[0],
        ("system".to_owned(), "You are the default Attive test assistant.".to_owned())
    );
}

#[test]
fn the_seed_python_example_flow_works_as_written() {
    let ws = Workspace::new();
    let key = ws.key();
    let script = include_str!("seed_example.py");
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("BASE_URL", base_url())
        .env("API_KEY", &key)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Response: Stub reply to: What's our current pipeline value?"), "{stdout}");
    assert!(stdout.contains("Follow-up: Stub reply to: How does that compare to last quarter?"), "{stdout}");
}

#[test]
fn message_length_is_counted_in_characters() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&key, json!({ "message": "x".repeat(10_000) })).expect(200);
    chat(&key, json!({ "message": "😀".repeat(10_000) })).expect(200);
    chat(&key, json!({ "message": "日".repeat(10_000) })).expect(200);
    let r = chat(&key, json!({ "message": "x".repeat(10_001) }));
    r.expect(400);
    assert_eq!(r.body["details"]["field"], "message");
}

#[test]
fn bad_requests_get_exact_errors_and_store_nothing() {
    let ws = Workspace::new();
    let key = ws.key();
    for (body, field) in [
        (json!({}), "message"),
        (json!({ "message": "" }), "message"),
        (json!({ "message": "  \n " }), "message"),
        (json!({ "message": 7 }), "message"),
        (json!({ "message": "hi", "agentId": 5 }), "agentId"),
        (json!({ "message": "hi", "chatId": ["x"] }), "chatId"),
        (json!("just a string"), "body"),
    ] {
        let r = chat(&key, body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.raw);
        assert!(r.error().starts_with("Invalid request"));
    }
    request("POST", "/api/chat", Some(&key), Body::Raw("{\"message\": \"unterminated"), &[])
        .expect_error(400, "Malformed JSON");
    chat(&key, json!({ "message": "hi", "chatId": "chat_doesnotexist" })).expect_error(404, "Chat not found");
    chat(&key, json!({ "message": "hi", "agentId": "agent_renewal_risk_123" })).expect_error(404, "Agent not found");
    let r = get("/api/chats", Some(&key));
    assert!(r.body["chats"].as_array().unwrap().is_empty(), "{}", r.raw);
}

#[test]
fn agents_and_chats_of_another_workspace_are_not_found() {
    let (a, b) = (Workspace::new(), Workspace::new());
    let a_agent = a.agent("A's agent", None);
    let b_key = b.key();
    chat(&b_key, json!({ "message": "hi", "agentId": a_agent })).expect_error(404, "Agent not found");
    let a_chat = chat(&a.key(), json!({ "message": "hi" }));
    let a_chat_id = a_chat.body["chatId"].as_str().unwrap();
    chat(&b_key, json!({ "message": "hi", "chatId": a_chat_id })).expect_error(404, "Chat not found");
    delete(&format!("/api/chats/{a_chat_id}"), Some(&b_key)).expect_error(404, "Chat not found");
}

#[test]
fn a_chat_keeps_its_agent() {
    let ws = Workspace::new();
    let key = ws.key();
    let (one, two) = (ws.agent("one", None), ws.agent("two", None));
    let first = chat(&key, json!({ "message": "hi", "agentId": one }));
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    chat(&key, json!({ "message": "again", "chatId": chat_id, "agentId": one })).expect(200);
    chat(&key, json!({ "message": "switch", "chatId": chat_id, "agentId": two })).expect_error(400, "Agent mismatch");
    let plain = chat(&key, json!({ "message": "no agent" }));
    let plain_id = plain.body["chatId"].as_str().unwrap();
    chat(&key, json!({ "message": "add agent", "chatId": plain_id, "agentId": one }))
        .expect_error(400, "Agent mismatch");
    assert_eq!(messages_of(&key, &chat_id).len(), 4);
}

#[test]
fn continuing_a_chat_whose_agent_was_deleted_is_agent_not_found() {
    let ws = Workspace::new();
    let key = ws.key();
    let agent = ws.agent("soon gone", None);
    let first = chat(&key, json!({ "message": "hi", "agentId": agent }));
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    delete(&format!("/api/settings/agents/{agent}"), Some(&ws.admin_token)).expect(204);
    let r = chat(&key, json!({ "message": "still there?", "chatId": chat_id }));
    r.expect_error(404, "Agent not found");
    assert!(r.body["details"].as_str().unwrap().contains("deleted"));
    // The chat itself stays readable.
    assert_eq!(messages_of(&key, &chat_id).len(), 2);
}

/// `failing` are the stand-in's answers to the failing call (one per attempt it makes); the
/// caller's own retry then gets "recovered". The chat must hold exactly the good turns.
fn upstream_failure_leaves_the_chat_clean(failing: &[Value], status: u16, error: &str) {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("fail-");
    let first = chat(&key, json!({ "message": format!("start {tag}") }));
    first.expect(200);
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    let mut steps = failing.to_vec();
    steps.push(json!({ "reply": "recovered" }));
    stub::script(&tag, Value::Array(steps));
    let r = chat(&key, json!({ "message": format!("this fails {tag}"), "chatId": chat_id }));
    r.expect_error(status, error);
    assert!(!r.raw.contains(&llm_api_key()));
    assert_eq!(messages_of(&key, &chat_id).len(), 2, "a failed turn must store nothing");
    let retry = chat(&key, json!({ "message": format!("this fails {tag}"), "chatId": chat_id }));
    retry.expect(200);
    assert_eq!(retry.body["response"], "recovered");
    let stored = messages_of(&key, &chat_id);
    let roles: Vec<&str> = stored.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(stored[2]["content"], format!("this fails {tag}").as_str());
    assert_eq!(stored[3]["content"], "recovered");
    // The stand-in saw: the first turn, the failing attempts, the successful retry.
    assert_eq!(stub::requests(&tag).len(), 1 + failing.len() + 1);
}

#[test]
fn upstream_500_is_a_502_and_the_chat_continues_cleanly() {
    // The call and its one automatic retry both get a 500.
    let e500 = json!({ "status": 500 });
    upstream_failure_leaves_the_chat_clean(&[e500.clone(), e500], 502, "Upstream error");
}

#[test]
fn malformed_upstream_body_is_a_502_and_the_chat_continues_cleanly() {
    // A body that is not a completion is not retried: retrying would not make it one.
    upstream_failure_leaves_the_chat_clean(&[json!({ "malformed": true })], 502, "Upstream error");
}

#[test]
fn upstream_hang_is_a_504_and_the_chat_continues_cleanly() {
    // The stand-in answers after 8 s; the test Worker's LLM_TIMEOUT_MS is 3 s.
    upstream_failure_leaves_the_chat_clean(&[json!({ "delay_ms": 8000 })], 504, "Upstream timeout");
}

#[test]
fn a_failed_first_turn_creates_no_chat() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("firstfail-");
    stub::script(&tag, json!([{ "malformed": true }]));
    chat(&key, json!({ "message": tag })).expect_error(502, "Upstream error");
    assert!(get("/api/chats", Some(&key)).body["chats"].as_array().unwrap().is_empty());
}

#[test]
fn one_retry_absorbs_a_single_upstream_failure() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("flaky-");
    stub::script(&tag, json!([{ "status": 503, "headers": { "Retry-After": "1" } }, { "reply": "second time lucky" }]));
    let r = chat(&key, json!({ "message": tag }));
    r.expect(200);
    assert_eq!(r.body["response"], "second time lucky");
    assert_eq!(stub::requests(&tag).len(), 2);
    // A client error is not retried.
    let tag = unique("badreq-");
    stub::script(&tag, json!([{ "status": 400 }, { "reply": "never" }]));
    chat(&key, json!({ "message": tag })).expect_error(502, "Upstream error");
    assert_eq!(stub::requests(&tag).len(), 1);
}

#[test]
fn concurrent_messages_to_one_chat_are_all_stored_in_order() {
    let ws = Workspace::new();
    let key = ws.key();
    let first = chat(&key, json!({ "message": "start" }));
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    let handles: Vec<_> = (0..6)
        .map(|i| {
            let (key, chat_id) = (key.clone(), chat_id.clone());
            thread::spawn(move || chat(&key, json!({ "message": format!("parallel {i}"), "chatId": chat_id })).status)
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 200);
    }
    let stored = messages_of(&key, &chat_id);
    assert_eq!(stored.len(), 14);
    for pair in stored.chunks(2) {
        assert_eq!(pair[0]["role"], "user");
        assert_eq!(pair[1]["role"], "assistant");
        let question = pair[0]["content"].as_str().unwrap();
        assert_eq!(pair[1]["content"], format!("Stub reply to: {question}").as_str());
    }
}

#[test]
fn agents_are_managed_by_admins_and_audited() {
    let ws = Workspace::new();
    let token = Some(ws.admin_token.as_str());
    let r =
        post("/api/settings/agents", token, json!({ "name": "Renewal Risk", "instructions": "Assess renewal risk." }));
    r.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("agent_"));
    assert_eq!(r.body["model"], Value::Null);
    let patch = request(
        "PATCH",
        &format!("/api/settings/agents/{id}"),
        token,
        Body::Json(json!({ "model": "gpt-4o", "name": "Risk" })),
        &[],
    );
    patch.expect(200);
    assert_eq!((patch.body["model"].clone(), patch.body["name"].clone()), (json!("gpt-4o"), json!("Risk")));
    assert_eq!(patch.body["instructions"], "Assess renewal risk.");
    let reset =
        request("PATCH", &format!("/api/settings/agents/{id}"), token, Body::Json(json!({ "model": null })), &[]);
    assert_eq!(reset.body["model"], Value::Null);
    let got = get(&format!("/api/settings/agents/{id}"), token);
    got.expect(200);
    assert_eq!(got.body["name"], "Risk");
    assert_eq!(get("/api/settings/agents", token).body["agents"].as_array().unwrap().len(), 1);
    let bad = post("/api/settings/agents", token, json!({ "name": "x", "instructions": "i".repeat(20_001) }));
    bad.expect(400);
    assert_eq!(bad.body["details"]["field"], "instructions");
    request("PATCH", &format!("/api/settings/agents/{id}"), token, Body::Json(json!({})), &[]).expect(400);
    delete(&format!("/api/settings/agents/{id}"), token).expect(204);
    get(&format!("/api/settings/agents/{id}"), token).expect_error(404, "Agent not found");
    let other = Workspace::new();
    get(&format!("/api/settings/agents/{id}"), Some(&other.admin_token)).expect_error(404, "Agent not found");
    let log = get("/api/settings/audit-log", token);
    let actions: Vec<&str> =
        log.body["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["agent.deleted", "agent.updated", "agent.updated", "agent.created"]);
    // Each entry names the agent as it was called then; agents have no prefix.
    let names: Vec<&str> =
        log.body["entries"].as_array().unwrap().iter().map(|e| e["targetName"].as_str().unwrap()).collect();
    assert_eq!(names, ["Risk", "Risk", "Risk", "Renewal Risk"]);
    assert!(log.body["entries"].as_array().unwrap().iter().all(|e| e["targetPrefix"].is_null()));
}
