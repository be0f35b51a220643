//! The event protocol of a streamed `POST /api/chat`: which events we send with which fields,
//! how a provider stream's ending becomes our one terminal event, and the error codes of that
//! event. The transport (`crate::http::sse`) only moves these frames.
//!
//! `start` first; `delta`s whose texts joined are exactly the stored answer; then exactly one
//! terminal event, last: `done` (sent only once the turn is stored) or `error`.

use serde_json::{json, Value};

use super::error::ApiError;
use super::idempotency::StoredResult;
use super::sse::{self, Answer, Outcome, Usage, EVENT_DELTA, EVENT_DONE, EVENT_ERROR, EVENT_START, EVENT_TOOL};

/// Keep-alive comments are sent when nothing else was for this long (proxies and clients
/// close connections that stay silent; 15 s is what Anthropic and Dify use too).
pub const PING_EVERY_MS: u64 = 15_000;

/// How long a frame may wait for a caller that stopped reading before the caller counts as
/// gone (the last resort when neither the body cancel nor the request signal arrives).
pub const SEND_STALL_MS: u64 = 30_000;

/// The `details.code` of an `error` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The provider sent nothing for longer than `LLM_TIMEOUT_MS`, or the answer passed
    /// `LLM_STREAM_MAX_MS`.
    UpstreamTimeout,
    /// The provider's connection broke, or it reported an error in-band.
    UpstreamError,
    /// The provider's stream ended cleanly without saying it was finished.
    UpstreamTruncated,
    /// The chat was deleted while the answer was streaming.
    ChatNotFound,
    /// The answer could not be stored.
    StorageFailed,
    /// The caller went away: never sent (nobody is listening), but a retry with the same
    /// `Idempotency-Key` replays the partial answer with it.
    ClientDisconnected,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpstreamTimeout => "upstream_timeout",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTruncated => "upstream_truncated",
            Self::ChatNotFound => "chat_not_found",
            Self::StorageFailed => "storage_failed",
            Self::ClientDisconnected => "client_disconnected",
        }
    }

    /// The status an incomplete stream counts as in the usage ledger: the error the caller was
    /// shown, or 200 when the caller went away (nothing failed on our side).
    pub fn usage_status(self) -> u16 {
        match self {
            Self::ClientDisconnected => 200,
            other => other.as_api_error().status(),
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        [
            Self::UpstreamTimeout,
            Self::UpstreamError,
            Self::UpstreamTruncated,
            Self::ChatNotFound,
            Self::StorageFailed,
            Self::ClientDisconnected,
        ]
        .into_iter()
        .find(|c| c.as_str() == code)
    }

    /// The same failure as the JSON mode would report it (for a JSON replay of a stream that
    /// ended this way): its status and `error` message.
    pub fn as_api_error(self) -> ApiError {
        match self {
            Self::UpstreamTimeout => ApiError::UpstreamTimeout,
            Self::UpstreamError => ApiError::Upstream("the LLM provider failed during the answer".into()),
            Self::UpstreamTruncated => ApiError::Upstream("the LLM provider's answer was cut off".into()),
            Self::ChatNotFound => ApiError::NotFound("Chat not found", None),
            Self::StorageFailed => ApiError::internal("the answer could not be stored"),
            Self::ClientDisconnected => ApiError::Upstream("the caller disconnected before the answer ended".into()),
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::UpstreamTimeout => "Upstream timeout",
            Self::UpstreamError => "Upstream error",
            Self::UpstreamTruncated => "Upstream response was cut off",
            Self::ChatNotFound => "Chat not found",
            Self::StorageFailed => "Could not store the answer",
            Self::ClientDisconnected => "The caller disconnected",
        }
    }
}

/// How reading the provider's stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The provider's stream ended (EOF, `[DONE]` or an in-band error), as the parser saw it.
    Upstream(sse::StreamEnd),
    /// The connection broke (an error while reading), or the bytes were not SSE.
    Broken,
    /// A deadline passed: `LLM_TIMEOUT_MS` of silence, or `LLM_STREAM_MAX_MS` in all.
    TimedOut,
    /// The caller disconnected.
    CallerGone,
}

/// Whether the answer is complete, or why not: the one place that turns how a stream ended
/// into our terminal event. Only the provider saying it finished makes an answer complete;
/// an end we caused (a deadline, a caller who left) never does, whatever was received.
pub fn verdict(ending: Ending, answer: &Answer) -> Option<ErrorCode> {
    match (ending, &answer.outcome) {
        (Ending::CallerGone, _) => Some(ErrorCode::ClientDisconnected),
        (Ending::TimedOut, _) => Some(ErrorCode::UpstreamTimeout),
        (_, Outcome::UpstreamError { .. }) => Some(ErrorCode::UpstreamError),
        (Ending::Broken, _) => Some(ErrorCode::UpstreamError),
        (Ending::Upstream(_), Outcome::Complete) => None,
        (Ending::Upstream(_), Outcome::Truncated) => Some(ErrorCode::UpstreamTruncated),
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({ "promptTokens": u.prompt_tokens, "completionTokens": u.completion_tokens, "estimated": u.estimated })
}

/// `sources`: the records given to the model (retrieval happens before it answers), without
/// `cited` flags, which `done` carries.
/// `provider`: the provider target that answers (after any fallback before the first content).
pub fn start(
    chat_id: &str,
    message_id: &str,
    request_id: &str,
    provider: &str,
    model: &str,
    sources: &Value,
) -> String {
    sse::frame(
        EVENT_START,
        &json!({ "chatId": chat_id, "messageId": message_id, "requestId": request_id, "provider": provider, "model": model, "sources": sources }),
    )
}

pub fn delta(text: &str) -> String {
    sse::frame(EVENT_DELTA, &json!({ "text": text }))
}

/// An executed tool call of an agent (before the answer's deltas): `{"name", "arguments",
/// "resultCount"}`, and `error` when the call failed.
pub fn tool(trace: &crate::domain::agent::Trace) -> String {
    sse::frame(EVENT_TOOL, &trace.event())
}

/// `sources`: the same list as in `start`, with each one's `cited` flag.
pub fn done(chat_id: &str, message_id: &str, finish_reason: Option<&str>, usage: &Usage, sources: &Value) -> String {
    sse::frame(
        EVENT_DONE,
        &json!({
            "chatId": chat_id,
            "messageId": message_id,
            "finishReason": finish_reason,
            "usage": usage_json(usage),
            "sources": sources,
        }),
    )
}

pub fn error(code: ErrorCode, request_id: &str, chat_id: &str, message_id: &str) -> String {
    sse::frame(
        EVENT_ERROR,
        &json!({
            "error": code.message(),
            "details": { "code": code.as_str() },
            "requestId": request_id,
            "chatId": chat_id,
            "messageId": message_id,
        }),
    )
}

/// A stored result as a stream: `start`, one `delta` with the whole text (if any), then the
/// terminal event it ended with the first time.
pub fn replay(result: &StoredResult, request_id: &str) -> Vec<String> {
    let model = result.model.as_deref().unwrap_or_default();
    let provider = result.answered_by.as_ref().map_or(super::providers::DEFAULT_PROVIDER, |a| a.provider.as_str());
    let mut frames = vec![start(&result.chat_id, &result.message_id, request_id, provider, model, &result.sources)];
    if !result.response.is_empty() {
        frames.push(delta(&result.response));
    }
    frames.push(match result.error_code.as_deref() {
        None => {
            done(&result.chat_id, &result.message_id, result.finish_reason.as_deref(), &result.usage, &result.sources)
        }
        Some(code) => {
            let code = ErrorCode::parse(code).unwrap_or(ErrorCode::UpstreamError);
            error(code, request_id, &result.chat_id, &result.message_id)
        }
    });
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sse::{AnswerStatus, StreamEnd};

    fn answer(outcome: Outcome) -> Answer {
        Answer {
            text: "partial".into(),
            outcome,
            finish_reason: None,
            usage: Usage::default(),
            model: None,
            tool_calls: Vec::new(),
        }
    }

    #[test]
    fn only_the_provider_finishing_makes_an_answer_complete() {
        let complete = answer(Outcome::Complete);
        assert_eq!(verdict(Ending::Upstream(StreamEnd::Clean), &complete), None);
        assert_eq!(verdict(Ending::CallerGone, &complete), Some(ErrorCode::ClientDisconnected));
        assert_eq!(verdict(Ending::TimedOut, &complete), Some(ErrorCode::UpstreamTimeout));
        let truncated = answer(Outcome::Truncated);
        assert_eq!(verdict(Ending::Upstream(StreamEnd::Clean), &truncated), Some(ErrorCode::UpstreamTruncated));
        assert_eq!(verdict(Ending::Broken, &truncated), Some(ErrorCode::UpstreamError));
        let failed = answer(Outcome::UpstreamError { message: "overloaded".into() });
        assert_eq!(verdict(Ending::Upstream(StreamEnd::Clean), &failed), Some(ErrorCode::UpstreamError));
    }

    #[test]
    fn codes_round_trip_and_map_to_json_errors() {
        for code in ["upstream_timeout", "upstream_error", "upstream_truncated", "chat_not_found", "storage_failed"] {
            assert_eq!(ErrorCode::parse(code).map(ErrorCode::as_str), Some(code));
        }
        assert_eq!(ErrorCode::parse("nope"), None);
        assert_eq!(ErrorCode::UpstreamTimeout.as_api_error().status(), 504);
        assert_eq!(ErrorCode::UpstreamTruncated.as_api_error().status(), 502);
    }

    fn data(frame: &str) -> (String, Value) {
        let mut lines = frame.lines();
        let event = lines.next().and_then(|l| l.strip_prefix("event: ")).unwrap().to_owned();
        let data = lines.next().and_then(|l| l.strip_prefix("data: ")).unwrap();
        assert!(frame.ends_with("\n\n"), "{frame:?}");
        (event, serde_json::from_str(data).unwrap())
    }

    #[test]
    fn events_carry_the_contract_fields() {
        let (e, d) = data(&start("chat_1", "msg_1", "req", "default", "m", &json!([])));
        assert_eq!(
            (e.as_str(), d),
            (
                "start",
                json!({"chatId":"chat_1","messageId":"msg_1","requestId":"req","provider":"default","model":"m","sources":[]})
            )
        );
        let (e, d) = data(&delta("a\nb \"c\""));
        assert_eq!((e.as_str(), d), ("delta", json!({"text":"a\nb \"c\""})));
        let usage = Usage { prompt_tokens: 11, completion_tokens: 7, estimated: false };
        let (e, d) = data(&done("chat_1", "msg_1", Some("stop"), &usage, &json!([{"id":"rec_1","cited":true}])));
        assert_eq!(d["sources"][0]["cited"], true);
        assert_eq!(e, "done");
        assert_eq!(d["usage"], json!({"promptTokens":11,"completionTokens":7,"estimated":false}));
        assert_eq!(d["finishReason"], "stop");
        let (e, d) = data(&error(ErrorCode::UpstreamTruncated, "req", "chat_1", "msg_1"));
        assert_eq!(e, "error");
        assert_eq!(d["details"]["code"], "upstream_truncated");
        assert_eq!((d["requestId"].clone(), d["chatId"].clone()), (json!("req"), json!("chat_1")));
    }

    #[test]
    fn replays_end_as_the_original_did() {
        let mut result = StoredResult {
            chat_id: "chat_1".into(),
            message_id: "msg_1".into(),
            response: "Hello".into(),
            status: AnswerStatus::Complete,
            finish_reason: Some("stop".into()),
            usage: Usage { prompt_tokens: 1, completion_tokens: 1, estimated: false },
            model: Some("m".into()),
            sources: json!([]),
            error_code: None,
            answered_by: None,
            tool_calls: Vec::new(),
            traces: Vec::new(),
        };
        let names: Vec<String> = replay(&result, "r").iter().map(|f| data(f).0).collect();
        assert_eq!(names, ["start", "delta", "done"]);
        result.error_code = Some("upstream_truncated".into());
        let frames = replay(&result, "r");
        let (last, d) = data(frames.last().unwrap());
        assert_eq!((last.as_str(), d["details"]["code"].clone()), ("error", json!("upstream_truncated")));
    }
}
