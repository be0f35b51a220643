//! `make dev` configured through the environment: the harness starts `scripts/dev.sh` with
//! every variable of the README's configuration table set to a non-default value, and these
//! tests check that the Worker really runs with them.

use serde_json::{json, Value};

use crate::support::*;

fn dev() -> String {
    std::env::var("ATTIVE_DEV_URL").expect("ATTIVE_DEV_URL is set by tests/e2e.sh")
}

fn dev_chat(key: &str, body: Value) -> Resp {
    post(&format!("{}/api/chat", dev()), Some(key), body)
}

/// `LLM_TIMEOUT_MS=1500`: a provider that takes 20 s is cut off with 504, where the default of
/// 60 s would have waited for its answer.
#[test]
fn llm_timeout_ms_from_the_environment_bounds_the_llm_call() {
    let ws = Workspace::on(&dev());
    let key = ws.key();
    let tag = unique("devtimeout-");
    stub::script(&tag, json!([{ "delay_ms": 20_000 }]));
    let started = std::time::Instant::now();
    let r = dev_chat(&key, json!({ "message": tag }));
    r.expect_error(504, "Upstream timeout");
    // Not a speed goal: proof that the call was not left to the 60 s default.
    assert!(started.elapsed().as_secs() < 15, "took {:?}", started.elapsed());
}

/// `CONTEXT_TOKEN_BUDGET=1200`, `LLM_MODEL`, `DEFAULT_INSTRUCTIONS` (with a quote in it) and
/// `RATE_LIMIT_PER_MINUTE=7` all reach the Worker.
#[test]
fn budget_model_instructions_and_rate_limit_come_from_the_environment() {
    let ws = Workspace::on(&dev());
    let key = ws.key();
    let tag = unique("devbudget-");
    // Each turn is ~400 tokens of user text plus the stand-in's ~60-token echo of it: a budget
    // of 1,200 holds the newest earlier turn, never all three (the default 16,000 would).
    let mut chat_id: Option<String> = None;
    for i in 0..4 {
        let message = format!("{tag} turn {i} {}", "y".repeat(1_600));
        let mut body = json!({ "message": message });
        if let Some(id) = &chat_id {
            body["chatId"] = json!(id);
        }
        let r = dev_chat(&key, body);
        r.expect(200);
        assert_eq!(r.header("ratelimit-limit"), Some("7"));
        chat_id = r.body["chatId"].as_str().map(str::to_owned);
    }
    let seen = stub::requests(&tag);
    assert_eq!(seen.len(), 4);
    let last = seen[3]["body"].clone();
    assert_eq!(last["model"], "dev-env-model");
    let messages = last["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[0]["content"], "Dev's instructions: answer in one line.");
    // Three earlier turns (6 messages) were stored; the budget let fewer through.
    let history = messages.len() - 2;
    assert!(history < 6, "history of {history} messages sent despite a budget of 1,200 tokens");
    assert!(messages.iter().all(|m| !m["content"].as_str().unwrap_or("").contains(" turn 0 ")));
}

/// `LLM_STREAM_MAX_MS=4000` caps a whole streamed answer (each gap of 1 s is within
/// `LLM_TIMEOUT_MS=1500`, the whole is not); `KNOWLEDGE_TOP_K=2` caps the records retrieved.
#[test]
fn stream_cap_and_top_k_come_from_the_environment() {
    let ws = Workspace::on(&dev());
    let key = ws.key();
    let tag = unique("devmax-");
    let pieces: Vec<String> = (0..8).map(|i| format!("p{i} ")).collect();
    stub::script(&tag, json!([{ "chunks": pieces, "chunk_delay_ms": 1000 }]));
    let s = crate::support::sse::chat_at(&dev(), &key, json!({ "message": tag, "stream": true }), &[], None);
    s.assert_well_formed();
    assert_eq!(s.last().data["details"]["code"], "upstream_timeout", "{:?}", s.last().data);
    let records: Vec<Value> = (0..3)
        .map(|i| json!({ "kind": "note", "externalId": format!("n{i}"), "title": format!("Zebra note {i}") }))
        .collect();
    let r = request(
        "PUT",
        &format!("{}/api/settings/knowledge/records", dev()),
        Some(&ws.admin_token),
        Body::Json(json!({ "records": records })),
        &[],
    );
    r.expect(200);
    let answer = dev_chat(&key, json!({ "message": "zebra notes please" }));
    answer.expect(200);
    assert_eq!(answer.body["sources"].as_array().unwrap().len(), 2, "{}", answer.raw);

    // AGENT_MAX_STEPS=2: the default assistant (the workspace has records) may call tools once,
    // then must answer.
    let tag = unique("devsteps-");
    let call = json!({ "tool_calls": [{ "name": "search_records", "arguments": { "query": "zebra" } }] });
    stub::script(&tag, json!([call, { "reply": "Two steps." }]));
    dev_chat(&key, json!({ "message": format!("{tag} zebras?") })).expect(200);
    let choices: Vec<Value> = stub::requests(&tag).iter().map(|r| r["body"]["tool_choice"].clone()).collect();
    assert_eq!(choices, [json!("auto"), json!("none")]);

    // USAGE_LEDGER=off: nothing was counted.
    let usage = get(&format!("{}/api/settings/usage", dev()), Some(&ws.admin_token));
    usage.expect(200);
    assert_eq!(usage.body["totals"]["requests"], 0, "{}", usage.raw);
}

/// `LLM_PROVIDERS`, `LLM_FALLBACKS` and the secret a provider names reach the Worker of
/// `make dev`: an agent on the environment's provider is called with that provider's key, and
/// the default assistant falls back to the environment's fallback target.
#[test]
fn providers_fallbacks_and_their_secrets_come_from_the_environment() {
    let ws = Workspace::on(&dev());
    let key = ws.key();
    let r = post(
        &format!("{}/api/settings/agents", dev()),
        Some(&ws.admin_token),
        json!({ "name": "On devp", "instructions": "Be brief.", "provider": "devp", "model": "devp-model" }),
    );
    r.expect(201);
    let agent = r.body["id"].as_str().unwrap().to_owned();
    let tag = unique("devp-");
    dev_chat(&key, json!({ "message": format!("{tag} hi"), "agentId": agent })).expect(200);
    let seen = stub::requests(&tag);
    assert_eq!(seen.len(), 1);
    assert!(seen[0]["path"].as_str().is_some_and(|p| p.starts_with("/devp/v1/")), "{}", seen[0]);
    let secret = std::env::var("DEV_PROVIDER_KEY").expect("set by tests/e2e.sh");
    assert_eq!(seen[0]["authorization"].as_str(), Some(format!("Bearer {secret}").as_str()));

    let tag = unique("devfb-");
    stub::script(&tag, json!([{ "status": 503 }]));
    stub::script_at(&tag, "/devp/v1/chat/completions", json!([{ "reply": "from the fallback" }]));
    let r = dev_chat(&key, json!({ "message": format!("{tag} hi") }));
    r.expect(200);
    assert_eq!(r.header("x-llm-provider"), Some("devp"));
    assert_eq!(r.header("x-llm-model"), Some("dev-fallback"));
}

/// `make dev` generates the secret embed tokens are signed with (like the operator token), so
/// a key of the dev Worker can mint them and a page can use them.
#[test]
fn make_dev_signs_embed_tokens() {
    let ws = Workspace::on(&dev());
    let key = ws.key();
    let r = post(
        &format!("{}/api/embed-tokens", dev()),
        Some(&key),
        json!({ "origins": ["http://localhost:3000"], "chat": true }),
    );
    r.expect(201);
    let token = r.body["token"].as_str().unwrap();
    let chats = request(
        "GET",
        &format!("{}/api/chats", dev()),
        Some(token),
        Body::None,
        &[("Origin", "http://localhost:3000")],
    );
    chats.expect(200);
    assert_eq!(chats.header("access-control-allow-origin"), Some("http://localhost:3000"));
}

/// `INSIGHTS_PER_TICK=3`: one run of the scheduled job regenerates three of the five due
/// insights. (The harness's `make dev` runs the job only when a test asks: `TICK_SECONDS`.)
#[test]
fn insights_per_tick_bounds_a_scheduled_run() {
    let ws = Workspace::on(&dev());
    let tag = unique("devtick-");
    // Each first generation takes a moment; an edit lands meanwhile, so once it ends the
    // insight is due again at once (its answer is for the old question).
    // 500 ms: within the default provider's share of the 1,500 ms deadline (its fallback
    // gets the rest), so the first answer comes from it.
    let ids: Vec<String> = (0..5)
        .map(|n| {
            stub::script(&format!("{tag}-{n}"), json!([{ "reply": "old", "delay_ms": 500 }, { "reply": "new" }]));
            let r = post(
                &format!("{}/api/settings/insights", dev()),
                Some(&ws.admin_token),
                json!({ "name": format!("tick {n}"), "prompt": format!("old {tag}-{n}") }),
            );
            r.expect(201);
            let id = r.body["id"].as_str().unwrap().to_owned();
            let r = request(
                "PATCH",
                &format!("{}/api/settings/insights/{id}", dev()),
                Some(&ws.admin_token),
                Body::Json(json!({ "prompt": format!("new {tag}-{n}") })),
                &[],
            );
            r.expect(200);
            id
        })
        .collect();
    let answered = |id: &str, answer: &str| {
        let r = get(&format!("{}/api/settings/insights/{id}", dev()), Some(&ws.admin_token));
        r.body["answer"] == answer
    };
    let started = std::time::Instant::now();
    while !ids.iter().all(|id| answered(id, "old")) {
        assert!(started.elapsed().as_secs() < 20, "the first generations did not finish");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    get(&format!("{}/__scheduled?cron=*+*+*+*+*", dev()), None).expect(200);
    let started = std::time::Instant::now();
    while ids.iter().filter(|id| answered(id, "new")).count() < 3 {
        assert!(started.elapsed().as_secs() < 20, "the run did not regenerate three");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(ids.iter().filter(|id| answered(id, "new")).count(), 3);
    let asked: usize = (0..5).map(|n| stub::requests(&format!("new {tag}-{n}")).len()).sum();
    assert_eq!(asked, 3, "one run, three generations");
}
