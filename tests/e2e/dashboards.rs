//! Dashboards: embed tokens (minting, origins, expiry, rotation, revocation, routes, chat
//! visibility), CORS, and insights answered ahead of time (generation, reads without LLM
//! calls, ETag and 304, failures kept stale, the scheduled job, limits and audit).

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use attive_api::domain::embed_token::{self, Claims};
use attive_api::domain::token::{Token, TokenKind};
use serde_json::{json, Value};

use crate::support::*;

const ORIGIN: &str = "https://dash.example.com";
const OTHER: &str = "https://elsewhere.example";
const EXPOSED: &str =
    "X-Request-Id, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, ETag, Idempotent-Replayed";

fn now_ms() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

fn mint(key: &str, body: Value) -> Resp {
    post("/api/embed-tokens", Some(key), body)
}

fn token(key: &str, body: Value) -> String {
    let r = mint(key, body);
    r.expect(201);
    r.body["token"].as_str().unwrap().to_owned()
}

/// A request with a token from `origin`.
fn with(method: &str, path: &str, token: &str, origin: &str, body: Option<Value>) -> Resp {
    let body = body.map_or(Body::None, Body::Json);
    request(method, path, Some(token), body, &[("Origin", origin)])
}

fn insight(ws: &Workspace, body: Value) -> Resp {
    post("/api/settings/insights", Some(&ws.admin_token), body)
}

/// Creates an insight and waits for its first generation (started in the background).
fn fresh_insight(ws: &Workspace, name: &str, prompt: &str, agent: Option<&str>) -> Value {
    let r = insight(ws, json!({ "name": name, "prompt": prompt, "agentId": agent }));
    r.expect(201);
    assert_eq!(r.body["status"], "pending", "{}", r.raw);
    let id = r.body["id"].as_str().unwrap().to_owned();
    wait_for(ws, &id, |i| i["status"] == "fresh")
}

fn settings_insight(ws: &Workspace, id: &str) -> Value {
    let r = get(&format!("/api/settings/insights/{id}"), Some(&ws.admin_token));
    r.expect(200);
    r.body.clone()
}

#[track_caller]
fn wait_for(ws: &Workspace, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let i = settings_insight(ws, id);
        if done(&i) {
            return i;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "insight never got there: {i}");
        thread::sleep(Duration::from_millis(100));
    }
}

fn key_hash(key: &str) -> String {
    Token::parse(TokenKind::ApiKey, key).unwrap().hash()
}

fn claims(key: &str, expires_at: i64) -> Claims {
    Claims {
        key_hash: key_hash(key),
        origins: vec![ORIGIN.into()],
        agent_ids: None,
        insight_ids: None,
        chat: true,
        user: None,
        expires_at,
        workspace: Token::parse(TokenKind::ApiKey, key).and_then(|t| t.locator().map(|l| l.encode())),
    }
}

#[track_caller]
fn assert_cors(r: &Resp, origin: &str) {
    assert_eq!(r.header("access-control-allow-origin"), Some(origin), "{}", r.raw);
    assert_eq!(r.header("vary"), Some("Origin"));
    assert_eq!(r.header("access-control-expose-headers"), Some(EXPOSED));
    assert!(r.header("access-control-allow-credentials").is_none());
}

#[track_caller]
fn assert_no_cors(r: &Resp) {
    assert!(r.header("access-control-allow-origin").is_none(), "{:?}", r.headers);
}

#[test]
fn minting_checks_its_input_and_stays_within_the_key() {
    let ws = Workspace::new();
    let key = ws.key();
    let r = mint(&key, json!({ "origins": [ORIGIN] }));
    r.expect(201);
    let t = r.body["token"].as_str().unwrap();
    assert!(t.starts_with("atvet_") && t.len() <= 1024, "{t}");
    assert_eq!(r.body["origins"], json!([ORIGIN]));
    assert_eq!((r.body["chat"].clone(), r.body["user"].clone()), (json!(false), Value::Null));
    assert_eq!((r.body["agentIds"].clone(), r.body["insightIds"].clone()), (Value::Null, Value::Null));
    assert_eq!(r.body["expiresIn"], 900);
    let expires = r.body["expiresAt"].as_str().unwrap();
    assert!(expires > iso_in(890).as_str() && expires < iso_in(910).as_str(), "{expires}");
    assert!(r.header("ratelimit-remaining").is_some());
    assert_no_cors(&r);

    for (body, field) in [
        (json!({}), "origins"),
        (json!({ "origins": [] }), "origins"),
        (json!({ "origins": ["https://dash.example.com/path"] }), "origins"),
        (json!({ "origins": ["*"] }), "origins"),
        (json!({ "origins": [ORIGIN], "ttlSeconds": 59 }), "ttlSeconds"),
        (json!({ "origins": [ORIGIN], "ttlSeconds": 3601 }), "ttlSeconds"),
        (json!({ "origins": [ORIGIN], "chat": "yes" }), "chat"),
        (json!({ "origins": [ORIGIN], "user": "" }), "user"),
        (json!({ "origins": [ORIGIN], "user": "u".repeat(201) }), "user"),
    ] {
        let r = mint(&key, body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.raw);
    }
    let r = mint(&key, json!({ "origins": [ORIGIN], "ttlSeconds": 60, "user": "u".repeat(200), "chat": true }));
    r.expect(201);
    assert_eq!(r.body["expiresIn"], 60);

    // Unknown ids are named; agents outside a scoped key are refused.
    let agent_a = ws.agent("A", None);
    let agent_b = ws.agent("B", None);
    let r = mint(&key, json!({ "origins": [ORIGIN], "agentIds": [agent_a, "agent_nope"] }));
    r.expect_error(400, "Unknown agent ids");
    assert_eq!(r.body["details"]["unknown"], json!(["agent_nope"]));
    let r = mint(&key, json!({ "origins": [ORIGIN], "insightIds": ["ins_nope"] }));
    r.expect_error(400, "Unknown insight ids");
    assert_eq!(r.body["details"]["unknown"], json!(["ins_nope"]));
    let (scoped, _) = ws.key_with(json!({ "name": unique("scoped-"), "allowedAgentIds": [agent_a] }));
    mint(&scoped, json!({ "origins": [ORIGIN], "agentIds": [agent_a] })).expect(201);
    mint(&scoped, json!({ "origins": [ORIGIN], "agentIds": [agent_b] }))
        .expect_error(403, "Agent not allowed for this key");
    let default_insight = insight(&ws, json!({ "name": "Default", "prompt": "Summarise." }));
    default_insight.expect(201);
    let id = default_insight.body["id"].as_str().unwrap();
    mint(&scoped, json!({ "origins": [ORIGIN], "insightIds": [id] }))
        .expect_error(403, "Agent not allowed for this key");
    mint(&key, json!({ "origins": [ORIGIN], "insightIds": [id] })).expect(201);

    // Too much to fit in 1,024 characters.
    let long: Vec<String> = (0..10).map(|i| format!("https://{}{i}.example.com", "a".repeat(60))).collect();
    mint(&key, json!({ "origins": long })).expect_error(400, "Embed token too long");
    // Minting needs the key itself.
    post("/api/embed-tokens", None, json!({ "origins": [ORIGIN] })).expect_error(401, "Missing API key");
    let t = token(&key, json!({ "origins": [ORIGIN] }));
    with("POST", "/api/embed-tokens", &t, ORIGIN, Some(json!({ "origins": [ORIGIN] })))
        .expect_error(403, "Embed tokens cannot use this route");
}

#[test]
fn a_token_works_from_its_origins_only_with_cors_headers() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("cors-");
    stub::script(&tag, json!([{ "reply": "Pipeline looks healthy." }]));
    let found = fresh_insight(&ws, "Pipeline", &format!("How is the pipeline? {tag}"), None);
    let id = found["id"].as_str().unwrap();
    let path = format!("/api/insights/{id}");
    let t = token(&key, json!({ "origins": [ORIGIN, "http://127.0.0.1:8788"] }));

    let r = with("GET", &path, &t, ORIGIN, None);
    r.expect(200);
    assert_cors(&r, ORIGIN);
    assert_eq!(r.body["answer"], "Pipeline looks healthy.");
    let r = with("GET", &path, &t, "http://127.0.0.1:8788", None);
    r.expect(200);
    assert_cors(&r, "http://127.0.0.1:8788");
    // Another origin, or none: refused, and unreadable by the page.
    let r = with("GET", &path, &t, OTHER, None);
    r.expect_error(403, "Origin not allowed for this token");
    assert_no_cors(&r);
    let r = get(&path, Some(&t));
    r.expect_error(403, "Origin not allowed for this token");
    // Errors of an allowed origin carry the headers too.
    let r = with("GET", "/api/insights/ins_missing", &t, ORIGIN, None);
    r.expect_error(404, "Insight not found");
    assert_cors(&r, ORIGIN);
    // A key's responses never carry them, whatever the Origin.
    let r = request("GET", &path, Some(&key), Body::None, &[("Origin", ORIGIN)]);
    r.expect(200);
    assert_no_cors(&r);
    assert!(r.header("vary").is_none());
    let r = request("GET", "/api/settings/insights", Some(&ws.admin_token), Body::None, &[("Origin", ORIGIN)]);
    r.expect(200);
    assert_no_cors(&r);
}

#[test]
fn preflights_are_answered_on_the_token_routes_only() {
    for path in ["/api/chat", "/api/chats", "/api/chats/chat_x", "/api/insights/ins_x"] {
        let r = request(
            "OPTIONS",
            path,
            None,
            Body::None,
            &[
                ("Origin", ORIGIN),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "authorization, content-type"),
            ],
        );
        r.expect(204);
        assert_eq!(r.header("access-control-allow-origin"), Some(ORIGIN), "{path}");
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST, OPTIONS"));
        assert_eq!(
            r.header("access-control-allow-headers"),
            Some("Authorization, Content-Type, Accept, Idempotency-Key, If-None-Match")
        );
        assert_eq!(r.header("access-control-max-age"), Some("7200"));
        assert_eq!(r.header("vary"), Some("Origin"));
        assert!(r.header("access-control-allow-credentials").is_none());
    }
    let r = request("OPTIONS", "/api/settings/api-keys", None, Body::None, &[("Origin", ORIGIN)]);
    r.expect(405);
    assert_no_cors(&r);
}

#[test]
fn expired_forged_and_rotated_tokens() {
    let ws = Workspace::new();
    let key = ws.key();
    let previous = std::env::var("EMBED_TOKEN_SECRET_PREVIOUS").unwrap();
    // Signed with the previous secret (a rotation under way): accepted.
    let rotated = embed_token::sign(&claims(&key, now_ms() + 600_000), previous.as_bytes()).unwrap();
    with("GET", "/api/chats", &rotated, ORIGIN, None).expect(200);
    // Expired beyond the few seconds of leeway: 401, readable by the page so it fetches a new one.
    let expired = embed_token::sign(&claims(&key, now_ms() - 10_000), previous.as_bytes()).unwrap();
    let r = with("GET", "/api/chats", &expired, ORIGIN, None);
    r.expect_error(401, "Embed token expired");
    assert_cors(&r, ORIGIN);
    // Signed with a secret the Worker does not have, altered, or malformed.
    let unknown = embed_token::sign(&claims(&key, now_ms() + 600_000), b"some other secret").unwrap();
    let minted = token(&key, json!({ "origins": [ORIGIN], "chat": false }));
    let (payload, tag) = minted.rsplit_once('.').unwrap();
    let mut widened = claims(&key, now_ms() + 600_000);
    widened.chat = true;
    let forged = format!("atvet_{}.{tag}", embed_token::base64url_encode(&serde_json::to_vec(&widened).unwrap()));
    assert_ne!(forged.rsplit_once('.').unwrap().0, payload);
    for bad in [unknown.as_str(), forged.as_str(), "atvet_", "atvet_x.y", &format!("{minted}x"), &"atvet_a".repeat(200)]
    {
        let r = with("GET", "/api/chats", bad, ORIGIN, None);
        r.expect_error(401, "Invalid embed token");
        assert_no_cors(&r);
    }
}

#[test]
fn deleting_or_rolling_the_key_stops_its_tokens_at_once() {
    let ws = Workspace::new();
    let (key, key_id) = ws.key_with(json!({ "name": unique("dash-") }));
    let t = token(&key, json!({ "origins": [ORIGIN], "chat": true }));
    with("GET", "/api/chats", &t, ORIGIN, None).expect(200);
    delete(&format!("/api/settings/api-keys/{key_id}"), Some(&ws.admin_token)).expect(204);
    let r = with("GET", "/api/chats", &t, ORIGIN, None);
    r.expect_error(401, "Invalid embed token");
    assert_cors(&r, ORIGIN);

    // Rolled with a grace period: its tokens work until the period ends, then are expired.
    let (key, key_id) = ws.key_with(json!({ "name": unique("dash-") }));
    let t = token(&key, json!({ "origins": [ORIGIN], "chat": true }));
    let roll = |id: &str, grace: i64| {
        post(
            &format!("/api/settings/api-keys/{id}/roll"),
            Some(&ws.admin_token),
            json!({ "gracePeriodSeconds": grace }),
        )
    };
    let rolled = roll(&key_id, 3_600);
    rolled.expect(201);
    with("GET", "/api/chats", &t, ORIGIN, None).expect(200);
    let (key2, key2_id) = ws.key_with(json!({ "name": unique("dash-") }));
    let t2 = token(&key2, json!({ "origins": [ORIGIN], "chat": true }));
    roll(&key2_id, 0).expect(201);
    with("GET", "/api/chats", &t2, ORIGIN, None).expect_error(401, "Embed token expired");
}

#[test]
fn tokens_refuse_every_other_route() {
    let ws = Workspace::new();
    let key = ws.key();
    let t = token(&key, json!({ "origins": [ORIGIN], "chat": true }));
    let no_chat = token(&key, json!({ "origins": [ORIGIN] }));
    for (method, path) in [
        ("DELETE", "/api/chats/chat_x"),
        ("GET", "/api/settings/api-keys"),
        ("GET", "/api/settings/insights"),
        ("POST", "/api/settings/insights"),
        ("GET", "/api/admin/workspaces"),
        ("GET", "/api/health"),
        ("POST", "/api/embed-tokens"),
        ("GET", "/api/settings/knowledge/search?q=x"),
    ] {
        let r = with(method, path, &t, ORIGIN, Some(json!({})).filter(|_| method == "POST"));
        r.expect_error(403, "Embed tokens cannot use this route");
        assert_cors(&r, ORIGIN);
        let r = with(method, path, &t, OTHER, Some(json!({})).filter(|_| method == "POST"));
        r.expect_error(403, "Embed tokens cannot use this route");
        assert_no_cors(&r);
    }
    // Without `chat`, the chat routes too (its insights stay readable).
    for (method, path) in [("GET", "/api/chats"), ("GET", "/api/chats/chat_x"), ("POST", "/api/chat")] {
        let r = with(method, path, &no_chat, ORIGIN, Some(json!({ "message": "hi" })).filter(|_| method == "POST"));
        r.expect_error(403, "Embed tokens cannot use this route");
        assert_cors(&r, ORIGIN);
    }
}

#[test]
fn each_viewer_sees_only_their_own_chats() {
    let ws = Workspace::new();
    let key = ws.key();
    let agent = ws.agent("Be brief.", None);
    let other_agent = ws.agent("Be long.", None);
    let ann = token(&key, json!({ "origins": [ORIGIN], "chat": true, "user": "ann", "agentIds": [agent] }));
    let bob = token(&key, json!({ "origins": [ORIGIN], "chat": true, "user": "bob" }));
    let nobody = token(&key, json!({ "origins": [ORIGIN], "chat": true }));

    let r = with("POST", "/api/chat", &ann, ORIGIN, Some(json!({ "message": "Ann asks", "agentId": agent })));
    r.expect(200);
    assert_cors(&r, ORIGIN);
    let ann_chat = r.body["chatId"].as_str().unwrap().to_owned();
    // Her token lists one agent: no other, and not the default assistant.
    with("POST", "/api/chat", &ann, ORIGIN, Some(json!({ "message": "x", "agentId": other_agent })))
        .expect_error(403, "Agent not allowed for this key");
    with("POST", "/api/chat", &ann, ORIGIN, Some(json!({ "message": "x" })))
        .expect_error(403, "Agent not allowed for this key");
    // Continued, streamed.
    let s = sse::chat(
        &ann,
        json!({ "message": "Ann again", "chatId": ann_chat, "stream": true }),
        &[("Origin", ORIGIN)],
        None,
    );
    assert_eq!(s.status, 200);
    assert_eq!(s.headers.get("access-control-allow-origin").map(String::as_str), Some(ORIGIN));
    assert_eq!(s.events.last().unwrap().name, "done");
    let key_chat = chat(&key, json!({ "message": "The key's own" }));
    key_chat.expect(200);
    let key_chat = key_chat.body["chatId"].as_str().unwrap().to_owned();
    let r = with("POST", "/api/chat", &bob, ORIGIN, Some(json!({ "message": "Bob asks" })));
    r.expect(200);
    let bob_chat = r.body["chatId"].as_str().unwrap().to_owned();

    let ids = |t: &str| -> Vec<String> {
        let r = with("GET", "/api/chats", t, ORIGIN, None);
        r.expect(200);
        r.body["chats"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(ids(&ann), std::slice::from_ref(&ann_chat));
    assert_eq!(ids(&bob), std::slice::from_ref(&bob_chat));
    assert!(ids(&nobody).is_empty());
    let all = get("/api/chats", Some(&key));
    assert_eq!(all.body["chats"].as_array().unwrap().len(), 3, "the key sees every chat: {}", all.raw);
    let r = with("GET", &format!("/api/chats/{ann_chat}"), &ann, ORIGIN, None);
    r.expect(200);
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 4);
    for (t, id) in [(&bob, &ann_chat), (&ann, &bob_chat), (&bob, &key_chat), (&nobody, &bob_chat)] {
        with("GET", &format!("/api/chats/{id}"), t, ORIGIN, None).expect_error(404, "Chat not found");
        with("POST", "/api/chat", t, ORIGIN, Some(json!({ "message": "sneak", "chatId": id })))
            .expect_error(404, "Chat not found");
    }
    // Same user label, a new token of the same key: the same chats.
    let ann_again = token(&key, json!({ "origins": [ORIGIN], "chat": true, "user": "ann" }));
    assert_eq!(ids(&ann_again), [ann_chat]);
}

#[test]
fn token_requests_count_against_the_key() {
    let ws = Workspace::new();
    let (key, key_id) = ws.key_with(json!({ "name": unique("small-"), "rateLimitPerMinute": 3 }));
    let t = token(&key, json!({ "origins": [ORIGIN], "chat": true }));
    // Minting took one of the three.
    let r = with("GET", "/api/chats", &t, ORIGIN, None);
    r.expect(200);
    assert_eq!(r.header("ratelimit-remaining"), Some("1"));
    with("GET", "/api/chats", &t, ORIGIN, None).expect(200);
    let r = with("GET", "/api/chats", &t, ORIGIN, None);
    r.expect_error(429, "Rate limit exceeded");
    assert_cors(&r, ORIGIN);
    assert!(r.header("retry-after").is_some());
    get("/api/chats", Some(&key)).expect(429);
    let usage = get(&format!("/api/settings/usage?keyId={key_id}"), Some(&ws.admin_token));
    usage.expect(200);
    assert_eq!(usage.body["totals"]["requests"], 5, "{}", usage.raw);
    assert_eq!(usage.body["totals"]["rateLimited"], 2, "{}", usage.raw);
}

#[test]
fn insights_are_answered_ahead_and_read_without_llm_calls() {
    let ws = Workspace::new();
    let key = ws.key();
    ws.put_records(json!([{ "kind": "deal", "externalId": "d1", "title": "Acme renewal", "url": "https://crm.example/d1", "body": "Acme renewal at risk: champion left." }]))
        .expect(200);
    let tag = unique("ins-");
    stub::script(
        &tag,
        json!([{ "reply": "Acme is at risk [S1].", "usage": { "prompt_tokens": 30, "completion_tokens": 6 } }]),
    );
    let prompt = format!("Which Acme renewal deals are at risk? {tag}");
    let i = fresh_insight(&ws, "Risk", &prompt, None);
    let id = i["id"].as_str().unwrap().to_owned();
    assert_eq!(i["answer"], "Acme is at risk [S1].");
    assert_eq!(i["sources"][0]["title"], "Acme renewal");
    assert_eq!(i["sources"][0]["cited"], true);
    assert_eq!(i["model"], "stub-default-model");
    assert_eq!(i["usage"], json!({ "promptTokens": 30, "completionTokens": 6 }));
    assert_eq!(i["refreshSeconds"], 3600);
    assert_eq!(i["lastError"], Value::Null);
    assert_eq!(stub::requests(&tag).len(), 1);

    let path = format!("/api/insights/{id}");
    let r = get(&path, Some(&key));
    r.expect(200);
    let fields: Vec<&String> = r.body.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        ["answer", "generatedAt", "id", "lastError", "model", "name", "nextRefreshAt", "sources", "status"],
        "{}",
        r.raw
    );
    let etag = r.header("etag").unwrap().to_owned();
    let cache = r.header("cache-control").unwrap();
    let max_age: i64 = cache.strip_prefix("private, max-age=").unwrap().parse().unwrap();
    assert!((3_500..=3_600).contains(&max_age), "{cache}");
    // Conditional reads.
    let r = request("GET", &path, Some(&key), Body::None, &[("If-None-Match", &etag)]);
    r.expect(304);
    assert!(r.raw.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    request("GET", &path, Some(&key), Body::None, &[("If-None-Match", "\"other\"")]).expect(200);
    let t = token(&key, json!({ "origins": [ORIGIN], "insightIds": [id] }));
    for _ in 0..5 {
        with("GET", &path, &t, ORIGIN, None).expect(200);
        request("GET", &path, Some(&t), Body::None, &[("Origin", ORIGIN), ("If-None-Match", &etag)]).expect(304);
    }
    // Reading never calls the model.
    assert_eq!(stub::requests(&tag).len(), 1);

    // A refresh with the same answer keeps the ETag; a new answer changes it.
    let refreshed = post(&format!("/api/settings/insights/{id}/refresh"), Some(&ws.admin_token), json!({}));
    refreshed.expect(200);
    assert_eq!(stub::requests(&tag).len(), 2);
    assert_eq!(get(&path, Some(&key)).header("etag"), Some(etag.as_str()));
    stub::script(&tag, json!([{ "reply": "Acme is fine now." }]));
    let refreshed = post(&format!("/api/settings/insights/{id}/refresh"), Some(&ws.admin_token), json!({}));
    refreshed.expect(200);
    assert_eq!(refreshed.body["answer"], "Acme is fine now.");
    let r = request("GET", &path, Some(&key), Body::None, &[("If-None-Match", &etag)]);
    r.expect(200);
    assert_ne!(r.header("etag"), Some(etag.as_str()));

    // Generations have their own line in the usage ledger.
    let usage = get("/api/settings/usage", Some(&ws.admin_token));
    let line = usage.body["keys"].as_array().unwrap().iter().find(|k| k["keyId"] == "insights").cloned();
    let line = line.unwrap_or_else(|| panic!("no insights line: {}", usage.raw));
    assert_eq!(line["name"], "Insights");
    assert_eq!(line["deleted"], false);
    assert_eq!(line["requests"], 3);
    assert!(line["promptTokens"].as_i64().unwrap() >= 30, "{line}");
}

#[test]
fn who_may_read_which_insight() {
    let ws = Workspace::new();
    let agent_a = ws.agent("A", None);
    let agent_b = ws.agent("B", None);
    let a = insight(&ws, json!({ "name": "A", "prompt": "For A", "agentId": agent_a }));
    a.expect(201);
    let b = insight(&ws, json!({ "name": "B", "prompt": "For B", "agentId": agent_b }));
    b.expect(201);
    let (a_id, b_id) = (a.body["id"].as_str().unwrap(), b.body["id"].as_str().unwrap());
    let (scoped, _) = ws.key_with(json!({ "name": unique("a-only-"), "allowedAgentIds": [agent_a] }));
    get(&format!("/api/insights/{a_id}"), Some(&scoped)).expect(200);
    get(&format!("/api/insights/{b_id}"), Some(&scoped)).expect_error(403, "Agent not allowed for this key");
    let key = ws.key();
    let only_a = token(&key, json!({ "origins": [ORIGIN], "insightIds": [a_id] }));
    with("GET", &format!("/api/insights/{a_id}"), &only_a, ORIGIN, None).expect(200);
    with("GET", &format!("/api/insights/{b_id}"), &only_a, ORIGIN, None)
        .expect_error(403, "Insight not allowed for this token");
    let any = token(&scoped, json!({ "origins": [ORIGIN] }));
    with("GET", &format!("/api/insights/{a_id}"), &any, ORIGIN, None).expect(200);
    with("GET", &format!("/api/insights/{b_id}"), &any, ORIGIN, None)
        .expect_error(403, "Insight not allowed for this token");
    // Another workspace's insight does not exist for this key.
    let other = Workspace::new();
    get(&format!("/api/insights/{a_id}"), Some(&other.key())).expect_error(404, "Insight not found");
}

#[test]
fn a_failing_provider_keeps_the_last_answer_and_backs_off() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("stale-");
    stub::script(&tag, json!([{ "reply": "Good answer." }, { "status": 500 }]));
    let i = fresh_insight(&ws, "Flaky", &format!("Anything new? {tag}"), None);
    let id = i["id"].as_str().unwrap().to_owned();
    let before = now_ms();
    let r = post(&format!("/api/settings/insights/{id}/refresh"), Some(&ws.admin_token), json!({}));
    r.expect(200);
    assert_eq!(r.body["status"], "stale", "{}", r.raw);
    assert_eq!(r.body["answer"], "Good answer.");
    assert_eq!(r.body["lastError"]["code"], "upstream_error");
    assert!(r.body["lastError"]["at"].is_string());
    // The first retry is a minute later.
    let next = r.body["nextRefreshAt"].as_str().unwrap();
    assert!(next > attive_api::domain::time::to_iso(before + 55_000).as_str(), "{next}");
    assert!(next < attive_api::domain::time::to_iso(now_ms() + 65_000).as_str(), "{next}");
    let read = get(&format!("/api/insights/{id}"), Some(&key));
    read.expect(200);
    assert_eq!((read.body["status"].clone(), read.body["answer"].clone()), (json!("stale"), json!("Good answer.")));
    // A second failure in a row waits two minutes.
    let r = post(&format!("/api/settings/insights/{id}/refresh"), Some(&ws.admin_token), json!({}));
    let next = r.body["nextRefreshAt"].as_str().unwrap();
    assert!(next > attive_api::domain::time::to_iso(now_ms() + 110_000).as_str(), "{next}");
    // Recovered: fresh again, the error gone.
    stub::script(&tag, json!([{ "reply": "Better answer." }]));
    let r = post(&format!("/api/settings/insights/{id}/refresh"), Some(&ws.admin_token), json!({}));
    assert_eq!((r.body["status"].clone(), r.body["lastError"].clone()), (json!("fresh"), Value::Null));
    assert_eq!(r.body["answer"], "Better answer.");

    // A first generation that fails leaves it pending, with the error.
    let tag = unique("never-");
    stub::script(&tag, json!([{ "status": 500 }]));
    let r = insight(&ws, json!({ "name": "Never", "prompt": format!("Q {tag}") }));
    let id = r.body["id"].as_str().unwrap().to_owned();
    let i = wait_for(&ws, &id, |i| !i["lastError"].is_null());
    assert_eq!((i["status"].clone(), i["answer"].clone()), (json!("pending"), Value::Null));
}

/// The scheduled job and manual refreshes share each insight's lease: whoever runs at the
/// same moment, one generation happens.
#[test]
fn concurrent_runs_generate_an_insight_once() {
    let ws = Workspace::new();
    let tag = unique("tick-");
    // The first generation takes a moment, so the edit lands while it runs: the insight is
    // then due at once, with its new question, and no one holds it. The second takes a moment
    // too, so the three below meet it running (a refresh after it finished would rightly
    // generate again).
    stub::script(&tag, json!([{ "reply": "First.", "delay_ms": 1500 }, { "reply": "Second.", "delay_ms": 800 }]));
    let r = insight(&ws, json!({ "name": "Ticked", "prompt": format!("Old question {tag}") }));
    r.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    thread::sleep(Duration::from_millis(300));
    let new_prompt = format!("New question {tag}");
    let r = request(
        "PATCH",
        &format!("/api/settings/insights/{id}"),
        Some(&ws.admin_token),
        Body::Json(json!({ "prompt": new_prompt })),
        &[],
    );
    r.expect(200);
    let i = wait_for(&ws, &id, |i| i["answer"] == "First.");
    assert_eq!(i["status"], "stale", "the answer is for the old question: {i}");
    assert_eq!(stub::requests(&new_prompt).len(), 0);
    // Two scheduled runs and a manual refresh at once.
    let base = base_url();
    let runs: Vec<_> = (0..3)
        .map(|n| {
            let (base, id, admin) = (base.clone(), id.clone(), ws.admin_token.clone());
            thread::spawn(move || {
                if n < 2 {
                    get(&format!("{base}/__scheduled?cron=*+*+*+*+*"), None).status
                } else {
                    post(&format!("/api/settings/insights/{id}/refresh"), Some(&admin), json!({})).status
                }
            })
        })
        .collect();
    for run in runs {
        assert_eq!(run.join().unwrap(), 200);
    }
    let i = wait_for(&ws, &id, |i| i["answer"] == "Second.");
    assert_eq!(i["status"], "fresh");
    assert_eq!(stub::requests(&new_prompt).len(), 1, "generated exactly once");
}

#[test]
fn insight_settings_validate_audit_and_cap() {
    let ws = Workspace::new();
    let admin = Some(ws.admin_token.as_str());
    for (body, field) in [
        (json!({ "prompt": "p" }), "name"),
        (json!({ "name": "n" }), "prompt"),
        (json!({ "name": "n", "prompt": "x".repeat(4_001) }), "prompt"),
        (json!({ "name": "x".repeat(101), "prompt": "p" }), "name"),
        (json!({ "name": "n", "prompt": "p", "refreshSeconds": 299 }), "refreshSeconds"),
        (json!({ "name": "n", "prompt": "p", "refreshSeconds": 604_801 }), "refreshSeconds"),
        (json!({ "name": "n", "prompt": "p", "agentId": "agent_nope" }), "agentId"),
    ] {
        let r = insight(&ws, body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.raw);
    }
    let r = insight(&ws, json!({ "name": "Weekly", "prompt": "p", "refreshSeconds": 604_800 }));
    r.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let item = format!("/api/settings/insights/{id}");
    request("PATCH", &item, admin, Body::Json(json!({})), &[]).expect_error(400, "Nothing to change");
    let r = request("PATCH", &item, admin, Body::Json(json!({ "name": "Daily", "refreshSeconds": 86_400 })), &[]);
    r.expect(200);
    assert_eq!((r.body["name"].clone(), r.body["refreshSeconds"].clone()), (json!("Daily"), json!(86_400)));
    delete(&item, admin).expect(204);
    delete(&item, admin).expect_error(404, "Insight not found");
    get(&item, admin).expect_error(404, "Insight not found");
    post(&format!("{item}/refresh"), admin, json!({})).expect_error(404, "Insight not found");
    get("/api/settings/insights", Some(&ws.key())).expect_error(401, "Invalid admin token");
    let log = get("/api/settings/audit-log", admin);
    let entries: Vec<&Value> =
        log.body["entries"].as_array().unwrap().iter().filter(|e| e["target"] == id.as_str()).collect();
    let actions: Vec<&str> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["insight.deleted", "insight.updated", "insight.created"], "{}", log.raw);
    assert_eq!(entries[1]["details"]["changes"]["name"], json!({ "from": "Weekly", "to": "Daily" }));
    assert_eq!(entries[1]["details"]["changes"]["refreshSeconds"], json!({ "from": 604_800, "to": 86_400 }));
    assert_eq!((entries[2]["targetName"].clone(), entries[0]["targetName"].clone()), (json!("Weekly"), json!("Daily")));

    // At most 200 per workspace, counted inside the insert (some created at once).
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let admin = ws.admin_token.clone();
            thread::spawn(move || {
                (0..25)
                    .map(|n| {
                        post(
                            "/api/settings/insights",
                            Some(&admin),
                            json!({ "name": format!("n{t}-{n}"), "prompt": "Count me.", "refreshSeconds": 604_800 }),
                        )
                        .status
                    })
                    .filter(|s| *s == 201)
                    .count()
            })
        })
        .collect();
    let created: Vec<usize> = writers.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(created.iter().sum::<usize>(), 200);
    let r = insight(&ws, json!({ "name": "One too many", "prompt": "p" }));
    r.expect_error(409, "Insight limit reached");
    assert_eq!(r.body["details"]["limit"], 200);
    let list = get("/api/settings/insights", admin);
    assert_eq!(list.body["insights"].as_array().unwrap().len(), 200);
}

/// The settings page and the widget are static files the edge serves before the Worker runs,
/// with the headers of `assets/_headers`; what is not a file (a missing module) reaches the
/// Worker's router.
#[test]
fn static_files_come_from_the_edge_with_their_headers() {
    let page = get("/settings", None);
    page.expect(200);
    assert!(page.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    assert!(page.header("x-request-id").is_none(), "the Worker did not run");
    let widget = get("/embed/v1.js", None);
    widget.expect(200);
    assert!(widget.header("content-type").unwrap().starts_with("text/javascript"));
    assert_eq!(widget.header("cache-control"), Some("public, max-age=86400, stale-while-revalidate=604800"));
    assert_eq!(widget.header("access-control-allow-origin"), Some("*"));
    assert!(widget.raw.contains("attive-insight") && widget.raw.contains("attive-chat"));
    let module = get("/settings/js/dashboards.js", None);
    module.expect(200);
    assert!(module.header("content-type").unwrap().starts_with("text/javascript"));
    get("/settings/js/nope.js", None).expect_error(404, "Not found");
    // Another method on a file: the edge refuses it (the Worker's table says the same).
    request("POST", "/embed/v1.js", None, Body::None, &[]).expect(405);
}
