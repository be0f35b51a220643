//! The streaming transport of `POST /api/chat`: Server-Sent Events.
//!
//! Once the provider has answered 2xx, the response starts: its body is the receiving end of a
//! channel, and a producer registered with `waitUntil` reads the provider's stream, sends our
//! frames, stores the turn and only then sends the terminal event. The producer runs under
//! `waitUntil` because that is what keeps it alive after the caller disconnects: it can then
//! hang up on the provider and store the partial answer (without it, no code runs once the
//! caller has gone).
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
use futures::future::{select, Either};
use futures::{pin_mut, FutureExt, SinkExt, Stream, StreamExt};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use worker::{Delay, Request};

use super::{log, timed, Body, Cx, Reply};
use crate::domain::config::Config;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::idempotency::StoredResult;
use crate::domain::knowledge;
use crate::domain::sse::{self, Collector, Parser, StreamEnd};
use crate::domain::stream::{self, Ending, ErrorCode};
use crate::turn::{StoreFailure, Turn};
use crate::upstream::llm::{self as upstream, OpenStream};

/// The body of a streamed response: ready-made frames.
pub type Frames = Pin<Box<dyn Stream<Item = Result<Vec<u8>, worker::Error>>>>;

/// A retry of a finished request: its stored result as a short stream.
pub fn replay(cx: &Cx, result: &StoredResult) -> Reply {
    let frames = stream::replay(result, &cx.request_id);
    let body = futures::stream::iter(frames.into_iter().map(|f| Ok(f.into_bytes())));
    Reply { status: 200, body: Body::EventStream(Box::pin(body)) }
}

/// Opens the provider's stream (errors up to its 2xx are the JSON errors of today) and starts
/// the response.
pub async fn respond(cx: &Cx, req: &Request, mut turn: Turn) -> ApiResult<Reply> {
    let (opened, llm_ms) = timed(upstream::open_stream(&turn.config, &turn.model, &turn.messages, turn.offer())).await;
    turn.timing.llm_ms = llm_ms;
    cx.set_header("Server-Timing", turn.timing.header());
    let upstream = match opened {
        Ok(s) => s,
        Err(err) => {
            turn.forget().await;
            return Err(err);
        }
    };
    let (frames_tx, frames_rx) = mpsc::channel::<String>(16);
    // Dropped with the body: the producer's `gone_rx` then completes.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let body = frames_rx.map(move |frame| {
        let _held_until_the_body_is_dropped = &gone_tx;
        Ok(frame.into_bytes())
    });
    let (aborted_tx, aborted_rx) = oneshot::channel::<()>();
    let on_abort = watch_abort(req, aborted_tx);
    let first_call_ms = turn.timing.llm_ms;
    let producer = Producer { turn, upstream, frames: frames_tx, started: now(), last_sent: now(), first_call_ms };
    cx.ctx.wait_until(async move {
        let _on_abort = on_abort;
        producer.run(gone_rx, aborted_rx).await;
    });
    // The producer counts the turn when it ends, with what the caller finally saw.
    cx.usage_counted();
    Ok(Reply { status: 200, body: Body::EventStream(Box::pin(body)) })
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

struct Producer {
    turn: Turn,
    upstream: OpenStream,
    frames: mpsc::Sender<String>,
    started: u64,
    last_sent: u64,
    /// How long the first call waited for the provider's headers, before `started`.
    first_call_ms: u64,
}

impl Producer {
    async fn run(mut self, gone: oneshot::Receiver<()>, aborted: oneshot::Receiver<()>) {
        // Either signal means the same: the caller is not listening any more. Fused: once it
        // fired, it stays pending instead of being polled past its end.
        let mut caller_gone = futures::future::select(gone, aborted).fuse();
        let sources = knowledge::sources_json(&self.turn.sources, None);
        let start = stream::start(
            &self.turn.chat_id,
            &self.turn.assistant_message_id,
            &self.turn.request_id,
            &self.turn.model,
            &sources,
        );
        let mut connected = self.send(start, &mut caller_gone).await;
        // One provider stream per model call: an agent's tool steps end theirs with tool
        // calls, which run before the next call's stream is opened.
        let (ending, answer) = loop {
            let (ending, collector) = self.read_step(&mut connected, &mut caller_gone).await;
            if ending != Ending::Upstream(StreamEnd::Clean) || !collector.is_finished() {
                // Whatever we no longer read, the provider must stop generating.
                self.upstream.abort();
            }
            let end = match ending {
                Ending::Upstream(end) => end,
                _ => StreamEnd::MidEvent,
            };
            let answer = collector.finish(end, &self.turn.messages);
            if !(matches!(ending, Ending::Upstream(_)) && self.turn.wants_tools(&answer)) {
                break (ending, self.turn.whole_answer(answer));
            }
            for trace in self.turn.run_tool_step(&answer).await {
                if connected {
                    connected = self.send(stream::tool(&trace), &mut caller_gone).await;
                }
            }
            let nothing = |turn: &Turn| turn.whole_answer(Collector::new().finish(StreamEnd::MidEvent, &turn.messages));
            if !connected {
                break (Ending::CallerGone, nothing(&self.turn));
            }
            // The next call: its first byte within LLM_TIMEOUT_MS, as the first call's, and the
            // whole stream still within LLM_STREAM_MAX_MS.
            let left = (self.started + self.turn.config.llm_stream_max_ms).saturating_sub(now());
            let config =
                Config { llm_timeout_ms: self.turn.config.llm_timeout_ms.min(left).max(1), ..self.turn.config.clone() };
            let (opened, ms) =
                timed(upstream::open_stream(&config, &self.turn.model, &self.turn.messages, self.turn.offer())).await;
            self.turn.timing.llm_ms += ms;
            match opened {
                Ok(next) => self.upstream = next,
                Err(ApiError::UpstreamTimeout) => break (Ending::TimedOut, nothing(&self.turn)),
                Err(err) => {
                    super::log_warn(&self.turn.request_id, "agent_step_failed", err.log_detail());
                    break (Ending::Broken, nothing(&self.turn));
                }
            }
        };
        let code = stream::verdict(ending, &answer);
        // Time spent on the provider: the first call's wait for its headers, then the streams,
        // without the tool steps in between.
        let llm_ms =
            (now().saturating_sub(self.started) + self.first_call_ms).saturating_sub(self.turn.timing.tools_ms);
        let (turn, request_id) = (&self.turn, self.turn.request_id.clone());
        let terminal = match turn.store(&answer, code.map(ErrorCode::as_str), llm_ms).await {
            Ok(()) => {
                turn.remember(turn.result(&answer, code.map(ErrorCode::as_str))).await;
                match code {
                    None => stream::done(
                        &turn.chat_id,
                        &turn.assistant_message_id,
                        answer.finish_reason.as_deref(),
                        &answer.usage,
                        &knowledge::sources_json(&turn.sources, Some(&answer.text)),
                    ),
                    Some(code) => stream::error(code, &request_id, &turn.chat_id, &turn.assistant_message_id),
                }
            }
            Err(failure) => {
                turn.forget().await;
                let code = match failure {
                    StoreFailure::ChatGone => ErrorCode::ChatNotFound,
                    StoreFailure::Storage(err) => {
                        super::log_warn(&request_id, "stream_not_stored", err.log_detail());
                        ErrorCode::StorageFailed
                    }
                };
                turn.count_unstored(code.usage_status(), llm_ms).await;
                stream::error(code, &request_id, &turn.chat_id, &turn.assistant_message_id)
            }
        };
        log(&serde_json::json!({
            "requestId": request_id,
            "event": "stream_end",
            "ending": format!("{ending:?}"),
            "outcome": format!("{:?}", answer.outcome),
            "code": code.map(ErrorCode::as_str),
            "chars": answer.text.chars().count(),
            "durationMs": llm_ms,
        }));
        if connected {
            let _ = self.send(terminal, &mut caller_gone).await;
        }
        self.frames.close_channel();
    }

    /// Reads one provider stream to its end, forwarding the answer's text as `delta` events
    /// (and keep-alives while it is silent): how it ended, and what it said.
    async fn read_step<F: std::future::Future + Unpin>(
        &mut self,
        connected: &mut bool,
        caller_gone: &mut F,
    ) -> (Ending, Collector) {
        let mut parser = Parser::new();
        let mut collector = Collector::new();
        let gap_ms = self.turn.config.llm_timeout_ms;
        let max_ms = self.turn.config.llm_stream_max_ms;
        let mut last_upstream = now();
        let ending = loop {
            if !*connected {
                break Ending::CallerGone;
            }
            let deadline = (last_upstream + gap_ms).min(self.started + max_ms);
            let wake_at = deadline.min(self.last_sent + stream::PING_EVERY_MS);
            let woke = {
                let timer = Delay::from(Duration::from_millis(wake_at.saturating_sub(now())));
                let next = self.upstream.body.next();
                pin_mut!(timer);
                pin_mut!(next);
                match select(next, select(timer, &mut *caller_gone)).await {
                    Either::Left((item, _)) => Woke::Upstream(item),
                    Either::Right((Either::Left(_), _)) => Woke::Timer,
                    Either::Right((Either::Right(_), _)) => Woke::CallerGone,
                }
            };
            match woke {
                Woke::Upstream(Some(Ok(bytes))) => {
                    last_upstream = now();
                    let events = match parser.push(&bytes) {
                        Ok(events) => events,
                        Err(_) => break Ending::Broken,
                    };
                    for event in &events {
                        let before = collector.text().len();
                        collector.apply(event);
                        let added = collector.text().get(before..).unwrap_or_default().to_owned();
                        if !added.is_empty() && *connected {
                            *connected = self.send(stream::delta(&added), caller_gone).await;
                        }
                    }
                    if collector.is_finished() {
                        break Ending::Upstream(StreamEnd::Clean);
                    }
                }
                Woke::Upstream(Some(Err(_))) => break Ending::Broken,
                Woke::Upstream(None) => match parser.finish() {
                    Ok(end) => break Ending::Upstream(end),
                    Err(_) => break Ending::Broken,
                },
                Woke::Timer if now() >= deadline => break Ending::TimedOut,
                Woke::Timer => *connected = self.send(sse::ping().to_owned(), caller_gone).await,
                Woke::CallerGone => {
                    *connected = false;
                    break Ending::CallerGone;
                }
            }
        };
        (ending, collector)
    }

    /// Sends one frame; `false` when the caller is gone (the body was dropped, the request was
    /// aborted, or nobody read the frame for [`stream::SEND_STALL_MS`]).
    async fn send<F: std::future::Future + Unpin>(&mut self, frame: String, caller_gone: &mut F) -> bool {
        let sent = self.frames.send(frame);
        let stall = Delay::from(Duration::from_millis(stream::SEND_STALL_MS));
        pin_mut!(sent);
        pin_mut!(stall);
        let ok = matches!(select(sent, select(stall, caller_gone)).await, Either::Left((Ok(()), _)));
        if ok {
            self.last_sent = now();
        }
        ok
    }
}

/// What the producer woke up for.
enum Woke {
    Upstream(Option<worker::Result<Vec<u8>>>),
    /// A deadline or the next keep-alive is due.
    Timer,
    CallerGone,
}
