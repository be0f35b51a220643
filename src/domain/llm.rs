//! The OpenAI-compatible Chat Completions wire format, the context window we send, and the
//! retry policy. The Worker layer only moves these bytes over `fetch`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    /// A tool's result, answering one of the assistant's tool calls.
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(Self::System),
            "user" => Some(Self::User),
            "assistant" => Some(Self::Assistant),
            "tool" => Some(Self::Tool),
            _ => None,
        }
    }
}

/// One tool call of the model, in the Chat Completions shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it (it may not be valid JSON).
    #[serde(default)]
    pub arguments: String,
}

fn function_type() -> String {
    "function".into()
}

/// One message of the conversation sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    /// Empty only for an assistant message that calls tools, where it is left out.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A past answer's tool exchange (its tool calls and their results), sent before it only
    /// while the budget has room once the plain history is in: see [`build_messages`].
    #[serde(skip)]
    pub exchange: Vec<Turn>,
}

impl Turn {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self { role, content: content.into(), tool_calls: Vec::new(), tool_call_id: None, exchange: Vec::new() }
    }

    /// The assistant's message that calls tools.
    pub fn calling(calls: Vec<ToolCall>) -> Self {
        Self { tool_calls: calls, ..Self::new(Role::Assistant, "") }
    }

    /// A tool's result for the call `id`.
    pub fn tool_result(id: &str, content: impl Into<String>) -> Self {
        Self { tool_call_id: Some(id.to_owned()), ..Self::new(Role::Tool, content) }
    }

    /// Estimated tokens of the message as sent (its tool calls included).
    pub fn tokens(&self) -> usize {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| estimate_tokens(&c.function.name) + estimate_tokens(&c.function.arguments))
            .sum();
        estimate_tokens(&self.content) + calls
    }
}

/// Rough token count: about four characters per token for English text, plus a few tokens of
/// per-message framing. It over-counts CJK a little less than it should, which the default
/// budget leaves room for; it is only used to decide what history to drop.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4) + PER_MESSAGE_TOKENS
}

/// The framing tokens `estimate_tokens` adds per message. The history query repeats the
/// estimate in SQL (`(length(content) + 3) / 4 + PER_MESSAGE_TOKENS`), so both agree on what
/// fits.
pub const PER_MESSAGE_TOKENS: usize = 4;

/// What the history may use of the budget once the new message is counted: the bound the
/// history query applies in D1, before the exact trimming of [`build_messages`].
pub fn history_budget(message: &str, budget: usize) -> usize {
    budget.saturating_sub(estimate_tokens(message))
}

/// The messages for one completion: the instructions as `system`, the workspace's data block
/// (when there is one: a second `system` message, so the data never mixes with the agent's
/// instructions), as much recent history as fits in `budget` estimated tokens, then the new
/// `user` message. The system messages and the new message are always sent, even if they alone
/// exceed the budget; history is dropped from the oldest end, and never starts with an
/// assistant turn whose question was dropped.
///
/// Returns the messages and how many history turns were dropped.
pub fn build_messages(
    instructions: &str,
    data: &str,
    history: &[Turn],
    message: &str,
    budget: usize,
) -> (Vec<Turn>, usize) {
    let data_cost = if data.is_empty() { 0 } else { estimate_tokens(data) };
    let fixed = estimate_tokens(instructions) + data_cost + estimate_tokens(message);
    let mut room = budget.saturating_sub(fixed);
    let mut keep_from = history.len();
    for (i, turn) in history.iter().enumerate().rev() {
        let cost = estimate_tokens(&turn.content);
        if cost > room {
            break;
        }
        room -= cost;
        keep_from = i;
    }
    while history.get(keep_from).is_some_and(|t| t.role == Role::Assistant) {
        keep_from += 1;
    }
    let kept = history.get(keep_from..).unwrap_or_default();
    // What room is left goes to the kept answers' tool exchanges, newest first: an exchange
    // goes in whole or not at all (a tool result without its call is refused by providers).
    let mut with_exchange = vec![false; kept.len()];
    for (i, turn) in kept.iter().enumerate().rev() {
        if turn.exchange.is_empty() {
            continue;
        }
        let cost: usize = turn.exchange.iter().map(Turn::tokens).sum();
        if cost > room {
            break;
        }
        room -= cost;
        if let Some(flag) = with_exchange.get_mut(i) {
            *flag = true;
        }
    }
    let mut messages = Vec::with_capacity(kept.len() + 3);
    messages.push(Turn::new(Role::System, instructions));
    if !data.is_empty() {
        messages.push(Turn::new(Role::System, data));
    }
    for (turn, exchange) in kept.iter().zip(with_exchange) {
        if exchange {
            messages.extend(turn.exchange.iter().cloned());
        }
        messages.push(Turn { exchange: Vec::new(), ..turn.clone() });
    }
    messages.push(Turn::new(Role::User, message));
    (messages, keep_from)
}

/// The messages of a stateless turn (the OpenAI-compatible route): the instructions and the
/// data block first, then the caller's own system messages (which follow ours and can never
/// replace them), then the caller's conversation as it sent it. Nothing is trimmed: the
/// conversation is the caller's, as with the API it mimics.
pub fn build_stateless(instructions: &str, data: &str, system: &[String], conversation: &[Turn]) -> Vec<Turn> {
    let mut messages = Vec::with_capacity(conversation.len() + system.len() + 2);
    messages.push(Turn::new(Role::System, instructions));
    if !data.is_empty() {
        messages.push(Turn::new(Role::System, data));
    }
    messages.extend(system.iter().map(|s| Turn::new(Role::System, s.as_str())));
    messages.extend(conversation.iter().cloned());
    messages
}

/// The tools offered with a request: their definitions (the `tools` array), and whether the
/// model must answer without calling any (`tool_choice: "none"`, for the last step).
#[derive(Debug, Clone, Copy)]
pub struct Offer<'a> {
    pub definitions: &'a Value,
    pub final_step: bool,
}

/// The 502's detail when a provider refuses a request that offers tools: most likely it (or
/// its model) does not do tool calling, and the admin can act on that.
pub fn tools_refused(status: u16) -> String {
    format!(
        "the LLM provider refused a request with tools (HTTP {status}): this agent has tools, and the provider or its \
         model does not seem to support tool calling; use one that does (e.g. OpenAI, vLLM with a tool-call parser, \
         llama.cpp with --jinja, Ollama with a tool-capable model) or remove the agent's tools"
    )
}

/// Whether a provider's error body is about tools (`tools`, `tool_choice`, `functions`): then a
/// refusal of a request with tools means the provider or model does not do tool calling.
pub fn mentions_tools(body: &str) -> bool {
    let body = body.to_ascii_lowercase();
    body.contains("tool") || body.contains("function")
}

/// The JSON body of `POST {base}/chat/completions`.
pub fn request_body(model: &str, messages: &[Turn], tools: Option<Offer<'_>>) -> Value {
    let mut body = json!({ "model": model, "messages": messages });
    if let Some(offer) = tools {
        body["tools"] = offer.definitions.clone();
        body["tool_choice"] = json!(if offer.final_step { "none" } else { "auto" });
    }
    body
}

/// The body of a streamed request: the same, asking for SSE and for the usage chunk at the end
/// (`stream_options.include_usage`), without which a stream reports no token counts.
pub fn stream_request_body(model: &str, messages: &[Turn], tools: Option<Offer<'_>>) -> Value {
    let mut body = request_body(model, messages, tools);
    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    body
}

/// What we keep of a completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub content: String,
    pub model: Option<String>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// `choices[0].finish_reason` (`stop`, `length`, …), when the provider sent one.
    pub finish_reason: Option<String>,
    /// The tools the model asked to call (then `content` may be empty).
    pub tool_calls: Vec<ToolCall>,
}

/// Parses `choices[0].message.content` and `usage` from a 2xx body.
///
/// # Errors
/// A short description (never the body itself) when the body is not a usable completion.
pub fn parse_completion(body: &[u8]) -> Result<Completion, String> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "response is not JSON".to_owned())?;
    let content = value
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .or_else(|| Some("").filter(|_| message_calls_tools(&value)))
        .ok_or_else(|| "response has no choices[0].message.content".to_owned())?;
    let tool_calls: Vec<ToolCall> = match value
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("tool_calls"))
    {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls
            .iter()
            .enumerate()
            .map(|(i, call)| tool_call(i, call))
            .collect::<Option<_>>()
            .ok_or_else(|| "response has malformed tool_calls".to_owned())?,
        Some(_) => return Err("response has malformed tool_calls".into()),
    };
    if content.trim().is_empty() && tool_calls.is_empty() {
        return Err("response content is empty".into());
    }
    let usage = value.get("usage");
    let count = |name: &str| usage.and_then(|u| u.get(name)).and_then(Value::as_u64);
    Ok(Completion {
        content: content.to_owned(),
        model: value.get("model").and_then(Value::as_str).map(str::to_owned),
        prompt_tokens: count("prompt_tokens"),
        completion_tokens: count("completion_tokens"),
        finish_reason: value
            .get("choices")
            .and_then(|c| c.get(0))
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .map(str::to_owned),
        tool_calls,
    })
}

/// An id for a tool call the provider sent without one: nine letters and digits, the
/// strictest form providers accept (Mistral's).
pub fn fallback_call_id(index: usize) -> String {
    format!("call{:05}", index % 100_000)
}

/// One tool call of a completion, read leniently where servers differ: a missing id gets one
/// (`call_<n>`, so its result can be matched to it), and arguments sent as a JSON object
/// rather than as its text are taken as its text. A call without a function name is malformed.
fn tool_call(index: usize, call: &Value) -> Option<ToolCall> {
    let function = call.get("function")?;
    let name = function.get("name").and_then(Value::as_str).filter(|n| !n.is_empty())?;
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    };
    let id = call.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
    Some(ToolCall {
        id: id.map_or_else(|| fallback_call_id(index), str::to_owned),
        kind: "function".into(),
        function: FunctionCall { name: name.to_owned(), arguments },
    })
}

/// Whether the first choice's message carries a non-empty `tool_calls` array (its `content`
/// is then null).
fn message_calls_tools(value: &Value) -> bool {
    value
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The longest upstream `Retry-After` we wait for inside a caller's request; longer ones are
/// reported as an upstream error straight away instead of holding the caller.
pub const MAX_RETRY_AFTER_MS: u64 = 5_000;

/// How an attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure<'a> {
    /// No HTTP response at all (connection refused, reset).
    Connection,
    Status {
        status: u16,
        retry_after: Option<&'a str>,
    },
}

/// Whether to try once more, and after how many milliseconds. `jitter` is a random byte so
/// that callers that failed together do not retry together.
pub fn retry_delay_ms(failure: Failure<'_>, jitter: u8) -> Option<u64> {
    let jitter_ms = 100 + u64::from(jitter) * 2; // 100–610 ms
    match failure {
        Failure::Connection => Some(jitter_ms),
        Failure::Status { status, retry_after } if status == 429 || status >= 500 => {
            match retry_after.map(|s| s.trim().parse::<u64>()) {
                Some(Ok(secs)) if secs.saturating_mul(1000) <= MAX_RETRY_AFTER_MS => Some(secs * 1000 + jitter_ms / 4),
                Some(Ok(_)) => None,
                _ => Some(jitter_ms),
            }
        }
        Failure::Status { .. } => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stateless_prompt_keeps_ours_first_and_the_callers_conversation_whole() {
        let conversation =
            vec![Turn::new(Role::User, "q1"), Turn::new(Role::Assistant, "a1"), Turn::new(Role::User, "q2")];
        let m = build_stateless("ours", "data", &["theirs".to_owned()], &conversation);
        let shape: Vec<(Role, &str)> = m.iter().map(|t| (t.role, t.content.as_str())).collect();
        assert_eq!(
            shape,
            [
                (Role::System, "ours"),
                (Role::System, "data"),
                (Role::System, "theirs"),
                (Role::User, "q1"),
                (Role::Assistant, "a1"),
                (Role::User, "q2")
            ]
        );
        assert_eq!(
            build_stateless("ours", "", &[], &conversation).len(),
            4,
            "no data block when nothing was retrieved"
        );
    }
    use super::*;

    fn history(n: usize, chars: usize) -> Vec<Turn> {
        (0..n)
            .map(|i| {
                Turn::new(if i % 2 == 0 { Role::User } else { Role::Assistant }, format!("{i}:{}", "x".repeat(chars)))
            })
            .collect()
    }

    #[test]
    fn everything_fits_in_a_large_budget() {
        let h = history(6, 10);
        let (msgs, dropped) = build_messages("be brief", "", &h, "next", 100_000);
        assert_eq!(dropped, 0);
        assert_eq!(msgs.len(), 8);
        assert_eq!(msgs[0], Turn::new(Role::System, "be brief"));
        assert_eq!(&msgs[1..7], &h[..]);
        assert_eq!(msgs[7], Turn::new(Role::User, "next"));
    }

    #[test]
    fn oldest_turns_are_dropped_first_and_history_starts_with_a_user_turn() {
        let h = history(10, 400); // ~104 tokens each
        let (msgs, dropped) = build_messages("sys", "", &h, "new", 350);
        assert!(dropped > 0);
        assert_eq!(msgs.first().unwrap().role, Role::System);
        assert_eq!(msgs.last().unwrap(), &Turn::new(Role::User, "new"));
        assert_eq!(msgs[1].role, Role::User);
        assert_eq!(msgs[msgs.len() - 2], h[9]);
        let sent: usize = msgs.iter().map(|t| estimate_tokens(&t.content)).sum();
        assert!(sent <= 350, "{sent}");
    }

    #[test]
    fn system_and_new_message_survive_a_tiny_budget() {
        let h = history(4, 100);
        let (msgs, dropped) = build_messages("sys", "", &h, "new", 1);
        assert_eq!(dropped, 4);
        assert_eq!(msgs, vec![Turn::new(Role::System, "sys"), Turn::new(Role::User, "new")]);
    }

    #[test]
    fn the_data_block_is_a_second_system_message_and_counts_against_the_budget() {
        let h = history(10, 400); // ~104 tokens each
        let (plain, _) = build_messages("sys", "", &h, "new", 700);
        let data = "d".repeat(800); // ~204 tokens
        let (with_data, _) = build_messages("sys", &data, &h, "new", 700);
        assert_eq!(with_data[1], Turn::new(Role::System, data.clone()));
        assert_eq!(with_data[0], Turn::new(Role::System, "sys"));
        // The data's tokens came out of the history's share.
        assert!(with_data.len() - 3 < plain.len() - 2, "{} vs {}", with_data.len(), plain.len());
    }

    #[test]
    fn request_body_is_openai_shaped() {
        let body = request_body("gpt-4o-mini", &[Turn::new(Role::System, "s"), Turn::new(Role::User, "u")], None);
        assert_eq!(
            body,
            json!({"model":"gpt-4o-mini","messages":[{"role":"system","content":"s"},{"role":"user","content":"u"}]})
        );
    }

    #[test]
    fn stream_request_body_asks_for_usage() {
        let body = stream_request_body("m", &[Turn::new(Role::User, "u")], None);
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["content"], "u");
    }

    #[test]
    fn parses_a_completion_with_usage() {
        let body = br#"{"id":"x","model":"m1","choices":[{"index":0,"message":{"role":"assistant","content":"hello"},"finish_reason":"length"}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        assert_eq!(
            parse_completion(body).unwrap(),
            Completion {
                content: "hello".into(),
                model: Some("m1".into()),
                prompt_tokens: Some(12),
                completion_tokens: Some(3),
                finish_reason: Some("length".into()),
                tool_calls: Vec::new(),
            }
        );
    }

    #[test]
    fn tools_are_offered_and_tool_calls_parsed() {
        let definitions =
            json!([{"type": "function", "function": {"name": "query_records", "parameters": {"type": "object"}}}]);
        let messages = [Turn::new(Role::User, "u")];
        let body = request_body("m", &messages, Some(Offer { definitions: &definitions, final_step: false }));
        assert_eq!(body["tools"], definitions);
        assert_eq!(body["tool_choice"], "auto");
        let last = stream_request_body("m", &messages, Some(Offer { definitions: &definitions, final_step: true }));
        assert_eq!(last["tool_choice"], "none");
        assert_eq!(last["stream"], true);

        // A tool call: content null is fine, the calls are kept.
        let body = br#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"query_records","arguments":"{\"kind\":\"deal\"}"}}]},"finish_reason":"tool_calls"}]}"#;
        let c = parse_completion(body).unwrap();
        assert_eq!(c.content, "");
        assert_eq!(c.tool_calls.len(), 1);
        assert_eq!(c.tool_calls[0].function.arguments, r#"{"kind":"deal"}"#);
        // Lenient where servers differ: no id, arguments as an object.
        let loose = parse_completion(
            br#"{"choices":[{"message":{"content":null,"tool_calls":[{"function":{"name":"query_records","arguments":{"kind":"deal"}}}]}}]}"#,
        )
        .unwrap();
        assert_eq!(
            (loose.tool_calls[0].id.as_str(), loose.tool_calls[0].function.arguments.as_str()),
            ("call00000", r#"{"kind":"deal"}"#)
        );
        // Malformed calls, or no content and no calls, are not a completion.
        assert!(parse_completion(br#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":1}]}}]}"#).is_err());
        assert!(parse_completion(br#"{"choices":[{"message":{"content":null,"tool_calls":{"id":1}}}]}"#).is_err());
        assert!(parse_completion(br#"{"choices":[{"message":{"content":null,"tool_calls":[]}}]}"#).is_err());

        // The exchange as sent back: the calling message has no content, the result its call's id.
        let calling = Turn::calling(c.tool_calls.clone());
        let sent = serde_json::to_value([calling, Turn::tool_result("call_1", "{}")]).unwrap();
        assert_eq!(
            sent[0],
            json!({"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "query_records", "arguments": "{\"kind\":\"deal\"}"}}]})
        );
        assert_eq!(sent[1], json!({"role": "tool", "content": "{}", "tool_call_id": "call_1"}));
        assert!(tools_refused(400).contains("tool calling"));
        assert!(mentions_tools(r#"{"error":{"message":"this model does not support tools"}}"#));
        assert!(mentions_tools("Unrecognized request argument supplied: tool_choice"));
        assert!(!mentions_tools(r#"{"error":{"message":"maximum context length is 8192 tokens"}}"#));
    }

    #[test]
    fn past_tool_exchanges_fill_only_the_room_left_newest_first() {
        let exchange = |n: usize| vec![Turn::calling(vec![]), Turn::tool_result("c", "r".repeat(n))];
        let history = vec![
            Turn::new(Role::User, "q1"),
            Turn { exchange: exchange(400), ..Turn::new(Role::Assistant, "a1") },
            Turn::new(Role::User, "q2"),
            Turn { exchange: exchange(40), ..Turn::new(Role::Assistant, "a2") },
        ];
        // Room for the text and the small, newest exchange only.
        let (msgs, dropped) = build_messages("sys", "", &history, "q3", 100);
        assert_eq!(dropped, 0);
        let roles: Vec<Role> = msgs.iter().map(|m| m.role).collect();
        use Role::*;
        assert_eq!(roles, [System, User, Assistant, User, Assistant, Tool, Assistant, User]);
        // Plenty of room: both, each right before its answer.
        let (msgs, _) = build_messages("sys", "", &history, "q3", 100_000);
        assert_eq!(msgs.len(), 1 + 4 + 4 + 1);
        // No room: the text still goes, the exchanges do not.
        let (msgs, _) = build_messages("sys", "", &history, "q3", 40);
        assert!(msgs.iter().all(|m| m.role != Tool));
    }

    #[test]
    fn rejects_unusable_bodies() {
        for body in [
            &b"<html>"[..],
            b"{}",
            br#"{"choices":[]}"#,
            br#"{"choices":[{"message":{"content":null}}]}"#,
            br#"{"choices":[{"message":{"content":"  "}}]}"#,
        ] {
            assert!(parse_completion(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn retry_policy() {
        assert!(retry_delay_ms(Failure::Connection, 0).is_some());
        assert!(retry_delay_ms(Failure::Status { status: 500, retry_after: None }, 0).is_some());
        assert!(retry_delay_ms(Failure::Status { status: 429, retry_after: None }, 0).is_some());
        assert_eq!(retry_delay_ms(Failure::Status { status: 400, retry_after: None }, 0), None);
        assert_eq!(retry_delay_ms(Failure::Status { status: 401, retry_after: None }, 0), None);
        let short = retry_delay_ms(Failure::Status { status: 429, retry_after: Some("2") }, 0).unwrap();
        assert!((2000..2500).contains(&short), "{short}");
        assert_eq!(retry_delay_ms(Failure::Status { status: 503, retry_after: Some("30") }, 0), None);
        let a = retry_delay_ms(Failure::Connection, 0).unwrap();
        let b = retry_delay_ms(Failure::Connection, 255).unwrap();
        assert!(a < b);
    }
}
