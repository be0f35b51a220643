//! The Anthropic Messages wire (`POST {base}/messages`): the request and its headers, the
//! JSON answer, error bodies and the event stream, read into the types the OpenAI wire gives
//! ([`Completion`], [`Event`], [`FailureKind`]).
//!
//! Where the two wires differ, these are the choices:
//! - There is no system role: the system turns (the instructions, then the workspace's data
//!   block) are joined into the top-level `system`, a blank line apart.
//! - Roles must alternate and tool results travel in `user` messages, so consecutive turns of
//!   the same role become one message with their content blocks in order.
//! - A request that offers no tools carries no `tool_use`/`tool_result` blocks either: the API
//!   refuses them without tool definitions, and a past exchange is only context.
//! - `prompt_tokens` is `input_tokens` plus the cache reads and writes, which Anthropic counts
//!   apart: the whole prompt, as the OpenAI wire reports it.
//! - A stream reports its usage once, at `message_delta`, where the output count is final: the
//!   provisional count of `message_start` would be believed for a stream cut short.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::FailureKind;
use crate::domain::llm::{self, Completion, FunctionCall, Offer, Role, ToolCall, Turn};
use crate::domain::sse::{
    cap_message, error_message, Chunk, Decoder, Event, ParseError, RawEvent, StreamEnd, ToolCallDelta,
};

/// The `anthropic-version` this wire is written for.
pub const VERSION: &str = "2023-06-01";

/// Between the system turns joined into `system`.
const SYSTEM_SEPARATOR: &str = "\n\n";

/// The headers of every request, without `Content-Type`. The key goes in `x-api-key`; the
/// native API takes no `Authorization`.
pub fn headers(api_key: &str) -> [(&'static str, String); 2] {
    [("x-api-key", api_key.to_owned()), ("anthropic-version", VERSION.to_owned())]
}

/// The JSON body of `POST {base}/messages`. `max_tokens` is required by the API, so it is
/// always sent; `tool_choice` is `none` on the final step, as the OpenAI wire sends `"none"`.
pub fn request_body(model: &str, max_tokens: u32, messages: &[Turn], tools: Option<Offer<'_>>, stream: bool) -> Value {
    let definitions = tools.map(|offer| tool_definitions(offer.definitions)).filter(|d| !d.is_empty());
    let with_tools = definitions.is_some();
    let mut merged: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for turn in messages {
        let Some((role, blocks)) = blocks_of(turn, with_tools) else { continue };
        if blocks.is_empty() {
            continue; // the API refuses a message without content
        }
        match merged.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => merged.push((role, blocks)),
        }
    }
    let system: Vec<&str> = messages
        .iter()
        .filter(|t| t.role == Role::System && !t.content.trim().is_empty())
        .map(|t| t.content.as_str())
        .collect();

    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join(SYSTEM_SEPARATOR)));
    }
    let messages: Vec<Value> =
        merged.into_iter().map(|(role, content)| json!({ "role": role, "content": content })).collect();
    body.insert("messages".into(), Value::Array(messages));
    if let (Some(definitions), Some(offer)) = (definitions, tools) {
        body.insert("tools".into(), Value::Array(definitions));
        body.insert("tool_choice".into(), json!({ "type": if offer.final_step { "none" } else { "auto" } }));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Value::Object(body)
}

/// One turn as a role and content blocks; `None` for what is not a message here (system
/// turns, and tool results when no tools are offered).
fn blocks_of(turn: &Turn, with_tools: bool) -> Option<(&'static str, Vec<Value>)> {
    match turn.role {
        Role::System => None,
        Role::User => Some(("user", text_block(&turn.content).into_iter().collect())),
        Role::Assistant => {
            let mut blocks: Vec<Value> = text_block(&turn.content).into_iter().collect();
            if with_tools {
                blocks.extend(turn.tool_calls.iter().map(tool_use_block));
            }
            Some(("assistant", blocks))
        }
        Role::Tool if with_tools => {
            let id = wire_id(turn.tool_call_id.as_deref().unwrap_or_default());
            let block = if turn.content.is_empty() {
                json!({ "type": "tool_result", "tool_use_id": id })
            } else {
                json!({ "type": "tool_result", "tool_use_id": id, "content": turn.content })
            };
            Some(("user", vec![block]))
        }
        Role::Tool => None,
    }
}

/// A text block, unless the text is blank (the API refuses blank text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.trim().is_empty()).then(|| json!({ "type": "text", "text": text }))
}

/// An OpenAI tool call as a `tool_use` block: `input` is the arguments' JSON object, or `{}`
/// when the model wrote something else (the API takes only an object).
fn tool_use_block(call: &ToolCall) -> Value {
    let input = match serde_json::from_str::<Value>(&call.function.arguments) {
        Ok(Value::Object(object)) => Value::Object(object),
        _ => json!({}),
    };
    json!({ "type": "tool_use", "id": wire_id(&call.id), "name": call.function.name, "input": input })
}

/// A tool call id as the API accepts it (`[A-Za-z0-9_-]+`). Ids from an OpenAI-compatible
/// provider normally pass unchanged; the mapping is the same for a call and its result, so
/// they still match.
fn wire_id(id: &str) -> String {
    if id.is_empty() {
        return "call".into();
    }
    id.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

/// The Chat Completions `tools` array (`{type: "function", function: {name, description,
/// parameters}}`) as Anthropic tools (`{name, description, input_schema}`). Entries without a
/// name are left out.
fn tool_definitions(definitions: &Value) -> Vec<Value> {
    let Some(definitions) = definitions.as_array() else { return Vec::new() };
    definitions
        .iter()
        .filter_map(|definition| {
            let function = definition.get("function").unwrap_or(definition);
            let name = function.get("name").and_then(Value::as_str).filter(|n| !n.is_empty())?;
            let schema = match function.get("parameters") {
                Some(Value::Object(schema)) => Value::Object(schema.clone()),
                _ => json!({ "type": "object", "properties": {} }),
            };
            let mut tool = Map::new();
            tool.insert("name".into(), json!(name));
            if let Some(description) = function.get("description").and_then(Value::as_str) {
                tool.insert("description".into(), json!(description));
            }
            tool.insert("input_schema".into(), schema);
            Some(Value::Object(tool))
        })
        .collect()
}

/// Our finish reason for Anthropic's `stop_reason`, in the OpenAI vocabulary the rest of the
/// code and our clients know.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => "stop",
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "other",
    }
}

/// Reads a 2xx body: the text blocks joined, `tool_use` blocks as tool calls, the usage and
/// the finish reason. Other blocks (thinking, server tools) are not part of the answer.
///
/// # Errors
/// A short description (never the body itself) when the body is not a usable message.
pub fn parse_response(body: &[u8]) -> Result<Completion, String> {
    let value: Value = serde_json::from_slice(body).map_err(|_| "response is not JSON".to_owned())?;
    if value.get("type").and_then(Value::as_str) == Some("error") {
        return Err("response is an error".into());
    }
    let blocks =
        value.get("content").and_then(Value::as_array).ok_or_else(|| "response has no content array".to_owned())?;
    let mut content = String::new();
    let mut tool_calls = Vec::new();
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => content.push_str(block.get("text").and_then(Value::as_str).unwrap_or_default()),
            Some("tool_use") => {
                let call = tool_call(tool_calls.len(), block)
                    .ok_or_else(|| "response has a malformed tool_use block".to_owned())?;
                tool_calls.push(call);
            }
            _ => {}
        }
    }
    if content.trim().is_empty() && tool_calls.is_empty() {
        return Err("response content is empty".into());
    }
    let usage = value.get("usage");
    Ok(Completion {
        content,
        model: value.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_owned),
        prompt_tokens: usage.and_then(|u| Counts::read(u).prompt_tokens()),
        completion_tokens: usage.and_then(|u| u.get("output_tokens")).and_then(Value::as_u64),
        finish_reason: value.get("stop_reason").and_then(Value::as_str).map(|r| finish_reason(r).to_owned()),
        tool_calls,
    })
}

/// A `tool_use` block as a tool call: a missing id gets one, as on the OpenAI wire; a call
/// without a name is malformed.
fn tool_call(index: usize, block: &Value) -> Option<ToolCall> {
    let name = block.get("name").and_then(Value::as_str).filter(|n| !n.is_empty())?;
    let id = block.get("id").and_then(Value::as_str).filter(|id| !id.is_empty());
    let arguments = match block.get("input") {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(input) => input.to_string(),
    };
    Some(ToolCall {
        id: id.map_or_else(|| llm::fallback_call_id(index), str::to_owned),
        kind: "function".into(),
        function: FunctionCall { name: name.to_owned(), arguments },
    })
}

/// Classifies an error response (`{"type": "error", "error": {"type", "message"}}`) by its
/// error type, or by the status when the body does not say. Also reads an in-stream `error`
/// event's data, with the stream's status (200).
pub fn error_kind(status: u16, body: &[u8]) -> FailureKind {
    let by_status = FailureKind::from_status(status);
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return by_status };
    let error = value.get("error");
    let message = str_at(error, "message");
    let context = |kind: FailureKind| {
        if kind == FailureKind::Invalid && super::mentions_context_length(message) {
            FailureKind::ContextLength
        } else {
            kind
        }
    };
    match str_at(error, "type") {
        "overloaded_error" => FailureKind::Overloaded,
        // A spend limit answers 429 too, but waiting for it is pointless.
        "rate_limit_error"
            if str_at(error.and_then(|e| e.get("details")), "error_code") == "enforced_spend_limit_reached" =>
        {
            FailureKind::Quota
        }
        "rate_limit_error" => FailureKind::RateLimited,
        "billing_error" => FailureKind::Quota,
        "api_error" => FailureKind::Server,
        "timeout_error" => FailureKind::Timeout,
        "authentication_error" | "permission_error" => FailureKind::Auth,
        "not_found_error" => FailureKind::NotFound,
        "invalid_request_error" | "request_too_large" => context(FailureKind::Invalid),
        _ => context(by_status),
    }
}

fn str_at<'a>(value: Option<&'a Value>, name: &str) -> &'a str {
    value.and_then(|v| v.get(name)).and_then(Value::as_str).unwrap_or_default()
}

/// The token counts as Anthropic splits them; each is the last value seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    input: Option<u64>,
    cache_read: Option<u64>,
    cache_creation: Option<u64>,
}

impl Counts {
    fn read(usage: &Value) -> Self {
        let mut counts = Self::default();
        counts.update(usage);
        counts
    }

    /// Takes what `usage` carries; `message_delta` counts are cumulative, so the latest wins.
    fn update(&mut self, usage: &Value) {
        let count = |name: &str| usage.get(name).and_then(Value::as_u64);
        self.input = count("input_tokens").or(self.input);
        self.cache_read = count("cache_read_input_tokens").or(self.cache_read);
        self.cache_creation = count("cache_creation_input_tokens").or(self.cache_creation);
    }

    /// The whole prompt, cache included; unknown without `input_tokens`.
    fn prompt_tokens(self) -> Option<u64> {
        let cached = self.cache_read.unwrap_or(0).saturating_add(self.cache_creation.unwrap_or(0));
        self.input.map(|input| input.saturating_add(cached))
    }
}

/// What a content block of the stream is, by its `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Text,
    /// The `call`-th tool call of the answer (the [`ToolCallDelta::index`] the collector
    /// assembles by); `input` is the start's input when it was not empty.
    Tool {
        call: usize,
        has_arguments: bool,
        input: Option<String>,
    },
    /// Thinking, server tools and blocks added later: not part of the answer.
    Other,
}

/// The incremental reader of an Anthropic stream, the counterpart of [`sse::Parser`]: feed
/// byte chunks with [`StreamParser::push`], call [`StreamParser::finish`] at EOF, and apply
/// the events to a [`sse::Collector`] as they come. `message_stop` is the [`Event::Done`] that
/// makes the answer complete; an `error` event is the [`Event::UpstreamError`] that ends it,
/// and [`StreamParser::failure`] then says what kind of failure it reported.
///
/// After either it ignores everything else, and errors are sticky with the events before an
/// error returned first, exactly as [`sse::Parser`] does.
///
/// [`sse::Parser`]: crate::domain::sse::Parser
/// [`sse::Collector`]: crate::domain::sse::Collector
#[derive(Debug, Default)]
pub struct StreamParser {
    decoder: Decoder,
    terminal: bool,
    failed: Option<ParseError>,
    failure: Option<FailureKind>,
    /// Open blocks by index; closed ones are forgotten, so this stays small.
    blocks: BTreeMap<u64, Block>,
    tool_calls: usize,
    counts: Counts,
}

impl StreamParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk of the body, split anywhere, and returns the events it completed.
    ///
    /// # Errors
    /// A line or an event over its cap, or a data payload that is not a JSON object.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let mut events = Vec::new();
        // Line by line: the decoder returns nothing of a chunk that fails, and the events of
        // the lines before the failing one must still reach the caller.
        for line in bytes.split_inclusive(|&b| b == b'\n' || b == b'\r') {
            if self.terminal {
                break;
            }
            let step = self.decoder.push(line).and_then(|raws| {
                for raw in &raws {
                    if self.terminal {
                        break;
                    }
                    events.extend(self.interpret(raw)?);
                }
                Ok(())
            });
            if let Err(err) = step {
                self.failed = Some(err.clone());
                return if events.is_empty() { Err(err) } else { Ok(events) };
            }
        }
        Ok(events)
    }

    /// At EOF: whether the stream ended between events or cut one off.
    ///
    /// # Errors
    /// The error a previous `push` deferred.
    pub fn finish(&mut self) -> Result<StreamEnd, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.terminal {
            return Ok(StreamEnd::Clean);
        }
        Ok(self.decoder.finish())
    }

    /// What kind of failure the stream's `error` event reported, once there was one
    /// (`Overloaded` for `overloaded_error`, …): whether to fall back, if nothing was sent yet.
    pub fn failure(&self) -> Option<FailureKind> {
        self.failure
    }

    fn interpret(&mut self, raw: &RawEvent) -> Result<Option<Event>, ParseError> {
        let data = raw.data.trim();
        if raw.event == "ping" || data.is_empty() {
            return Ok(None);
        }
        let parsed = serde_json::from_str::<Value>(data);
        // Also an unnamed error event, or a gateway's OpenAI-style `{"error": {...}}`.
        let in_data = parsed.as_ref().is_ok_and(|v| {
            v.get("type").and_then(Value::as_str) == Some("error") || v.get("error").is_some_and(|e| !e.is_null())
        });
        if raw.event == "error" || in_data {
            self.terminal = true;
            self.failure = Some(error_kind(200, data.as_bytes()));
            let message = parsed.ok().as_ref().and_then(error_message).unwrap_or_else(|| cap_message(data));
            return Ok(Some(Event::UpstreamError { message }));
        }
        let value = parsed.map_err(|e| ParseError::Malformed(format!("data is not JSON ({e})")))?;
        if !value.is_object() {
            return Err(ParseError::Malformed("data is not a JSON object".into()));
        }
        // `event:` repeats the data's `type`; the data is what we trust.
        let kind = value.get("type").and_then(Value::as_str).unwrap_or(raw.event.as_str());
        let index = value.get("index").and_then(Value::as_u64);
        let chunk = match kind {
            "message_start" => self.message_start(&value),
            "content_block_start" => index.and_then(|i| self.block_start(i, value.get("content_block"))),
            "content_block_delta" => self.block_delta(index, value.get("delta")),
            "content_block_stop" => index.and_then(|i| self.block_stop(i)),
            "message_delta" => self.message_delta(&value),
            "message_stop" => {
                self.terminal = true;
                return Ok(Some(Event::Done));
            }
            _ => None, // event types added later are to be skipped, Anthropic says
        };
        Ok(chunk.map(Event::Chunk))
    }

    fn message_start(&mut self, value: &Value) -> Option<Chunk> {
        let message = value.get("message");
        if let Some(usage) = message.and_then(|m| m.get("usage")) {
            self.counts.update(usage);
        }
        let model = message.and_then(|m| m.get("model")).and_then(Value::as_str).filter(|m| !m.is_empty());
        Some(Chunk { model: model.map(str::to_owned), ..Chunk::default() })
    }

    fn block_start(&mut self, index: u64, block: Option<&Value>) -> Option<Chunk> {
        let text = |name: &str| block.and_then(|b| b.get(name)).and_then(Value::as_str).filter(|s| !s.is_empty());
        match text("type") {
            Some("text") => {
                self.blocks.insert(index, Block::Text);
                text("text").map(|t| Chunk { text: Some(t.to_owned()), ..Chunk::default() })
            }
            Some("tool_use") => {
                let call = self.tool_calls;
                self.tool_calls += 1;
                let input = match block.and_then(|b| b.get("input")) {
                    Some(Value::Object(input)) if !input.is_empty() => Some(Value::Object(input.clone()).to_string()),
                    _ => None,
                };
                self.blocks.insert(index, Block::Tool { call, has_arguments: false, input });
                let delta = ToolCallDelta {
                    index: Some(call),
                    id: text("id").map(str::to_owned),
                    name: text("name").map(str::to_owned),
                    arguments: None,
                };
                Some(Chunk { tool_calls: vec![delta], ..Chunk::default() })
            }
            _ => {
                self.blocks.insert(index, Block::Other);
                None
            }
        }
    }

    fn block_delta(&mut self, index: Option<u64>, delta: Option<&Value>) -> Option<Chunk> {
        let field = |name: &str| delta.and_then(|d| d.get(name)).and_then(Value::as_str).filter(|s| !s.is_empty());
        let block = index.and_then(|i| self.blocks.get_mut(&i));
        match field("type")? {
            // A text delta whose block start was missed is still text.
            "text_delta" if matches!(block, None | Some(Block::Text)) => {
                field("text").map(|t| Chunk { text: Some(t.to_owned()), ..Chunk::default() })
            }
            "input_json_delta" => {
                // The first fragment is often empty: it carries nothing.
                let fragment = field("partial_json")?;
                let Some(Block::Tool { call, has_arguments, .. }) = block else { return None };
                *has_arguments = true;
                Some(arguments(*call, fragment.to_owned()))
            }
            _ => None, // thinking, signatures, citations
        }
    }

    /// A tool block that closes without any argument fragment gets its start's input (or
    /// `{}`), as the JSON answer gives it: a tool without parameters still has an object.
    fn block_stop(&mut self, index: u64) -> Option<Chunk> {
        match self.blocks.remove(&index)? {
            Block::Tool { call, has_arguments: false, input } => {
                Some(arguments(call, input.unwrap_or_else(|| "{}".to_owned())))
            }
            _ => None,
        }
    }

    fn message_delta(&mut self, value: &Value) -> Option<Chunk> {
        let usage = value.get("usage");
        if let Some(usage) = usage {
            self.counts.update(usage);
        }
        let output = usage.and_then(|u| u.get("output_tokens")).and_then(Value::as_u64);
        let stop_reason = value.get("delta").and_then(|d| d.get("stop_reason")).and_then(Value::as_str);
        Some(Chunk {
            finish_reason: stop_reason.map(|r| finish_reason(r).to_owned()),
            usage: self.counts.prompt_tokens().zip(output),
            ..Chunk::default()
        })
    }
}

fn arguments(call: usize, text: String) -> Chunk {
    let delta = ToolCallDelta { index: Some(call), arguments: Some(text), ..ToolCallDelta::default() };
    Chunk { tool_calls: vec![delta], ..Chunk::default() }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::domain::knowledge::Kind;
    use crate::domain::properties::arb_json;
    use crate::domain::sse::{Answer, Collector, Outcome, Usage};
    use crate::domain::tools::{self, Tool};

    // --- fixtures: streams as Anthropic sends them ---------------------------------------------

    /// Text with cache usage, `ping`s inside, one `data:` without its space, and characters of
    /// two, three and four bytes for splits to cut through.
    const BASIC: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":12,"cache_read_input_tokens":1800,"output_tokens":1,"service_tier":"standard"}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data:{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"! Ça va, 世界 🌍"}}

event: ping
data: {"type": "ping"}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"#;

    /// Text, then two tool calls: one with its input in fragments after an empty first one,
    /// one without parameters (an empty fragment only).
    const TOOL_USE: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me look that up."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"query_records","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"kind\": \"de"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"al\", \"limit\": 5"}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01UmwVEjTgqpKKxFPkCrUc2s","name":"list_kinds","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"#;

    /// A 200 that fails before any content, and what came after the error (ignored).
    const OVERLOADED: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01Bq9w938a90dw8q","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":30,"output_tokens":1}}}

event: ping
data: {"type": "ping"}

event: error
data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

"#;

    /// Some text, then the model declines to go on.
    const REFUSAL: &str = r#"event: message_start
data: {"type":"message_start","message":{"id":"msg_01Refusal","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":40,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"I can help with general questions, but "}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"refusal","stop_sequence":null,"stop_details":{"type":"refusal","category":"cyber","explanation":"The request asks for harmful content."}},"usage":{"output_tokens":9}}

event: message_stop
data: {"type":"message_stop"}

"#;

    const FIXTURES: [&str; 4] = [BASIC, TOOL_USE, OVERLOADED, REFUSAL];

    type Run = (Vec<Event>, Result<StreamEnd, ParseError>, Option<FailureKind>, Answer);

    fn prompt() -> Vec<Turn> {
        vec![Turn::new(Role::System, "be brief"), Turn::new(Role::User, "hello there")]
    }

    /// Pushes the chunks in order and finishes, as the stream reader does: every event, the
    /// end, the reported failure and the collected answer.
    fn run(chunks: &[&[u8]]) -> Run {
        let mut parser = StreamParser::new();
        let mut events = Vec::new();
        let mut end = None;
        for chunk in chunks {
            match parser.push(chunk) {
                Ok(more) => events.extend(more),
                Err(err) => {
                    end = Some(Err(err));
                    break;
                }
            }
        }
        let end = end.unwrap_or_else(|| parser.finish());
        let mut collector = Collector::new();
        events.iter().for_each(|e| collector.apply(e));
        let answer = collector.finish(end.clone().unwrap_or(StreamEnd::Interrupted), &prompt());
        (events, end, parser.failure(), answer)
    }

    fn answer_of(stream: &str) -> Answer {
        run(&[stream.as_bytes()]).3
    }

    /// The stream with each line ending as `\n`, `\r\n` and `\r`.
    fn with_endings(stream: &str) -> [Vec<u8>; 3] {
        [stream.into(), stream.replace('\n', "\r\n").into_bytes(), stream.replace('\n', "\r").into_bytes()]
    }

    fn split_at_offsets<'a>(bytes: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = offsets.iter().map(|o| o % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut from = 0;
        for cut in cuts {
            parts.push(&bytes[from..cut]);
            from = cut;
        }
        parts.push(&bytes[from..]);
        parts
    }

    // --- streams ------------------------------------------------------------------------------

    #[test]
    fn a_basic_stream_collects_text_usage_with_cache_and_a_stop() {
        let (events, end, failure, answer) = run(&[BASIC.as_bytes()]);
        assert_eq!(end, Ok(StreamEnd::Clean));
        assert_eq!(failure, None);
        assert_eq!(events.last(), Some(&Event::Done));
        assert_eq!(
            answer,
            Answer {
                text: "Hello! Ça va, 世界 🌍".into(),
                outcome: Outcome::Complete,
                finish_reason: Some("stop".into()),
                usage: Usage { prompt_tokens: 25 + 12 + 1800, completion_tokens: 15, estimated: false },
                model: Some("claude-sonnet-4-5-20250929".into()),
                tool_calls: Vec::new(),
            }
        );
    }

    #[test]
    fn streamed_tool_use_becomes_tool_calls_with_their_exact_arguments() {
        let answer = answer_of(TOOL_USE);
        let calls: Vec<(&str, &str, &str)> = answer
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.function.name.as_str(), c.function.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "query_records", r#"{"kind": "deal", "limit": 5}"#),
                ("toolu_01UmwVEjTgqpKKxFPkCrUc2s", "list_kinds", "{}"),
            ]
        );
        assert_eq!(answer.text, "Let me look that up.");
        assert_eq!(answer.finish_reason.as_deref(), Some("tool_calls"));
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.usage, Usage { prompt_tokens: 472, completion_tokens: 89, estimated: false });
    }

    #[test]
    fn an_error_event_before_content_is_an_upstream_error_with_its_kind() {
        let (events, end, failure, answer) = run(&[OVERLOADED.as_bytes()]);
        assert_eq!(events.last(), Some(&Event::UpstreamError { message: "Overloaded".into() }));
        assert_eq!(end, Ok(StreamEnd::Clean));
        assert_eq!(failure, Some(FailureKind::Overloaded));
        assert!(failure.is_some_and(FailureKind::falls_back));
        assert_eq!(answer.outcome, Outcome::UpstreamError { message: "Overloaded".into() });
        assert_eq!(answer.text, "");
        // Nothing of the answer came before it: what a caller checks before falling back.
        assert!(events.iter().all(|e| !matches!(e, Event::Chunk(c) if c.text.is_some() || !c.tool_calls.is_empty())));
    }

    #[test]
    fn an_error_after_content_keeps_the_partial_text() {
        let stream = BASIC.replace(
            "event: content_block_stop",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"Internal server error\"}}\n\nevent: content_block_stop",
        );
        let (_, _, failure, answer) = run(&[stream.as_bytes()]);
        assert_eq!(failure, Some(FailureKind::Server));
        assert_eq!(answer.outcome, Outcome::UpstreamError { message: "Internal server error".into() });
        assert_eq!(answer.text, "Hello! Ça va, 世界 🌍");
        // An unnamed error, or one whose data is not JSON, is an error all the same.
        let unnamed =
            "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        assert_eq!(run(&[unnamed.as_bytes()]).2, Some(FailureKind::Overloaded));
        let gateway = "data: {\"error\":{\"message\":\"gateway says no\"}}\n\n";
        assert_eq!(answer_of(gateway).outcome, Outcome::UpstreamError { message: "gateway says no".into() });
        let (_, _, failure, answer) = run(&[b"event: error\ndata: upstream fell over\n\n"]);
        assert_eq!(failure, Some(FailureKind::Server));
        assert_eq!(answer.outcome, Outcome::UpstreamError { message: "upstream fell over".into() });
    }

    #[test]
    fn a_refusal_is_complete_with_content_filter() {
        let answer = answer_of(REFUSAL);
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.finish_reason.as_deref(), Some("content_filter"));
        assert_eq!(answer.text, "I can help with general questions, but ");
        assert_eq!(answer.usage, Usage { prompt_tokens: 40, completion_tokens: 9, estimated: false });
    }

    #[test]
    fn a_stream_cut_before_message_stop_is_truncated_and_its_usage_estimated() {
        let cut = BASIC.split("event: content_block_stop").next().unwrap_or_default();
        let answer = answer_of(cut);
        assert_eq!(answer.outcome, Outcome::Truncated);
        assert_eq!(answer.text, "Hello! Ça va, 世界 🌍");
        // message_start's provisional output count is not taken for the final one.
        assert!(answer.usage.estimated);
        assert!(answer.usage.completion_tokens > 1);
        // Cut inside an event: truncated too, even after the stop reason.
        let inside = &BASIC[..BASIC.len() - 10];
        assert_eq!(answer_of(inside).outcome, Outcome::Truncated);
    }

    #[test]
    fn unknown_events_and_blocks_are_skipped_and_bad_data_is_malformed() {
        let thinking = BASIC.replace(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":5,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
             event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":5,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n\
             event: future_event\ndata: {\"type\":\"future_event\"}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0",
        );
        assert_eq!(answer_of(&thinking), answer_of(BASIC));
        let (events, end, _, _) = run(&[b"event: message_start\ndata: {not json\n\n"]);
        assert!(events.is_empty());
        assert!(matches!(end, Err(ParseError::Malformed(_))));
        let (_, end, _, _) = run(&[b"event: message_delta\ndata: [1]\n\n"]);
        assert!(matches!(end, Err(ParseError::Malformed(_))));
    }

    #[test]
    fn events_before_a_bad_line_in_the_same_chunk_are_returned_first() {
        let before_stop = BASIC.split("event: message_stop").next().unwrap_or_default();
        let stream = format!("{before_stop}event: content_block_delta\ndata: {{oops\n\n");
        let mut parser = StreamParser::new();
        let events = parser.push(stream.as_bytes()).unwrap();
        assert!(events.iter().any(|e| matches!(e, Event::Chunk(c) if c.text.as_deref() == Some("Hello"))));
        assert!(matches!(parser.push(b""), Err(ParseError::Malformed(_))));
        assert!(matches!(parser.finish(), Err(ParseError::Malformed(_))));
        // After message_stop, nothing else counts, not even a bad line.
        let mut parser = StreamParser::new();
        assert_eq!(parser.push(format!("{BASIC}data: {{oops\n\n").as_bytes()).unwrap().last(), Some(&Event::Done));
        assert_eq!(parser.push(b"data: {oops\n\n"), Ok(Vec::new()));
        assert_eq!(parser.finish(), Ok(StreamEnd::Clean));
    }

    #[test]
    fn events_before_an_overlong_line_in_the_same_chunk_are_returned_first() {
        let before_stop = BASIC.split("event: message_stop").next().unwrap_or_default();
        let stream = format!("{before_stop}data: {}\n\n", "x".repeat(crate::domain::sse::MAX_LINE_BYTES));
        let mut parser = StreamParser::new();
        let events = parser.push(stream.as_bytes()).unwrap();
        assert_eq!(events.iter().filter(|e| matches!(e, Event::Chunk(c) if c.text.is_some())).count(), 2);
        assert!(matches!(parser.finish(), Err(ParseError::LineTooLong { .. })));
    }

    #[test]
    fn every_split_of_every_fixture_reads_the_same() {
        for fixture in FIXTURES {
            for bytes in with_endings(fixture) {
                let whole = run(&[&bytes]);
                for cut in 0..=bytes.len() {
                    assert_eq!(run(&[&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
                }
                let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
                assert_eq!(run(&one_by_one), whole);
            }
            // The line endings do not change what is read either.
            let [lf, crlf, cr] = with_endings(fixture);
            assert_eq!(run(&[&crlf]), run(&[&lf]));
            assert_eq!(run(&[&cr]), run(&[&lf]));
        }
    }

    /// The events of all fixtures, as pieces to recombine in any order.
    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        let pieces: Vec<String> = FIXTURES
            .iter()
            .flat_map(|f| f.split_inclusive("\n\n"))
            .map(str::to_owned)
            .chain(["data: {bad\n\n".to_owned(), ": comment\n".to_owned(), "\n".to_owned()])
            .collect();
        let ending = prop_oneof![Just("\n"), Just("\r"), Just("\r\n")];
        (prop::collection::vec((prop::sample::select(pieces), ending), 0..16), "\\PC{0,3}").prop_map(
            |(pieces, tail)| {
                let mut s: String = pieces.iter().map(|(p, e)| p.replace('\n', e)).collect();
                s += &tail;
                s.into_bytes()
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn fixtures_split_anywhere_read_the_same(which in 0..FIXTURES.len(), ending in 0..3usize, offsets in prop::collection::vec(any::<usize>(), 0..12)) {
            let variants = with_endings(FIXTURES[which]);
            let bytes = &variants[ending];
            prop_assert_eq!(run(&split_at_offsets(bytes, &offsets)), run(&[bytes]));
        }

        #[test]
        fn any_mix_of_events_split_anywhere_reads_the_same(bytes in arb_stream(), offsets in prop::collection::vec(any::<usize>(), 0..10)) {
            prop_assert_eq!(run(&split_at_offsets(&bytes, &offsets)), run(&[&bytes]));
        }

        #[test]
        fn random_bytes_never_panic_and_respect_the_split(bytes in prop::collection::vec(any::<u8>(), 0..600), offsets in prop::collection::vec(any::<usize>(), 0..6)) {
            prop_assert_eq!(run(&split_at_offsets(&bytes, &offsets)), run(&[&bytes]));
        }
    }

    // --- mapping tables -----------------------------------------------------------------------

    #[test]
    fn stop_reasons_map_to_our_finish_reasons() {
        let table = [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("pause_turn", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("something_new", "other"),
            ("", "other"),
        ];
        for (stop_reason, ours) in table {
            assert_eq!(finish_reason(stop_reason), ours, "{stop_reason}");
            let body =
                json!({"type": "message", "content": [{"type": "text", "text": "hi"}], "stop_reason": stop_reason});
            assert_eq!(parse_response(body.to_string().as_bytes()).unwrap().finish_reason.as_deref(), Some(ours));
            let stream = format!(
                "event: message_delta\ndata: {}\n\n",
                json!({"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {"output_tokens": 1}})
            );
            let events = StreamParser::new().push(stream.as_bytes()).unwrap();
            assert!(matches!(&events[..], [Event::Chunk(c)] if c.finish_reason.as_deref() == Some(ours)));
        }
    }

    #[test]
    fn error_types_and_statuses_map_to_failure_kinds() {
        use FailureKind::*;
        let body = |kind: &str, message: &str| {
            json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_1"}).to_string()
        };
        let table = [
            (400, body("invalid_request_error", "messages: roles must alternate"), Invalid),
            (400, body("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"), ContextLength),
            (401, body("authentication_error", "invalid x-api-key"), Auth),
            (402, body("billing_error", "credit balance too low"), Quota),
            (403, body("permission_error", "no access to this model"), Auth),
            (404, body("not_found_error", "model: claude-nope"), NotFound),
            (413, body("request_too_large", "request exceeds the maximum size"), Invalid),
            (
                429,
                body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
                RateLimited,
            ),
            (500, body("api_error", "Internal server error"), Server),
            (504, body("timeout_error", "Request timed out"), Timeout),
            (529, body("overloaded_error", "Overloaded"), Overloaded),
            // The body says more than the status, also inside a 200 stream.
            (200, body("overloaded_error", "Overloaded"), Overloaded),
            (500, body("overloaded_error", "Overloaded"), Overloaded),
            // Without a known type, the status decides.
            (529, "<html>busy</html>".to_owned(), Overloaded),
            (503, body("brand_new_error", "?"), Server),
            (422, body("brand_new_error", "?"), Invalid),
            (400, body("brand_new_error", "prompt is too long"), ContextLength),
            (408, String::new(), Timeout),
        ];
        for (status, body, kind) in table {
            assert_eq!(error_kind(status, body.as_bytes()), kind, "{status} {body}");
        }
        let spend = json!({"type": "error", "error": {"type": "rate_limit_error", "message": "spend limit", "details": {"error_code": "enforced_spend_limit_reached"}}});
        assert_eq!(error_kind(429, spend.to_string().as_bytes()), Quota);
    }

    // --- the JSON answer ----------------------------------------------------------------------

    #[test]
    fn parses_text_tool_use_and_usage_with_cache() {
        let body = json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [
                {"type": "thinking", "thinking": "hmm", "signature": "x"},
                {"type": "text", "text": "Let me "},
                {"type": "text", "text": "check."},
                {"type": "tool_use", "id": "toolu_1", "name": "query_records", "input": {"kind": "deal"}},
                {"type": "tool_use", "name": "list_kinds", "input": {}}
            ],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 100, "output_tokens": 7}
        });
        let c = parse_response(body.to_string().as_bytes()).unwrap();
        assert_eq!(c.content, "Let me check.");
        assert_eq!(c.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(113), Some(7)));
        assert_eq!(c.finish_reason.as_deref(), Some("tool_calls"));
        let calls: Vec<(&str, &str, &str)> = c
            .tool_calls
            .iter()
            .map(|t| (t.id.as_str(), t.function.name.as_str(), t.function.arguments.as_str()))
            .collect();
        assert_eq!(calls, [("toolu_1", "query_records", r#"{"kind":"deal"}"#), ("call00001", "list_kinds", "{}")]);
        // The JSON answer and the stream give the collector the same kind of answer.
        let answer = Collector::from_completion(&c, c.finish_reason.clone()).finish(StreamEnd::Clean, &prompt());
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.usage, Usage { prompt_tokens: 113, completion_tokens: 7, estimated: false });
        // No cache fields: the input alone; no usage: unknown.
        let plain = parse_response(
            br#"{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":4,"output_tokens":1}}"#,
        )
        .unwrap();
        assert_eq!((plain.prompt_tokens, plain.completion_tokens, plain.finish_reason), (Some(4), Some(1), None));
        let bare = parse_response(br#"{"content":[{"type":"text","text":"hi"}]}"#).unwrap();
        assert_eq!((bare.prompt_tokens, bare.completion_tokens, bare.model), (None, None, None));
    }

    #[test]
    fn rejects_unusable_bodies_without_quoting_them() {
        for body in [
            &b"<html>secret</html>"[..],
            b"{}",
            br#"{"type":"error","error":{"type":"overloaded_error","message":"secret"}}"#,
            br#"{"content":"secret"}"#,
            br#"{"content":[]}"#,
            br#"{"content":[{"type":"text","text":"  "}]}"#,
            br#"{"content":[{"type":"tool_use","id":"t","input":{}}]}"#,
        ] {
            let err = parse_response(body).unwrap_err();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    // --- the request --------------------------------------------------------------------------

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            kind: "function".into(),
            function: FunctionCall { name: name.into(), arguments: arguments.into() },
        }
    }

    fn openai_tools() -> Value {
        json!([{"type": "function", "function": {"name": "query_records", "description": "Query.", "parameters": {"type": "object", "properties": {"kind": {"type": "string"}}}}}])
    }

    #[test]
    fn system_turns_go_to_the_top_level_system_joined() {
        let messages = [
            Turn::new(Role::System, "be brief"),
            Turn::new(Role::System, "<data>rows</data>"),
            Turn::new(Role::User, "hi"),
        ];
        let body = request_body("claude-sonnet-4-5", 1024, &messages, None, false);
        assert_eq!(
            body,
            json!({
                "model": "claude-sonnet-4-5",
                "max_tokens": 1024,
                "system": "be brief\n\n<data>rows</data>",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
            })
        );
        // No system text: no `system` at all; streaming asks for it.
        let body = request_body("m", 5, &[Turn::new(Role::System, " "), Turn::new(Role::User, "hi")], None, true);
        assert_eq!(body.get("system"), None);
        assert_eq!(body["stream"], true);
        assert_eq!(body["max_tokens"], 5);
    }

    #[test]
    fn consecutive_turns_of_a_role_are_merged_and_blank_ones_dropped() {
        let messages = [
            Turn::new(Role::User, "first"),
            Turn::new(Role::User, "second"),
            Turn::new(Role::Assistant, "   "),
            Turn::new(Role::User, "third"),
            Turn::new(Role::Assistant, "a"),
            Turn::new(Role::Assistant, "b"),
        ];
        let body = request_body("m", 10, &messages, None, false);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}, {"type": "text", "text": "third"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ])
        );
    }

    #[test]
    fn tool_calls_become_tool_use_and_results_tool_result_in_one_user_message() {
        let definitions = openai_tools();
        let messages = [
            Turn::new(Role::User, "how many deals?"),
            Turn::calling(vec![
                call("call_1", "query_records", r#"{"kind":"deal"}"#),
                call("call.2", "query_records", "{not json"),
            ]),
            Turn::tool_result("call_1", r#"{"rows":3}"#),
            Turn::tool_result("call.2", ""),
        ];
        let offer = Offer { definitions: &definitions, final_step: false };
        let body = request_body("m", 10, &messages, Some(offer), false);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "how many deals?"}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "query_records", "input": {"kind": "deal"}},
                    {"type": "tool_use", "id": "call_2", "name": "query_records", "input": {}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "{\"rows\":3}"},
                    {"type": "tool_result", "tool_use_id": "call_2"}
                ]}
            ])
        );
        assert_eq!(
            body["tools"],
            json!([{"name": "query_records", "description": "Query.", "input_schema": {"type": "object", "properties": {"kind": {"type": "string"}}}}])
        );
        assert_eq!(body["tool_choice"], json!({"type": "auto"}));
        let last = request_body("m", 10, &messages, Some(Offer { definitions: &definitions, final_step: true }), true);
        assert_eq!(last["tool_choice"], json!({"type": "none"}));
        // Arguments that are JSON but not an object are no input either.
        let odd = request_body("m", 1, &[Turn::calling(vec![call("c", "f", "[1]")])], Some(offer), false);
        assert_eq!(odd["messages"][0]["content"][0]["input"], json!({}));
    }

    #[test]
    fn without_tools_offered_past_exchanges_are_left_out() {
        let messages = [
            Turn::new(Role::User, "q1"),
            Turn::calling(vec![call("past00000", "query_records", "{}")]),
            Turn::tool_result("past00000", "{}"),
            Turn::new(Role::Assistant, "a1"),
            Turn::new(Role::User, "q2"),
        ];
        for tools in [None, Some(json!([])), Some(json!({"not": "an array"}))] {
            let offer = tools.as_ref().map(|definitions| Offer { definitions, final_step: false });
            let body = request_body("m", 10, &messages, offer, false);
            let roles: Vec<&str> =
                body["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
            assert_eq!(roles, ["user", "assistant", "user"]);
            assert!(!body.to_string().contains("tool_"), "{body}");
            assert_eq!(body.get("tool_choice"), None);
        }
    }

    #[test]
    fn the_agents_tool_definitions_convert_whole() {
        let definitions = tools::definitions(&Tool::ALL, &[Kind::Deal, Kind::Note]);
        let converted = tool_definitions(&definitions);
        assert_eq!(converted.len(), Tool::ALL.len());
        for (ours, theirs) in converted.iter().zip(definitions.as_array().unwrap()) {
            assert_eq!(ours["name"], theirs["function"]["name"]);
            assert_eq!(ours["description"], theirs["function"]["description"]);
            assert_eq!(ours["input_schema"], theirs["function"]["parameters"]);
            assert_eq!(ours.as_object().unwrap().len(), 3);
        }
        // Nameless entries are dropped; a missing schema is an empty object schema.
        let loose = tool_definitions(&json!([{"function": {"description": "x"}}, {"name": "flat"}]));
        assert_eq!(loose, [json!({"name": "flat", "input_schema": {"type": "object", "properties": {}}})]);
    }

    #[test]
    fn headers_carry_the_key_and_version_and_no_authorization() {
        let headers = headers("sk-ant-test");
        assert_eq!(headers, [("x-api-key", "sk-ant-test".to_owned()), ("anthropic-version", "2023-06-01".to_owned())]);
        assert!(headers.iter().all(|(name, _)| !name.eq_ignore_ascii_case("authorization")));
    }

    fn arb_turn() -> impl Strategy<Value = Turn> {
        let text = prop_oneof![Just(String::new()), Just("  ".to_owned()), "[a-z ]{1,6}"];
        let role = prop_oneof![Just(Role::System), Just(Role::User), Just(Role::Assistant), Just(Role::Tool)];
        let calls = prop::collection::vec(
            ("[a-z_.]{0,4}", "[a-z]{1,4}", prop_oneof![Just("{}".to_owned()), "\\PC{0,6}"]),
            0..3,
        );
        (role, text, calls, proptest::option::of("[a-z]{0,3}")).prop_map(|(role, content, calls, id)| Turn {
            tool_calls: if role == Role::Assistant {
                calls.iter().map(|(i, n, a)| call(i, n, a)).collect()
            } else {
                Vec::new()
            },
            tool_call_id: if role == Role::Tool { id } else { None },
            ..Turn::new(role, content)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn requests_always_follow_the_wire_rules(turns in prop::collection::vec(arb_turn(), 0..12), offered in any::<bool>(), final_step in any::<bool>()) {
            let definitions = openai_tools();
            let offer = offered.then_some(Offer { definitions: &definitions, final_step });
            let body = request_body("m", 64, &turns, offer, false);
            prop_assert_eq!(&body["max_tokens"], &json!(64));
            let messages = body["messages"].as_array().unwrap();
            for pair in messages.windows(2) {
                prop_assert_ne!(&pair[0]["role"], &pair[1]["role"]);
            }
            for message in messages {
                prop_assert!(message["role"] == "user" || message["role"] == "assistant");
                let content = message["content"].as_array().unwrap();
                prop_assert!(!content.is_empty());
                for block in content {
                    match block["type"].as_str().unwrap() {
                        "text" => prop_assert!(!block["text"].as_str().unwrap().trim().is_empty()),
                        "tool_use" => {
                            prop_assert!(offered && message["role"] == "assistant" && block["input"].is_object());
                            let id = block["id"].as_str().unwrap();
                            prop_assert!(!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                        }
                        "tool_result" => prop_assert!(offered && message["role"] == "user"),
                        other => prop_assert!(false, "unexpected block {}", other),
                    }
                }
            }
            let has_system = turns.iter().any(|t| t.role == Role::System && !t.content.trim().is_empty());
            prop_assert_eq!(body.get("system").is_some(), has_system);
        }

        #[test]
        fn any_json_body_parses_or_fails_without_panicking(value in arb_json()) {
            let _ = parse_response(value.to_string().as_bytes());
            let _ = error_kind(500, value.to_string().as_bytes());
            let message = json!({"type": "message", "content": [value.clone()], "usage": value});
            if let Ok(c) = parse_response(message.to_string().as_bytes()) {
                prop_assert!(!c.content.trim().is_empty() || !c.tool_calls.is_empty());
            }
        }
    }
}
