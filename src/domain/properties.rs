//! Property tests of the parsers and the arithmetic of the pure core: whatever the input —
//! huge strings, invalid surrogate escapes, deep nesting, numbers out of range, clocks that
//! jump — they answer without panicking, and their rules hold.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::chat::ChatRequest;
use super::error::ApiError;
use super::llm::{self, Role, Turn};
use super::rate_limit::{self, State};
use super::token::{Token, TokenKind};
use super::{cursor, request_id, settings, time, validate};

/// Arbitrary JSON, nested a few levels: the generator every property test of the core uses.
pub(crate) fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Bodies that are not JSON, or barely: random bytes, escapes, nesting, big numbers.
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        "[\\[{\"\\\\u0-9a-fA-F:,}\\] ]{0,200}".prop_map(String::into_bytes),
        (1usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        "(\\\\ud[89ab][0-9a-f]{2}){1,3}".prop_map(|s| format!("{{\"message\":\"{s}\"}}").into_bytes()),
        "-?[0-9]{1,400}(e[+-]?[0-9]{1,5})?"
            .prop_map(|n| format!("{{\"rateLimitPerMinute\":{n},\"name\":\"k\"}}").into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn token_parse_never_panics_and_accepts_only_its_format(s in "\\PC{0,80}", kind in prop_oneof![Just(TokenKind::ApiKey), Just(TokenKind::AdminToken)]) {
        if let Some(t) = Token::parse(kind, &s) {
            prop_assert!(s.starts_with(kind.prefix()));
            prop_assert_eq!(t.reveal(), s.as_str());
        }
    }

    #[test]
    fn generated_tokens_parse_and_any_change_is_caught(pos in 4usize..40, replacement in "[0-9A-Za-z]") {
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        prop_assert!(Token::parse(TokenKind::ApiKey, key.reveal()).is_some());
        let mut chars: Vec<char> = key.reveal().chars().collect();
        let r = replacement.chars().next().unwrap();
        prop_assume!(chars[pos] != r);
        chars[pos] = r;
        let changed: String = chars.into_iter().collect();
        prop_assert!(Token::parse(TokenKind::ApiKey, &changed).is_none());
    }

    #[test]
    fn bodies_are_parsed_or_refused_with_a_4xx(body in arb_body()) {
        let now = 1_800_000_000_000;
        match validate::object(&body) {
            Ok(obj) => {
                for err in [
                    ChatRequest::try_from(&obj).err(),
                    settings::NewApiKey::parse(&obj, now).err(),
                    settings::NewAgent::try_from(&obj).err(),
                    settings::AgentPatch::try_from(&obj).err(),
                    settings::NewAdmin::try_from(&obj).err(),
                ].into_iter().flatten() {
                    prop_assert_eq!(err.status(), 400);
                }
            }
            Err(err) => prop_assert_eq!(err.status(), 400),
        }
    }

    #[test]
    fn chat_requests_follow_the_documented_rules(value in arb_json(), message in prop_oneof!["\\PC{0,30}", " {1,5}", Just("x".repeat(10_001)), Just("é".repeat(10_000))]) {
        let mut obj = match value { Value::Object(m) => m, _ => serde_json::Map::new() };
        obj.insert("message".into(), Value::from(message.clone()));
        let n = message.chars().count();
        let valid_message = (1..=10_000).contains(&n) && !message.trim().is_empty();
        let ids_ok = ["agentId", "chatId"].iter().all(|f| match obj.get(*f) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => (1..=200).contains(&s.chars().count()) && !s.trim().is_empty(),
            Some(_) => false,
        });
        let parsed = ChatRequest::try_from(&obj);
        prop_assert_eq!(parsed.is_ok(), valid_message && ids_ok, "{:?}", parsed);
    }

    #[test]
    fn completion_parser_never_panics(body in prop::collection::vec(any::<u8>(), 0..400), value in arb_json()) {
        let _ = llm::parse_completion(&body);
        if let Ok(c) = llm::parse_completion(value.to_string().as_bytes()) {
            prop_assert!(!c.content.trim().is_empty());
        }
    }

    #[test]
    fn context_trimming_keeps_the_ends_and_the_budget(
        history in prop::collection::vec(("\\PC{0,300}", any::<bool>()), 0..40),
        budget in 0usize..3000,
    ) {
        let history: Vec<Turn> = history.into_iter().map(|(c, user)| Turn::new(if user { Role::User } else { Role::Assistant }, c)).collect();
        let (messages, dropped) = llm::build_messages("instructions", "", &history, "question", budget);
        prop_assert_eq!(messages.first().map(|t| t.role), Some(Role::System));
        prop_assert_eq!(messages.last(), Some(&Turn::new(Role::User, "question")));
        prop_assert_eq!(&messages[1..messages.len() - 1], &history[dropped..]);
        let fixed = llm::estimate_tokens("instructions") + llm::estimate_tokens("question");
        let sent: usize = messages.iter().map(|t| llm::estimate_tokens(&t.content)).sum();
        prop_assert!(sent <= budget.max(fixed));
    }

    #[test]
    fn the_limiter_allows_exactly_the_limit_at_one_instant(limit in 1u32..200, extra in 0usize..50, now in 0i64..(1i64 << 52)) {
        let mut state: Option<State> = None;
        let mut allowed = 0;
        for _ in 0..(limit as usize + extra) {
            let d = rate_limit::check(state, now, limit);
            prop_assert!(d.remaining <= limit);
            prop_assert!(d.state.tat <= now + 60_000);
            if d.allowed { allowed += 1 } else { prop_assert!(d.retry_after_seconds >= 1 && d.retry_after_seconds <= 60) }
            state = Some(d.state);
        }
        prop_assert_eq!(allowed, limit as usize);
    }

    #[test]
    fn the_limiter_survives_any_clock_and_limit(steps in prop::collection::vec((-(1i64 << 40)..(1i64 << 40), 0u32..200_000), 1..50)) {
        let mut state = None;
        for (now, limit) in steps {
            let d = rate_limit::check(state, now, limit);
            prop_assert!(d.state.tat >= now && d.state.tat <= now + 60_000);
            prop_assert!(d.retry_after_seconds <= 60);
            state = Some(d.state);
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_a_400(at in 0i64..(1i64 << 52), id in "[a-z_0-9]{1,40}", junk in "\\PC{0,60}") {
        prop_assert_eq!(cursor::decode(&cursor::encode(at, &id)).unwrap(), (at, id));
        if let Err(e) = cursor::decode(&junk) { prop_assert_eq!(e.status(), 400) }
        if let Err(e) = cursor::limit(Some(&junk), 20) { prop_assert_eq!(e.status(), 400) }
    }

    #[test]
    fn times_parse_without_panicking(s in "\\PC{0,40}", ms in -(1i64 << 45)..(1i64 << 45)) {
        let _ = time::parse_iso(&s);
        prop_assert_eq!(time::parse_iso(&time::to_iso(ms)), Some(ms));
    }

    #[test]
    fn request_ids_are_always_sane(s in "\\PC{0,200}") {
        let id = request_id::accept_or_generate(Some(&s));
        prop_assert!(!id.is_empty() && id.len() <= 128);
        prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)));
    }
}

#[test]
fn numbers_out_of_range_are_malformed_or_refused() {
    for body in
        [r#"{"name":"k","rateLimitPerMinute":1e400}"#, r#"{"name":"k","rateLimitPerMinute":99999999999999999999999}"#]
    {
        match validate::object(body.as_bytes()) {
            Err(e) => assert_eq!(e, ApiError::MalformedJson),
            Ok(obj) => assert_eq!(settings::NewApiKey::parse(&obj, 0).unwrap_err().status(), 400),
        }
    }
}

#[test]
fn huge_inputs_are_refused_quickly_and_cleanly() {
    let huge = "x".repeat(2_000_000);
    assert!(Token::parse(TokenKind::ApiKey, &huge).is_none());
    assert!(Token::parse(TokenKind::ApiKey, &format!("atv_{huge}")).is_none());
    let body = json!({ "message": huge, "name": huge, "instructions": huge, "agentId": huge });
    let obj = validate::object(body.to_string().as_bytes()).unwrap();
    assert_eq!(ChatRequest::try_from(&obj).unwrap_err().status(), 400);
    assert_eq!(settings::NewAgent::try_from(&obj).unwrap_err().status(), 400);
    assert_eq!(settings::NewApiKey::parse(&obj, 0).unwrap_err().status(), 400);
    assert!(llm::parse_completion(huge.as_bytes()).is_err());
    assert_eq!(cursor::decode(&huge).unwrap_err().status(), 400);
    assert!(request_id::accept_or_generate(Some(&huge)).starts_with("req_"));
}
