//! More than one LLM provider: Anthropic's Messages API spoken natively, ordered fallbacks per
//! agent and for the service, what falls back and what does not, and what the caller sees of
//! it. The harness's providers Worker (`ATTIVE_PROVIDERS_URL`) has `default` (the stand-in's
//! `/v1`), `claude` (Anthropic wire, `/claude/v1`), `backup` (`/backup/v1`, also the service's
//! fallback through `LLM_FALLBACKS`) and `down` (nothing listens).

use serde_json::{json, Value};

use crate::support::sse;
use crate::support::*;

const CLAUDE: &str = "/claude/v1/messages";
const BACKUP: &str = "/backup/v1/chat/completions";

fn base() -> String {
    std::env::var("ATTIVE_PROVIDERS_URL").expect("ATTIVE_PROVIDERS_URL is set by tests/e2e.sh")
}

fn agent_with(ws: &Workspace, routing: Value) -> String {
    let mut body = json!({ "name": unique("agent-"), "instructions": "You answer about providers." });
    for (k, v) in routing.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = post(&format!("{}/api/settings/agents", ws.base), Some(&ws.admin_token), body);
    r.expect(201);
    r.body["id"].as_str().unwrap().to_owned()
}

fn chat_at(key: &str, body: Value) -> Resp {
    post(&format!("{}/api/chat", base()), Some(key), body)
}

fn stream_at(key: &str, body: Value) -> sse::Stream {
    let mut body = body;
    body["stream"] = json!(true);
    sse::chat_at(&base(), key, body, &[], None)
}

/// Requests of `tag` the stand-in saw, by provider path.
fn seen(tag: &str, path_end: &str) -> Vec<Value> {
    stub::requests(tag).into_iter().filter(|r| r["path"].as_str().is_some_and(|p| p.ends_with(path_end))).collect()
}

fn default_seen(tag: &str) -> Vec<Value> {
    stub::requests(tag).into_iter().filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with("/v1/"))).collect()
}

fn llm_headers(r: &Resp) -> (String, String, String) {
    let h = |n: &str| r.header(n).unwrap_or("<none>").to_owned();
    (h("x-llm-provider"), h("x-llm-model"), h("x-llm-attempts"))
}

#[test]
fn an_agent_on_anthropic_answers_json_and_streams_through_the_messages_api() {
    let ws = Workspace::on(&base());
    let agent = agent_with(&ws, json!({ "provider": "claude", "model": "claude-test" }));
    let key = ws.key();
    let tag = unique("claude-");
    stub::script_at(
        &tag,
        CLAUDE,
        json!([{ "reply": "Hello from Claude", "usage": {
        "input_tokens": 10, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2, "output_tokens": 4 } }]),
    );
    let r = chat_at(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    r.expect(200);
    assert_eq!(r.body["response"], "Hello from Claude");
    assert_eq!(llm_headers(&r), ("claude".into(), "claude-test".into(), "1".into()));
    // The wire's rules, as the stand-in checked them.
    let sent = seen(&tag, CLAUDE);
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req["rejected"], Value::Null, "{req}");
    assert_eq!(req["x-api-key"].as_str(), Some(std::env::var("ANTHROPIC_API_KEY").unwrap().as_str()));
    assert_eq!(req["anthropic-version"], "2023-06-01");
    assert_eq!(req["authorization"], Value::Null);
    assert_eq!(req["body"]["max_tokens"], 1024);
    assert!(req["body"]["system"].as_str().is_some_and(|s| s.contains("You answer about providers.")));
    assert!(req["body"]["messages"].as_array().unwrap().iter().all(|m| m["role"] != "system"));
    // Stored with who answered; usage sums the cache tokens into the prompt.
    let chat = get(&format!("{}/api/chats/{}", base(), r.body["chatId"].as_str().unwrap()), Some(&key));
    let answer = &chat.body["messages"][1];
    assert_eq!((answer["provider"].clone(), answer["attempts"].clone()), (json!("claude"), json!(1)));
    assert_eq!((answer["promptTokens"].clone(), answer["completionTokens"].clone()), (json!(17), json!(4)));

    // Streamed: the same answer in deltas, `start` naming the provider, usage from the events.
    let tag = unique("claude-stream-");
    stub::script_at(
        &tag,
        CLAUDE,
        json!([{ "chunks": ["Str", "eamed ", "Claude"], "usage": { "input_tokens": 9, "output_tokens": 3 } }]),
    );
    let s = stream_at(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    s.assert_well_formed();
    assert_eq!(s.text(), "Streamed Claude");
    assert_eq!(s.events[0].data["provider"], "claude");
    assert_eq!(s.header("x-llm-provider"), Some("claude"));
    let done = s.last();
    assert_eq!(done.name, "done");
    assert_eq!(done.data["finishReason"], "stop");
    assert_eq!(done.data["usage"]["promptTokens"], 9);
    assert_eq!(done.data["usage"]["completionTokens"], 3);
}

#[test]
fn anthropic_tool_use_runs_the_agents_tools() {
    let ws = Workspace::on(&base());
    let records = json!({ "records": [{ "kind": "deal", "externalId": "d1", "title": "Acme renewal", "amount": 5000, "status": "open" }] });
    request(
        "PUT",
        &format!("{}/api/settings/knowledge/records", ws.base),
        Some(&ws.admin_token),
        Body::Json(records),
        &[],
    )
    .expect(200);
    let agent = agent_with(&ws, json!({ "provider": "claude", "model": "claude-test", "tools": ["query_records"] }));
    let key = ws.key();
    for streamed in [false, true] {
        let tag = unique("claude-tools-");
        stub::script_at(
            &tag,
            CLAUDE,
            json!([
                { "tool_calls": [{ "name": "query_records", "arguments": { "kind": "deal" } }] },
                { "reply": "Acme renewal is open." }
            ]),
        );
        let body = json!({ "message": format!("{tag} open deals?"), "agentId": agent });
        let chat_id = if streamed {
            let s = stream_at(&key, body);
            s.assert_well_formed();
            assert!(s.names().contains(&"tool"), "{:?}", s.names());
            assert_eq!(s.text(), "Acme renewal is open.");
            s.events[0].data["chatId"].as_str().unwrap().to_owned()
        } else {
            let r = chat_at(&key, body);
            r.expect(200);
            assert_eq!(r.body["response"], "Acme renewal is open.");
            r.body["chatId"].as_str().unwrap().to_owned()
        };
        // The second call carried the tool result back as a tool_result block, and the
        // stand-in accepted both calls.
        let sent = seen(&tag, CLAUDE);
        assert_eq!(sent.len(), 2, "streamed {streamed}");
        assert!(sent.iter().all(|r| r["rejected"].is_null()), "{sent:?}");
        let last = sent[1]["body"]["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["role"], "user");
        assert_eq!(last["content"][0]["type"], "tool_result", "{last}");
        let chat = get(&format!("{}/api/chats/{chat_id}", base()), Some(&key));
        assert_eq!(chat.body["messages"][1]["toolCalls"][0]["name"], "query_records");
    }
}

/// Each trigger hands the turn to the next target at once (no retry of the failing one), in
/// JSON and streamed, and the caller sees only the headers say so.
#[test]
fn failures_of_a_provider_fall_back_to_the_next_target() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "claude", "model": "claude-test", "fallbacks": [{ "provider": "default", "model": "fb-model" }] }),
    );
    let key = ws.key();
    let triggers = [
        json!({ "status": 529 }),
        json!({ "status": 503 }),
        json!({ "status": 429, "headers": { "retry-after": "1" } }),
        json!({ "status": 401 }),
        json!({ "status": 403 }),
        json!({ "status": 404, "error_type": "not_found_error" }),
        json!({ "status": 408 }),
    ];
    for (i, step) in triggers.iter().enumerate() {
        for streamed in [false, true] {
            let tag = unique(&format!("fb{i}-"));
            stub::script_at(&tag, CLAUDE, json!([step]));
            stub::script(&tag, json!([{ "reply": "from the fallback", "chunks": ["from the ", "fallback"] }]));
            let body = json!({ "message": format!("{tag} hi"), "agentId": agent });
            if streamed {
                let s = stream_at(&key, body);
                s.assert_well_formed();
                assert_eq!(s.text(), "from the fallback", "{step}");
                assert_eq!(s.events[0].data["provider"], "default");
                assert_eq!(s.header("x-llm-attempts"), Some("2"), "{step}");
            } else {
                let r = chat_at(&key, body);
                r.expect(200);
                assert_eq!(r.body["response"], "from the fallback", "{step}");
                assert_eq!(llm_headers(&r), ("default".into(), "fb-model".into(), "2".into()), "{step}");
            }
            assert_eq!(seen(&tag, CLAUDE).len(), 1, "{step}: the failing target is not retried");
            assert_eq!(default_seen(&tag).len(), 1, "{step}");
            assert_eq!(default_seen(&tag)[0]["body"]["model"], "fb-model");
        }
    }
}

/// A target that sends nothing within its share of the deadline is left for the next one, which
/// still has time to answer (were the first given the whole LLM_TIMEOUT_MS, the turn would end
/// in 504).
#[test]
fn a_silent_provider_is_left_for_the_next_target_within_the_deadline() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "claude", "model": "claude-test", "fallbacks": [{ "provider": "default", "model": "fb-model" }] }),
    );
    let key = ws.key();
    for streamed in [false, true] {
        let tag = unique("silent-");
        stub::script_at(&tag, CLAUDE, json!([{ "first_byte_delay_ms": 8000 }]));
        stub::script(&tag, json!([{ "reply": "in time", "chunks": ["in ", "time"] }]));
        let body = json!({ "message": format!("{tag} hi"), "agentId": agent });
        let provider = if streamed {
            let s = stream_at(&key, body);
            s.assert_well_formed();
            assert_eq!(s.text(), "in time");
            s.header("x-llm-provider").map(str::to_owned)
        } else {
            let r = chat_at(&key, body);
            r.expect(200);
            assert_eq!(r.body["response"], "in time");
            r.header("x-llm-provider").map(str::to_owned)
        };
        assert_eq!(provider.as_deref(), Some("default"), "streamed {streamed}");
    }
}

#[test]
fn an_error_in_the_stream_before_any_content_falls_back_invisibly() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "claude", "model": "claude-test", "fallbacks": [{ "provider": "default", "model": "fb-model" }] }),
    );
    let key = ws.key();
    // Overloaded right after message_start: nothing of it reaches the caller.
    let tag = unique("early-");
    stub::script_at(&tag, CLAUDE, json!([{ "error_after": 0 }]));
    stub::script(&tag, json!([{ "chunks": ["clean ", "answer"] }]));
    let s = stream_at(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    s.assert_well_formed();
    assert_eq!(s.names().first(), Some(&"start"));
    assert_eq!(s.text(), "clean answer");
    assert_eq!(s.last().name, "done");
    assert_eq!(s.events[0].data["provider"], "default");
    assert_eq!(s.header("x-llm-provider"), Some("default"));
    assert_eq!(s.header("x-llm-attempts"), Some("2"));

    // After content it does not: the caller gets an error event, the partial answer is kept
    // as incomplete, and the fallback is never called.
    let tag = unique("late-");
    stub::script_at(&tag, CLAUDE, json!([{ "chunks": ["half ", "an ", "answer"], "error_after": 1 }]));
    stub::script(&tag, json!([{ "reply": "never" }]));
    let s = stream_at(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    s.assert_well_formed();
    assert_eq!(s.last().name, "error");
    assert_eq!(s.text(), "half ");
    assert!(default_seen(&tag).is_empty());
    let chat = get(&format!("{}/api/chats/{}", base(), s.events[0].data["chatId"].as_str().unwrap()), Some(&key));
    assert_eq!(chat.body["messages"][1]["status"], "incomplete");
}

#[test]
fn a_request_the_provider_calls_wrong_does_not_fall_back() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "claude", "model": "claude-test", "fallbacks": [{ "provider": "default", "model": "fb-model" }] }),
    );
    let key = ws.key();
    for step in [
        json!({ "status": 400, "error_type": "invalid_request_error" }),
        json!({ "status": 422 }),
        json!({ "status": 413 }),
    ] {
        let tag = unique("wrong-");
        stub::script_at(&tag, CLAUDE, json!([step]));
        let r = chat_at(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
        r.expect_error(502, "Upstream error");
        let attempts = r.body["details"]["attempts"].as_array().unwrap();
        assert_eq!(attempts.len(), 1, "{}", r.raw);
        assert_eq!(attempts[0]["provider"], "claude");
        assert!(default_seen(&tag).is_empty(), "{step}");
        assert!(seen(&tag, BACKUP).is_empty(), "{step}");
    }
}

#[test]
fn an_exhausted_chain_says_why_with_every_attempt() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "claude", "model": "claude-test", "fallbacks": [{ "provider": "default", "model": "fb-model" }] }),
    );
    let key = ws.key();
    let message = |tag: &str| json!({ "message": format!("{tag} hi"), "agentId": agent });
    // Every target 429: ours is 429 with the smallest Retry-After any gave.
    let tag = unique("all429-");
    stub::script_at(&tag, CLAUDE, json!([{ "status": 429, "headers": { "retry-after": "7" } }]));
    stub::script(&tag, json!([{ "status": 429, "headers": { "Retry-After": "3" } }]));
    stub::script_at(&tag, BACKUP, json!([{ "status": 429, "headers": { "Retry-After": "5" } }]));
    let r = chat_at(&key, message(&tag));
    r.expect_error(429, "Upstream rate limited");
    assert_eq!(r.header("retry-after"), Some("3"));
    let attempts = r.body["details"]["attempts"].as_array().unwrap();
    let tried: Vec<(&str, &str)> =
        attempts.iter().map(|a| (a["provider"].as_str().unwrap(), a["model"].as_str().unwrap())).collect();
    // The agent's target, its fallback, then the service's (LLM_FALLBACKS).
    assert_eq!(tried, [("claude", "claude-test"), ("default", "fb-model"), ("backup", "global-backup")]);
    assert!(attempts.iter().all(|a| a["status"] == 429 && a["kind"] == "rate_limited"), "{}", r.raw);
    assert!(!r.raw.contains("sk-"), "no key in the error: {}", r.raw);
    // The backup is called with its own key.
    assert_eq!(
        seen(&tag, BACKUP)[0]["authorization"].as_str(),
        Some(format!("Bearer {}", std::env::var("BACKUP_API_KEY").unwrap()).as_str())
    );

    // Mixed failures: 502, the last target keeping its one retry.
    let tag = unique("mixed-");
    stub::script_at(&tag, CLAUDE, json!([{ "status": 429 }]));
    stub::script(&tag, json!([{ "status": 500 }]));
    stub::script_at(&tag, BACKUP, json!([{ "status": 503 }]));
    let r = chat_at(&key, message(&tag));
    r.expect_error(502, "Upstream error");
    assert_eq!(r.body["details"]["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(seen(&tag, BACKUP).len(), 2, "the last target retries once");
    assert_eq!(default_seen(&tag).len(), 1);

    // The last failure a deadline: 504.
    let tag = unique("slow-");
    stub::script_at(&tag, CLAUDE, json!([{ "status": 503 }]));
    stub::script(&tag, json!([{ "status": 503 }]));
    stub::script_at(&tag, BACKUP, json!([{ "delay_ms": 8000 }]));
    let r = chat_at(&key, message(&tag));
    r.expect_error(504, "Upstream timeout");
    let attempts = r.body["details"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["kind"], "timeout");
}

#[test]
fn a_provider_that_is_down_falls_back_and_a_replay_shows_who_answered() {
    let ws = Workspace::on(&base());
    let agent = agent_with(
        &ws,
        json!({ "provider": "down", "model": "m1", "fallbacks": [{ "provider": "claude", "model": "claude-test" }] }),
    );
    let key = ws.key();
    let tag = unique("down-");
    stub::script_at(&tag, CLAUDE, json!([{ "reply": "Claude stood in" }]));
    let idem = unique("idem-");
    let url = format!("{}/api/chat", base());
    let body = json!({ "message": format!("{tag} hi"), "agentId": agent });
    let first = request("POST", &url, Some(&key), Body::Json(body.clone()), &[("Idempotency-Key", &idem)]);
    first.expect(200);
    assert_eq!(llm_headers(&first), ("claude".into(), "claude-test".into(), "2".into()));
    let again = request("POST", &url, Some(&key), Body::Json(body), &[("Idempotency-Key", &idem)]);
    again.expect(200);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(llm_headers(&again), llm_headers(&first));
    assert_eq!(again.body, first.body);
    assert_eq!(seen(&tag, CLAUDE).len(), 1, "a replay calls no provider");
}

#[test]
fn agents_name_only_configured_providers() {
    let ws = Workspace::on(&base());
    let url = format!("{}/api/settings/agents", ws.base);
    let create = |extra: Value| {
        let mut body = json!({ "name": "A", "instructions": "i" });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        post(&url, Some(&ws.admin_token), body)
    };
    let r = create(json!({ "provider": "nope" }));
    r.expect(400);
    assert_eq!(r.body["details"]["field"], "provider");
    for bad in [json!([{ "provider": "nope", "model": "m" }]), json!([{ "provider": "claude" }]), json!("claude")] {
        let r = create(json!({ "fallbacks": bad }));
        r.expect(400);
        assert_eq!(r.body["details"]["field"], "fallbacks", "{}", r.raw);
    }
    let r = create(json!({ "provider": "claude", "fallbacks": [{ "provider": "backup", "model": "b1" }] }));
    r.expect(201);
    assert_eq!(r.body["provider"], "claude");
    assert_eq!(r.body["fallbacks"], json!([{ "provider": "backup", "model": "b1" }]));
    let id = r.body["id"].as_str().unwrap();
    let patched = request(
        "PATCH",
        &format!("{url}/{id}"),
        Some(&ws.admin_token),
        Body::Json(json!({ "provider": null, "fallbacks": [] })),
        &[],
    );
    patched.expect(200);
    assert_eq!((patched.body["provider"].clone(), patched.body["fallbacks"].clone()), (json!("default"), json!([])));
    // Without a provider, an agent is on `default`.
    assert_eq!(create(json!({})).body["provider"], "default");
}

#[test]
fn an_unusable_provider_configuration_fails_loudly() {
    let base = std::env::var("ATTIVE_MISCONFIGURED_URL").expect("set by tests/e2e.sh");
    let health = get(&format!("{base}/api/health"), None);
    health.expect_error(500, "Service misconfigured");
    assert_eq!(health.body["details"]["variable"], "LLM_PROVIDERS");
    let ws = Workspace::on(&base);
    let key = ws.key();
    let r = post(&format!("{base}/api/chat"), Some(&key), json!({ "message": "hi" }));
    r.expect_error(500, "Service misconfigured");
    assert_eq!(r.body["details"]["variable"], "LLM_PROVIDERS");
}
