//! The provider wires: how each API family is written to and read from.
//!
//! Every wire reads into the same types: a JSON answer into an [`llm::Completion`], a stream
//! into [`sse::Event`]s for the [`sse::Collector`], and a failure into a [`FailureKind`]. What
//! comes after (the answer, its usage and completeness, retries and fallbacks) therefore never
//! needs to know which provider answered.
//!
//! - The OpenAI Chat Completions wire is [`llm`] and [`sse::Parser`]; its errors are read by
//!   [`error_kind`] here.
//! - [`anthropic`] is the Anthropic Messages wire.
//!
//! [`llm`]: crate::domain::llm
//! [`llm::Completion`]: crate::domain::llm::Completion
//! [`sse::Event`]: crate::domain::sse::Event
//! [`sse::Collector`]: crate::domain::sse::Collector
//! [`sse::Parser`]: crate::domain::sse::Parser

use serde_json::{json, Value};

use crate::domain::llm::{self, Completion, Offer, Turn};
use crate::domain::openai_api::Sampling;
use crate::domain::sse::{Event, ParseError, Parser, StreamEnd};

pub mod anthropic;

/// The API family a provider speaks: the one place that knows which one is in use. Everything
/// above it (the turn, the transports) calls these methods and reads the same types back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Anthropic,
}

impl Wire {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    /// The endpoint, after the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Self::OpenAi => "/chat/completions",
            Self::Anthropic => "/messages",
        }
    }

    /// The request body. `max_tokens` is sent where the wire requires it (Anthropic).
    pub fn request_body(
        self,
        model: &str,
        max_tokens: u32,
        messages: &[Turn],
        tools: Option<Offer<'_>>,
        stream: bool,
    ) -> Value {
        match (self, stream) {
            (Self::OpenAi, false) => llm::request_body(model, messages, tools),
            (Self::OpenAi, true) => llm::stream_request_body(model, messages, tools),
            (Self::Anthropic, _) => anthropic::request_body(model, max_tokens, messages, tools, stream),
        }
    }

    /// Adds a caller's generation parameters (the OpenAI-compatible route) to a request body,
    /// where this wire has them; the others are left out. A `tool_choice` applies only when
    /// tools are offered and the turn has not already said `none` (its last step).
    pub fn apply(self, body: &mut Value, s: &Sampling) {
        let offers_tools = body.get("tools").is_some();
        let Some(obj) = body.as_object_mut() else { return };
        let mut set = |k: &str, v: Value| {
            obj.insert(k.to_owned(), v);
        };
        match self {
            Self::OpenAi => {
                if let Some(n) = s.max_tokens {
                    set("max_tokens", json!(n));
                }
                if let Some(t) = s.temperature {
                    set("temperature", json!(t));
                }
                if let Some(p) = s.top_p {
                    set("top_p", json!(p));
                }
                if !s.stop.is_empty() {
                    set("stop", json!(s.stop));
                }
                if let Some(seed) = s.seed {
                    set("seed", json!(seed));
                }
                if let Some(user) = &s.user {
                    set("user", json!(user));
                }
                if let Some(format) = &s.response_format {
                    set("response_format", format.clone());
                }
            }
            Self::Anthropic => {
                if let Some(n) = s.max_tokens {
                    set("max_tokens", json!(n));
                }
                // Anthropic's range is 0 to 1.
                if let Some(t) = s.temperature {
                    set("temperature", json!(t.min(1.0)));
                }
                if let Some(p) = s.top_p {
                    set("top_p", json!(p));
                }
                if !s.stop.is_empty() {
                    set("stop_sequences", json!(s.stop));
                }
            }
        }
        let already_none =
            obj.get("tool_choice").is_some_and(|c| c == "none" || c.get("type").is_some_and(|t| t == "none"));
        if let (Some(choice), true, false) = (&s.tool_choice, offers_tools, already_none) {
            let choice = match self {
                Self::OpenAi => Some(choice.clone()),
                Self::Anthropic => match (choice.as_str(), choice.pointer("/function/name").and_then(Value::as_str)) {
                    (Some("auto"), _) => Some(json!({ "type": "auto" })),
                    (Some("required"), _) => Some(json!({ "type": "any" })),
                    (Some("none"), _) => Some(json!({ "type": "none" })),
                    (_, Some(name)) => Some(json!({ "type": "tool", "name": name })),
                    _ => None,
                },
            };
            if let Some(choice) = choice {
                obj.insert("tool_choice".to_owned(), choice);
            }
        }
    }

    /// The headers that carry the key (none without one), and the wire's own.
    pub fn auth_headers(self, api_key: Option<&str>) -> Vec<(&'static str, String)> {
        match self {
            Self::OpenAi => api_key.map(|k| ("Authorization", format!("Bearer {k}"))).into_iter().collect(),
            Self::Anthropic => anthropic::headers(api_key.unwrap_or_default())
                .into_iter()
                .filter(|(name, value)| *name != "x-api-key" || !value.is_empty())
                .collect(),
        }
    }

    /// A 2xx body read as a completion.
    ///
    /// # Errors
    /// A short description (never the body) when it is not one.
    pub fn parse_response(self, body: &[u8]) -> Result<Completion, String> {
        match self {
            Self::OpenAi => llm::parse_completion(body),
            Self::Anthropic => anthropic::parse_response(body),
        }
    }

    /// What an error response says about retrying and falling back.
    pub fn error_kind(self, status: u16, body: &[u8]) -> FailureKind {
        match self {
            Self::OpenAi => error_kind(status, body),
            Self::Anthropic => anthropic::error_kind(status, body),
        }
    }

    pub fn stream_parser(self) -> StreamParser {
        match self {
            Self::OpenAi => StreamParser::OpenAi(Parser::new()),
            Self::Anthropic => StreamParser::Anthropic(anthropic::StreamParser::new()),
        }
    }
}

/// A provider stream's reader, for either wire: both yield the same [`Event`]s.
#[derive(Debug)]
pub enum StreamParser {
    OpenAi(Parser),
    Anthropic(anthropic::StreamParser),
}

impl StreamParser {
    /// # Errors
    /// The bytes are not a stream of this wire.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ParseError> {
        match self {
            Self::OpenAi(p) => p.push(bytes),
            Self::Anthropic(p) => p.push(bytes),
        }
    }

    /// # Errors
    /// An error a previous `push` deferred.
    pub fn finish(&mut self) -> Result<StreamEnd, ParseError> {
        match self {
            Self::OpenAi(p) => p.finish(),
            Self::Anthropic(p) => p.finish(),
        }
    }

    /// What an in-stream error event said, where the wire tells (else a server failure).
    pub fn failure(&self) -> FailureKind {
        match self {
            Self::OpenAi(_) => FailureKind::Server,
            Self::Anthropic(p) => p.failure().unwrap_or(FailureKind::Server),
        }
    }
}

/// Why a provider call failed, as far as retrying it and falling back to another provider are
/// concerned. The I/O layer produces `Timeout` and `Connection`; the rest come from a status
/// code and an error body ([`error_kind`], [`anthropic::error_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within our deadline, or the provider's own timeout (408, Anthropic's
    /// `timeout_error`).
    Timeout,
    /// No HTTP response at all (refused, reset, DNS).
    Connection,
    /// 429: too many requests for now.
    RateLimited,
    /// This provider's account is out of money or quota (402, OpenAI's `insufficient_quota`, an
    /// Anthropic spend limit): waiting will not help, another provider may.
    Quota,
    /// 529, or Anthropic's `overloaded_error` (also inside a 200 stream).
    Overloaded,
    /// Any other 5xx, or an error with nothing more specific to say.
    Server,
    /// 401 or 403: the key is missing, wrong or lacks access, at this provider only.
    Auth,
    /// 404: this provider does not have the model (or the endpoint).
    NotFound,
    /// The prompt does not fit the model's context window: only a larger model can help, so
    /// it is for the caller to pick one, not for a blind fallback.
    ContextLength,
    /// Any other 4xx: our request is wrong, and would be wrong at any provider.
    Invalid,
}

impl FailureKind {
    /// Whether another provider may succeed where this one failed. Everything that is about
    /// this provider (its availability, limits, key, models) falls back; a request we got
    /// wrong does not, since it would fail everywhere and only multiply the cost.
    pub fn falls_back(self) -> bool {
        !matches!(self, Self::ContextLength | Self::Invalid)
    }

    /// Whether the same provider is worth one more try: what passes with a little time (the
    /// statuses `llm::retry_delay_ms` retries today), and not a quota, which does not.
    pub fn retries(self) -> bool {
        matches!(self, Self::Connection | Self::RateLimited | Self::Overloaded | Self::Server)
    }

    /// A stable name for logs and for the attempts we report.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::RateLimited => "rate_limited",
            Self::Quota => "quota",
            Self::Overloaded => "overloaded",
            Self::Server => "server",
            Self::Auth => "auth",
            Self::NotFound => "not_found",
            Self::ContextLength => "context_length",
            Self::Invalid => "invalid",
        }
    }

    /// What a status code alone says. A non-error status (an error reported inside a 200
    /// stream) is `Server` until its body says more.
    pub fn from_status(status: u16) -> Self {
        match status {
            408 => Self::Timeout,
            429 => Self::RateLimited,
            402 => Self::Quota,
            401 | 403 => Self::Auth,
            404 => Self::NotFound,
            529 => Self::Overloaded,
            400..=499 => Self::Invalid,
            _ => Self::Server,
        }
    }
}

/// Classifies an OpenAI-compatible error response: the status, refined by the body where
/// providers agree on a code (`insufficient_quota`, `context_length_exceeded`, or a message
/// about the context length). Reads `{"error": {...}}`, Gemini's `[{"error": {...}}]` and
/// vLLM's `{"object": "error", "message": ...}`; any other body leaves the status to decide.
pub fn error_kind(status: u16, body: &[u8]) -> FailureKind {
    let by_status = FailureKind::from_status(status);
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return by_status };
    let value = match &value {
        Value::Array(items) => items.first().unwrap_or(&Value::Null),
        other => other,
    };
    let error = value.get("error").unwrap_or(value);
    let field = |name: &str| error.get(name).and_then(Value::as_str).unwrap_or_default();
    if field("code") == "insufficient_quota" || field("type") == "insufficient_quota" {
        return FailureKind::Quota;
    }
    let message = error.get("message").and_then(Value::as_str).or_else(|| error.as_str()).unwrap_or_default();
    if by_status == FailureKind::Invalid
        && (field("code") == "context_length_exceeded" || mentions_context_length(message))
    {
        return FailureKind::ContextLength;
    }
    by_status
}

/// Whether a 4xx message says the prompt is too long for the model. Providers word it
/// differently ("maximum context length is 8192 tokens", "prompt is too long: 210000 tokens >
/// 200000 maximum", "exceeds the context window").
fn mentions_context_length(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["context length", "context_length", "context window", "prompt is too long"].iter().any(|p| message.contains(p))
}

#[cfg(test)]
mod tests {

    #[test]
    fn caller_parameters_go_where_each_wire_has_them() {
        let s = Sampling {
            max_tokens: Some(64),
            temperature: Some(1.5),
            top_p: Some(0.9),
            stop: vec!["END".into()],
            seed: Some(7),
            user: Some("u1".into()),
            response_format: Some(serde_json::json!({ "type": "json_object" })),
            tool_choice: Some(serde_json::json!("required")),
        };
        let mut body = serde_json::json!({ "model": "m", "tools": [], "tool_choice": "auto" });
        Wire::OpenAi.apply(&mut body, &s);
        assert_eq!(body["max_tokens"], 64);
        assert_eq!((body["seed"].clone(), body["user"].clone()), (serde_json::json!(7), serde_json::json!("u1")));
        assert_eq!(body["response_format"]["type"], "json_object");
        assert_eq!(body["tool_choice"], "required");
        let mut body = serde_json::json!({ "model": "m", "tools": [], "max_tokens": 1024 });
        Wire::Anthropic.apply(&mut body, &s);
        assert_eq!(
            (body["max_tokens"].clone(), body["temperature"].clone()),
            (serde_json::json!(64), serde_json::json!(1.0))
        );
        assert_eq!(body["stop_sequences"], serde_json::json!(["END"]));
        assert!(body.get("seed").is_none() && body.get("response_format").is_none());
        assert_eq!(body["tool_choice"], serde_json::json!({ "type": "any" }));
        // The last step's "none" stands, and no tools means no tool_choice.
        let mut body = serde_json::json!({ "tools": [], "tool_choice": "none" });
        Wire::OpenAi.apply(&mut body, &s);
        assert_eq!(body["tool_choice"], "none");
        let mut body = serde_json::json!({ "model": "m" });
        Wire::OpenAi.apply(&mut body, &s);
        assert!(body.get("tool_choice").is_none());
    }

    use super::*;
    use FailureKind::*;

    #[test]
    fn statuses_alone() {
        let table = [
            (400, Invalid),
            (401, Auth),
            (402, Quota),
            (403, Auth),
            (404, NotFound),
            (408, Timeout),
            (409, Invalid),
            (413, Invalid),
            (422, Invalid),
            (429, RateLimited),
            (500, Server),
            (502, Server),
            (503, Server),
            (504, Server),
            (529, Overloaded),
            (200, Server),
        ];
        for (status, kind) in table {
            assert_eq!(FailureKind::from_status(status), kind, "{status}");
            assert_eq!(error_kind(status, b"<html>oops</html>"), kind, "{status}");
        }
    }

    #[test]
    fn what_falls_back_and_what_retries() {
        let falls_back = [Timeout, Connection, RateLimited, Quota, Overloaded, Server, Auth, NotFound];
        for kind in falls_back {
            assert!(kind.falls_back(), "{kind:?}");
        }
        for kind in [ContextLength, Invalid] {
            assert!(!kind.falls_back(), "{kind:?}");
            assert!(!kind.retries(), "{kind:?}");
        }
        let retried: Vec<FailureKind> = falls_back.into_iter().filter(|k| k.retries()).collect();
        assert_eq!(retried, [Connection, RateLimited, Overloaded, Server]);
        // Every status: 4xx other than 401/402/403/404/408/429 never falls back; 5xx always.
        for status in 400..600 {
            let expected = status >= 500 || [401, 402, 403, 404, 408, 429].contains(&status);
            assert_eq!(FailureKind::from_status(status).falls_back(), expected, "{status}");
        }
        let names: std::collections::HashSet<&str> =
            falls_back.iter().chain(&[ContextLength, Invalid]).map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 10);
    }

    #[test]
    fn openai_bodies_refine_the_status() {
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#;
        assert_eq!(error_kind(429, quota), Quota);
        let rate = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
        assert_eq!(error_kind(429, rate), RateLimited);
        let context = br#"{"error":{"message":"This model's maximum context length is 8192 tokens.","code":"context_length_exceeded"}}"#;
        assert_eq!(error_kind(400, context), ContextLength);
        let vllm = br#"{"object":"error","message":"This model's maximum context length is 4096 tokens","code":400}"#;
        assert_eq!(error_kind(400, vllm), ContextLength);
        let gemini = br#"[{"error":{"code":400,"message":"The input token count exceeds the context window","status":"INVALID_ARGUMENT"}}]"#;
        assert_eq!(error_kind(400, gemini), ContextLength);
        // A 5xx that mentions the context is still the provider's failure.
        assert_eq!(error_kind(500, context), Server);
        assert_eq!(error_kind(400, br#"{"error":{"message":"tools are not supported"}}"#), Invalid);
        assert_eq!(error_kind(400, br#"{"error":"plain"}"#), Invalid);
        assert_eq!(error_kind(401, b""), Auth);
    }
}
