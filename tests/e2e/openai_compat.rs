//! The OpenAI-compatible API: `/v1/chat/completions` and `/v1/models`, as an OpenAI SDK calls
//! them (the SDKs themselves run in tests/sdk/): shapes, statelessness, the agent's prompt
//! first, caller tools, streaming chunks, errors in OpenAI's shape, idempotency, usage.

use std::io::{BufRead, BufReader};

use serde_json::{json, Value};

use crate::support::*;

fn complete(key: &str, body: Value) -> Resp {
    post("/v1/chat/completions", Some(key), body)
}

fn user(text: &str) -> Value {
    json!([{ "role": "user", "content": text }])
}

#[track_caller]
fn assert_openai_error(r: &Resp, status: u16, kind: &str, code: Option<&str>) {
    r.expect(status);
    let e = &r.body["error"];
    assert!(e.is_object(), "{}", r.raw);
    assert_eq!(e["type"], kind, "{}", r.raw);
    assert_eq!(e["code"], code.map_or(Value::Null, |c| json!(c)), "{}", r.raw);
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.raw);
    assert!(e.get("param").is_some(), "{}", r.raw);
    assert!(r.header("x-request-id").is_some());
}

/// The `data:` payloads of a streamed completion, in order.
fn stream(key: &str, body: Value) -> (u16, Vec<String>) {
    let url = format!("{}/v1/chat/completions", base_url());
    let resp = ureq::post(&url)
        .set("Authorization", &format!("Bearer {key}"))
        .set("Content-Type", "application/json")
        .send_string(&body.to_string());
    let resp = match resp {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("stream: {e}"),
    };
    let status = resp.status();
    assert!(resp.content_type().starts_with("text/event-stream") || status != 200);
    let lines = BufReader::new(resp.into_reader()).lines().map_while(Result::ok);
    (status, lines.filter_map(|l| l.strip_prefix("data: ").map(str::to_owned)).collect())
}

#[test]
fn a_completion_has_openai_shape_and_the_agent_prompt_first() {
    let ws = Workspace::new();
    let key = ws.key();
    ws.put_records(json!([{ "kind": "deal", "externalId": "d1", "title": "Globex expansion", "body": "Globex wants 40 more seats." }]))
        .expect(200);
    let agent = ws.agent("You are the pipeline analyst.", None);
    let tag = unique("v1-");
    stub::script(
        &tag,
        json!([{ "reply": "Globex is growing [S1].", "usage": { "prompt_tokens": 21, "completion_tokens": 5 } }]),
    );
    let r = complete(
        &key,
        json!({
            "model": agent,
            "messages": [
                { "role": "system", "content": "Answer in English." },
                { "role": "user", "content": format!("What about the Globex expansion? {tag}") }
            ],
            "temperature": 0.3, "max_tokens": 77, "stop": ["END"], "seed": 4, "user": "viewer-9", "n": 1,
            "some_future_field": { "ignored": true }
        }),
    );
    r.expect(200);
    let b = &r.body;
    assert!(b["id"].as_str().unwrap().starts_with("chatcmpl-"), "{}", r.raw);
    assert_eq!(b["object"], "chat.completion");
    assert!(b["created"].as_i64().unwrap() > 1_700_000_000);
    assert_eq!(b["model"], agent.as_str());
    assert_eq!(b["system_fingerprint"], Value::Null);
    assert_eq!(b["choices"][0]["index"], 0);
    assert_eq!(b["choices"][0]["message"]["role"], "assistant");
    assert_eq!(b["choices"][0]["message"]["content"], "Globex is growing [S1].");
    assert_eq!(b["choices"][0]["finish_reason"], "stop");
    assert_eq!(b["usage"], json!({ "prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26 }));
    assert_eq!(b["attive"]["sources"][0]["title"], "Globex expansion");
    assert_eq!(b["attive"]["requestId"], r.header("x-request-id").unwrap());
    assert_eq!(b["attive"]["toolCalls"], json!([]));
    assert!(r.header("ratelimit-remaining").is_some());
    // What the provider was sent: the agent's instructions, the knowledge block, the caller's
    // system message after them, then the conversation; and the caller's parameters.
    let sent = stub::requests(&tag);
    assert_eq!(sent.len(), 1);
    let body = &sent[0]["body"];
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0], json!({ "role": "system", "content": "You are the pipeline analyst." }));
    assert!(messages[1]["content"].as_str().unwrap().contains("Globex expansion"), "{}", messages[1]);
    assert_eq!(messages[2], json!({ "role": "system", "content": "Answer in English." }));
    assert_eq!(messages[3]["role"], "user");
    assert_eq!(messages.len(), 4);
    assert_eq!((body["temperature"].clone(), body["max_tokens"].clone()), (json!(0.3), json!(77)));
    assert_eq!(
        (body["stop"].clone(), body["seed"].clone(), body["user"].clone()),
        (json!(["END"]), json!(4), json!("viewer-9"))
    );
    assert!(body.get("some_future_field").is_none());
}

#[test]
fn completions_are_stateless_and_counted_for_the_key() {
    let ws = Workspace::new();
    let (key, key_id) = ws.key_with(json!({ "name": unique("sdk-") }));
    let tag = unique("stateless-");
    stub::script(&tag, json!([{ "reply": "First.", "usage": { "prompt_tokens": 10, "completion_tokens": 2 } }]));
    complete(&key, json!({ "model": "attive-default", "messages": user(&format!("one {tag}")) })).expect(200);
    complete(&key, json!({ "model": "attive-default", "messages": user(&format!("two {tag}")) })).expect(200);
    let sent = stub::requests(&tag);
    assert_eq!(sent.len(), 2);
    let second = sent[1]["body"]["messages"].to_string();
    assert!(!second.contains("one ") && !second.contains("First."), "the second call saw the first: {second}");
    // Nothing stored: no chat.
    let chats = get("/api/chats", Some(&key));
    assert_eq!(chats.body["chats"], json!([]), "{}", chats.raw);
    // The caller's own history is sent as it gave it.
    let r = complete(
        &key,
        json!({ "model": "attive-default", "messages": [
            { "role": "user", "content": format!("three {tag}") },
            { "role": "assistant", "content": "An earlier answer." },
            { "role": "user", "content": [{ "type": "text", "text": "And then?" }] }
        ] }),
    );
    r.expect(200);
    let sent = stub::requests(&tag);
    let messages = sent[2]["body"]["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[2], json!({ "role": "assistant", "content": "An earlier answer." }));
    assert_eq!(messages[3], json!({ "role": "user", "content": "And then?" }));
    let usage = get(&format!("/api/settings/usage?keyId={key_id}"), Some(&ws.admin_token));
    assert_eq!(usage.body["totals"]["requests"], 4, "{}", usage.raw);
    assert_eq!(usage.body["totals"]["promptTokens"], 30, "{}", usage.raw);
}

#[test]
fn models_are_the_agents_a_key_may_use() {
    let ws = Workspace::new();
    let a = ws.agent("A", None);
    let b = ws.agent("B", None);
    let key = ws.key();
    let r = get("/v1/models", Some(&key));
    r.expect(200);
    assert_eq!(r.body["object"], "list");
    let ids: Vec<&str> = r.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["attive-default", a.as_str(), b.as_str()]);
    for m in r.body["data"].as_array().unwrap() {
        assert_eq!((m["object"].clone(), m["owned_by"].clone()), (json!("model"), json!("attive")));
        assert!(m["created"].as_i64().unwrap() > 1_700_000_000);
    }
    let one = get(&format!("/v1/models/{a}"), Some(&key));
    one.expect(200);
    assert_eq!(one.body["id"], a.as_str());
    assert_openai_error(
        &get("/v1/models/agent_nope", Some(&key)),
        404,
        "invalid_request_error",
        Some("model_not_found"),
    );
    // A key scoped to one agent: only it, and never the default assistant.
    let (scoped, _) = ws.key_with(json!({ "name": unique("scoped-"), "allowedAgentIds": [a] }));
    let r = get("/v1/models", Some(&scoped));
    let ids: Vec<&str> = r.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a.as_str()]);
    assert_openai_error(
        &get(&format!("/v1/models/{b}"), Some(&scoped)),
        404,
        "invalid_request_error",
        Some("model_not_found"),
    );
    assert_openai_error(
        &complete(&scoped, json!({ "model": b, "messages": user("hi") })),
        403,
        "permission_error",
        Some("permission_denied"),
    );
    assert_openai_error(
        &complete(&scoped, json!({ "model": "attive-default", "messages": user("hi") })),
        403,
        "permission_error",
        Some("permission_denied"),
    );
}

#[test]
fn errors_take_openai_shape_with_honest_statuses() {
    let ws = Workspace::new();
    let key = ws.key();
    assert_openai_error(
        &post("/v1/chat/completions", None, json!({ "model": "attive-default", "messages": user("x") })),
        401,
        "authentication_error",
        Some("invalid_api_key"),
    );
    assert_openai_error(
        &get("/v1/models", Some("atv_notarealkeyatall")),
        401,
        "authentication_error",
        Some("invalid_api_key"),
    );
    assert_openai_error(
        &complete(&key, json!({ "model": "gpt-4o", "messages": user("x") })),
        404,
        "invalid_request_error",
        Some("model_not_found"),
    );
    assert_openai_error(
        &complete(&key, json!({ "model": "agent_doesnotexist", "messages": user("x") })),
        404,
        "invalid_request_error",
        Some("model_not_found"),
    );
    let r = complete(&key, json!({ "model": "attive-default", "messages": user("x"), "n": 2 }));
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(r.body["error"]["param"], "n");
    let r = complete(&key, json!({ "model": "attive-default", "messages": [] }));
    assert_eq!((r.status, r.body["error"]["param"].clone()), (400, json!("messages")));
    let r = request("POST", "/v1/chat/completions", Some(&key), Body::Raw("{oops"), &[]);
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_openai_error(
        &get("/v1/chat/completions", Some(&key)),
        405,
        "invalid_request_error",
        Some("method_not_allowed"),
    );
    assert_openai_error(&get("/v1/nothing", Some(&key)), 404, "invalid_request_error", Some("not_found"));
    // The provider failing.
    let tag = unique("v1down-");
    stub::script(&tag, json!([{ "status": 500 }]));
    assert_openai_error(
        &complete(&key, json!({ "model": "attive-default", "messages": user(&tag) })),
        502,
        "api_error",
        Some("upstream_error"),
    );
    // The key's rate limit.
    let (small, _) = ws.key_with(json!({ "name": unique("small-"), "rateLimitPerMinute": 1 }));
    complete(&small, json!({ "model": "attive-default", "messages": user("first") })).expect(200);
    let r = complete(&small, json!({ "model": "attive-default", "messages": user("second") }));
    assert_openai_error(&r, 429, "rate_limit_error", Some("rate_limit_exceeded"));
    assert!(r.header("retry-after").is_some());
}

#[test]
fn streams_are_openai_chunks_ending_in_done() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("v1stream-");
    stub::script(
        &tag,
        json!([{ "chunks": ["Hel", "lo ", "there"], "usage": { "prompt_tokens": 8, "completion_tokens": 3 } }]),
    );
    let (status, data) = stream(
        &key,
        json!({ "model": "attive-default", "messages": user(&tag), "stream": true, "stream_options": { "include_usage": true } }),
    );
    assert_eq!(status, 200);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for c in &chunks {
        assert_eq!(
            (c["id"].as_str(), c["object"].as_str(), c["model"].as_str()),
            (Some(id), Some("chat.completion.chunk"), Some("attive-default"))
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello there");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert!(finish["attive"]["requestId"].is_string());
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"], json!({ "prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11 }));
    // Without include_usage: no usage chunk.
    let (_, data) = stream(&key, json!({ "model": "attive-default", "messages": user(&tag), "stream": true }));
    assert!(data.iter().all(|d| !d.contains("\"usage\"")), "{data:?}");
    // A failure after the first chunk: an error event and no [DONE], so SDKs raise.
    let broken = unique("v1broken-");
    stub::script(&broken, json!([{ "chunks": ["Half", " an", " answer"], "error_after": 1 }]));
    let (status, data) = stream(&key, json!({ "model": "attive-default", "messages": user(&broken), "stream": true }));
    assert_eq!(status, 200);
    assert!(!data.contains(&"[DONE]".to_owned()), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{data:?}");
    // A caller tool called in a stream: delta.tool_calls, then finish_reason tool_calls.
    let tooled = unique("v1streamtool-");
    stub::script(&tooled, json!([{ "tool_calls": [{ "name": "get_weather", "arguments": { "city": "Oslo" } }] }]));
    let weather =
        json!({ "type": "function", "function": { "name": "get_weather", "parameters": { "type": "object" } } });
    let (status, data) = stream(
        &key,
        json!({ "model": "attive-default", "messages": user(&tooled), "stream": true, "tools": [weather] }),
    );
    assert_eq!(status, 200);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls.len(), 1, "{data:?}");
    assert_eq!(calls[0][0]["function"]["name"], "get_weather");
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
    // A failure before any chunk is the JSON error of any request.
    let down = unique("v1down-");
    stub::script(&down, json!([{ "status": 500 }]));
    let r = complete(&key, json!({ "model": "attive-default", "messages": user(&down), "stream": true }));
    assert_openai_error(&r, 502, "api_error", Some("upstream_error"));
}

#[test]
fn caller_tools_go_back_to_the_caller() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("v1tools-");
    let weather = json!({ "type": "function", "function": { "name": "get_weather", "description": "Weather of a city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } }, "required": ["city"] } } });
    stub::script(
        &tag,
        json!([{ "tool_calls": [{ "name": "get_weather", "arguments": { "city": "Paris" } }] }, { "reply": "It is sunny in Paris." }]),
    );
    let r = complete(
        &key,
        json!({ "model": "attive-default", "messages": user(&format!("Weather in Paris? {tag}")), "tools": [weather] }),
    );
    r.expect(200);
    let choice = &r.body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{}", r.raw);
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!((call["type"].clone(), call["function"]["name"].clone()), (json!("function"), json!("get_weather")));
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({ "city": "Paris" })
    );
    let sent = stub::requests(&tag);
    let offered: Vec<&str> =
        sent[0]["body"]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert!(offered.contains(&"get_weather"), "{offered:?}");
    // The SDK's loop: the call and its result go back.
    let r = complete(
        &key,
        json!({ "model": "attive-default", "tools": [weather], "messages": [
            { "role": "user", "content": format!("Weather in Paris? {tag}") },
            { "role": "assistant", "content": null, "tool_calls": [call] },
            { "role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C" }
        ] }),
    );
    r.expect(200);
    assert_eq!(r.body["choices"][0]["message"]["content"], "It is sunny in Paris.");
    assert_eq!(r.body["choices"][0]["finish_reason"], "stop");
    let sent = stub::requests(&tag);
    let last = sent.last().unwrap()["body"]["messages"].as_array().unwrap().clone();
    assert_eq!(last[last.len() - 1]["role"], "tool");
    assert_eq!(last[last.len() - 2]["tool_calls"][0]["function"]["name"], "get_weather");
    // A caller tool named like one of the agent's: 400.
    let agent = post(
        "/api/settings/agents",
        Some(&ws.admin_token),
        json!({ "name": unique("tooled-"), "instructions": "Use tools.", "tools": ["search_records"] }),
    );
    agent.expect(201);
    ws.put_records(json!([{ "kind": "deal", "externalId": "x", "title": "X" }])).expect(200);
    let clash = json!({ "type": "function", "function": { "name": "search_records" } });
    let r = complete(&key, json!({ "model": agent.body["id"], "messages": user("x"), "tools": [clash] }));
    assert_openai_error(&r, 400, "invalid_request_error", None);
    assert_eq!(r.body["error"]["param"], "tools");
}

#[test]
fn retries_with_an_idempotency_key_replay_the_completion() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("v1idem-");
    stub::script(&tag, json!([{ "reply": "Once only." }]));
    let body = json!({ "model": "attive-default", "messages": user(&tag) });
    let idem = unique("idem-");
    let first =
        request("POST", "/v1/chat/completions", Some(&key), Body::Json(body.clone()), &[("Idempotency-Key", &idem)]);
    first.expect(200);
    let again = request("POST", "/v1/chat/completions", Some(&key), Body::Json(body), &[("Idempotency-Key", &idem)]);
    again.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["choices"], first.body["choices"]);
    assert_eq!(stub::requests(&tag).len(), 1);
    // Another body under the same key: 422.
    let other = json!({ "model": "attive-default", "messages": user("something else") });
    let r = request("POST", "/v1/chat/completions", Some(&key), Body::Json(other), &[("Idempotency-Key", &idem)]);
    assert_openai_error(&r, 422, "invalid_request_error", Some("idempotency_mismatch"));
}
