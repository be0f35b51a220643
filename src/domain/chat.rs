//! The `POST /api/chat` request, and the small rules around chats.

use super::error::{ApiError, ApiResult};
use super::validate::{self, Object, Text};

pub const MESSAGE: Text = Text::new(1, 10_000);
const ID: Text = Text::new(1, 200);
const TITLE_CHARS: usize = 80;

/// What a caller asked for. `agent_id`/`chat_id` are only known to be strings here; whether
/// they exist is storage's question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequest {
    pub message: String,
    pub agent_id: Option<String>,
    pub chat_id: Option<String>,
}

impl TryFrom<&Object> for ChatRequest {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self {
            message: validate::required_text(obj, "message", MESSAGE)?,
            agent_id: validate::optional_text(obj, "agentId", ID)?,
            chat_id: validate::optional_text(obj, "chatId", ID)?,
        })
    }
}

/// Whether the caller wants the answer streamed (Server-Sent Events): `"stream": true`, or no
/// `stream` field and an `Accept` that includes `text/event-stream`. `"stream": false` wins over
/// `Accept`.
///
/// # Errors
/// 400 naming `stream` when it is present but not a boolean (`null` included: the field has
/// no "absent" meaning to fall back on beyond leaving it out).
pub fn wants_stream(obj: &Object, accept: Option<&str>) -> ApiResult<bool> {
    match obj.get("stream") {
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ApiError::invalid("stream", "must be a boolean")),
        None => Ok(accept.is_some_and(|a| {
            a.split(',')
                .any(|part| part.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("text/event-stream")))
        })),
    }
}

/// A chat's title: the first line of its first message, cut at a word boundary near 80
/// characters.
pub fn title_from(message: &str) -> String {
    let line = message.trim().lines().next().unwrap_or_default().trim();
    if line.chars().count() <= TITLE_CHARS {
        return line.to_owned();
    }
    let cut: String = line.chars().take(TITLE_CHARS).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > TITLE_CHARS / 2 => &cut[..i],
        _ => cut.as_str(),
    };
    format!("{}…", cut.trim_end())
}

/// Which agent a turn runs with, given the chat's agent (if continuing) and the request's.
///
/// # Errors
/// 400 when the request names a different agent than the chat was created with: the history
/// was written for that agent's instructions.
pub fn resolve_agent(chat_agent: Option<Option<&str>>, requested: Option<&str>) -> ApiResult<Option<String>> {
    match (chat_agent, requested) {
        (None, requested) => Ok(requested.map(str::to_owned)),
        (Some(bound), None) => Ok(bound.map(str::to_owned)),
        (Some(bound), Some(requested)) if bound == Some(requested) => Ok(Some(requested.to_owned())),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "Agent mismatch",
            Some(serde_json::json!("this chat belongs to another agent; omit agentId or start a new chat")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse(v: Value) -> ApiResult<ChatRequest> {
        ChatRequest::try_from(v.as_object().unwrap())
    }

    #[test]
    fn message_limits_in_characters() {
        assert!(parse(json!({"message": "x".repeat(10_000)})).is_ok());
        assert!(parse(json!({"message": "x".repeat(10_001)})).is_err());
        assert!(parse(json!({"message": "😀".repeat(10_000)})).is_ok());
        assert!(parse(json!({"message": ""})).is_err());
        assert!(parse(json!({"message": " \n\t "})).is_err());
        assert!(parse(json!({"message": 5})).is_err());
        assert!(parse(json!({})).is_err());
    }

    #[test]
    fn optional_ids_and_unknown_fields() {
        let r = parse(json!({"message": "hi", "agentId": null, "chatId": null, "extra": [1]})).unwrap();
        assert_eq!((r.agent_id, r.chat_id), (None, None));
        let err = parse(json!({"message": "hi", "chatId": 12})).unwrap_err();
        assert_eq!(err.body()["details"]["field"], "chatId");
    }

    #[test]
    fn stream_mode_negotiation() {
        let o = |v: Value| v.as_object().cloned().unwrap();
        assert!(!wants_stream(&o(json!({"message":"m"})), None).unwrap());
        assert!(!wants_stream(&o(json!({"message":"m"})), Some("application/json")).unwrap());
        assert!(wants_stream(&o(json!({"message":"m"})), Some("application/json, Text/Event-Stream;q=0.9")).unwrap());
        assert!(wants_stream(&o(json!({"stream":true})), None).unwrap());
        assert!(!wants_stream(&o(json!({"stream":false})), Some("text/event-stream")).unwrap());
        for bad in [json!({"stream":"true"}), json!({"stream":1}), json!({"stream":null})] {
            let err = wants_stream(&o(bad), None).unwrap_err();
            assert_eq!(err.body()["details"]["field"], "stream");
        }
    }

    #[test]
    fn titles() {
        assert_eq!(title_from("  What are the top deals?\nmore"), "What are the top deals?");
        let long = "word ".repeat(40);
        let t = title_from(&long);
        assert!(t.ends_with('…') && t.chars().count() <= TITLE_CHARS + 1, "{t}");
    }

    #[test]
    fn agent_resolution() {
        assert_eq!(resolve_agent(None, Some("agent_a")).unwrap(), Some("agent_a".into()));
        assert_eq!(resolve_agent(Some(Some("agent_a")), None).unwrap(), Some("agent_a".into()));
        assert_eq!(resolve_agent(Some(None), None).unwrap(), None);
        assert!(resolve_agent(Some(Some("agent_a")), Some("agent_b")).is_err());
        assert!(resolve_agent(Some(None), Some("agent_b")).is_err());
    }
}
