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
use crate::domain::error::ApiError;
use crate::domain::idempotency::StoredResult;
use crate::domain::providers::{self, Failure, Provider, Target};
use crate::domain::sse::{Answer, Collector, Outcome, StreamEnd, Usage};
use crate::domain::stream::{self, Ending, ErrorCode};
use crate::domain::wire::FailureKind;
use crate::upstream;
use crate::upstream::llm::{Budget, Refused};

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
        self.timing.store(self.db.is_object(), 1);
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
                    StoreFailure::Incomplete(code) => (code.as_api_error(), code),
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

    /// One model call, read to its end: how it ended and what it said. Until the answer's
    /// first content, a target that fails in a way another may not (down, slow, out of
    /// capacity, refusing our key, lacking the model, an error in its stream) hands the call
    /// to the next target at once; the last one keeps a retry. `Err` when no target answered.
    async fn call<S: Sink>(
        &mut self,
        sink: &mut S,
        deadline: u64,
        content_seen: &mut bool,
    ) -> Result<(Ending, Collector), ApiError> {
        // Once a target has answered, the turn stays with it (its tool steps included).
        let last = if self.answered { self.current } else { self.targets.len().saturating_sub(1) };
        let single = self.targets.len() == 1 || self.answered;
        let mut failures: Vec<Failure> = Vec::new();
        for index in self.current..=last {
            let Some(target) = self.targets.get(index).cloned() else { break };
            self.current = index;
            self.provider.clone_from(&target.provider);
            self.model.clone_from(&target.model);
            let left = deadline.saturating_sub(now());
            if left == 0 {
                failures.push(self.failure(&target, Refused::timeout()));
                break;
            }
            let Some(provider) = self.config.providers.get(&target.provider).cloned() else {
                let detail = format!("provider {} is not configured", target.provider);
                let refused = Refused { status: None, kind: FailureKind::Server, retry_after: None, detail };
                failures.push(self.failure(&target, refused));
                continue;
            };
            // Each target before the last gets its share of what is left; the last gets all
            // of it and keeps today's single retry.
            let is_last = index == last;
            let share = if is_last { left } else { left / u64::try_from(last - index + 1).unwrap_or(1) };
            let outcome = if sink.streams() {
                let first_byte_ms = self.config.llm_timeout_ms.min(share);
                let budget = Budget { first_byte_ms, total_ms: first_byte_ms, retry: is_last };
                self.read_stream(sink, &provider, budget, deadline, content_seen).await
            } else {
                let budget = Budget { first_byte_ms: share, total_ms: share, retry: is_last };
                let call = upstream::llm::complete(
                    &provider,
                    &target.model,
                    &self.messages,
                    self.offer(),
                    self.sampling(),
                    budget,
                );
                let (completion, ms) = timed(call).await;
                self.timing.llm_ms += ms;
                completion.map(|c| {
                    let collector = Collector::from_completion(&c, c.finish_reason.clone());
                    (Ending::Upstream(StreamEnd::Clean), collector)
                })
            };
            match outcome {
                Ok(read) => {
                    self.answered = true;
                    return Ok(read);
                }
                Err(refused) => {
                    let failure = self.failure(&target, refused);
                    let next = !is_last && providers::falls_back(&failure);
                    failures.push(failure);
                    if !next {
                        break;
                    }
                }
            }
        }
        Err(providers::exhausted(&failures, single))
    }

    /// A failed target, logged (never with the provider's message or key).
    fn failure(&self, target: &Target, refused: Refused) -> Failure {
        log(&serde_json::json!({
            "requestId": self.request_id,
            "event": "provider_failed",
            "provider": target.provider,
            "model": target.model,
            "status": refused.status,
            "kind": refused.kind.as_str(),
            "detail": refused.detail,
        }));
        Failure {
            target: target.clone(),
            status: refused.status,
            kind: refused.kind,
            retry_after: refused.retry_after,
            detail: refused.detail,
        }
    }

    /// Opens `provider`'s stream and reads it to its end, sending the text as it comes. A
    /// stream that fails before the answer's first content is a [`Refused`], so the turn can
    /// try the next target with nothing sent to the caller.
    async fn read_stream<S: Sink>(
        &mut self,
        sink: &mut S,
        provider: &Provider,
        budget: Budget,
        deadline: u64,
        content_seen: &mut bool,
    ) -> Result<(Ending, Collector), Refused> {
        let open =
            upstream::llm::open_stream(provider, &self.model, &self.messages, self.offer(), self.sampling(), budget);
        let (opened, ms) = timed(open).await;
        self.timing.llm_ms += ms;
        let mut upstream = opened?;
        let mut parser = provider.wire.stream_parser();
        let mut collector = Collector::new();
        let gap_ms = self.config.llm_timeout_ms;
        let mut last_upstream = now();
        let before = *content_seen;
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
                        if !*content_seen && (!added.is_empty() || collector.has_tool_calls()) {
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
        if ending == Ending::Upstream(StreamEnd::Clean) && collector.is_finished() {
            drain(&mut upstream).await;
        } else {
            // Whatever we no longer read, the provider must stop generating.
            upstream.abort();
        }
        // Nothing of this stream reached the caller, and it did not finish: a failure of this
        // target, which the next one may make good.
        if !before && !*content_seen && ending != Ending::CallerGone {
            let end = match ending {
                Ending::Upstream(end) => end,
                _ => StreamEnd::MidEvent,
            };
            let outcome = collector.clone().finish(end, &self.messages).outcome;
            if outcome != Outcome::Complete {
                let (kind, detail) = match (ending, &outcome) {
                    (Ending::TimedOut, _) => (FailureKind::Timeout, "no content within the deadline".to_owned()),
                    (_, Outcome::UpstreamError { .. }) => {
                        (parser.failure(), "the provider reported an error before any content".to_owned())
                    }
                    _ => (FailureKind::Server, "the provider's stream ended before any content".to_owned()),
                };
                return Err(Refused { status: None, kind, retry_after: None, detail });
            }
        }
        Ok((ending, collector))
    }
}

/// How long a finished provider stream may take to close after its end event.
const DRAIN_MS: u64 = 1_000;

/// Reads a finished provider stream to its close. Dropping a body still open cancels its reader,
/// and the runtime binding (`wasm-streams`) leaks one closure per cancel: about 310 bytes per
/// streamed answer, for the life of the isolate. A provider closes right after its end event;
/// one that does not is hung up on after [`DRAIN_MS`].
async fn drain(upstream: &mut upstream::llm::OpenStream) {
    let until = now().saturating_add(DRAIN_MS);
    loop {
        let next = upstream.body.next();
        let timer = Delay::from(Duration::from_millis(until.saturating_sub(now())));
        pin_mut!(next);
        pin_mut!(timer);
        match select(next, timer).await {
            Either::Left((Some(Ok(_)), _)) => {}
            Either::Left((None | Some(Err(_)), _)) => return,
            Either::Right(_) => {
                upstream.abort();
                return;
            }
        }
    }
}

/// The sink of a turn answered whole (the JSON transport, an insight's generation): the
/// provider answers in one piece, and nothing is sent before the end.
pub struct Whole;

impl Sink for Whole {
    fn streams(&self) -> bool {
        false
    }

    async fn start(&mut self, _: &Turn) -> bool {
        true
    }

    async fn delta(&mut self, _: &str) -> bool {
        true
    }

    async fn tool(&mut self, _: &Trace) -> bool {
        true
    }

    async fn ping(&mut self, _: &Turn) -> bool {
        true
    }

    fn last_sent(&self) -> Option<u64> {
        None
    }

    async fn unless_gone<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        Some(fut.await)
    }
}
