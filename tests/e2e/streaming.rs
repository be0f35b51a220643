//! Streamed answers (Server-Sent Events) on `POST /api/chat`: the event protocol, the
//! provider's failures mid-stream, the caller going away, and what is stored each time.

use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::sse::{self, Stream};
use crate::support::*;

fn messages_of(key: &str, chat_id: &str) -> Vec<Value> {
    let r = get(&format!("/api/chats/{chat_id}"), Some(key));
    r.expect(200);
    r.body["messages"].as_array().unwrap().clone()
}

fn streamed(key: &str, body: Value) -> Stream {
    let mut body = body;
    body["stream"] = json!(true);
    sse::chat(key, body, &[], None)
}

/// The stored assistant message of a finished stream, found by its `messageId`.
fn stored_answer(key: &str, s: &Stream) -> Value {
    let start = &s.events[0].data;
    let chat_id = start["chatId"].as_str().unwrap();
    let id = start["messageId"].as_str().unwrap();
    messages_of(key, chat_id).into_iter().find(|m| m["id"] == id).unwrap_or_else(|| panic!("{id} not stored"))
}

#[test]
fn a_stream_sends_start_deltas_and_done_and_stores_exactly_what_it_sent() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("sse-");
    let pieces = ["Top deals: ", "Acme Corp ", "$500,000, ", "TechStart ", "$350,000 😀", "."];
    stub::script(&tag, json!([{ "chunks": pieces, "usage": { "prompt_tokens": 11, "completion_tokens": 7 } }]));
    let s = sse::chat(
        &key,
        json!({ "message": format!("top deals {tag}"), "stream": true }),
        &[("Accept-Encoding", "gzip, deflate, br")],
        None,
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream; charset=utf-8"));
    assert_eq!(s.header("cache-control"), Some("no-cache"));
    assert_eq!(s.header("content-encoding"), None, "an SSE stream must never be compressed");
    assert!(s.header("x-request-id").is_some());
    assert!(s.header("ratelimit-limit").is_some() && s.header("ratelimit-remaining").is_some());
    s.assert_well_formed();
    assert_eq!(s.last().name, "done");
    let start = &s.events[0].data;
    assert!(start["chatId"].as_str().unwrap().starts_with("chat_"));
    assert!(start["messageId"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(start["requestId"].as_str(), s.header("x-request-id"));
    assert_eq!(start["model"], "stub-default-model");
    assert_eq!(start["sources"], json!([]));
    assert_eq!(s.text(), pieces.concat());
    assert!(s.names().iter().filter(|n| **n == "delta").count() >= 2);
    let done = &s.last().data;
    assert_eq!(done["chatId"], start["chatId"]);
    assert_eq!(done["messageId"], start["messageId"]);
    assert_eq!(done["finishReason"], "stop");
    assert_eq!(done["usage"], json!({ "promptTokens": 11, "completionTokens": 7, "estimated": false }));
    // `done` means stored: the chat already shows the whole answer.
    let stored = stored_answer(&key, &s);
    assert_eq!(stored["content"], pieces.concat().as_str());
    assert_eq!(stored["status"], "complete");
    assert_eq!((stored["promptTokens"].clone(), stored["completionTokens"].clone()), (json!(11), json!(7)));
    // The provider was asked for a stream with usage.
    let seen = stub::requests(&tag);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["body"]["stream"], true);
    assert_eq!(seen[0]["body"]["stream_options"]["include_usage"], true);
}

#[test]
fn the_mode_is_chosen_by_the_body_then_the_accept_header() {
    let ws = Workspace::new();
    let key = ws.key();
    let s = sse::chat(&key, json!({ "message": "via accept" }), &[("Accept", "text/event-stream")], None);
    assert_eq!(s.status, 200);
    s.assert_well_formed();
    assert_eq!(s.last().name, "done");
    // stream:false wins over Accept, and gives exactly today's JSON.
    let r = request(
        "POST",
        "/api/chat",
        Some(&key),
        Body::Json(json!({ "message": "plain", "stream": false })),
        &[("Accept", "text/event-stream")],
    );
    r.expect(200);
    let mut fields: Vec<&str> = r.body.as_object().unwrap().keys().map(String::as_str).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["chatId", "messageId", "response", "sources"]);
    assert!(r.header("content-type").unwrap().starts_with("application/json"));
    for bad in [json!("yes"), json!(1), json!(null), json!({})] {
        let r = chat(&key, json!({ "message": "x", "stream": bad }));
        r.expect(400);
        assert_eq!(r.body["details"]["field"], "stream", "{}", r.raw);
    }
}

#[test]
fn the_first_delta_arrives_before_the_provider_has_finished() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("pace-");
    stub::script(&tag, json!([{ "chunks": ["one ", "two ", "three ", "four ", "five"], "chunk_delay_ms": 300 }]));
    let s = streamed(&key, json!({ "message": tag }));
    s.assert_well_formed();
    let first_delta = s.events.iter().find(|e| e.name == "delta").expect("a delta").at;
    let seen = stub::requests(&tag);
    let provider_done = seen[0]["done_at"].as_f64().expect("the stand-in finished");
    assert!(
        first_delta < provider_done,
        "first delta at {first_delta}, provider done at {provider_done}: the answer was buffered"
    );
}

#[test]
fn failures_before_the_stream_starts_are_todays_json_errors_and_store_nothing() {
    let ws = Workspace::new();
    let key = ws.key();
    let check = |s: &Stream, status: u16, error: &str| {
        assert_eq!(s.status, status, "{}", s.body);
        assert_eq!(s.body["error"], error);
        assert!(s.header("content-type").unwrap_or("").starts_with("application/json"));
    };
    check(&sse::chat("atv_nope", json!({ "message": "x", "stream": true }), &[], None), 401, "Invalid API key");
    check(
        &streamed(&key, json!({ "message": "" })),
        400,
        "Invalid request: message must be a string of 1 to 10000 characters, not only whitespace",
    );
    check(&streamed(&key, json!({ "message": "x", "chatId": "chat_nope" })), 404, "Chat not found");
    check(&streamed(&key, json!({ "message": "x", "agentId": "agent_nope" })), 404, "Agent not found");
    let tag = unique("pre-");
    stub::script(&tag, json!([{ "status": 500 }]));
    check(&streamed(&key, json!({ "message": tag })), 502, "Upstream error");
    let tag = unique("slowhead-");
    stub::script(&tag, json!([{ "first_byte_delay_ms": 8000 }]));
    check(&streamed(&key, json!({ "message": tag })), 504, "Upstream timeout");
    let limited = ws.create_key_with(json!({ "name": "one", "rateLimitPerMinute": 1 }));
    let limited = limited.body["key"].as_str().unwrap().to_owned();
    streamed(&limited, json!({ "message": "first" })).assert_well_formed();
    let s = streamed(&limited, json!({ "message": "second" }));
    check(&s, 429, "Rate limit exceeded");
    assert!(s.header("retry-after").is_some());
    // Only the one good stream of the limited key was stored.
    let listed = get("/api/chats", Some(&key));
    assert_eq!(listed.body["chats"].as_array().unwrap().len(), 1, "{}", listed.raw);
}

/// A provider stream that fails after two pieces: an `error` event with `code`, never `done`,
/// and the partial answer stored as incomplete.
fn broken_stream(step: Value, code: &str) {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("broken-");
    let mut step = step;
    step["chunks"] = json!(["Partial ", "answer ", "never ", "finished"]);
    stub::script(&tag, json!([step]));
    let s = streamed(&key, json!({ "message": tag }));
    assert_eq!(s.status, 200);
    s.assert_well_formed();
    assert!(!s.names().contains(&"done"));
    let error = &s.last().data;
    assert_eq!(s.last().name, "error");
    assert_eq!(error["details"]["code"], code, "{error}");
    assert!(error["error"].as_str().is_some_and(|e| !e.is_empty()));
    assert_eq!(error["chatId"], s.events[0].data["chatId"]);
    assert_eq!(error["messageId"], s.events[0].data["messageId"]);
    assert_eq!(error["requestId"].as_str(), s.header("x-request-id"));
    assert_eq!(s.text(), "Partial answer ");
    let stored = stored_answer(&key, &s);
    assert_eq!(stored["status"], "incomplete");
    assert_eq!(stored["content"], "Partial answer ");
    assert!(stored["completionTokens"].as_i64().unwrap_or(0) > 0, "usage is estimated, never zero: {stored}");
    assert_eq!(stored["usageEstimated"], true);
}

#[test]
fn a_cleanly_closed_unfinished_provider_stream_is_upstream_truncated() {
    broken_stream(json!({ "truncate_after": 2 }), "upstream_truncated");
}

#[test]
fn a_reset_provider_connection_is_upstream_error() {
    broken_stream(json!({ "reset_after": 2 }), "upstream_error");
}

#[test]
fn an_in_band_provider_error_is_upstream_error() {
    broken_stream(json!({ "error_after": 2 }), "upstream_error");
}

#[test]
fn a_stalled_provider_is_upstream_timeout_and_is_hung_up_on() {
    // The test Worker's LLM_TIMEOUT_MS (3 s) bounds each gap between chunks.
    broken_stream(json!({ "stall_after": 2 }), "upstream_timeout");
}

#[test]
fn a_stall_hangs_up_on_the_provider() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("stall-");
    stub::script(&tag, json!([{ "chunks": ["a", "b", "c"], "stall_after": 1 }]));
    let s = streamed(&key, json!({ "message": tag }));
    assert_eq!(s.last().data["details"]["code"], "upstream_timeout");
    // The stand-in notices a closed connection at its next check: give it a moment.
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = stub::requests(&tag)[0].clone();
        if !seen["closed_early"].is_null() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(seen["closed_early"], true, "the provider connection was left open: {seen}");
}

#[test]
fn a_caller_who_disconnects_aborts_the_provider_and_the_partial_answer_is_stored() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("leave-");
    let pieces: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    stub::script(&tag, json!([{ "chunks": pieces, "chunk_delay_ms": 200 }]));
    // start + 2 deltas, then the caller hangs up.
    let s = sse::chat(&key, json!({ "message": tag, "stream": true }), &[], Some(3));
    let left_at = sse::unix_now();
    assert_eq!(s.names(), ["start", "delta", "delta"]);
    let chat_id = s.events[0].data["chatId"].as_str().unwrap().to_owned();
    let message_id = s.events[0].data["messageId"].clone();
    // The provider sees its connection closed, and the turn is stored as incomplete.
    let mut closed_at = None;
    let mut stored = None;
    for _ in 0..100 {
        thread::sleep(Duration::from_millis(100));
        closed_at = closed_at.or_else(|| stub::requests(&tag)[0]["closed_at"].as_f64());
        let r = get(&format!("/api/chats/{chat_id}"), Some(&key));
        if r.status == 200 {
            stored = r.body["messages"].as_array().unwrap().iter().find(|m| m["id"] == message_id).cloned();
        }
        if closed_at.is_some() && stored.is_some() {
            break;
        }
    }
    let closed_at = closed_at.expect("the provider connection was never closed");
    let seen = &stub::requests(&tag)[0];
    assert_eq!(seen["closed_early"], true, "{seen}");
    // Reported, not a speed goal: the provider stopped long before its 8 s answer would end.
    println!("provider hung up on {:.2} s after the caller left", closed_at - left_at);
    assert!(closed_at - left_at < 5.0, "provider closed {:.2} s after the caller left", closed_at - left_at);
    let stored = stored.expect("the partial answer was stored");
    assert_eq!(stored["status"], "incomplete");
    let content = stored["content"].as_str().unwrap();
    assert!(content.starts_with("w0 w1 ") && content.len() < pieces.concat().len(), "{content}");
    assert_eq!(stored["usageEstimated"], true);
}

#[test]
fn a_chat_deleted_mid_stream_ends_with_an_error_never_done() {
    let ws = Workspace::new();
    let key = ws.key();
    let first = chat(&key, json!({ "message": "start" }));
    let chat_id = first.body["chatId"].as_str().unwrap().to_owned();
    let tag = unique("gone-");
    stub::script(&tag, json!([{ "chunks": ["a ", "b ", "c ", "d ", "e"], "chunk_delay_ms": 400 }]));
    let key2 = key.clone();
    let chat2 = chat_id.clone();
    let deleter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(500));
        delete(&format!("/api/chats/{chat2}"), Some(&key2)).expect(204);
    });
    let s = streamed(&key, json!({ "message": tag, "chatId": chat_id }));
    deleter.join().unwrap();
    s.assert_well_formed();
    assert_eq!(s.last().name, "error");
    assert_eq!(s.last().data["details"]["code"], "chat_not_found");
    get(&format!("/api/chats/{chat_id}"), Some(&key)).expect_error(404, "Chat not found");
}

#[test]
fn a_missing_usage_chunk_is_estimated_and_length_is_reported() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("nousage-");
    stub::script(&tag, json!([{ "chunks": ["cut ", "short"], "no_usage": true, "finish_reason": "length" }]));
    let s = streamed(&key, json!({ "message": tag }));
    assert_eq!(s.last().name, "done");
    let done = &s.last().data;
    assert_eq!(done["finishReason"], "length");
    assert_eq!(done["usage"]["estimated"], true);
    assert!(done["usage"]["completionTokens"].as_u64().unwrap() > 0);
    assert!(done["usage"]["promptTokens"].as_u64().unwrap() > 0);
    assert_eq!(stored_answer(&key, &s)["status"], "complete");
}

#[test]
fn an_incomplete_answer_is_left_out_of_the_next_turns_history() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("hist-");
    stub::script(&tag, json!([{ "chunks": ["half ", "an ", "answer"], "truncate_after": 2 }, { "reply": "fine" }]));
    let s = streamed(&key, json!({ "message": format!("first {tag}") }));
    assert_eq!(s.last().data["details"]["code"], "upstream_truncated");
    let chat_id = s.events[0].data["chatId"].as_str().unwrap().to_owned();
    chat(&key, json!({ "message": format!("again {tag}"), "chatId": chat_id })).expect(200);
    let seen = stub::requests(&tag);
    let sent: Vec<(String, String)> = seen[1]["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap().to_owned()))
        .collect();
    // The question stays; the half answer does not.
    assert_eq!(sent[1], ("user".to_owned(), format!("first {tag}")));
    assert!(sent.iter().all(|(_, c)| !c.contains("half an")), "{sent:?}");
    assert_eq!(sent.last().unwrap(), &("user".to_owned(), format!("again {tag}")));
}

#[test]
fn twenty_parallel_streams_each_end_with_their_own_done() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("par-");
    stub::script(&tag, json!([{ "chunks": ["p1 ", "p2 ", "p3"], "chunk_delay_ms": 50 }]));
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let (key, tag) = (key.clone(), tag.clone());
            thread::spawn(move || streamed(&key, json!({ "message": format!("{tag} #{i}") })))
        })
        .collect();
    let streams: Vec<Stream> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ids = std::collections::HashSet::new();
    for s in &streams {
        s.assert_well_formed();
        assert_eq!(s.last().name, "done", "{:?}", s.last().data);
        assert_eq!(s.last().data["messageId"], s.events[0].data["messageId"]);
        assert_eq!(s.text(), "p1 p2 p3");
        ids.insert(s.events[0].data["messageId"].as_str().unwrap().to_owned());
        assert_eq!(stored_answer(&key, s)["status"], "complete");
    }
    assert_eq!(ids.len(), 20);
}

#[test]
fn pings_keep_a_long_first_token_wait_alive() {
    // A Worker of the harness whose LLM_TIMEOUT_MS (25 s) is longer than the ping interval.
    let _turn = SECOND_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let base = std::env::var("ATTIVE_LIMITER_URL").expect("set by tests/e2e.sh");
    let ws = Workspace::on(&base);
    let key = ws.key();
    let tag = unique("think-");
    stub::script(&tag, json!([{ "chunks": ["after ", "thinking"], "first_chunk_delay_ms": 17_000 }]));
    let s = sse::chat_at(&base, &key, json!({ "message": tag, "stream": true }), &[], None);
    s.assert_well_formed();
    assert_eq!(s.last().name, "done");
    assert!(s.pings >= 1, "no ping during 17 s of silence");
    assert_eq!(s.text(), "after thinking");
}
