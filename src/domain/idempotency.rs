//! The rules of the `Idempotency-Key` header on `POST /api/chat`: which values are keys, what
//! "the same request" means (the fingerprint), and what a request finds when its key was seen
//! before ([`decide`]).
//!
//! What is made idempotent is the chat turn, not the bytes on the wire: the stored result is
//! the final answer record, replayed as JSON or as a short stream, whichever the retry asks
//! for. That is why `stream` is left out of the fingerprint: a client may retry a broken stream
//! as a plain JSON request with the same key.
//!
//! Semantics follow draft-ietf-httpapi-idempotency-key-header and Stripe: 409 while the first
//! request is still running, 422 when the key comes back with a different body, the stored
//! result (complete or not) once it finished, for 24 hours.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::sse::{Answer, AnswerStatus, Usage};
use super::time::Millis;

pub const HEADER: &str = "Idempotency-Key";
/// Set on a response that is a stored result rather than a new execution.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";
/// Stripe's limit, also the draft's examples': long enough for any UUID or composite key.
pub const MAX_KEY_CHARS: usize = 255;
/// How long a key and its result are kept (and published as such in the README).
pub const RETENTION_MS: Millis = 24 * 60 * 60 * 1000;
/// Added to the longest a turn may run before an unfinished claim counts as abandoned, so a
/// slow but live request is never run twice.
pub const STALE_MARGIN_MS: Millis = 60_000;
/// The longest `Retry-After` of a 409: the first request usually ends within seconds, so
/// telling a client to wait until the claim could go stale would only slow it down.
pub const MAX_CONFLICT_RETRY_AFTER_SECONDS: u64 = 5;
/// The `error` of the 400 for a key that is not one.
pub const INVALID_KEY: &str = "Invalid Idempotency-Key";

/// The key from the header value: 1–255 printable ASCII characters (0x20–0x7E), not only
/// spaces, either bare (as Stripe's clients send it) or as an RFC 8941 sf-string, i.e. quoted
/// with `\"` and `\\` escapes (as the IETF draft specifies). Both forms of the same key are
/// the same key. Optional whitespace around the value is not part of it.
///
/// # Errors
/// A sentence for the `details` of a 400 [`INVALID_KEY`], never echoing the value.
pub fn parse_key(header: &str) -> Result<String, String> {
    let value = header.trim_matches(|c| c == ' ' || c == '\t');
    let key = if value.starts_with('"') { unquote(value)? } else { value.to_owned() };
    if key.is_empty() {
        return Err("must not be empty".into());
    }
    if !key.bytes().all(|b| (0x20..=0x7E).contains(&b)) {
        return Err("must contain printable ASCII characters only (0x20-0x7E)".into());
    }
    if key.len() > MAX_KEY_CHARS {
        return Err(format!("must be at most {MAX_KEY_CHARS} characters"));
    }
    if key.trim().is_empty() {
        return Err("must not be blank".into());
    }
    Ok(key)
}

/// An RFC 8941 sf-string (`"` … `"`, with `\"` and `\\` the only escapes) → its content.
fn unquote(value: &str) -> Result<String, String> {
    let mut chars = value.chars().skip(1);
    let mut out = String::new();
    loop {
        match chars.next() {
            None => return Err("a quoted key must end with a closing quote".into()),
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\\')) => out.push(c),
                _ => return Err("in a quoted key, a backslash may only escape '\"' or '\\'".into()),
            },
            Some('"') if chars.next().is_some() => {
                return Err("nothing may follow the closing quote of a quoted key".into())
            }
            Some('"') => return Ok(out),
            Some(c) => out.push(c),
        }
    }
}

/// The 400 for an invalid key.
pub fn invalid_key(details: impl Into<String>) -> ApiError {
    ApiError::bad_request(INVALID_KEY, Some(Value::String(details.into())))
}

/// Where the record of a key is stored: the SHA-256 of the route, the caller's scope (the API
/// key's id: one customer's keys can never collide with, or reveal, another's) and the key.
/// Hashing gives a fixed-length id whatever the client sent.
pub fn record_id(scope: &str, key: &str) -> String {
    hex::encode(Sha256::digest(format!("POST /api/chat\n{scope}\n{key}")))
}

/// The fingerprint of a request body: SHA-256 (hex) of its canonical JSON without `stream`.
/// Key order and whitespace do not change it; any other difference does.
pub fn fingerprint(body: &Map<String, Value>) -> String {
    let mut out = String::new();
    let fields = body.iter().filter(|(k, _)| k.as_str() != "stream");
    write_object(fields, &mut out);
    hex::encode(Sha256::digest(out.as_bytes()))
}

/// JSON with object keys sorted (by bytes) at every level and no whitespace, so that equal
/// values have equal text. Numbers keep serde_json's rendering (`1` and `1.0` differ).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => write_object(map.iter(), out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        // Leaves have one rendering each; serializing a `Value` cannot fail.
        leaf => out.push_str(&serde_json::to_string(leaf).unwrap_or_default()),
    }
}

fn write_object<'a>(entries: impl Iterator<Item = (&'a String, &'a Value)>, out: &mut String) {
    let mut entries: Vec<_> = entries.collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_canonical(&Value::String(key.clone()), out);
        out.push(':');
        write_canonical(value, out);
    }
    out.push('}');
}

/// After how long an unfinished claim is abandoned: the longest a turn may take (the LLM's
/// whole deadline, streamed or not) plus [`STALE_MARGIN_MS`].
pub fn stale_after_ms(max_turn_ms: u64) -> Millis {
    Millis::try_from(max_turn_ms).unwrap_or(Millis::MAX).saturating_add(STALE_MARGIN_MS)
}

/// What a stored result of chat `chat_id` contains, exactly as serialised: the per-key object
/// finds the results of erased chats by it.
pub fn chat_needle(chat_id: &str) -> String {
    format!("\"chatId\":{}", Value::from(chat_id))
}

/// The finished turn as stored under its key and replayed to retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResult {
    pub chat_id: String,
    pub message_id: String,
    pub response: String,
    pub status: AnswerStatus,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    /// The model that answered, for the `start` event of a replayed stream.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default = "empty_array")]
    pub sources: Value,
    /// Why a streamed answer is incomplete (the `details.code` of its `error` event); `None`
    /// for a complete answer. A replay ends the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Which provider target answered, after how many attempts: a replay shows the original
    /// ones (records from before providers have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answered_by: Option<Box<AnsweredBy>>,
    /// A completion's calls of the caller's own tools (`/v1/chat/completions`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<crate::domain::llm::ToolCall>,
    /// The agent's tools that ran for it, for a replayed completion's `attive.toolCalls`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traces: Vec<crate::domain::agent::Trace>,
}

/// The target that answered a turn, as the `X-LLM-*` headers show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnsweredBy {
    pub provider: String,
    pub model: String,
    pub attempts: u32,
}

impl AnsweredBy {
    pub fn headers(&self) -> [(&'static str, String); 3] {
        [
            ("X-LLM-Provider", self.provider.clone()),
            ("X-LLM-Model", self.model.clone()),
            ("X-LLM-Attempts", self.attempts.to_string()),
        ]
    }
}

fn empty_array() -> Value {
    Value::Array(Vec::new())
}

impl StoredResult {
    pub fn from_answer(chat_id: impl Into<String>, message_id: impl Into<String>, answer: &Answer) -> Self {
        Self {
            chat_id: chat_id.into(),
            message_id: message_id.into(),
            response: answer.text.clone(),
            status: answer.outcome.status(),
            finish_reason: answer.finish_reason.clone(),
            usage: answer.usage,
            model: answer.model.clone(),
            sources: empty_array(),
            error_code: None,
            answered_by: None,
            tool_calls: Vec::new(),
            traces: Vec::new(),
        }
    }
}

/// What is stored under a key.
// One short-lived value per request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Record {
    /// A request claimed the key and has not finished.
    #[serde(rename_all = "camelCase")]
    InProgress { fingerprint: String, started_at: Millis },
    #[serde(rename_all = "camelCase")]
    Completed { fingerprint: String, completed_at: Millis, result: StoredResult },
}

impl Record {
    pub fn claim(fingerprint: impl Into<String>, now: Millis) -> Self {
        Self::InProgress { fingerprint: fingerprint.into(), started_at: now }
    }

    pub fn complete(fingerprint: impl Into<String>, result: StoredResult, now: Millis) -> Self {
        Self::Completed { fingerprint: fingerprint.into(), completed_at: now, result }
    }

    pub fn fingerprint(&self) -> &str {
        match self {
            Self::InProgress { fingerprint, .. } | Self::Completed { fingerprint, .. } => fingerprint,
        }
    }

    /// When storage may forget it (a TTL to store along with it).
    pub fn expires_at(&self) -> Millis {
        match self {
            Self::InProgress { started_at: at, .. } | Self::Completed { completed_at: at, .. } => {
                at.saturating_add(RETENTION_MS)
            }
        }
    }
}

/// What to do with a request that carries a key.
// One short-lived value per request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Execute it: first store [`Record::claim`], with a conditional write so that of two
    /// racing requests only one wins (the loser decides again with what the winner stored).
    Run,
    /// 409 with `Retry-After`: the first request with this key is still running.
    Conflict { retry_after_seconds: u64 },
    /// 422: the key was used with a different request body.
    Mismatch,
    /// The stored result, with [`REPLAYED_HEADER`]`: true`.
    Replay(StoredResult),
}

/// The state machine of a key. `stored` is what the key's record holds (`None` if nothing),
/// `stale_after_ms` from [`stale_after_ms`]. A record past retention is as good as absent; a
/// different body is refused before anything else (the key is bound to its first request,
/// also while that one runs); an abandoned claim may be taken over. A clock that went
/// backwards makes nothing stale or expired early.
pub fn decide(stored: Option<Record>, fingerprint: &str, now: Millis, stale_after_ms: Millis) -> Decision {
    let Some(record) = stored else { return Decision::Run };
    if now >= record.expires_at() {
        return Decision::Run;
    }
    if record.fingerprint() != fingerprint {
        return Decision::Mismatch;
    }
    match record {
        Record::InProgress { started_at, .. } => {
            let age = now.saturating_sub(started_at).max(0);
            if age >= stale_after_ms {
                return Decision::Run;
            }
            let left_ms = u64::try_from(stale_after_ms.saturating_sub(age)).unwrap_or(0);
            Decision::Conflict {
                retry_after_seconds: left_ms.div_ceil(1000).clamp(1, MAX_CONFLICT_RETRY_AFTER_SECONDS),
            }
        }
        Record::Completed { result, .. } => Decision::Replay(result),
    }
}

/// The `details` of a 409, for the lead's error mapping.
pub fn conflict_details(retry_after_seconds: u64) -> Value {
    json!({ "retryAfterSeconds": retry_after_seconds })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::sse::Outcome;

    fn obj(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text).unwrap() {
            Value::Object(map) => map,
            other => panic!("{other}"),
        }
    }

    fn result() -> StoredResult {
        StoredResult {
            chat_id: "chat_1".into(),
            message_id: "msg_1".into(),
            response: "Hello".into(),
            status: AnswerStatus::Complete,
            finish_reason: Some("stop".into()),
            usage: Usage { prompt_tokens: 10, completion_tokens: 2, estimated: false },
            model: Some("m1".into()),
            sources: json!([]),
            error_code: None,
            answered_by: None,
            tool_calls: Vec::new(),
            traces: Vec::new(),
        }
    }

    #[test]
    fn a_stored_record_is_found_by_its_chats_needle_only() {
        let record = Record::Completed { fingerprint: "f".into(), completed_at: 1, result: result() };
        let data = serde_json::to_string(&record).unwrap();
        assert!(data.contains(&chat_needle("chat_1")), "{data}");
        assert!(!data.contains(&chat_needle("chat_10")));
        assert!(!data.contains(&chat_needle("chat_")));
    }

    #[test]
    fn keys_bare_and_quoted() {
        assert_eq!(parse_key("abc-123").unwrap(), "abc-123");
        assert_eq!(
            parse_key("  8e03978e-40d5-43e8-bc93-6894a57f9324\t").unwrap(),
            "8e03978e-40d5-43e8-bc93-6894a57f9324"
        );
        assert_eq!(parse_key("\"abc-123\"").unwrap(), "abc-123", "sf-string and bare are the same key");
        assert_eq!(parse_key(r#""a \"quoted\" \\ key""#).unwrap(), r#"a "quoted" \ key"#);
        assert_eq!(parse_key("a b").unwrap(), "a b");
        assert_eq!(parse_key("ab\"c").unwrap(), "ab\"c", "a quote inside a bare key is printable");
        assert_eq!(parse_key(&"k".repeat(255)).unwrap().len(), 255);
        assert_eq!(parse_key(&format!("\"{}\"", "k".repeat(255))).unwrap().len(), 255);
    }

    #[test]
    fn invalid_keys_say_why() {
        for (value, why) in [
            ("", "must not be empty"),
            ("   ", "must not be empty"),
            ("\"\"", "must not be empty"),
            ("\"   \"", "must not be blank"),
            ("caf\u{e9}", "printable ASCII"),
            ("a\u{7}b", "printable ASCII"),
            ("a\tb", "printable ASCII"),
            ("\"a\tb\"", "printable ASCII"),
            ("\"abc", "closing quote"),
            ("\"abc\\\"", "closing quote"),
            ("\"a\\nb\"", "backslash"),
            ("\"abc\";p=1", "follow the closing quote"),
        ] {
            let err = parse_key(value).unwrap_err();
            assert!(err.contains(why), "{value:?}: {err}");
        }
        let err = parse_key(&"k".repeat(256)).unwrap_err();
        assert_eq!(err, "must be at most 255 characters");
        assert!(parse_key(&format!("\"{}\"", "k".repeat(256))).is_err());
    }

    #[test]
    fn the_400_has_the_documented_shape() {
        let err = invalid_key(parse_key("").unwrap_err());
        assert_eq!(err.status(), 400);
        assert_eq!(err.body(), json!({"error": "Invalid Idempotency-Key", "details": "must not be empty"}));
    }

    #[test]
    fn record_ids_are_scoped_and_fixed_length() {
        let a = record_id("key_1", "k");
        assert_eq!(a.len(), 64);
        assert_eq!(a, record_id("key_1", "k"));
        assert_ne!(a, record_id("key_2", "k"));
        assert_ne!(a, record_id("key_1", "K"));
    }

    #[test]
    fn fingerprints_ignore_order_whitespace_and_stream() {
        let a = fingerprint(&obj(r#"{"message":"hi","agentId":"a1","meta":{"x":1,"y":[{"b":2,"a":1}]}}"#));
        let b = fingerprint(&obj(
            "{ \"meta\" : { \"y\" : [ { \"a\" : 1 , \"b\" : 2 } ], \"x\" : 1 },\n \"agentId\":\"a1\", \"message\": \"hi\", \"stream\": true }",
        ));
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        let c =
            fingerprint(&obj(r#"{"message":"hi","agentId":"a1","meta":{"x":1,"y":[{"b":2,"a":1}]},"stream":false}"#));
        assert_eq!(a, c);
    }

    #[test]
    fn fingerprints_see_every_other_difference() {
        let base = fingerprint(&obj(r#"{"message":"hi"}"#));
        for other in [
            r#"{"message":"hi "}"#,
            r#"{"message":"Hi"}"#,
            r#"{"message":"hi","chatId":"c1"}"#,
            r#"{"message":"hi","agentId":null}"#,
            r#"{"message":["hi"]}"#,
            r#"{"message":"hi","nested":{"stream":true}}"#,
        ] {
            assert_ne!(fingerprint(&obj(other)), base, "{other}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v: Value = serde_json::from_str(r#"{"b":{"d":1,"c":[{"z":null,"y":"\n\u00e9"}]},"a":true}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":true,"b":{"c":[{"y":"\né","z":null}],"d":1}}"#);
    }

    const NOW: Millis = 1_800_000_000_000;
    const STALE: Millis = 180_000;

    #[test]
    fn a_new_key_runs() {
        assert_eq!(decide(None, "f", NOW, STALE), Decision::Run);
    }

    #[test]
    fn a_running_key_is_a_conflict_with_a_short_retry_after() {
        let claim = Record::claim("f", NOW - 1_000);
        assert_eq!(decide(Some(claim), "f", NOW, STALE), Decision::Conflict { retry_after_seconds: 5 });
        let nearly_stale = Record::claim("f", NOW - STALE + 1_500);
        assert_eq!(decide(Some(nearly_stale), "f", NOW, STALE), Decision::Conflict { retry_after_seconds: 2 });
        let from_the_future = Record::claim("f", NOW + 60_000);
        assert_eq!(decide(Some(from_the_future), "f", NOW, STALE), Decision::Conflict { retry_after_seconds: 5 });
    }

    #[test]
    fn an_abandoned_claim_may_be_taken_over() {
        assert_eq!(decide(Some(Record::claim("f", NOW - STALE)), "f", NOW, STALE), Decision::Run);
        assert_eq!(stale_after_ms(120_000), 180_000);
        assert_eq!(stale_after_ms(u64::MAX), Millis::MAX);
    }

    #[test]
    fn a_different_body_is_a_mismatch_running_or_done() {
        assert_eq!(decide(Some(Record::claim("f", NOW)), "g", NOW, STALE), Decision::Mismatch);
        assert_eq!(decide(Some(Record::claim("f", NOW - STALE)), "g", NOW, STALE), Decision::Mismatch);
        assert_eq!(decide(Some(Record::complete("f", result(), NOW)), "g", NOW, STALE), Decision::Mismatch);
    }

    #[test]
    fn a_finished_key_replays_its_result_until_retention_ends() {
        let done = Record::complete("f", result(), NOW - RETENTION_MS + 1);
        assert_eq!(decide(Some(done.clone()), "f", NOW, STALE), Decision::Replay(result()));
        assert_eq!(decide(Some(done), "f", NOW + 1, STALE), Decision::Run);
        let expired_other_body = Record::complete("f", result(), NOW - RETENTION_MS);
        assert_eq!(decide(Some(expired_other_body), "g", NOW, STALE), Decision::Run);
        let incomplete = StoredResult { status: AnswerStatus::Incomplete, finish_reason: None, ..result() };
        assert_eq!(
            decide(Some(Record::complete("f", incomplete.clone(), NOW)), "f", NOW, STALE),
            Decision::Replay(incomplete),
            "an incomplete result is replayed as stored"
        );
        assert_eq!(Record::claim("f", NOW).expires_at(), NOW + RETENTION_MS);
        assert_eq!(RETENTION_MS, 86_400_000);
    }

    #[test]
    fn records_serialize_for_storage() {
        let done = Record::complete("f", result(), NOW);
        let text = serde_json::to_value(&done).unwrap();
        assert_eq!(
            text,
            json!({
                "state": "completed", "fingerprint": "f", "completedAt": NOW,
                "result": {
                    "chatId": "chat_1", "messageId": "msg_1", "response": "Hello", "status": "complete",
                    "finishReason": "stop", "usage": {"promptTokens": 10, "completionTokens": 2, "estimated": false},
                    "model": "m1", "sources": []
                }
            })
        );
        assert_eq!(serde_json::from_value::<Record>(text).unwrap(), done);
        let claim = Record::claim("f", NOW);
        let text = serde_json::to_string(&claim).unwrap();
        assert_eq!(text, format!(r#"{{"state":"in_progress","fingerprint":"f","startedAt":{NOW}}}"#));
        assert_eq!(serde_json::from_str::<Record>(&text).unwrap(), claim);
    }

    #[test]
    fn stored_results_default_sources_and_model() {
        let stored: StoredResult = serde_json::from_value(json!({
            "chatId": "c", "messageId": "m", "response": "r", "status": "incomplete", "finishReason": null,
            "usage": {"promptTokens": 1, "completionTokens": 0}
        }))
        .unwrap();
        assert_eq!(stored.sources, json!([]));
        assert_eq!(stored.model, None);
        assert_eq!(stored.status, AnswerStatus::Incomplete);
        assert!(!stored.usage.estimated);
        assert!(serde_json::from_value::<StoredResult>(json!({"chatId": "c"})).is_err());
    }

    #[test]
    fn results_come_from_answers() {
        let answer = Answer {
            text: "partial".into(),
            outcome: Outcome::Truncated,
            finish_reason: None,
            usage: Usage { prompt_tokens: 5, completion_tokens: 6, estimated: true },
            model: None,
            tool_calls: Vec::new(),
        };
        let stored = StoredResult::from_answer("chat_9", "msg_9", &answer);
        assert_eq!(stored.status, AnswerStatus::Incomplete);
        assert_eq!(stored.response, "partial");
        assert_eq!(stored.usage, answer.usage);
        assert_eq!(stored.sources, json!([]));
        assert_eq!(conflict_details(3), json!({"retryAfterSeconds": 3}));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn accepted_keys_follow_the_rules(s in prop_oneof!["\\PC{0,300}", "[ -~]{0,300}", "\"[ -~]{0,260}\""]) {
            if let Ok(key) = parse_key(&s) {
                prop_assert!((1..=MAX_KEY_CHARS).contains(&key.len()));
                prop_assert!(key.bytes().all(|b| (0x20..=0x7E).contains(&b)));
                prop_assert!(!key.trim().is_empty());
            }
        }

        #[test]
        fn printable_keys_round_trip_through_quoting(key in "[!-~][ -~]{0,200}") {
            let quoted = format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""));
            prop_assert_eq!(parse_key(&quoted).unwrap(), key.clone());
            if !key.starts_with('"') {
                prop_assert_eq!(parse_key(&key).unwrap(), key.trim_end_matches([' ', '\t']).to_owned());
            }
        }

        #[test]
        fn decisions_are_total(
            stored in prop_oneof![
                Just(None),
                (0i64..4, -400_000i64..400_000).prop_map(|(f, age)| Some(Record::claim(f.to_string(), NOW - age))),
                (0i64..4, -1i64..(RETENTION_MS * 2)).prop_map(|(f, age)| Some(Record::complete(f.to_string(), result(), NOW - age))),
            ],
            incoming in 0i64..4,
        ) {
            match decide(stored.clone(), &incoming.to_string(), NOW, STALE) {
                Decision::Conflict { retry_after_seconds } => {
                    prop_assert!((1..=MAX_CONFLICT_RETRY_AFTER_SECONDS).contains(&retry_after_seconds));
                    let is_claim = matches!(stored, Some(Record::InProgress { .. }));
                    prop_assert!(is_claim);
                }
                Decision::Replay(r) => prop_assert_eq!(r, result()),
                Decision::Mismatch => prop_assert!(stored.is_some_and(|r| r.fingerprint() != incoming.to_string())),
                Decision::Run => {}
            }
        }
    }
}
