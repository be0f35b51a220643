//! Per-key rate limiting in a Durable Object.

use serde_json::json;

use crate::support::*;

#[test]
fn responses_carry_rate_limit_headers_counting_down() {
    let ws = Workspace::new();
    let r = ws.create_key_with(json!({ "name": "limited", "rateLimitPerMinute": 10 }));
    let key = r.body["key"].as_str().unwrap().to_owned();
    let first = chat(&key, json!({ "message": "one" }));
    first.expect(200);
    assert_eq!(first.header("ratelimit-limit"), Some("10"));
    assert_eq!(first.header("ratelimit-remaining"), Some("9"));
    assert_eq!(first.header("x-ratelimit-limit"), Some("10"));
    assert!(first
        .header("ratelimit-reset")
        .is_some_and(|s| s.parse::<u64>().is_ok()));
    let second = get("/api/chats", Some(&key));
    assert_eq!(second.header("ratelimit-remaining"), Some("8"));
    assert_eq!(second.header("x-ratelimit-remaining"), Some("8"));
}
