//! The service when its configuration or a dependency is missing: it says so with a clear
//! status and JSON, never opens up, and loses nothing.

use serde_json::json;

use crate::support::*;

fn url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is set by tests/e2e.sh"))
}

#[test]
fn without_an_admin_token_configured_operator_routes_are_closed() {
    let bare = url("ATTIVE_BARE_URL");
    for token in [None, Some(""), Some("anything"), Some(operator_token().as_str())] {
        let r = request("GET", &format!("{bare}/api/admin/workspaces"), token, Body::None, &[]);
        r.expect_error(503, "Service not configured");
        assert_eq!(r.body["details"], "ADMIN_TOKEN");
        let r =
            request("POST", &format!("{bare}/api/admin/workspaces"), token, Body::Json(json!({ "name": "x" })), &[]);
        r.expect_error(503, "Service not configured");
    }
}

#[test]
fn health_is_503_when_d1_is_unavailable() {
    let r = get(&format!("{}/api/health", url("ATTIVE_BARE_URL")), None);
    r.expect_error(503, "Service unavailable");
    assert_eq!(r.body["details"], "D1");
    assert!(r.header("x-request-id").is_some());
}

#[test]
fn when_the_rate_limiter_fails_requests_go_through_without_limit_headers() {
    let base = url("ATTIVE_NO_LIMITER_URL");
    let ws = Workspace::on(&base);

    // Creating keys does not involve the limiter (a key's object is made by its first use),
    // so keys, with or without their own limit, are created; their requests pass (fail open),
    // unlabelled.
    for body in [json!({ "name": "limited", "rateLimitPerMinute": 5 }), json!({ "name": "default" })] {
        let r = ws.create_key_with(body);
        r.expect(201);
        let key = r.body["key"].as_str().unwrap().to_owned();
        for _ in 0..3 {
            let chat = post(&format!("{base}/api/chat"), Some(&key), json!({ "message": "hello" }));
            chat.expect(200);
            assert!(chat.header("ratelimit-limit").is_none());
        }
    }
    // Authentication does not fail open: a wrong key is still refused.
    let r = post(&format!("{base}/api/chat"), Some(&ws.admin_token), json!({ "message": "hi" }));
    r.expect_error(401, "Invalid API key");
}

#[test]
fn when_the_llm_is_down_chat_is_a_502_and_nothing_is_stored() {
    let base = url("ATTIVE_LLM_DOWN_URL");
    let ws = Workspace::on(&base);
    let r = ws.create_key_with(json!({ "name": "k" }));
    let key = r.body["key"].as_str().unwrap().to_owned();
    // Connection refused on the first try and on the one retry.
    let r = post(&format!("{base}/api/chat"), Some(&key), json!({ "message": "anyone there?" }));
    r.expect_error(502, "Upstream error");
    assert_eq!(r.body["details"], "could not connect to the LLM provider");
    assert!(!r.raw.contains(&llm_api_key()));
    let chats = get(&format!("{base}/api/chats"), Some(&key));
    chats.expect(200);
    assert!(chats.body["chats"].as_array().unwrap().is_empty(), "{}", chats.raw);
}
