//! The one loop of a chat turn, whichever transport carries it: call → tool steps → store →
//! remember, with the deadlines and the failure mapping in one place. A [`Sink`] is all a
//! transport adds: whether the provider streams, where deltas and tool events go, and whether
//! the caller is still there.
//!
//! The commit point is the first content (text or a tool call): before it, a failure stores
//! nothing and is an error of the request (a JSON error with its real status); after it, the
//! caller has seen part of an answer, so a failure stores that part as `incomplete` and the
//! transport reports it in its own way.

use std::future::Future;
use std::time::Duration;

use futures::future::{select, Either};
use futures::{pin_mut, StreamExt};
use worker::Delay;

use super::{StoreFailure, Turn};
use crate::context::{log, log_warn, timed};
use crate::domain::agent::Trace;
use crate::domain::config::Config;
use crate::domain::error::ApiError;
use crate::domain::idempotency::StoredResult;
use crate::domain::sse::{Answer, Collector, Outcome, Parser, StreamEnd, Usage};
use crate::domain::stream::{self, Ending, ErrorCode};
use crate::upstream;

/// Where a turn's answer goes as it is produced. The JSON transport collects it; the SSE
/// transport writes each piece to the caller.
#[allow(async_fn_in_trait)] // used with concrete types only, never boxed
pub trait Sink {
    /// Whether the provider should stream its answer (else it is asked for it whole).
    fn streams(&self) -> bool;
    /// The first content of the answer is here (the commit point); `false` once the caller
    /// is gone, as for every method below.
    async fn start(&mut self, turn: &Turn) -> bool;
    async fn delta(&mut self, text: &str) -> bool;
    async fn tool(&mut self, trace: &Trace) -> bool;
    /// Nothing was sent for [`stream::PING_EVERY_MS`]: keep the connection alive.
    async fn ping(&mut self, turn: &Turn) -> bool;
    /// When something was last sent, for keep-alives; `None` when there is nothing to keep alive.
    fn last_sent(&self) -> Option<u64>;
    /// `fut`, or `None` if the caller goes away first.
    async fn unless_gone<F: Future>(&mut self, fut: F) -> Option<F::Output>;
}

/// How a turn ended.
pub enum Finished {
    /// Stored (`code`: why the stored answer is incomplete) and remembered for its
    /// `Idempotency-Key`.
    Stored { result: Box<StoredResult>, answer: Box<Answer>, code: Option<ErrorCode> },
    /// Nothing was stored: before the commit point, or the store itself failed. `usage`: what
    /// the model calls before the failure cost; `code`: the failure as a stream reports it.
    Failed { error: ApiError, usage: Usage, code: ErrorCode },
}

fn now() -> u64 {
    worker::Date::now().as_millis()
}

impl Turn {
    /// Runs the turn to its end: every model call, the tool steps between them, the store and
    /// the idempotency record. A claimed `Idempotency-Key` is released on every path that
    /// stores nothing.
    pub async fn run<S: Sink>(mut self, sink: &mut S) -> (Self, Finished) {
        let started = now();
        // JSON: every model call of the turn (and the tool steps between them) within one
        // deadline. Streams: each call's first byte and each silence within LLM_TIMEOUT_MS,
        // the whole answer within LLM_STREAM_MAX_MS.
        let deadline = if sink.streams() {
            started.saturating_add(self.config.llm_stream_max_ms)
        } else {
            started.saturating_add(self.config.llm_timeout_ms)
        };
        let mut content_seen = false;
        let (ending, answer) = loop {
            let (ending, collector) = match self.call(sink, deadline, &mut content_seen).await {
                Ok(read) => read,
                Err(error) => {
                    if content_seen {
                        let nothing = self.whole_answer(Collector::new().finish(StreamEnd::MidEvent, &self.messages));
                        let ending = if error == ApiError::UpstreamTimeout { Ending::TimedOut } else { Ending::Broken };
                        log_warn(&self.request_id, "agent_step_failed", error.log_detail());
                        break (ending, nothing);
                    }
                    let usage = self.usage_before;
                    self.forget().await;
                    let code = if error == ApiError::UpstreamTimeout {
                        ErrorCode::UpstreamTimeout
                    } else {
                        ErrorCode::UpstreamError
                    };
                    return (self, Finished::Failed { error, usage, code });
                }
            };
            let end = match ending {
                Ending::Upstream(end) => end,
                _ => StreamEnd::MidEvent,
            };
            let answer = collector.finish(end, &self.messages);
            if matches!(ending, Ending::Upstream(_)) && self.wants_tools(&answer) {
                let ran = self.run_tool_step(&answer).await;
                let mut connected = true;
                for trace in &ran {
                    connected = connected && sink.tool(trace).await;
                }
                if connected {
                    continue;
                }
                let nothing = self.whole_answer(Collector::new().finish(StreamEnd::MidEvent, &self.messages));
                break (Ending::CallerGone, nothing);
            }
            break (ending, self.whole_answer(answer));
        };
        let code = stream::verdict(ending, &answer);
        if !content_seen {
            // Nothing reached the caller: an answer that is not whole is no answer.
            if let Some(code) = code {
                let error = match &answer.outcome {
                    Outcome::UpstreamError { message } => ApiError::Upstream(message.clone()),
                    _ => code.as_api_error(),
                };
                let usage = answer.usage;
                self.forget().await;
                return (self, Finished::Failed { error, usage, code });
            }
        }
        // Time spent on the provider, without the tool steps in between.
        let llm_ms = now().saturating_sub(started).saturating_sub(self.timing.tools_ms);
        self.timing.llm_ms = llm_ms;
        let (stored, write_ms) = timed(self.store(&answer, code.map(ErrorCode::as_str), llm_ms)).await;
        self.timing.write_ms = write_ms;
        self.timing.d1_calls += 1;
        log(&serde_json::json!({
            "requestId": self.request_id,
            "event": "turn_end",
            "ending": format!("{ending:?}"),
            "outcome": format!("{:?}", answer.outcome),
            "code": code.map(ErrorCode::as_str),
            "chars": answer.text.chars().count(),
            "durationMs": llm_ms,
        }));
        match stored {
            Ok(()) => {
                let result = self.result(&answer, code.map(ErrorCode::as_str));
                if self.claim.is_some() {
                    self.remember(result.clone()).await;
                    self.timing.do_calls += 1;
                }
                (self, Finished::Stored { result: Box::new(result), answer: Box::new(answer), code })
            }
            Err(failure) => {
                self.forget().await;
                let (error, code) = match failure {
                    StoreFailure::ChatGone => (ApiError::NotFound("Chat not found", None), ErrorCode::ChatNotFound),
                    StoreFailure::Storage(err) => {
                        log_warn(&self.request_id, "turn_not_stored", err.log_detail());
                        (err, ErrorCode::StorageFailed)
                    }
                };
                let usage = answer.usage;
                (self, Finished::Failed { error, usage, code })
            }
        }
    }

    /// One model call, read to its end: how it ended and what it said. `Err` when the call
    /// failed before the provider answered (nothing to collect).
    async fn call<S: Sink>(
        &mut self,
        sink: &mut S,
        deadline: u64,
        content_seen: &mut bool,
    ) -> Result<(Ending, Collector), ApiError> {
        let left = deadline.saturating_sub(now());
        if left == 0 {
            return Err(ApiError::UpstreamTimeout);
        }
        if !sink.streams() {
            let config = Config { llm_timeout_ms: left, ..self.config.clone() };
            let call = upstream::llm::complete(&config, &self.model, &self.messages, self.offer());
            let (completion, ms) = timed(call).await;
            self.timing.llm_ms += ms;
            let completion = completion?;
            let collector = Collector::from_completion(&completion, completion.finish_reason.clone());
            return Ok((Ending::Upstream(StreamEnd::Clean), collector));
        }
        let config = Config { llm_timeout_ms: self.config.llm_timeout_ms.min(left), ..self.config.clone() };
        let (opened, ms) = timed(upstream::llm::open_stream(&config, &self.model, &self.messages, self.offer())).await;
        self.timing.llm_ms += ms;
        let mut upstream = opened?;
        let mut parser = Parser::new();
        let mut collector = Collector::new();
        let gap_ms = self.config.llm_timeout_ms;
        let mut last_upstream = now();
        let ending = loop {
            let silence_ends = (last_upstream + gap_ms).min(deadline);
            let wake_at = sink.last_sent().map_or(silence_ends, |t| silence_ends.min(t + stream::PING_EVERY_MS));
            let next = upstream.body.next();
            let timer = Delay::from(Duration::from_millis(wake_at.saturating_sub(now())));
            pin_mut!(next);
            pin_mut!(timer);
            let woke = sink.unless_gone(select(next, timer)).await;
            match woke {
                None => break Ending::CallerGone,
                Some(Either::Left((Some(Ok(bytes)), _))) => {
                    last_upstream = now();
                    let Ok(events) = parser.push(&bytes) else { break Ending::Broken };
                    let mut connected = true;
                    for event in &events {
                        let before = collector.text().len();
                        collector.apply(event);
                        let added = collector.text().get(before..).unwrap_or_default().to_owned();
                        let first = !*content_seen && (!added.is_empty() || collector.has_tool_calls());
                        if first {
                            *content_seen = true;
                            connected = connected && sink.start(self).await;
                        }
                        if !added.is_empty() && connected {
                            connected = sink.delta(&added).await;
                        }
                    }
                    if !connected {
                        break Ending::CallerGone;
                    }
                    if collector.is_finished() {
                        break Ending::Upstream(StreamEnd::Clean);
                    }
                }
                Some(Either::Left((Some(Err(_)), _))) => break Ending::Broken,
                Some(Either::Left((None, _))) => match parser.finish() {
                    Ok(end) => break Ending::Upstream(end),
                    Err(_) => break Ending::Broken,
                },
                Some(Either::Right(_)) if now() >= silence_ends => break Ending::TimedOut,
                Some(Either::Right(_)) => {
                    if !sink.ping(self).await {
                        break Ending::CallerGone;
                    }
                }
            }
        };
        if ending != Ending::Upstream(StreamEnd::Clean) || !collector.is_finished() {
            // Whatever we no longer read, the provider must stop generating.
            upstream.abort();
        }
        Ok((ending, collector))
    }
}
