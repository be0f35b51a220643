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
    assert!(first.header("ratelimit-reset").is_some_and(|s| s.parse::<u64>().is_ok()));
    let second = get("/api/chats", Some(&key));
    assert_eq!(second.header("ratelimit-remaining"), Some("8"));
    assert_eq!(second.header("x-ratelimit-remaining"), Some("8"));
}

#[test]
fn exactly_the_limit_passes_under_concurrency_and_the_rest_reach_nothing() {
    let ws = Workspace::new();
    let r = ws.create_key_with(json!({ "name": "burst", "rateLimitPerMinute": 5 }));
    let key = r.body["key"].as_str().unwrap().to_owned();
    let tag = unique("burst-");
    let handles: Vec<_> = (0..30)
        .map(|i| {
            let (key, tag) = (key.clone(), tag.clone());
            std::thread::spawn(move || chat(&key, json!({ "message": format!("{tag} #{i}") })))
        })
        .collect();
    let results: Vec<Resp> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results.iter().filter(|r| r.status == 200).count();
    let limited: Vec<&Resp> = results.iter().filter(|r| r.status == 429).collect();
    assert_eq!((ok, limited.len()), (5, 25));
    let mut retry_after = 0;
    for r in &limited {
        r.expect_error(429, "Rate limit exceeded");
        let header: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert_eq!(r.body["details"]["retryAfterSeconds"], header);
        assert_eq!(r.header("ratelimit-remaining"), Some("0"));
        retry_after = retry_after.max(header);
    }
    assert!((1..=12).contains(&retry_after), "{retry_after}");
    // Refused requests reached neither the LLM nor D1.
    assert_eq!(stub::requests(&tag).len(), 5);
    let chats = get("/api/chats?limit=100", Some(&key));
    // That read was itself refused: the budget is spent. Read through another key instead.
    chats.expect(429);
    let reader = ws.key();
    let listed = get("/api/chats?limit=100", Some(&reader));
    listed.expect(200);
    assert_eq!(listed.header("ratelimit-limit"), Some("60"));
    assert_eq!(listed.body["chats"].as_array().unwrap().len(), 5);

    // A second key of the same workspace has its own budget (the read above proves it), and
    // after Retry-After the first key works again.
    std::thread::sleep(std::time::Duration::from_secs(retry_after));
    chat(&key, json!({ "message": "after the pause" })).expect(200);
}
