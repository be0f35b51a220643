//! The OpenAI Chat Completions API as we serve it (`/v1/chat/completions`, `/v1/models`), so
//! OpenAI SDKs and frameworks talk to agents unchanged. Pure: the request read into a turn's
//! inputs, the completion and its stream chunks, the models, and errors in OpenAI's shape (so
//! SDKs raise their own exception classes). What we *send* providers is `wire/`, not this.

use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::llm::{FunctionCall, Role, ToolCall, Turn};
use super::validate::Object;

/// The default assistant, as a model id.
pub const DEFAULT_MODEL: &str = "attive-default";
pub const MAX_MESSAGES: usize = 500;
pub const MAX_TOOLS: usize = 128;
pub const OWNED_BY: &str = "attive";

/// What `model` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Model {
    Default,
    Agent(String),
}

impl Model {
    /// `None` for an id that can name nothing of ours (404 `model_not_found`).
    pub fn parse(id: &str) -> Option<Self> {
        if id == DEFAULT_MODEL {
            Some(Self::Default)
        } else if id.starts_with("agent_")
            && id.len() <= 100
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            Some(Self::Agent(id.to_owned()))
        } else {
            None
        }
    }

    pub fn agent_id(&self) -> Option<&str> {
        match self {
            Self::Default => None,
            Self::Agent(id) => Some(id),
        }
    }
}

/// Generation parameters the caller set, passed to the provider where its wire has them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sampling {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub seed: Option<i64>,
    pub user: Option<String>,
    pub response_format: Option<Value>,
    /// The caller's `tool_choice` (for its own tools).
    pub tool_choice: Option<Value>,
}

impl Sampling {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A tool the caller offers: passed to the model beside the agent's; when the model calls it,
/// the call goes back to the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerTool {
    pub name: String,
    /// `{"type": "function", "function": {...}}` as the caller sent it.
    pub definition: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CompletionRequest {
    /// As the caller wrote it: the response names it back.
    pub model_id: String,
    pub model: Model,
    /// The caller's `system`/`developer` messages, which follow the agent's instructions.
    pub system: Vec<String>,
    /// Every other message, in order.
    pub conversation: Vec<Turn>,
    pub stream: bool,
    pub include_usage: bool,
    pub sampling: Sampling,
    pub tools: Vec<CallerTool>,
}

impl CompletionRequest {
    /// The text retrieval searches the workspace's knowledge with: the last user message.
    pub fn question(&self) -> &str {
        self.conversation.iter().rev().find(|t| t.role == Role::User).map_or("", |t| t.content.as_str())
    }

    pub fn is_caller_tool(&self, name: &str) -> bool {
        self.tools.iter().any(|t| t.name == name)
    }
}

fn invalid(param: &str, rule: impl Into<String>) -> ApiError {
    ApiError::invalid(param, rule)
}

/// Text content: a string, or an array of `{"type": "text", "text"}` parts (joined).
fn content(value: Option<&Value>, param: &str, required: bool) -> ApiResult<String> {
    match value {
        None | Some(Value::Null) if !required => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (i, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    _ => {
                        return Err(invalid(
                            &format!("{param}[{i}]"),
                            "only text content parts ({\"type\": \"text\", \"text\"}) are supported",
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(invalid(param, "must be a string or an array of text parts")),
    }
}

fn tool_calls(value: Option<&Value>, param: &str) -> ApiResult<Vec<ToolCall>> {
    let Some(value) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let list = value.as_array().ok_or_else(|| invalid(param, "must be an array of tool calls"))?;
    list.iter()
        .enumerate()
        .map(|(i, call)| {
            let at = format!("{param}[{i}]");
            let id = call.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
            let name = call.pointer("/function/name").and_then(Value::as_str).filter(|s| !s.is_empty());
            let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
            match (id, name) {
                (Some(id), Some(name)) => Ok(ToolCall {
                    id: id.to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall { name: name.to_owned(), arguments: arguments.to_owned() },
                }),
                _ => Err(invalid(&at, "must have an id and a function name")),
            }
        })
        .collect()
}

fn message(m: &Value, i: usize) -> ApiResult<(Option<String>, Option<Turn>)> {
    let at = format!("messages[{i}]");
    let obj = m.as_object().ok_or_else(|| invalid(&at, "must be an object"))?;
    let role = obj.get("role").and_then(Value::as_str).unwrap_or_default();
    let text = |required| content(obj.get("content"), &format!("{at}.content"), required);
    Ok(match role {
        "system" | "developer" => (Some(text(true)?), None),
        "user" => (None, Some(Turn::new(Role::User, text(true)?))),
        "assistant" => {
            let calls = tool_calls(obj.get("tool_calls"), &format!("{at}.tool_calls"))?;
            let turn = Turn { tool_calls: calls, ..Turn::new(Role::Assistant, text(false)?) };
            (None, Some(turn))
        }
        "tool" => {
            let id = obj
                .get("tool_call_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(&format!("{at}.tool_call_id"), "is required for a tool message"))?;
            (None, Some(Turn::tool_result(id, text(true)?)))
        }
        _ => return Err(invalid(&format!("{at}.role"), "must be system, developer, user, assistant or tool")),
    })
}

fn number(obj: &Object, field: &str, min: f64, max: f64) -> ApiResult<Option<f64>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if (min..=max).contains(&v) => Ok(Some(v)),
            _ => Err(invalid(field, format!("must be a number from {min} to {max}"))),
        },
        Some(_) => Err(invalid(field, format!("must be a number from {min} to {max}"))),
    }
}

fn caller_tools(obj: &Object) -> ApiResult<Vec<CallerTool>> {
    let Some(value) = obj.get("tools").filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let rule = || invalid("tools", format!("must be an array of at most {MAX_TOOLS} function tools"));
    let list = value.as_array().filter(|l| l.len() <= MAX_TOOLS).ok_or_else(rule)?;
    let mut out: Vec<CallerTool> = Vec::with_capacity(list.len());
    for (i, tool) in list.iter().enumerate() {
        let name = tool.pointer("/function/name").and_then(Value::as_str).unwrap_or_default();
        let good_name =
            (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if tool.get("type").and_then(Value::as_str) != Some("function") || !good_name {
            return Err(invalid(
                &format!("tools[{i}]"),
                "must be {\"type\": \"function\", \"function\": {\"name\": 1-64 of a-z A-Z 0-9 _ -, ...}}",
            ));
        }
        if tool.pointer("/function/parameters").is_some_and(|p| !p.is_object()) {
            return Err(invalid(&format!("tools[{i}].function.parameters"), "must be a JSON Schema object"));
        }
        out.push(CallerTool { name: name.to_owned(), definition: tool.clone() });
    }
    Ok(out)
}

impl TryFrom<&Object> for CompletionRequest {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let model_id = obj
            .get("model")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("model", "is required: an agent id (see GET /v1/models) or attive-default"))?;
        let model = Model::parse(model_id).ok_or_else(|| model_not_found(model_id))?;
        let messages = obj
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| (1..=MAX_MESSAGES).contains(&m.len()))
            .ok_or_else(|| invalid("messages", format!("must be an array of 1 to {MAX_MESSAGES} messages")))?;
        let mut system = Vec::new();
        let mut conversation = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            match message(m, i)? {
                (Some(s), _) => system.push(s),
                (_, Some(turn)) => conversation.push(turn),
                _ => {}
            }
        }
        if !conversation.iter().any(|t| t.role == Role::User) {
            return Err(invalid("messages", "must include a user message"));
        }
        let flag = |field: &str| match obj.get(field) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(invalid(field, "must be a boolean")),
        };
        let stream = flag("stream")?;
        let include_usage = match obj.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => match o.get("include_usage") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(invalid("stream_options.include_usage", "must be a boolean")),
            },
            Some(_) => return Err(invalid("stream_options", "must be an object")),
        };
        match obj.get("n") {
            None | Some(Value::Null) => {}
            Some(n) if n.as_f64() == Some(1.0) => {}
            Some(_) => return Err(invalid("n", "only 1 is supported")),
        }
        let max_tokens = match (obj.get("max_completion_tokens"), obj.get("max_tokens")) {
            (Some(v), _) if !v.is_null() => Some(("max_completion_tokens", v)),
            (_, Some(v)) if !v.is_null() => Some(("max_tokens", v)),
            _ => None,
        };
        let max_tokens = match max_tokens {
            None => None,
            Some((field, v)) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .filter(|n| (1..=1_000_000).contains(n))
                    .ok_or_else(|| invalid(field, "must be a whole number from 1 to 1000000"))?,
            ),
        };
        let stop = match obj.get("stop") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(list)) if list.len() <= 4 && list.iter().all(Value::is_string) => {
                list.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(_) => return Err(invalid("stop", "must be a string or an array of up to 4 strings")),
        };
        let seed = match obj.get("seed") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| invalid("seed", "must be an integer"))?),
        };
        let user = match obj.get("user") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.chars().count() <= 256 => Some(s.clone()),
            Some(_) => return Err(invalid("user", "must be a string of at most 256 characters")),
        };
        let response_format = match obj.get("response_format") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(o))
                if matches!(o.get("type").and_then(Value::as_str), Some("text" | "json_object" | "json_schema")) =>
            {
                Some(v.clone())
            }
            Some(_) => {
                return Err(invalid(
                    "response_format",
                    "must be {\"type\": \"text\" | \"json_object\" | \"json_schema\", ...}",
                ))
            }
        };
        let tools = caller_tools(obj)?;
        let tool_choice = match obj.get("tool_choice") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if matches!(s.as_str(), "none" | "auto" | "required") => Some(json!(s)),
            Some(v)
                if v.pointer("/function/name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| tools.iter().any(|t| t.name == n)) =>
            {
                Some(v.clone())
            }
            Some(_) => {
                return Err(invalid("tool_choice", "must be none, auto, required, or one of the request's own tools"))
            }
        };
        Ok(Self {
            model_id: model_id.to_owned(),
            model,
            system,
            conversation,
            stream,
            include_usage,
            sampling: Sampling {
                max_tokens,
                temperature: number(obj, "temperature", 0.0, 2.0)?,
                top_p: number(obj, "top_p", 0.0, 1.0)?,
                stop,
                seed,
                user,
                response_format,
                tool_choice,
            },
            tools,
        })
    }
}

/// 404 for a model id that names nothing the key may see.
pub fn model_not_found(id: &str) -> ApiError {
    ApiError::NotFound("Model not found", Some(json!({ "model": id })))
}

/// A caller tool named like one of the agent's: the model could not tell them apart.
pub fn tool_clash(name: &str) -> ApiError {
    ApiError::invalid("tools", format!("{name} is the name of one of the agent's own tools: rename yours"))
}

/// An error in OpenAI's shape, with the status it already has: `{"error": {"message", "type",
/// "param", "code"}}`. The SDKs pick their exception class from the status, and show `message`.
pub fn error_json(err: &ApiError) -> Value {
    let status = err.status();
    let body = err.body();
    let mut message = body.get("error").and_then(Value::as_str).unwrap_or("Error").to_owned();
    match body.get("details") {
        Some(Value::String(d)) => {
            message.push_str(": ");
            message.push_str(d);
        }
        Some(Value::Object(d)) => {
            if let Some(rule) = d.get("rule").and_then(Value::as_str) {
                let field = d.get("field").and_then(Value::as_str).unwrap_or("request");
                message = format!("{field} {rule}");
            }
        }
        _ => {}
    }
    let param = match err {
        ApiError::InvalidField { field, .. } => Value::String(field.clone()),
        _ => Value::Null,
    };
    let (kind, code): (&str, Value) = match (status, err) {
        (401, _) => ("authentication_error", json!("invalid_api_key")),
        (403, _) => ("permission_error", json!("permission_denied")),
        (404, ApiError::NotFound("Model not found", _)) => ("invalid_request_error", json!("model_not_found")),
        (404, _) => ("invalid_request_error", json!("not_found")),
        (429, ApiError::RateLimited { .. }) => ("rate_limit_error", json!("rate_limit_exceeded")),
        (429, _) => ("rate_limit_error", json!("upstream_rate_limited")),
        (409, _) => ("invalid_request_error", json!("idempotency_conflict")),
        (422, _) => ("invalid_request_error", json!("idempotency_mismatch")),
        (413, _) => ("invalid_request_error", json!("request_too_large")),
        (405, _) => ("invalid_request_error", json!("method_not_allowed")),
        (504, _) => ("api_error", json!("upstream_timeout")),
        (502, _) => ("api_error", json!("upstream_error")),
        (503, _) => ("api_error", json!("service_unavailable")),
        (400..=499, _) => ("invalid_request_error", Value::Null),
        _ => ("api_error", json!("internal_error")),
    };
    json!({ "error": { "message": message, "type": kind, "param": param, "code": code } })
}

/// `GET /v1/models`' entries: `attive-default` (if the key may use the default assistant) and
/// each agent the key may use, with its creation time in seconds.
pub fn model_json(id: &str, created_ms: i64) -> Value {
    json!({ "id": id, "object": "model", "created": created_ms / 1_000, "owned_by": OWNED_BY })
}

pub fn model_list(models: Vec<Value>) -> Value {
    json!({ "object": "list", "data": models })
}

/// What a finished completion says.
pub struct Completion<'a> {
    pub id: &'a str,
    pub created: i64,
    pub model: &'a str,
    pub content: &'a str,
    /// The caller's tools the model called (then `finish_reason` is `tool_calls`).
    pub tool_calls: &'a [ToolCall],
    pub finish_reason: &'a str,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Our extension: the sources given to the model, the request id, the agent's own tool
    /// calls (which ran server-side).
    pub attive: Value,
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

fn calls_json(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| json!({ "id": c.id, "type": "function", "function": { "name": c.function.name, "arguments": c.function.arguments } }))
            .collect(),
    )
}

/// The `chat.completion` object.
pub fn completion_json(c: &Completion<'_>) -> Value {
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    let content = if c.content.is_empty() && !c.tool_calls.is_empty() { Value::Null } else { json!(c.content) };
    message.insert("content".into(), content);
    if !c.tool_calls.is_empty() {
        message.insert("tool_calls".into(), calls_json(c.tool_calls));
    }
    message.insert("refusal".into(), Value::Null);
    json!({
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": [{ "index": 0, "message": Value::Object(message), "logprobs": null, "finish_reason": c.finish_reason }],
        "usage": usage_json(c.prompt_tokens, c.completion_tokens),
        "system_fingerprint": null,
        "attive": c.attive,
    })
}

/// The identity of a stream's chunks.
pub struct ChunkHead<'a> {
    pub id: &'a str,
    pub created: i64,
    pub model: &'a str,
}

fn chunk(head: &ChunkHead<'_>, choices: Value, extra: Option<(&str, Value)>) -> String {
    let mut v = json!({
        "id": head.id,
        "object": "chat.completion.chunk",
        "created": head.created,
        "model": head.model,
        "system_fingerprint": null,
        "choices": choices,
    });
    if let (Some((name, value)), Some(obj)) = (extra, v.as_object_mut()) {
        obj.insert(name.to_owned(), value);
    }
    format!("data: {v}\n\n")
}

/// The first chunk: the role.
pub fn role_chunk(head: &ChunkHead<'_>) -> String {
    chunk(
        head,
        json!([{ "index": 0, "delta": { "role": "assistant", "content": "" }, "logprobs": null, "finish_reason": null }]),
        None,
    )
}

pub fn content_chunk(head: &ChunkHead<'_>, text: &str) -> String {
    chunk(head, json!([{ "index": 0, "delta": { "content": text }, "logprobs": null, "finish_reason": null }]), None)
}

/// The caller's tools the model called, whole, each with its index.
pub fn tool_calls_chunk(head: &ChunkHead<'_>, calls: &[ToolCall]) -> String {
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| json!({ "index": i, "id": c.id, "type": "function", "function": { "name": c.function.name, "arguments": c.function.arguments } }))
        .collect();
    chunk(
        head,
        json!([{ "index": 0, "delta": { "tool_calls": calls }, "logprobs": null, "finish_reason": null }]),
        None,
    )
}

/// The last chunk of the choice, with our extension.
pub fn finish_chunk(head: &ChunkHead<'_>, finish_reason: &str, attive: Value) -> String {
    chunk(
        head,
        json!([{ "index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason }]),
        Some(("attive", attive)),
    )
}

/// `stream_options.include_usage`: the usage, with no choices.
pub fn usage_chunk(head: &ChunkHead<'_>, prompt: u64, completion: u64) -> String {
    chunk(head, json!([]), Some(("usage", usage_json(prompt, completion))))
}

pub const DONE: &str = "data: [DONE]\n\n";

/// A failure after the first chunk: an error event and no `[DONE]`, so SDKs raise instead of
/// returning half an answer.
pub fn error_chunk(err: &ApiError) -> String {
    format!("data: {}\n\n", error_json(err))
}

/// Our finish reasons are OpenAI's; an answer without one finished normally.
pub fn finish_reason(reason: Option<&str>, caller_tools_called: bool) -> &str {
    if caller_tools_called {
        return "tool_calls";
    }
    match reason {
        Some(r @ ("stop" | "length" | "content_filter" | "tool_calls")) => r,
        _ => "stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ApiResult<CompletionRequest> {
        CompletionRequest::try_from(v.as_object().unwrap())
    }

    #[test]
    fn reads_a_plain_request() {
        let r = req(json!({
            "model": "attive-default",
            "messages": [
                { "role": "system", "content": "Be brief." },
                { "role": "developer", "content": [{ "type": "text", "text": "Use " }, { "type": "text", "text": "French." }] },
                { "role": "user", "content": "Hi" },
                { "role": "assistant", "content": "Salut" },
                { "role": "user", "content": [{ "type": "text", "text": "Top deals?" }] }
            ],
            "temperature": 0.2, "max_tokens": 50, "stop": "END", "unknown_field": true
        }))
        .unwrap();
        assert_eq!(r.model, Model::Default);
        assert_eq!(r.system, ["Be brief.", "Use French."]);
        assert_eq!(r.conversation.len(), 3);
        assert_eq!(r.question(), "Top deals?");
        assert_eq!(r.sampling.max_tokens, Some(50));
        assert_eq!(r.sampling.stop, ["END"]);
        assert!(!r.stream && !r.include_usage);
        let r = req(json!({ "model": "agent_abc", "messages": [{ "role": "user", "content": "x" }], "stream": true,
            "stream_options": { "include_usage": true }, "max_completion_tokens": 7, "max_tokens": 9, "n": 1 }))
        .unwrap();
        assert_eq!(r.model, Model::Agent("agent_abc".into()));
        assert!(r.stream && r.include_usage);
        assert_eq!(r.sampling.max_tokens, Some(7));
    }

    #[test]
    fn reads_tool_round_trips() {
        let r = req(json!({
            "model": "attive-default",
            "messages": [
                { "role": "user", "content": "Weather?" },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": "call_1", "type": "function", "function": { "name": "weather", "arguments": "{\"city\":\"Paris\"}" } }] },
                { "role": "tool", "tool_call_id": "call_1", "content": "Sunny" }
            ],
            "tools": [{ "type": "function", "function": { "name": "weather", "parameters": { "type": "object" } } }],
            "tool_choice": { "type": "function", "function": { "name": "weather" } }
        }))
        .unwrap();
        assert_eq!(r.conversation[1].tool_calls[0].function.name, "weather");
        assert_eq!(r.conversation[2].tool_call_id.as_deref(), Some("call_1"));
        assert!(r.is_caller_tool("weather") && !r.is_caller_tool("search_records"));
    }

    #[test]
    fn refuses_what_it_cannot_serve() {
        let user = json!([{ "role": "user", "content": "x" }]);
        for (body, param) in [
            (json!({ "messages": user }), "model"),
            (json!({ "model": "attive-default" }), "messages"),
            (json!({ "model": "attive-default", "messages": [] }), "messages"),
            (json!({ "model": "attive-default", "messages": [{ "role": "system", "content": "s" }] }), "messages"),
            (
                json!({ "model": "attive-default", "messages": [{ "role": "robot", "content": "s" }] }),
                "messages[0].role",
            ),
            (
                json!({ "model": "attive-default", "messages": [{ "role": "tool", "content": "s" }] }),
                "messages[0].tool_call_id",
            ),
            (
                json!({ "model": "attive-default", "messages": [{ "role": "user", "content": [{ "type": "image_url" }] }] }),
                "messages[0].content[0]",
            ),
            (json!({ "model": "attive-default", "messages": user, "n": 2 }), "n"),
            (json!({ "model": "attive-default", "messages": user, "temperature": 3 }), "temperature"),
            (json!({ "model": "attive-default", "messages": user, "top_p": -1 }), "top_p"),
            (json!({ "model": "attive-default", "messages": user, "max_tokens": 0 }), "max_tokens"),
            (json!({ "model": "attive-default", "messages": user, "stream": "yes" }), "stream"),
            (json!({ "model": "attive-default", "messages": user, "stop": [1] }), "stop"),
            (
                json!({ "model": "attive-default", "messages": user, "tools": [{ "type": "function", "function": { "name": "bad name" } }] }),
                "tools[0]",
            ),
            (
                json!({ "model": "attive-default", "messages": user, "tool_choice": { "type": "function", "function": { "name": "nope" } } }),
                "tool_choice",
            ),
            (
                json!({ "model": "attive-default", "messages": user, "response_format": { "type": "xml" } }),
                "response_format",
            ),
        ] {
            match req(body.clone()) {
                Err(ApiError::InvalidField { field, .. }) => assert_eq!(field, param, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        let many: Vec<Value> = (0..501).map(|_| json!({ "role": "user", "content": "x" })).collect();
        assert!(req(json!({ "model": "attive-default", "messages": many })).is_err());
        assert_eq!(req(json!({ "model": "gpt-4o", "messages": user })).unwrap_err().status(), 404);
    }

    #[test]
    fn errors_have_openai_shape_and_the_same_status() {
        let e = error_json(&ApiError::Unauthorized("Invalid API key"));
        assert_eq!(e["error"]["type"], "authentication_error");
        assert_eq!(e["error"]["code"], "invalid_api_key");
        assert_eq!(e["error"]["message"], "Invalid API key");
        let e = error_json(&ApiError::invalid("temperature", "must be a number from 0 to 2"));
        assert_eq!(
            (e["error"]["type"].clone(), e["error"]["param"].clone()),
            (json!("invalid_request_error"), json!("temperature"))
        );
        assert_eq!(e["error"]["message"], "temperature must be a number from 0 to 2");
        assert_eq!(error_json(&model_not_found("x"))["error"]["code"], "model_not_found");
        assert_eq!(
            error_json(&ApiError::RateLimited { retry_after_seconds: 3 })["error"]["code"],
            "rate_limit_exceeded"
        );
        assert_eq!(error_json(&ApiError::UpstreamTimeout)["error"]["code"], "upstream_timeout");
        assert_eq!(error_json(&ApiError::Upstream("x".into()))["error"]["code"], "upstream_error");
        assert_eq!(
            error_json(&ApiError::Forbidden("Agent not allowed for this key", None))["error"]["code"],
            "permission_denied"
        );
    }

    #[test]
    fn completions_and_chunks_have_openai_shape() {
        let calls = vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall { name: "weather".into(), arguments: "{}".into() },
        }];
        let c = completion_json(&Completion {
            id: "chatcmpl-1",
            created: 5,
            model: "agent_a",
            content: "",
            tool_calls: &calls,
            finish_reason: "tool_calls",
            prompt_tokens: 3,
            completion_tokens: 4,
            attive: json!({ "sources": [] }),
        });
        assert_eq!(c["object"], "chat.completion");
        assert_eq!(c["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(c["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(c["usage"]["total_tokens"], 7);
        assert_eq!(c["system_fingerprint"], Value::Null);
        let head = ChunkHead { id: "chatcmpl-1", created: 5, model: "agent_a" };
        let parse = |s: String| -> Value { serde_json::from_str(s.strip_prefix("data: ").unwrap().trim()).unwrap() };
        assert_eq!(parse(role_chunk(&head))["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(parse(content_chunk(&head, "Hi"))["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(parse(tool_calls_chunk(&head, &calls))["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let finish = parse(finish_chunk(&head, "stop", json!({ "requestId": "r" })));
        assert_eq!(finish["choices"][0]["finish_reason"], "stop");
        assert_eq!(finish["attive"]["requestId"], "r");
        let usage = parse(usage_chunk(&head, 1, 2));
        assert_eq!((usage["choices"].clone(), usage["usage"]["total_tokens"].clone()), (json!([]), json!(3)));
        assert_eq!(finish_reason(Some("length"), false), "length");
        assert_eq!(finish_reason(None, true), "tool_calls");
        assert_eq!(finish_reason(Some("weird"), false), "stop");
    }
}
