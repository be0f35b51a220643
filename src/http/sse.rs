//! The streaming transport of `POST /api/chat`: Server-Sent Events, as a [`Sink`] of the one
//! turn loop (`crate::turn::run`).
//!
//! The caller's disconnect is seen three ways, whichever comes first: the request's abort
//! signal (the `enable_request_signal` compatibility flag), the body being dropped (the channel
//! closes), and, as a last resort, a frame that nobody reads for [`stream::SEND_STALL_MS`].
//!
//! Nothing here ever yields an error into the body: the runtime would end the response the
//! same way as a finished one, and the caller could not tell a failure from success. Failures
//! are `error` events.

use std::pin::Pin;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{select, Either, Fuse, Select};
use futures::{pin_mut, FutureExt, SinkExt, Stream, StreamExt};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use worker::{Delay, Request};

use super::{openai, Body, Cx, Reply};
use crate::domain::agent::Trace;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::idempotency::{AnsweredBy, StoredResult};
use crate::domain::knowledge;
use crate::domain::openai_api::{self, ChunkHead};
use crate::domain::sse::{self, Answer, Usage};
use crate::domain::stream::{self, ErrorCode};
use crate::turn::run::{Finished, Sink};
use crate::turn::Turn;

/// The body of a streamed response: ready-made frames.
pub type Frames = Pin<Box<dyn Stream<Item = Result<Vec<u8>, worker::Error>>>>;

/// The event format of a stream: ours (`start`, `delta`, `tool`, `done`, `error`), or the
/// OpenAI Chat Completions chunks of `/v1/chat/completions`. The turn and the sink are the
/// same; only the frames differ.
pub enum Protocol {
    Attive,
    OpenAi { id: String, created: i64, model: String, include_usage: bool },
}

impl Protocol {
    /// The OpenAI format for a completion of `model` (as the caller named it).
    pub fn openai(turn_message_id: &str, created: i64, model: &str, include_usage: bool) -> Self {
        Self::OpenAi { id: openai::completion_id(turn_message_id), created, model: model.to_owned(), include_usage }
    }

    fn head(&self) -> Option<ChunkHead<'_>> {
        match self {
            Self::Attive => None,
            Self::OpenAi { id, created, model, .. } => Some(ChunkHead { id, created: *created, model }),
        }
    }
}

/// A retry of a finished request: its stored result as a short stream.
pub fn replay(cx: &Cx, result: &StoredResult, protocol: &Protocol) -> Reply {
    let frames = match protocol.head() {
        None => stream::replay(result, &cx.request_id),
        Some(head) => openai::replay_frames(
            &head,
            result,
            &cx.request_id,
            matches!(protocol, Protocol::OpenAi { include_usage: true, .. }),
        ),
    };
    let body = futures::stream::iter(frames.into_iter().map(|f| Ok(f.into_bytes())));
    Reply { status: 200, body: Body::EventStream(Box::pin(body)) }
}

/// Runs the turn with the caller's stream as its sink. The response begins at the turn's
/// commit point (its first content), or earlier when the provider is silent for the keep-alive
/// interval; until then a failure is the JSON error of any request, with its real status.
///
/// The turn runs under `waitUntil` from the start, because that is what keeps it alive after
/// the caller disconnects: it can then hang up on the provider and store the partial answer
/// (without it, no code runs once the caller has gone).
pub async fn respond(cx: &Cx, req: &Request, turn: Turn, protocol: Protocol) -> ApiResult<Reply> {
    let (frames_tx, frames_rx) = mpsc::channel::<String>(16);
    // Dropped with the body: the sink's `gone` then completes.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let body = frames_rx.map(move |frame| {
        let _held_until_the_body_is_dropped = &gone_tx;
        Ok(frame.into_bytes())
    });
    let (aborted_tx, aborted_rx) = oneshot::channel::<()>();
    let on_abort = watch_abort(req, aborted_tx);
    let (opened_tx, opened_rx) = oneshot::channel::<Opening>();
    let sink = SseSink {
        frames: frames_tx,
        opened: Some(opened_tx),
        // Either signal means the same: the caller is not listening any more. Fused: once
        // it fired, it stays pending instead of being polled past its end.
        caller_gone: select(gone_rx, aborted_rx).fuse(),
        last_sent: now(),
        connected: true,
        sent_start: false,
        protocol,
    };
    cx.ctx.wait_until(async move {
        let _on_abort = on_abort;
        produce(turn, sink).await;
    });
    match opened_rx.await {
        Ok(Opening::Begun { timing, answered_by }) => {
            cx.set_header("Server-Timing", timing);
            for (name, value) in answered_by.headers() {
                cx.set_header(name, value);
            }
            // The producer counts the turn when it ends, with what the caller finally saw.
            cx.usage_counted();
            Ok(Reply { status: 200, body: Body::EventStream(Box::pin(body)) })
        }
        Ok(Opening::Failed { error, usage, timing, llm_ms }) => {
            cx.set_header("Server-Timing", timing);
            cx.usage_tokens(usage.prompt_tokens, usage.completion_tokens);
            cx.usage_llm_ms(llm_ms);
            Err(error)
        }
        Err(_) => Err(ApiError::internal("the turn ended without beginning its response")),
    }
}

/// What the handler waits for: the stream can begin, or the turn failed before it did.
enum Opening {
    Begun { timing: String, answered_by: AnsweredBy },
    Failed { error: ApiError, usage: Usage, timing: String, llm_ms: u64 },
}

/// Fires `tx` when the request's abort signal does (the caller disconnected). The returned
/// closure must live as long as the signal may fire.
fn watch_abort(req: &Request, tx: oneshot::Sender<()>) -> Option<Closure<dyn FnMut()>> {
    let signal = req.inner().signal();
    let mut tx = Some(tx);
    let closure = Closure::<dyn FnMut()>::new(move || {
        if let Some(tx) = tx.take() {
            let _ = tx.send(());
        }
    });
    signal.set_onabort(Some(closure.as_ref().unchecked_ref()));
    Some(closure)
}

fn now() -> u64 {
    worker::Date::now().as_millis()
}

type Gone = Fuse<Select<oneshot::Receiver<()>, oneshot::Receiver<()>>>;

/// The caller's end of a streamed turn: frames over a channel that is the response body.
struct SseSink {
    frames: mpsc::Sender<String>,
    /// Taken when the response begins (or the turn fails before it does).
    opened: Option<oneshot::Sender<Opening>>,
    caller_gone: Gone,
    last_sent: u64,
    connected: bool,
    /// Whether `start` went out (a stream that began with keep-alives may not have sent it).
    sent_start: bool,
    protocol: Protocol,
}

impl SseSink {
    /// Lets the handler return the response, if it has not yet.
    fn begin(&mut self, turn: &Turn) {
        if let Some(tx) = self.opened.take() {
            let _ = tx.send(Opening::Begun { timing: turn.timing.header(), answered_by: turn.answered_by() });
        }
    }

    /// Sends one frame; `false` when the caller is gone (the body was dropped, the request was
    /// aborted, or nobody read the frame for [`stream::SEND_STALL_MS`]).
    async fn send(&mut self, frame: String) -> bool {
        if !self.connected {
            return false;
        }
        let sent = self.frames.send(frame);
        let stall = Delay::from(Duration::from_millis(stream::SEND_STALL_MS));
        pin_mut!(sent);
        pin_mut!(stall);
        self.connected = matches!(select(sent, select(stall, &mut self.caller_gone)).await, Either::Left((Ok(()), _)));
        if self.connected {
            self.last_sent = now();
        }
        self.connected
    }

    fn start_frame(&self, turn: &Turn) -> String {
        if let Some(head) = self.protocol.head() {
            return openai_api::role_chunk(&head);
        }
        let sources = knowledge::sources_json(&turn.sources, None);
        stream::start(
            &turn.chat_id,
            &turn.assistant_message_id,
            &turn.request_id,
            &turn.provider,
            &turn.model,
            &sources,
        )
    }

    /// The frames that end a stored answer (`code`: why it is incomplete).
    fn end_frames(&self, turn: &Turn, answer: &Answer, code: Option<ErrorCode>) -> Vec<String> {
        let Some(head) = self.protocol.head() else {
            return vec![match code {
                None => stream::done(
                    &turn.chat_id,
                    &turn.assistant_message_id,
                    answer.finish_reason.as_deref(),
                    &answer.usage,
                    &knowledge::sources_json(&turn.sources, Some(&answer.text)),
                ),
                Some(code) => stream::error(code, &turn.request_id, &turn.chat_id, &turn.assistant_message_id),
            }];
        };
        match code {
            None => {
                let include_usage = matches!(self.protocol, Protocol::OpenAi { include_usage: true, .. });
                openai::end_frames(&head, turn, answer, include_usage)
            }
            Some(code) => vec![openai_api::error_chunk(&code.as_api_error())],
        }
    }

    fn error_frame(&self, turn: &Turn, code: ErrorCode) -> String {
        match self.protocol {
            Protocol::Attive => stream::error(code, &turn.request_id, &turn.chat_id, &turn.assistant_message_id),
            Protocol::OpenAi { .. } => openai_api::error_chunk(&code.as_api_error()),
        }
    }
}

impl Sink for SseSink {
    fn streams(&self) -> bool {
        true
    }

    async fn start(&mut self, turn: &Turn) -> bool {
        self.begin(turn);
        self.sent_start = true;
        let frame = self.start_frame(turn);
        self.send(frame).await
    }

    async fn delta(&mut self, text: &str) -> bool {
        let frame = match self.protocol.head() {
            None => stream::delta(text),
            Some(head) => openai_api::content_chunk(&head, text),
        };
        self.send(frame).await
    }

    async fn tool(&mut self, trace: &Trace) -> bool {
        // The OpenAI format has no event for a tool that ran server-side: the last chunk's
        // `attive.toolCalls` lists them.
        match self.protocol {
            Protocol::Attive => self.send(stream::tool(trace)).await,
            Protocol::OpenAi { .. } => self.connected,
        }
    }

    async fn ping(&mut self, turn: &Turn) -> bool {
        // A provider silent for the whole keep-alive interval before its first content: the
        // response begins with keep-alives (proxies close connections that send nothing).
        self.begin(turn);
        self.send(sse::ping().to_owned()).await
    }

    fn last_sent(&self) -> Option<u64> {
        Some(self.last_sent)
    }

    async fn unless_gone<F: std::future::Future>(&mut self, fut: F) -> Option<F::Output> {
        if !self.connected {
            return None;
        }
        pin_mut!(fut);
        match select(fut, &mut self.caller_gone).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(_) => {
                self.connected = false;
                None
            }
        }
    }
}

/// The turn, then the one terminal event: `done` once the turn is stored, else `error`.
async fn produce(turn: Turn, mut sink: SseSink) {
    let (turn, finished) = turn.run(&mut sink).await;
    let terminal = match finished {
        Finished::Stored { answer, code, .. } => {
            sink.begin(&turn);
            if !sink.sent_start {
                let frame = sink.start_frame(&turn);
                let _ = sink.send(frame).await;
            }
            sink.end_frames(&turn, &answer, code)
        }
        Finished::Failed { error, usage, code } => {
            if let Some(tx) = sink.opened.take() {
                // Nothing was sent: the handler answers with the error itself.
                let timing = turn.timing.header();
                let _ = tx.send(Opening::Failed { error, usage, timing, llm_ms: turn.timing.llm_ms });
                return;
            }
            // The response has begun: the caller learns of the failure from the stream, which
            // nobody else counts. A stream that began with keep-alives only still starts with
            // `start`, so every stream has the same shape.
            turn.count_unstored(code.usage_status(), turn.timing.llm_ms).await;
            if !sink.sent_start {
                let frame = sink.start_frame(&turn);
                let _ = sink.send(frame).await;
            }
            vec![sink.error_frame(&turn, code)]
        }
    };
    for frame in terminal {
        if !sink.send(frame).await {
            break;
        }
    }
    sink.frames.close_channel();
}
