//! `Idempotency-Key` on `POST /api/chat`: a retry of a finished request gets its result without
//! calling the LLM again, in the mode the retry asks for; conflicts and reuse are refused;
//! outcomes that stored nothing are forgotten.

use std::thread;

use serde_json::{json, Value};

use crate::support::sse;
use crate::support::*;

fn with_key(key: &str, body: Value, idem: &str) -> Resp {
    request("POST", "/api/chat", Some(key), Body::Json(body), &[("Idempotency-Key", idem)])
}

fn stream_with_key(key: &str, body: Value, idem: &str) -> sse::Stream {
    let mut body = body;
    body["stream"] = json!(true);
    sse::chat(key, body, &[("Idempotency-Key", idem)], None)
}

#[test]
fn a_json_retry_replays_the_same_answer_without_calling_the_llm() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("idem-");
    let idem = unique("retry-");
    let first = with_key(&key, json!({ "message": tag }), &idem);
    first.expect(200);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = with_key(&key, json!({ "message": tag }), &idem);
    again.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(stub::requests(&tag).len(), 1);
    // One stored turn.
    let chat_id = first.body["chatId"].as_str().unwrap();
    assert_eq!(get(&format!("/api/chats/{chat_id}"), Some(&key)).body["messages"].as_array().unwrap().len(), 2);
    // The quoted form of the same key (RFC 8941) is the same key.
    let quoted = with_key(&key, json!({ "message": tag }), &format!("\"{idem}\""));
    assert_eq!(quoted.header("idempotent-replayed"), Some("true"));
}

#[test]
fn a_stream_is_replayed_as_a_stream_or_as_json() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("idems-");
    let idem = unique("k-");
    stub::script(&tag, json!([{ "chunks": ["one ", "two ", "three"] }]));
    let first = stream_with_key(&key, json!({ "message": tag }), &idem);
    first.assert_well_formed();
    assert_eq!(first.last().name, "done");
    let replay = stream_with_key(&key, json!({ "message": tag }), &idem);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    replay.assert_well_formed();
    assert_eq!(replay.names(), ["start", "delta", "done"]);
    assert_eq!(replay.text(), "one two three");
    assert_eq!(replay.events[0].data["chatId"], first.events[0].data["chatId"]);
    assert_eq!(replay.events[0].data["messageId"], first.events[0].data["messageId"]);
    assert_eq!(replay.last().data["usage"], first.last().data["usage"]);
    // The same request without `stream` (and without Accept) is a JSON retry.
    let json_retry = with_key(&key, json!({ "message": tag }), &idem);
    json_retry.expect(200);
    assert_eq!(json_retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(json_retry.body["response"], "one two three");
    assert_eq!(json_retry.body["messageId"], first.events[0].data["messageId"]);
    assert_eq!(stub::requests(&tag).len(), 1);
}

#[test]
fn reuse_with_another_request_is_422_and_keys_are_scoped_to_the_api_key() {
    let ws = Workspace::new();
    let (key, other) = (ws.key(), ws.key());
    let idem = unique("scoped-");
    let tag = unique("scope-");
    with_key(&key, json!({ "message": tag }), &idem).expect(200);
    let r = with_key(&key, json!({ "message": format!("{tag} changed") }), &idem);
    r.expect_error(422, "Idempotency key reused with a different request");
    // The same value under another API key is a key of its own.
    let r = with_key(&other, json!({ "message": tag }), &idem);
    r.expect(200);
    assert_eq!(r.header("idempotent-replayed"), None);
    assert_eq!(stub::requests(&tag).len(), 2);
}

#[test]
fn invalid_keys_are_400() {
    let ws = Workspace::new();
    let key = ws.key();
    for bad in ["k".repeat(256), "\"\"".to_owned(), "\"unterminated".to_owned()] {
        let r = with_key(&key, json!({ "message": "hi" }), &bad);
        r.expect_error(400, "Invalid Idempotency-Key");
        assert!(r.body["details"].as_str().is_some_and(|d| !d.contains(&bad)), "{}", r.raw);
    }
    with_key(&key, json!({ "message": "hi" }), &"k".repeat(255)).expect(200);
    // Nothing was stored for the refused requests.
    assert_eq!(get("/api/chats", Some(&key)).body["chats"].as_array().unwrap().len(), 1);
}

#[test]
fn a_duplicate_while_the_first_runs_is_409_and_twins_call_the_llm_once() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("twin-");
    let idem = unique("twin-");
    stub::script(&tag, json!([{ "delay_ms": 1500 }]));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (key, tag, idem) = (key.clone(), tag.clone(), idem.clone());
            thread::spawn(move || with_key(&key, json!({ "message": tag }), &idem))
        })
        .collect();
    let results: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{:?}", results.iter().map(|r| &r.raw).collect::<Vec<_>>());
    let conflict = results.iter().find(|r| r.status == 409).unwrap();
    assert!(conflict.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()));
    assert_eq!(stub::requests(&tag).len(), 1);
    // Once the first has finished, the duplicate is a replay.
    let r = with_key(&key, json!({ "message": tag }), &idem);
    r.expect(200);
    assert_eq!(r.header("idempotent-replayed"), Some("true"));
    let listed = get("/api/chats", Some(&key));
    assert_eq!(listed.body["chats"].as_array().unwrap().len(), 1);
}

#[test]
fn outcomes_that_stored_nothing_are_forgotten() {
    let ws = Workspace::new();
    let key = ws.key();
    // A 404 (unknown chat) is not remembered: the same key then runs afresh.
    let idem = unique("nf-");
    let r = with_key(&key, json!({ "message": "x", "chatId": "chat_nope" }), &idem);
    r.expect_error(404, "Chat not found");
    with_key(&key, json!({ "message": "x", "chatId": "chat_nope" }), &idem).expect_error(404, "Chat not found");
    // A provider failure before the first byte is not remembered: the retry calls the LLM.
    let tag = unique("fail-");
    let idem = unique("f-");
    stub::script(&tag, json!([{ "status": 500 }, { "status": 500 }, { "reply": "recovered" }]));
    with_key(&key, json!({ "message": tag }), &idem).expect_error(502, "Upstream error");
    let r = with_key(&key, json!({ "message": tag }), &idem);
    r.expect(200);
    assert_eq!(r.body["response"], "recovered");
    assert_eq!(r.header("idempotent-replayed"), None);
    // A 429 is not remembered either: retrying with backoff and one key is safe.
    let limited = ws.create_key_with(json!({ "name": "one", "rateLimitPerMinute": 1 }));
    let limited = limited.body["key"].as_str().unwrap().to_owned();
    chat(&limited, json!({ "message": "spend the budget" })).expect(200);
    let idem = unique("rl-");
    with_key(&limited, json!({ "message": "later" }), &idem).expect_error(429, "Rate limit exceeded");
    with_key(&limited, json!({ "message": "later" }), &idem).expect_error(429, "Rate limit exceeded");
}

#[test]
fn an_incomplete_stream_is_remembered_and_replayed_as_incomplete() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("inc-");
    let idem = unique("inc-");
    stub::script(&tag, json!([{ "chunks": ["half ", "way ", "there"], "truncate_after": 2 }]));
    let first = stream_with_key(&key, json!({ "message": tag }), &idem);
    assert_eq!(first.last().data["details"]["code"], "upstream_truncated");
    let replay = stream_with_key(&key, json!({ "message": tag }), &idem);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    replay.assert_well_formed();
    assert_eq!(replay.names(), ["start", "delta", "error"]);
    assert_eq!(replay.text(), "half way ");
    assert_eq!(replay.last().data["details"]["code"], "upstream_truncated");
    assert_eq!(stub::requests(&tag).len(), 1);
    // As JSON, the same failure the stream reported.
    let r = with_key(&key, json!({ "message": tag }), &idem);
    r.expect(502);
    assert_eq!(r.body["details"]["code"], "upstream_truncated");
}

#[test]
fn requests_with_a_key_make_no_extra_round_trip_before_the_llm() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&key, json!({ "message": "adopt the key" })).expect(200);
    let r = with_key(&key, json!({ "message": "counted" }), &unique("rt-"));
    r.expect(200);
    let timing = r.header("server-timing").unwrap_or_default();
    // One workspace-object batch and one limiter call before the LLM (the key is claimed in
    // the same call that counts the request); after it, the store (the workspace's object)
    // and the result remembered (the limiter).
    assert!(timing.contains("ws;desc=\"workspace object round trips\";dur=2"), "{timing}");
    assert!(timing.contains("do;desc=\"durable object calls\";dur=2"), "{timing}");
    let plain = chat(&key, json!({ "message": "no key" }));
    let timing = plain.header("server-timing").unwrap_or_default();
    assert!(timing.contains("do;desc=\"durable object calls\";dur=1"), "{timing}");
}

/// Runs `sql` on every workspace database (object) of the harness's second Worker, directly in
/// its local state.
fn second_worker_workspaces(sql: &str) {
    let dir = std::env::var("ATTIVE_LIMITER_STATE").expect("ATTIVE_LIMITER_STATE is set by tests/e2e.sh");
    let script = r#"
import glob, os, sqlite3, sys
files = [f for f in glob.glob(os.path.join(sys.argv[1], "**", "*.sqlite"), recursive=True)
         if "-Workspace" in f and not f.endswith("metadata.sqlite")]
assert files, "no local workspace database"
for f in files:
    db = sqlite3.connect(f, timeout=10)
    db.execute(sys.argv[2])
    db.commit()
"#;
    let out = std::process::Command::new("python3").args(["-c", script, &dir, sql]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A storage failure between the claim and the store releases the key: the retry runs afresh
/// instead of answering 409 until the claim goes stale. (Storage is broken for one request by
/// renaming the table every turn reads, on a Worker no other test uses meanwhile.)
#[test]
fn a_storage_failure_after_the_claim_releases_the_key() {
    let _turn = SECOND_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let base = std::env::var("ATTIVE_LIMITER_URL").expect("set by tests/e2e.sh");
    let ws = Workspace::on(&base);
    let key = ws.key();
    let url = format!("{base}/api/chat");
    let tag = unique("claim-");
    // The key's object adopts the key on its first request, so the next one's claim is taken
    // side by side with the load.
    request("POST", &url, Some(&key), Body::Json(json!({ "message": "warm up" })), &[]).expect(200);
    let idem = unique("broken-");
    second_worker_workspaces("ALTER TABLE chats RENAME TO chats_away");
    let failed =
        request("POST", &url, Some(&key), Body::Json(json!({ "message": tag })), &[("Idempotency-Key", &idem)]);
    second_worker_workspaces("ALTER TABLE chats_away RENAME TO chats");
    failed.expect_error(500, "Internal server error");
    let retry = request("POST", &url, Some(&key), Body::Json(json!({ "message": tag })), &[("Idempotency-Key", &idem)]);
    retry.expect(200);
    assert_eq!(retry.header("idempotent-replayed"), None);
    assert_eq!(stub::requests(&tag).len(), 1, "the failed request never reached the LLM");
}
