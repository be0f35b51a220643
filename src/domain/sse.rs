//! Server-Sent Events in both directions, and the one place that decides what an answer is.
//!
//! - [`Parser`] reads the provider's OpenAI-compatible stream (`chat.completion.chunk` frames)
//!   from byte chunks split anywhere, following the WHATWG event-stream rules, and turns each
//!   event into a typed [`Event`].
//! - [`Collector`] accumulates those events into an [`Answer`]: the text, finish reason, usage
//!   (estimated when the provider sent none) and the [`Outcome`]. The JSON mode builds the same
//!   [`Answer`] from a non-streamed [`Completion`], so both transports agree on what was said.
//! - [`frame`] and [`ping`] encode *our* outbound events (`start`, `delta`, `done`, `error`).
//!
//! A stream is complete only when the provider said so (`[DONE]`, or a clean end after a
//! `finish_reason`): a connection that merely ends looks exactly like success at every layer
//! below this one, so "ended" alone is reported as [`Outcome::Truncated`].

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::llm::{self, estimate_tokens, Completion, FunctionCall, ToolCall, Turn};

/// The longest line we buffer (bytes, without its terminator). A provider line is one JSON
/// chunk of a few hundred bytes; anything near this is not a chat stream, and refusing it keeps
/// a misbehaving upstream from growing our buffer without bound.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// The largest `data` of one event (all its `data:` lines joined), for the same reason.
pub const MAX_EVENT_BYTES: usize = 4 << 20;
/// Provider error messages are passed on for logging and the `error` frame; a cap keeps an
/// upstream from echoing a whole prompt back through us.
const MAX_ERROR_MESSAGE_CHARS: usize = 500;

/// Names of our outbound events.
pub const EVENT_START: &str = "start";
pub const EVENT_DELTA: &str = "delta";
pub const EVENT_DONE: &str = "done";
pub const EVENT_ERROR: &str = "error";
pub const EVENT_TOOL: &str = "tool";

// ----------------------------------------------------------------------------------------------
// Reading: the WHATWG event-stream layer
// ----------------------------------------------------------------------------------------------

/// One dispatched event of the WHATWG layer, before any interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The `event:` field; empty when none was sent (the spec's default type "message").
    pub event: String,
    /// All `data:` lines of the event joined with `\n`.
    pub data: String,
    /// The last event ID seen so far (`id:` persists across events, as in the spec).
    pub id: String,
}

/// Why a stream cannot be read any further.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// A line longer than [`MAX_LINE_BYTES`].
    LineTooLong { limit: usize },
    /// An event whose data exceeds [`MAX_EVENT_BYTES`].
    EventTooLarge { limit: usize },
    /// A data payload that is not a usable chunk. The reason never quotes the payload.
    Malformed(String),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::LineTooLong { limit } => write!(f, "stream line longer than {limit} bytes"),
            Self::EventTooLarge { limit } => write!(f, "stream event larger than {limit} bytes"),
            Self::Malformed(reason) => write!(f, "malformed stream chunk: {reason}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// How the byte stream ended, as far as the reader can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// EOF between events.
    Clean,
    /// EOF inside an event or a line: the last event was cut off and never dispatched.
    MidEvent,
    /// The caller stopped reading for its own reasons (connection reset, timeout, client gone,
    /// a [`ParseError`]). Reported by the caller, never by the parser.
    Interrupted,
}

/// Whether the sink wants more events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The WHATWG event-stream decoder (HTML §9.2.6): lines split at byte level on CR, LF or CRLF
/// (also across chunks), decoded as UTF-8 per complete line, so a character split between
/// chunks is never mangled; comments ignored; `data:` lines joined; a blank line dispatches.
#[derive(Debug, Default)]
pub struct Decoder {
    /// Bytes of the current line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF opening the next chunk belongs to that break.
    after_cr: bool,
    /// The first line has been seen (a leading byte-order mark is dropped from it only).
    started: bool,
    event: String,
    data: String,
    last_id: String,
    retry_ms: Option<u64>,
    /// A field line was seen since the last dispatch: EOF now would cut an event.
    pending: bool,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk and returns the events it completed.
    ///
    /// # Errors
    /// A line or an event over its cap. The decoder should not be used after an error.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<RawEvent>, ParseError> {
        let mut out = Vec::new();
        self.decode(bytes, &mut |event| {
            out.push(event);
            Ok(Flow::Continue)
        })?;
        Ok(out)
    }

    /// At EOF: whether an event was cut off. Resets the line state.
    pub fn finish(&mut self) -> StreamEnd {
        let mid = !self.line.is_empty() || self.pending;
        self.line.clear();
        self.pending = false;
        self.data.clear();
        self.event.clear();
        if mid {
            StreamEnd::MidEvent
        } else {
            StreamEnd::Clean
        }
    }

    /// The last `retry:` value, which a reconnecting client would honour.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    fn decode(
        &mut self,
        mut bytes: &[u8],
        sink: &mut dyn FnMut(RawEvent) -> Result<Flow, ParseError>,
    ) -> Result<Flow, ParseError> {
        if self.after_cr && !bytes.is_empty() {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(pos) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let head = bytes.get(..pos).unwrap_or_default();
            let terminator = bytes.get(pos).copied();
            let mut rest = bytes.get(pos + 1..).unwrap_or_default();
            if terminator == Some(b'\r') {
                match rest.first() {
                    Some(b'\n') => rest = rest.get(1..).unwrap_or_default(),
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let flow = if self.line.is_empty() {
                check_line(head.len())?;
                self.line_complete(head, sink)?
            } else {
                check_line(self.line.len() + head.len())?;
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let flow = self.line_complete(&line, sink);
                line.clear();
                self.line = line; // keep the allocation for the next partial line
                flow?
            };
            if flow == Flow::Stop {
                return Ok(Flow::Stop);
            }
            bytes = rest;
        }
        // Checked before buffering, so the buffer itself never exceeds the cap.
        check_line(self.line.len() + bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(Flow::Continue)
    }

    fn line_complete(
        &mut self,
        raw: &[u8],
        sink: &mut dyn FnMut(RawEvent) -> Result<Flow, ParseError>,
    ) -> Result<Flow, ParseError> {
        let raw = if self.started {
            raw
        } else {
            self.started = true;
            raw.strip_prefix(BOM).unwrap_or(raw)
        };
        if raw.is_empty() {
            return self.dispatch(sink);
        }
        if raw.first() == Some(&b':') {
            return Ok(Flow::Continue); // a comment: providers use them as keep-alives
        }
        let text = String::from_utf8_lossy(raw);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*text, ""),
        };
        self.pending = true;
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(ParseError::EventTooLarge { limit: MAX_EVENT_BYTES });
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_id),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.retry_ms = value.parse().ok();
            }
            _ => {} // unknown fields are ignored, as the spec says
        }
        Ok(Flow::Continue)
    }

    fn dispatch(&mut self, sink: &mut dyn FnMut(RawEvent) -> Result<Flow, ParseError>) -> Result<Flow, ParseError> {
        self.pending = false;
        let event = std::mem::take(&mut self.event);
        if self.data.is_empty() {
            return Ok(Flow::Continue); // no data line: nothing to dispatch
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        sink(RawEvent { event, data, id: self.last_id.clone() })
    }
}

fn check_line(len: usize) -> Result<(), ParseError> {
    if len > MAX_LINE_BYTES {
        Err(ParseError::LineTooLong { limit: MAX_LINE_BYTES })
    } else {
        Ok(())
    }
}

// ----------------------------------------------------------------------------------------------
// Reading: the provider's chunks
// ----------------------------------------------------------------------------------------------

/// One event of the provider's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Chunk(Chunk),
    /// `data: [DONE]`: the provider finished the stream.
    Done,
    /// An in-band error (`{"error": {...}}`, or an `event: error`); the stream ends with it.
    UpstreamError {
        message: String,
    },
}

/// What we read of one `chat.completion.chunk`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk {
    /// `choices[0].delta.content`: `None` when absent or null (role-only, usage-only chunks).
    pub text: Option<String>,
    /// `choices[0].finish_reason` when non-null and non-empty (`stop`, `length`, …).
    pub finish_reason: Option<String>,
    /// `usage` as `(prompt_tokens, completion_tokens)`, when both are present.
    pub usage: Option<(u64, u64)>,
    pub model: Option<String>,
    /// `choices[0].delta.tool_calls`: pieces of tool calls, by index.
    pub tool_calls: Vec<ToolCallDelta>,
}

/// One piece of a streamed tool call: the first piece of an index carries its id and name,
/// later ones more of its arguments' text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    /// `None` when the provider leaves it out (some send each call whole, one per chunk).
    pub index: Option<usize>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: Option<String>,
}

/// The incremental reader of the provider's stream: feed byte chunks as they arrive with
/// [`Parser::push`], then call [`Parser::finish`] at EOF.
///
/// After `[DONE]` or an in-band error it ignores everything else: nothing later can change
/// the answer, so trailing bytes must not turn a finished answer into a failure.
///
/// Errors are sticky. When a chunk yields events *and then* an error, the events are returned
/// first and the error from the next call (`push` or `finish`), so a caller that reports the
/// error at once still has every delta that preceded it.
#[derive(Debug, Default)]
pub struct Parser {
    decoder: Decoder,
    terminal: bool,
    failed: Option<ParseError>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one chunk of the body, split anywhere, and returns the events it completed.
    ///
    /// # Errors
    /// A line or an event over its cap, or a data payload that is not JSON or not a chunk.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Event>, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.terminal {
            return Ok(Vec::new());
        }
        let mut events = Vec::new();
        let terminal = &mut self.terminal;
        let result = self.decoder.decode(bytes, &mut |raw| {
            let Some(event) = interpret(&raw)? else { return Ok(Flow::Continue) };
            let stop = matches!(event, Event::Done | Event::UpstreamError { .. });
            events.push(event);
            if stop {
                *terminal = true;
                Ok(Flow::Stop)
            } else {
                Ok(Flow::Continue)
            }
        });
        match result {
            Ok(_) => Ok(events),
            Err(err) => {
                self.failed = Some(err.clone());
                if events.is_empty() {
                    Err(err)
                } else {
                    Ok(events)
                }
            }
        }
    }

    /// At EOF: whether the stream ended between events or cut one off.
    ///
    /// # Errors
    /// The error a previous `push` deferred (see the type's documentation).
    pub fn finish(&mut self) -> Result<StreamEnd, ParseError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.terminal {
            return Ok(StreamEnd::Clean);
        }
        Ok(self.decoder.finish())
    }
}

/// One WHATWG event → one provider event. Only unnamed events (or the spec's default
/// `message`) are chunks; `event: error` is an error; other names are not part of the Chat
/// Completions stream and are skipped, as the OpenAI SDKs do.
fn interpret(raw: &RawEvent) -> Result<Option<Event>, ParseError> {
    let data = raw.data.trim();
    if raw.event == "error" {
        let parsed = serde_json::from_str::<Value>(data).ok();
        let message = parsed.as_ref().and_then(error_message).unwrap_or_else(|| cap_message(data));
        return Ok(Some(Event::UpstreamError { message }));
    }
    if !(raw.event.is_empty() || raw.event == "message") || data.is_empty() {
        return Ok(None);
    }
    if data == "[DONE]" {
        return Ok(Some(Event::Done));
    }
    let value: Value =
        serde_json::from_str(data).map_err(|e| ParseError::Malformed(format!("data is not JSON ({e})")))?;
    let Value::Object(obj) = value else {
        return Err(ParseError::Malformed("data is not a JSON object".into()));
    };
    if obj.get("error").is_some_and(|e| !e.is_null()) {
        let message = error_message(&Value::Object(obj)).unwrap_or_else(|| "upstream error".into());
        return Ok(Some(Event::UpstreamError { message }));
    }
    chunk(&obj).map(|c| Some(Event::Chunk(c)))
}

fn chunk(obj: &Map<String, Value>) -> Result<Chunk, ParseError> {
    let choice = match obj.get("choices") {
        None | Some(Value::Null) => None,
        Some(Value::Array(choices)) => choices.first(),
        Some(_) => return Err(ParseError::Malformed("choices is not an array".into())),
    };
    let text = match choice.and_then(|c| c.get("delta")).and_then(|d| d.get("content")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ParseError::Malformed("choices[0].delta.content is not a string".into())),
    };
    let finish_reason = match choice.and_then(|c| c.get("finish_reason")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ParseError::Malformed("choices[0].finish_reason is not a string".into())),
    };
    let usage = obj.get("usage").and_then(|u| {
        let count = |name: &str| u.get(name).and_then(Value::as_u64);
        Some((count("prompt_tokens")?, count("completion_tokens")?))
    });
    let model = obj.get("model").and_then(Value::as_str).filter(|m| !m.is_empty()).map(str::to_owned);
    let tool_calls = match choice.and_then(|c| c.get("delta")).and_then(|d| d.get("tool_calls")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(calls)) => calls.iter().map(tool_call_delta).collect::<Result<_, _>>()?,
        Some(_) => return Err(ParseError::Malformed("choices[0].delta.tool_calls is not an array".into())),
    };
    Ok(Chunk { text, finish_reason, usage, model, tool_calls })
}

fn tool_call_delta(call: &Value) -> Result<ToolCallDelta, ParseError> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let function = call.get("function");
    let index = match call.get("index") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .ok_or_else(|| ParseError::Malformed("a tool call's index is not a number".into()))?,
        ),
    };
    Ok(ToolCallDelta {
        index,
        id: text(call.get("id")).filter(|s| !s.is_empty()),
        name: text(function.and_then(|f| f.get("name"))).filter(|s| !s.is_empty()),
        arguments: text(function.and_then(|f| f.get("arguments"))),
    })
}

/// More tool calls than this in one answer are not a model asking for data.
pub const MAX_TOOL_CALLS: usize = 16;

/// `error.message` of `{"error": {...}}`, `error` itself when it is a string, or `message`,
/// capped: the same for every wire's in-stream errors.
pub(crate) fn error_message(value: &Value) -> Option<String> {
    let error = value.get("error");
    error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| error.and_then(Value::as_str))
        .or_else(|| value.get("message").and_then(Value::as_str))
        .map(cap_message)
}

/// An upstream's error text, trimmed and capped: it must not echo a whole prompt through us.
pub(crate) fn cap_message(message: &str) -> String {
    let message = message.trim();
    if message.is_empty() {
        return "upstream error".into();
    }
    message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}

// ----------------------------------------------------------------------------------------------
// Collecting: what an answer is
// ----------------------------------------------------------------------------------------------

/// Token usage as we report and store it. `estimated` is true when any of the numbers is ours
/// rather than the provider's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    #[serde(default)]
    pub estimated: bool,
}

/// The stored status of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerStatus {
    Complete,
    Incomplete,
}

impl AnswerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Incomplete => "incomplete",
        }
    }
}

/// How the provider's answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The provider said it finished: `[DONE]`, or a clean EOF after a `finish_reason`
    /// (`length` and `content_filter` included: the answer is whole, the reason says why it
    /// stopped).
    Complete,
    /// It ended without saying so: EOF alone, EOF inside an event, or an interruption.
    Truncated,
    /// It reported an error in-band, or finished with nothing to show.
    UpstreamError { message: String },
}

impl Outcome {
    pub fn status(&self) -> AnswerStatus {
        match self {
            Self::Complete => AnswerStatus::Complete,
            Self::Truncated | Self::UpstreamError { .. } => AnswerStatus::Incomplete,
        }
    }
}

/// A finished answer, whichever transport carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Everything the provider sent, also when the outcome is not complete (the partial text).
    pub text: String,
    pub outcome: Outcome,
    pub finish_reason: Option<String>,
    pub usage: Usage,
    pub model: Option<String>,
    /// The tools the model asked to call instead of (or besides) answering.
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Terminal {
    Done,
    Error(String),
}

/// Accumulates provider events into an [`Answer`]. The first terminal event (`[DONE]` or an
/// error) decides; later events are ignored.
#[derive(Debug, Clone, Default)]
pub struct Collector {
    text: String,
    finish_reason: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    model: Option<String>,
    terminal: Option<Terminal>,
    tool_calls: Vec<ToolCall>,
}

impl Collector {
    pub fn new() -> Self {
        Self::default()
    }

    /// The JSON mode's equivalent of a whole stream: a parsed body is the provider's complete
    /// answer (the non-streamed form of `[DONE]`). `finish_reason` is `choices[0].finish_reason`
    /// when the caller has it.
    pub fn from_completion(completion: &Completion, finish_reason: Option<String>) -> Self {
        Self {
            text: completion.content.clone(),
            finish_reason: finish_reason.filter(|r| !r.is_empty()),
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            model: completion.model.clone(),
            terminal: Some(Terminal::Done),
            tool_calls: completion.tool_calls.clone(),
        }
    }

    pub fn apply(&mut self, event: &Event) {
        if self.terminal.is_some() {
            return;
        }
        match event {
            Event::Done => self.terminal = Some(Terminal::Done),
            Event::UpstreamError { message } => self.terminal = Some(Terminal::Error(message.clone())),
            Event::Chunk(chunk) => {
                if let Some(text) = &chunk.text {
                    self.text.push_str(text);
                }
                if let Some(reason) = &chunk.finish_reason {
                    self.finish_reason = Some(reason.clone());
                }
                if let Some((prompt, completion)) = chunk.usage {
                    self.prompt_tokens = Some(prompt);
                    self.completion_tokens = Some(completion);
                }
                if self.model.is_none() {
                    self.model.clone_from(&chunk.model);
                }
                for delta in &chunk.tool_calls {
                    // Without an index, a new id starts a new call and anything else continues
                    // the last one.
                    let index = delta.index.unwrap_or_else(|| {
                        let last = self.tool_calls.len().saturating_sub(1);
                        let new_id = delta
                            .id
                            .as_ref()
                            .is_some_and(|id| self.tool_calls.last().is_some_and(|c| !c.id.is_empty() && c.id != *id));
                        if new_id || self.tool_calls.is_empty() {
                            self.tool_calls.len()
                        } else {
                            last
                        }
                    });
                    // Calls past the cap are not kept (a step runs at most that many anyway).
                    if index >= MAX_TOOL_CALLS {
                        continue;
                    }
                    while self.tool_calls.len() <= index {
                        let function = FunctionCall { name: String::new(), arguments: String::new() };
                        self.tool_calls.push(ToolCall { id: String::new(), kind: "function".into(), function });
                    }
                    if let Some(call) = self.tool_calls.get_mut(index) {
                        if let Some(id) = &delta.id {
                            call.id.clone_from(id);
                        }
                        if let Some(name) = &delta.name {
                            call.function.name.push_str(name);
                        }
                        if let Some(arguments) = &delta.arguments {
                            call.function.arguments.push_str(arguments);
                        }
                    }
                }
            }
        }
    }

    /// Whether the model has started calling a tool (content, as much as text is).
    pub fn has_tool_calls(&self) -> bool {
        !self.tool_calls.is_empty()
    }

    /// The text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// `[DONE]` or an error was seen: nothing later can change the answer, stop reading.
    pub fn is_finished(&self) -> bool {
        self.terminal.is_some()
    }

    /// The answer, given how the stream ended and the messages that were sent (for the usage
    /// estimate when the provider reported none).
    pub fn finish(self, end: StreamEnd, prompt: &[Turn]) -> Answer {
        let mut outcome = match self.terminal {
            Some(Terminal::Done) => Outcome::Complete,
            Some(Terminal::Error(message)) => Outcome::UpstreamError { message },
            // Only a clean EOF counts: an EOF inside an event may have cut the chunk that
            // carried the rest of the answer.
            None if end == StreamEnd::Clean && self.finish_reason.is_some() => Outcome::Complete,
            None => Outcome::Truncated,
        };
        if outcome == Outcome::Complete {
            // The JSON mode refuses these bodies as an upstream error; the stream agrees.
            if self.finish_reason.as_deref() == Some("error") {
                outcome = Outcome::UpstreamError { message: "the provider ended the answer with an error".into() };
            } else if self.text.trim().is_empty() && self.tool_calls.is_empty() {
                outcome = Outcome::UpstreamError { message: "the provider's answer is empty".into() };
            }
        }
        // A call without a name is no call; one without an id gets one, so its result can be
        // matched to it.
        let tool_calls: Vec<ToolCall> = self
            .tool_calls
            .into_iter()
            .enumerate()
            .filter(|(_, c)| !c.function.name.is_empty())
            .map(|(i, mut c)| {
                if c.id.is_empty() {
                    c.id = llm::fallback_call_id(i);
                }
                c
            })
            .collect();
        let counted = if tool_calls.is_empty() {
            self.text.clone()
        } else {
            let args: String = tool_calls.iter().map(|c| c.function.arguments.as_str()).collect();
            format!("{}{args}", self.text)
        };
        let usage = usage(self.prompt_tokens, self.completion_tokens, &counted, prompt);
        Answer { text: self.text, outcome, finish_reason: self.finish_reason, usage, model: self.model, tool_calls }
    }
}

/// The provider's numbers where it sent them, our estimate otherwise. A completion count of
/// zero for a non-empty answer is never believed: stored, it would make the answer free.
fn usage(prompt_tokens: Option<u64>, completion_tokens: Option<u64>, text: &str, prompt: &[Turn]) -> Usage {
    let completion_tokens = completion_tokens.filter(|&n| n > 0 || text.is_empty());
    let estimate = |s: &str| u64::try_from(estimate_tokens(s)).unwrap_or(u64::MAX);
    Usage {
        prompt_tokens: prompt_tokens
            .unwrap_or_else(|| prompt.iter().fold(0u64, |sum, t| sum.saturating_add(estimate(&t.content)))),
        completion_tokens: completion_tokens.unwrap_or_else(|| if text.is_empty() { 0 } else { estimate(text) }),
        estimated: prompt_tokens.is_none() || completion_tokens.is_none(),
    }
}

// ----------------------------------------------------------------------------------------------
// Writing: our frames
// ----------------------------------------------------------------------------------------------

/// One outbound event: `event: <name>\ndata: <JSON>\n\n`, to be written in one piece (a
/// client dispatches only at the blank line, so a frame split across writes is still safe, but
/// one write keeps proxies from holding half an event).
///
/// serde_json escapes every control character, so the JSON is one line; should that ever not
/// hold, each line still gets its own `data:` prefix, which a client joins back with `\n`.
/// Line breaks in the event name (ours are constants) are dropped rather than allowed to end
/// the frame early.
pub fn frame(event: &str, data: &Value) -> String {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".to_owned());
    let mut out = String::with_capacity(json.len() + event.len() + 16);
    out.push_str("event: ");
    out.extend(event.chars().filter(|c| *c != '\n' && *c != '\r'));
    out.push('\n');
    for line in json.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// A keep-alive comment: ignored by every client, but it keeps idle-timeouts of proxies and
/// clients from closing a stream while the provider is thinking.
pub fn ping() -> &'static str {
    ": ping\n\n"
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::domain::llm::Role;

    /// Pushes the chunks in order and finishes: every event, and the first error or the end.
    fn run(chunks: &[&[u8]]) -> (Vec<Event>, Result<StreamEnd, ParseError>) {
        let mut parser = Parser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            match parser.push(chunk) {
                Ok(more) => events.extend(more),
                Err(err) => return (events, Err(err)),
            }
        }
        let end = parser.finish();
        (events, end)
    }

    fn run_whole(bytes: &[u8]) -> (Vec<Event>, Result<StreamEnd, ParseError>) {
        run(&[bytes])
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

    fn chunk_line(text: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m1",
                   "choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
        )
    }

    fn finish_line(reason: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m1",
                   "choices":[{"index":0,"delta":{},"finish_reason":reason}]})
        )
    }

    fn usage_line(prompt: u64, completion: u64) -> String {
        format!(
            "data: {}\n\n",
            json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m1","choices":[],
                   "usage":{"prompt_tokens":prompt,"completion_tokens":completion,"total_tokens":prompt+completion}})
        )
    }

    fn text_of(text: &str) -> Event {
        Event::Chunk(Chunk { text: Some(text.into()), model: Some("m1".into()), ..Chunk::default() })
    }

    fn prompt() -> Vec<Turn> {
        vec![Turn::new(Role::System, "be brief"), Turn::new(Role::User, "hello there")]
    }

    fn collect(bytes: &[u8]) -> Answer {
        let mut parser = Parser::new();
        let mut collector = Collector::new();
        let end = match parser.push(bytes) {
            Ok(events) => {
                events.iter().for_each(|e| collector.apply(e));
                parser.finish().unwrap_or(StreamEnd::Interrupted)
            }
            Err(_) => StreamEnd::Interrupted,
        };
        collector.finish(end, &prompt())
    }

    /// A realistic stream with everything the parser must cope with in it.
    fn sample_stream() -> Vec<u8> {
        let mut s = String::from("\u{FEFF}: keep-alive\r\nid: 7\nretry: 3000\n");
        s += &chunk_line("Hé");
        s += &chunk_line("llo 👋🏽 wörld").replace('\n', "\r\n");
        s += &chunk_line(" 日本").replace('\n', "\r");
        s += "event: message\ndata: {\"choices\":[{\"delta\":{\"content\":\"!\"}}],\ndata: \"model\":\"m1\"}\n\n";
        s += &finish_line("stop");
        s += &usage_line(12, 5);
        s += "data: [DONE]\n\n";
        s.into_bytes()
    }

    #[test]
    fn a_sample_stream_reads_as_expected() {
        let (events, end) = run_whole(&sample_stream());
        assert_eq!(end, Ok(StreamEnd::Clean));
        assert_eq!(events.len(), 7, "{events:?}");
        assert_eq!(events[0], text_of("Hé"));
        assert_eq!(events[1], text_of("llo 👋🏽 wörld"));
        assert_eq!(events[2], text_of(" 日本"));
        assert_eq!(events[3], text_of("!"));
        assert!(matches!(&events[4], Event::Chunk(c) if c.finish_reason.as_deref() == Some("stop")));
        assert!(matches!(&events[5], Event::Chunk(c) if c.usage == Some((12, 5)) && c.text.is_none()));
        assert_eq!(events[6], Event::Done);
    }

    #[test]
    fn every_split_offset_yields_the_same_events() {
        let bytes = sample_stream();
        let whole = run_whole(&bytes);
        for cut in 0..=bytes.len() {
            assert_eq!(run(&[&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&one_by_one), whole);
    }

    #[test]
    fn cr_lf_and_crlf_all_end_lines() {
        for ending in ["\n", "\r", "\r\n"] {
            let s = format!(": c{ending}data: [DONE]{ending}{ending}");
            assert_eq!(run_whole(s.as_bytes()), (vec![Event::Done], Ok(StreamEnd::Clean)), "{ending:?}");
        }
        // A CR ending one chunk and an LF opening the next are one line break, not two (two
        // would be a blank line and dispatch early).
        let mut decoder = Decoder::new();
        let mut got = decoder.push(b"data: a\r").unwrap();
        got.extend(decoder.push(b"\ndata: b\r").unwrap());
        got.extend(decoder.push(b"\n\r").unwrap());
        got.extend(decoder.push(b"\n").unwrap());
        assert_eq!(got, vec![RawEvent { event: String::new(), data: "a\nb".into(), id: String::new() }]);
        assert_eq!(decoder.finish(), StreamEnd::Clean);
    }

    #[test]
    fn an_emoji_split_across_chunks_survives() {
        let line = chunk_line("🦀");
        let bytes = line.as_bytes();
        let at = line.find('🦀').unwrap();
        for cut in at + 1..at + 4 {
            let (events, end) = run(&[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(events, vec![text_of("🦀")]);
            assert_eq!(end, Ok(StreamEnd::Clean));
        }
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let mut decoder = Decoder::new();
        let events = decoder.push(b"data: one\ndata:two\ndata\ndata:  three\n\n").unwrap();
        assert_eq!(events[0].data, "one\ntwo\n\n three");
    }

    #[test]
    fn comments_ids_retry_and_unknown_fields_are_not_events() {
        let mut decoder = Decoder::new();
        let events =
            decoder.push(b": hi\nid: 42\nretry: 1500\nfoo: bar\n\n:ping\n\nid\nevent: named\ndata: x\n\n").unwrap();
        assert_eq!(events, vec![RawEvent { event: "named".into(), data: "x".into(), id: String::new() }]);
        assert_eq!(decoder.retry_ms(), Some(1500));
        let events = decoder.push(b"id: 9\ndata: y\n\n").unwrap();
        assert_eq!(events[0].id, "9");
        assert_eq!(events[0].event, "", "the event name is reset after each dispatch");

        let (events, end) = run_whole(b": ping\nid: 1\n\nretry: 10\n\n");
        assert_eq!((events, end), (vec![], Ok(StreamEnd::Clean)));
    }

    #[test]
    fn named_events_other_than_error_are_skipped() {
        let (events, _) = run_whole(b"event: ping\ndata: {}\n\nevent: message\ndata: [DONE]\n\n");
        assert_eq!(events, vec![Event::Done]);
        let (events, _) = run_whole(b"event: error\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n");
        assert_eq!(events, vec![Event::UpstreamError { message: "overloaded".into() }]);
        let (events, _) = run_whole(b"event: error\ndata: plain words\n\n");
        assert_eq!(events, vec![Event::UpstreamError { message: "plain words".into() }]);
    }

    #[test]
    fn an_over_long_line_is_refused_without_buffering_it() {
        let mut parser = Parser::new();
        parser.push(b"data: ").unwrap();
        let block = vec![b'x'; 64 * 1024];
        let mut refused = false;
        for _ in 0..20 {
            match parser.push(&block) {
                Ok(events) => assert!(events.is_empty()),
                Err(err) => {
                    assert_eq!(err, ParseError::LineTooLong { limit: MAX_LINE_BYTES });
                    refused = true;
                    break;
                }
            }
            assert!(parser.decoder.line.len() <= MAX_LINE_BYTES);
        }
        assert!(refused);
        assert_eq!(parser.finish(), Err(ParseError::LineTooLong { limit: MAX_LINE_BYTES }), "errors are sticky");

        // Exactly at the cap is fine; one more byte is not, in one piece or split.
        let mut ok = b"data:".to_vec();
        ok.resize(MAX_LINE_BYTES, b'1');
        ok.extend_from_slice(b"\n\n");
        let mut decoder = Decoder::new();
        assert_eq!(decoder.push(&ok).unwrap().len(), 1);
        let mut long = b"data:".to_vec();
        long.resize(MAX_LINE_BYTES + 1, b'1');
        long.extend_from_slice(b"\n\n");
        assert!(Decoder::new().push(&long).is_err());
        let (first, second) = long.split_at(MAX_LINE_BYTES / 2);
        let mut decoder = Decoder::new();
        decoder.push(first).unwrap();
        assert_eq!(decoder.push(second), Err(ParseError::LineTooLong { limit: MAX_LINE_BYTES }));
    }

    #[test]
    fn an_over_large_event_is_refused() {
        let line = format!("data: {}\n", "y".repeat(MAX_LINE_BYTES - 10));
        let mut decoder = Decoder::new();
        let mut result = Ok(Vec::new());
        for _ in 0..5 {
            result = decoder.push(line.as_bytes());
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(ParseError::EventTooLarge { limit: MAX_EVENT_BYTES }));
    }

    #[test]
    fn a_trailing_partial_event_is_reported() {
        let mut s = chunk_line("Hel");
        s += "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\n"; // no blank line
        let (events, end) = run_whole(s.as_bytes());
        assert_eq!(events, vec![text_of("Hel")]);
        assert_eq!(end, Ok(StreamEnd::MidEvent));
        let (_, end) = run_whole(b"data: {\"choi");
        assert_eq!(end, Ok(StreamEnd::MidEvent));
        let (_, end) = run_whole(b": just a comment\n");
        assert_eq!(end, Ok(StreamEnd::Clean));
    }

    #[test]
    fn malformed_payloads_are_errors_after_the_events_before_them() {
        let mut s = chunk_line("kept");
        s += "data: {not json\n\n";
        s += &chunk_line("never");
        let mut parser = Parser::new();
        assert_eq!(parser.push(s.as_bytes()), Ok(vec![text_of("kept")]));
        assert!(matches!(parser.push(b""), Err(ParseError::Malformed(_))));
        assert!(matches!(parser.finish(), Err(ParseError::Malformed(_))));

        for bad in [
            &b"data: 42\n\n"[..],
            b"data: {\"choices\":{}}\n\n",
            b"data: {\"choices\":[{\"delta\":{\"content\":7}}]}\n\n",
            b"data: {\"choices\":[{\"finish_reason\":true}]}\n\n",
        ] {
            assert!(matches!(run_whole(bad).1, Err(ParseError::Malformed(_))), "{}", String::from_utf8_lossy(bad));
        }
        // The reason never quotes the payload.
        let (_, end) = run_whole(b"data: {\"secret\": sk-123\n\n");
        assert!(!format!("{:?}", end).contains("sk-123"));
    }

    #[test]
    fn bytes_after_done_are_ignored() {
        let (events, end) = run(&[b"data: [DONE]\n\ndata: {garbage\n\n", b"data: more garbage"]);
        assert_eq!((events, end), (vec![Event::Done], Ok(StreamEnd::Clean)));
    }

    #[test]
    fn chunks_read_text_finish_reason_usage_and_model() {
        let (events, _) = run_whole(
            br#"data: {"model":"gpt-x","choices":[{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}],"usage":null}

data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}

data: {"choices":[{"index":0,"delta":{}}],"usage":{"prompt_tokens":3}}

"#,
        );
        assert_eq!(
            events,
            vec![
                Event::Chunk(Chunk { model: Some("gpt-x".into()), ..Chunk::default() }),
                Event::Chunk(Chunk {
                    text: Some("a".into()),
                    finish_reason: Some("length".into()),
                    usage: Some((3, 1)),
                    model: None,
                    tool_calls: Vec::new(),
                }),
                Event::Chunk(Chunk::default()),
            ]
        );
    }

    // --- completeness table ---------------------------------------------------------------------

    #[test]
    fn done_is_complete() {
        let answer = collect(format!("{}{}data: [DONE]\n\n", chunk_line("Hi"), chunk_line(" there")).as_bytes());
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.text, "Hi there");
        assert_eq!(answer.finish_reason, None);
        assert_eq!(answer.model.as_deref(), Some("m1"));
        assert_eq!(answer.outcome.status(), AnswerStatus::Complete);
    }

    #[test]
    fn finish_reason_then_clean_eof_is_complete() {
        let answer = collect(format!("{}{}", chunk_line("Hi"), finish_line("stop")).as_bytes());
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    }

    #[test]
    fn finish_reason_then_eof_inside_an_event_is_truncated() {
        let answer = collect(format!("{}{}data: {{\"choi", chunk_line("Hi"), finish_line("stop")).as_bytes());
        assert_eq!(answer.outcome, Outcome::Truncated);
    }

    #[test]
    fn usage_only_final_chunk_then_done_is_complete_with_usage() {
        let s = format!("{}{}{}data: [DONE]\n\n", chunk_line("Hi"), finish_line("stop"), usage_line(21, 2));
        let answer = collect(s.as_bytes());
        assert_eq!(answer.outcome, Outcome::Complete);
        assert_eq!(answer.usage, Usage { prompt_tokens: 21, completion_tokens: 2, estimated: false });
    }

    #[test]
    fn eof_alone_is_truncated_and_keeps_the_partial_text() {
        let answer = collect(format!("{}{}", chunk_line("Hal"), chunk_line("f an")).as_bytes());
        assert_eq!(answer.outcome, Outcome::Truncated);
        assert_eq!(answer.outcome.status(), AnswerStatus::Incomplete);
        assert_eq!(answer.text, "Half an");
        assert!(answer.usage.estimated);
        assert!(answer.usage.completion_tokens > 0);
    }

    #[test]
    fn an_interruption_is_truncated_even_after_a_finish_reason() {
        let mut collector = Collector::new();
        collector.apply(&text_of("x"));
        collector.apply(&Event::Chunk(Chunk { finish_reason: Some("stop".into()), ..Chunk::default() }));
        assert_eq!(collector.finish(StreamEnd::Interrupted, &prompt()).outcome, Outcome::Truncated);
    }

    #[test]
    fn an_in_band_error_is_an_upstream_error() {
        let s = format!(
            "{}data: {{\"error\":{{\"message\":\"stub in-band error\",\"type\":\"server_error\"}}}}\n\n",
            chunk_line("partial")
        );
        let answer = collect(s.as_bytes());
        assert_eq!(answer.outcome, Outcome::UpstreamError { message: "stub in-band error".into() });
        assert_eq!(answer.text, "partial");
        assert_eq!(answer.outcome.status(), AnswerStatus::Incomplete);
        let answer = collect(b"data: {\"error\":\"plain\"}\n\n");
        assert_eq!(answer.outcome, Outcome::UpstreamError { message: "plain".into() });
        let long = format!("data: {}\n\n", json!({"error": {"message": "z".repeat(5000)}}));
        match collect(long.as_bytes()).outcome {
            Outcome::UpstreamError { message } => assert_eq!(message.chars().count(), MAX_ERROR_MESSAGE_CHARS),
            other => panic!("{other:?}"),
        }
        // `"error": null` on an ordinary chunk is not an error.
        let answer = collect(
            b"data: {\"error\":null,\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n",
        );
        assert_eq!(answer.outcome, Outcome::Complete);
    }

    #[test]
    fn length_and_content_filter_are_complete_with_their_reason() {
        for reason in ["length", "content_filter"] {
            let answer = collect(format!("{}{}data: [DONE]\n\n", chunk_line("Hi"), finish_line(reason)).as_bytes());
            assert_eq!(answer.outcome, Outcome::Complete);
            assert_eq!(answer.finish_reason.as_deref(), Some(reason));
            let answer = collect(format!("{}{}", chunk_line("Hi"), finish_line(reason)).as_bytes());
            assert_eq!(answer.outcome, Outcome::Complete);
        }
    }

    #[test]
    fn finish_reason_error_and_empty_answers_are_not_complete() {
        let answer = collect(format!("{}{}data: [DONE]\n\n", chunk_line("Hi"), finish_line("error")).as_bytes());
        assert!(matches!(answer.outcome, Outcome::UpstreamError { .. }));
        let answer = collect(format!("{}{}data: [DONE]\n\n", chunk_line("  "), finish_line("stop")).as_bytes());
        assert!(matches!(answer.outcome, Outcome::UpstreamError { .. }));
    }

    #[test]
    fn the_first_terminal_event_decides() {
        let mut collector = Collector::new();
        collector.apply(&text_of("a"));
        collector.apply(&Event::Done);
        assert!(collector.is_finished());
        collector.apply(&Event::UpstreamError { message: "late".into() });
        collector.apply(&text_of("b"));
        let answer = collector.finish(StreamEnd::Clean, &prompt());
        assert_eq!((answer.outcome, answer.text.as_str()), (Outcome::Complete, "a"));
    }

    #[test]
    fn missing_usage_is_estimated_and_never_zero_for_a_non_empty_answer() {
        let answer = collect(format!("{}data: [DONE]\n\n", chunk_line("Twelve chars")).as_bytes());
        let expected_prompt = (estimate_tokens("be brief") + estimate_tokens("hello there")) as u64;
        assert_eq!(
            answer.usage,
            Usage {
                prompt_tokens: expected_prompt,
                completion_tokens: estimate_tokens("Twelve chars") as u64,
                estimated: true
            }
        );
        // A provider's zero for a non-empty answer is replaced; its prompt count is kept.
        let answer = collect(format!("{}{}data: [DONE]\n\n", chunk_line("Hi"), usage_line(30, 0)).as_bytes());
        assert_eq!(answer.usage.prompt_tokens, 30);
        assert!(answer.usage.completion_tokens > 0);
        assert!(answer.usage.estimated);
        // Nothing said: no completion tokens.
        let answer = Collector::new().finish(StreamEnd::Interrupted, &prompt());
        assert_eq!(answer.usage.completion_tokens, 0);
        assert!(answer.usage.prompt_tokens > 0);
    }

    #[test]
    fn streamed_tool_calls_are_assembled_by_index_or_by_id() {
        let mut parser = Parser::new();
        let chunk = |delta: &str| format!("data: {{\"choices\":[{{\"delta\":{delta}}}]}}\n\n");
        let body = [
            // OpenAI: by index, the arguments in pieces.
            chunk(r#"{"tool_calls":[{"index":0,"id":"a","function":{"name":"query_records","arguments":""}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"kind\":"}}]}"#),
            chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"deal\"}"}}]}"#),
            // Whole calls without an index: a new id is a new call.
            chunk(r#"{"tool_calls":[{"id":"b","function":{"name":"search_records","arguments":"{}"}}]}"#),
            chunk(r#"{"tool_calls":[{"id":"c","function":{"name":"aggregate_records"}}]}"#),
            // Past the cap: not kept.
            chunk(r#"{"tool_calls":[{"index":99,"id":"z","function":{"name":"query_records"}}]}"#),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let mut collector = Collector::new();
        for event in parser.push(body.as_bytes()).unwrap() {
            collector.apply(&event);
        }
        let answer = collector.finish(StreamEnd::Clean, &prompt());
        let calls: Vec<(&str, &str, &str)> = answer
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.function.name.as_str(), c.function.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("a", "query_records", r#"{"kind":"deal"}"#),
                ("b", "search_records", "{}"),
                ("c", "aggregate_records", "")
            ]
        );
        // Calling tools with no text is a complete answer, not an empty one.
        assert_eq!(answer.outcome, Outcome::Complete);
    }

    #[test]
    fn a_non_streamed_completion_gives_the_same_kind_of_answer() {
        let completion = Completion {
            content: "hello".into(),
            model: Some("m1".into()),
            prompt_tokens: Some(12),
            completion_tokens: Some(3),
            finish_reason: None,
            tool_calls: Vec::new(),
        };
        let answer = Collector::from_completion(&completion, Some("length".into())).finish(StreamEnd::Clean, &prompt());
        assert_eq!(
            answer,
            Answer {
                text: "hello".into(),
                outcome: Outcome::Complete,
                finish_reason: Some("length".into()),
                usage: Usage { prompt_tokens: 12, completion_tokens: 3, estimated: false },
                model: Some("m1".into()),
                tool_calls: Vec::new(),
            }
        );
        let bare = Completion { completion_tokens: None, prompt_tokens: None, ..completion };
        let answer = Collector::from_completion(&bare, None).finish(StreamEnd::Clean, &prompt());
        assert_eq!(answer.outcome, Outcome::Complete);
        assert!(answer.usage.estimated);
        // The same text streamed reads the same.
        let streamed = collect(format!("{}data: [DONE]\n\n", chunk_line("hello")).as_bytes());
        assert_eq!(streamed.text, answer.text);
        assert_eq!(streamed.usage, answer.usage);
    }

    #[test]
    fn usage_serializes_in_camel_case() {
        let usage = Usage { prompt_tokens: 1, completion_tokens: 2, estimated: true };
        assert_eq!(
            serde_json::to_value(usage).unwrap(),
            json!({"promptTokens": 1, "completionTokens": 2, "estimated": true})
        );
        assert_eq!(serde_json::to_value(AnswerStatus::Incomplete).unwrap(), json!("incomplete"));
    }

    // --- outbound frames ------------------------------------------------------------------------

    #[test]
    fn frames_are_one_event_with_one_data_line() {
        let data = json!({"type": "delta", "text": "line one\nline two\r\n\u{2028}"});
        let frame = frame(EVENT_DELTA, &data);
        assert!(frame.starts_with("event: delta\ndata: {"));
        assert!(frame.ends_with("}\n\n"));
        assert_eq!(frame.matches('\n').count(), 3);
        assert!(!frame.contains('\r'));
        assert_eq!(ping(), ": ping\n\n");
        assert_eq!(super::frame("a\nb", &json!(1)), "event: ab\ndata: 1\n\n");
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            "[\r\n\t\u{0}\u{2028} a\"\\\\]{0,10}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                prop::collection::btree_map("[a-z\n]{1,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Pieces of a provider stream, with every kind of line and line ending mixed in.
    fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
        let ending = prop_oneof![Just("\n"), Just("\r"), Just("\r\n")];
        let piece = prop_oneof![
            "\\PC{0,12}".prop_map(|t| chunk_line(&t)),
            Just(finish_line("stop")),
            (0u64..1000, 0u64..1000).prop_map(|(p, c)| usage_line(p, c)),
            Just(": ping\n".to_owned()),
            "[0-9a-z]{0,5}".prop_map(|id| format!("id: {id}\n")),
            Just("event: other\ndata: {}\n\n".to_owned()),
            Just("\n".to_owned()),
            Just("data: [DONE]\n\n".to_owned()),
            Just("data: {bad\n\n".to_owned()),
            Just("data: {\"error\":{\"message\":\"e\"}}\n\n".to_owned()),
            "\\PC{0,8}".prop_map(|t| format!("data: {}\ndata: ", t)),
        ];
        (prop::collection::vec((piece, ending), 0..12), "\\PC{0,3}").prop_map(|(pieces, tail)| {
            let mut s = String::new();
            for (piece, ending) in pieces {
                s += &piece.replace('\n', ending);
            }
            s += &tail;
            s.into_bytes()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_split_yields_the_same_events(bytes in arb_stream(), offsets in prop::collection::vec(any::<usize>(), 0..10)) {
            let whole = run_whole(&bytes);
            let parts = split_at_offsets(&bytes, &offsets);
            prop_assert_eq!(run(&parts), whole.clone());
            let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(run(&one_by_one), whole);
        }

        #[test]
        fn random_bytes_never_panic_and_respect_the_split(bytes in prop::collection::vec(any::<u8>(), 0..600), offsets in prop::collection::vec(any::<usize>(), 0..6)) {
            let whole = run_whole(&bytes);
            prop_assert_eq!(run(&split_at_offsets(&bytes, &offsets)), whole);
        }

        #[test]
        fn frames_round_trip_through_the_decoder(name in prop_oneof![Just(EVENT_START), Just(EVENT_DELTA), Just(EVENT_DONE), Just(EVENT_ERROR), Just(EVENT_TOOL)], data in arb_json()) {
            let frame = frame(name, &data);
            prop_assert!(frame.ends_with("\n\n"));
            prop_assert!(!frame.contains('\r'));
            prop_assert_eq!(frame.matches('\n').count(), 3, "one event line, one data line, one blank line");
            let events = Decoder::new().push(frame.as_bytes()).unwrap();
            prop_assert_eq!(events.len(), 1);
            prop_assert_eq!(&events[0].event, name);
            let back: Value = serde_json::from_str(&events[0].data).unwrap();
            prop_assert_eq!(back, data);
        }

        #[test]
        fn collected_text_is_the_concatenation_of_the_deltas(texts in prop::collection::vec("\\PC{0,10}", 0..8), done in any::<bool>()) {
            let mut s: String = texts.iter().map(|t| chunk_line(t)).collect();
            if done { s += "data: [DONE]\n\n" }
            let answer = collect(s.as_bytes());
            prop_assert_eq!(&answer.text, &texts.concat());
            let expected = if !done { Outcome::Truncated }
                else if texts.concat().trim().is_empty() { answer.outcome.clone() }
                else { Outcome::Complete };
            prop_assert_eq!(&answer.outcome, &expected);
            prop_assert!(answer.text.is_empty() || answer.usage.completion_tokens > 0);
        }
    }
}
