//! One provider call over `fetch`, for any wire: with a deadline for the provider's first byte
//! and one for the whole call, and at most one retry as the domain's retry policy decides,
//! both before the provider has answered 2xx. The JSON mode then reads the whole body; the
//! streaming mode hands the open body to the turn. Which wire is spoken is the provider's
//! business (`domain::wire`): nothing here looks at a body's shape.
//!
//! A provider's key goes in the header its wire names and nowhere else: not in errors, not in
//! logs.

use std::time::Duration;

use futures::future::{select, Either};
use futures::pin_mut;
use worker::{AbortController, ByteStream, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

use crate::domain::llm::{self, Completion, Failure, Offer, Turn};
use crate::domain::openai_api::Sampling;
use crate::domain::providers::Provider;
use crate::domain::wire::FailureKind;

/// Upstream bodies larger than this are not a completion we can use.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long an error body may take to arrive, to tell why the provider refused.
const ERROR_BODY_MS: u64 = 2_000;

/// What one call may spend.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Until the provider's status and headers are in.
    pub first_byte_ms: u64,
    /// Until the whole call is over (the JSON body read, a retry and its pause included).
    pub total_ms: u64,
    /// Whether one retry is allowed (the last target of a turn keeps it; earlier targets hand
    /// over to the next one instead).
    pub retry: bool,
}

/// Why a call failed: what the turn needs to decide on a fallback and to report it, never the
/// provider's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The provider's status; `None` when it never answered.
    pub status: Option<u16>,
    pub kind: FailureKind,
    /// Seconds the provider's `Retry-After` asked for.
    pub retry_after: Option<u64>,
    /// A short description for the log and for a single provider's error details.
    pub detail: String,
}

impl Refused {
    pub fn timeout() -> Self {
        Self { status: None, kind: FailureKind::Timeout, retry_after: None, detail: "deadline passed".into() }
    }

    fn malformed(detail: String) -> Self {
        Self { status: None, kind: FailureKind::Server, retry_after: None, detail }
    }
}

enum Attempt<T> {
    Done(T),
    Retry { after_ms: u64, refused: Refused },
    Fail(Refused),
}

/// Sends the messages and returns the whole completion.
///
/// # Errors
/// [`Refused`] when the provider fails, answers an error, or the budget runs out.
pub async fn complete(
    provider: &Provider,
    model: &str,
    messages: &[Turn],
    tools: Option<Offer<'_>>,
    sampling: Option<&Sampling>,
    budget: Budget,
) -> Result<Completion, Refused> {
    let mut body = provider.wire.request_body(model, provider.max_tokens, messages, tools, false);
    if let Some(sampling) = sampling {
        provider.wire.apply(&mut body, sampling);
    }
    let body = body.to_string();
    let body = body.as_str();
    let with_tools = tools.is_some();
    with_retries(budget, |first_byte_ms, left| async move {
        let (mut resp, controller) = match send(provider, body, "application/json", first_byte_ms, with_tools).await {
            Attempt::Done(sent) => sent,
            Attempt::Retry { after_ms, refused } => return Attempt::Retry { after_ms, refused },
            Attempt::Fail(refused) => return Attempt::Fail(refused),
        };
        let read = resp.bytes();
        let timer = Delay::from(Duration::from_millis(left));
        pin_mut!(read);
        pin_mut!(timer);
        let bytes = match select(read, timer).await {
            Either::Left((Ok(b), _)) if b.len() <= MAX_BODY_BYTES => b,
            Either::Left((Ok(_), _)) => return Attempt::Fail(Refused::malformed("LLM response too large".into())),
            Either::Left((Err(_), _)) => return retry(Failure::Connection, "LLM response was cut off".into()),
            Either::Right(_) => {
                controller.abort();
                return Attempt::Fail(Refused::timeout());
            }
        };
        match provider.wire.parse_response(&bytes) {
            Ok(c) => Attempt::Done(c),
            Err(why) => Attempt::Fail(Refused::malformed(why)),
        }
    })
    .await
}

/// A provider stream that answered 2xx: its body, and the means to hang up on it.
pub struct OpenStream {
    pub body: ByteStream,
    /// `abort()` consumes the controller; `None` once used.
    pub controller: Option<AbortController>,
}

impl OpenStream {
    /// Closes the provider connection (on a deadline, when the caller went away, or when the
    /// turn moves on to another provider), so the provider stops generating tokens nobody
    /// will read.
    pub fn abort(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
    }
}

/// Asks for a streamed completion and waits only for the provider's 2xx headers (retrying
/// once as `complete` does, when the budget allows it).
///
/// # Errors
/// [`Refused`] as for [`complete`].
pub async fn open_stream(
    provider: &Provider,
    model: &str,
    messages: &[Turn],
    tools: Option<Offer<'_>>,
    sampling: Option<&Sampling>,
    budget: Budget,
) -> Result<OpenStream, Refused> {
    let mut body = provider.wire.request_body(model, provider.max_tokens, messages, tools, true);
    if let Some(sampling) = sampling {
        provider.wire.apply(&mut body, sampling);
    }
    let body = body.to_string();
    let body = body.as_str();
    let with_tools = tools.is_some();
    with_retries(budget, |first_byte_ms, _| async move {
        match send(provider, body, "text/event-stream", first_byte_ms, with_tools).await {
            Attempt::Done((mut resp, controller)) => match resp.stream() {
                Ok(body) => Attempt::Done(OpenStream { body, controller: Some(controller) }),
                Err(_) => Attempt::Fail(Refused::malformed("LLM response has no body".into())),
            },
            Attempt::Retry { after_ms, refused } => Attempt::Retry { after_ms, refused },
            Attempt::Fail(refused) => Attempt::Fail(refused),
        }
    })
    .await
}

/// Runs `attempt` (given its first-byte budget and the milliseconds left in all) until it is
/// done, fails, or the budget runs out; at most two attempts, and one unless `budget.retry`.
async fn with_retries<T, F, Fut>(budget: Budget, mut attempt: F) -> Result<T, Refused>
where
    F: FnMut(u64, u64) -> Fut,
    Fut: std::future::Future<Output = Attempt<T>>,
{
    let now = || worker::Date::now().as_millis();
    let deadline = now().saturating_add(budget.total_ms);
    let mut attempt_no = 0;
    loop {
        attempt_no += 1;
        let left = deadline.saturating_sub(now());
        if left == 0 {
            return Err(Refused::timeout());
        }
        match attempt(budget.first_byte_ms.min(left), left).await {
            Attempt::Done(c) => return Ok(c),
            Attempt::Fail(refused) => return Err(refused),
            Attempt::Retry { refused, .. } if attempt_no >= 2 || !budget.retry => return Err(refused),
            Attempt::Retry { after_ms, refused } => {
                if after_ms >= deadline.saturating_sub(now()) {
                    return Err(refused);
                }
                Delay::from(Duration::from_millis(after_ms)).await;
            }
        }
    }
}

/// One request, until the provider's status and headers are in (or `budget_ms` passes).
async fn send(
    provider: &Provider,
    body: &str,
    accept: &str,
    budget_ms: u64,
    with_tools: bool,
) -> Attempt<(Response, AbortController)> {
    let headers = Headers::new();
    let mut wanted = vec![("Content-Type", "application/json".to_owned()), ("Accept", accept.to_owned())];
    wanted.extend(provider.wire.auth_headers(provider.api_key.as_deref()));
    for (name, value) in wanted {
        if headers.set(name, &value).is_err() {
            // Only a key with characters no header may hold gets here; its value stays out.
            return Attempt::Fail(Refused::malformed(format!(
                "the {} provider's {name} header is invalid",
                provider.name
            )));
        }
    }
    let url = format!("{}{}", provider.base_url, provider.wire.path());
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers.clone()).with_body(Some(body.into()));
    let Ok(request) = Request::new_with_init(&url, &init) else {
        return Attempt::Fail(Refused::malformed(format!("the {} provider's base URL is invalid", provider.name)));
    };

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let call = fetch.send_with_signal(&signal);
    let timer = Delay::from(Duration::from_millis(budget_ms));
    pin_mut!(call);
    pin_mut!(timer);
    let mut resp = match select(call, timer).await {
        Either::Left((Ok(resp), _)) => resp,
        Either::Left((Err(_), _)) => return retry(Failure::Connection, "could not connect to the LLM provider".into()),
        Either::Right(((), _)) => {
            controller.abort();
            return Attempt::Fail(Refused::timeout());
        }
    };
    let status = resp.status_code();
    if (200..300).contains(&status) {
        return Attempt::Done((resp, controller));
    }
    let retry_after = resp.headers().get("Retry-After").ok().flatten();
    // The body says why (a quota, an unknown model, tools the model cannot call); a provider
    // that does not send it in time is judged by its status alone.
    let text = {
        let body = resp.text();
        let timer = Delay::from(Duration::from_millis(budget_ms.min(ERROR_BODY_MS)));
        pin_mut!(body);
        pin_mut!(timer);
        match select(body, timer).await {
            Either::Left((Ok(text), _)) => text,
            _ => String::new(),
        }
    };
    let kind = provider.wire.error_kind(status, text.as_bytes());
    // Blame tool support only when the provider's own message is about tools: a 400 can as
    // well be a context too long for the model.
    let detail = if with_tools && (status == 400 || status == 422) && llm::mentions_tools(&text) {
        llm::tools_refused(status)
    } else {
        format!("LLM provider answered HTTP {status}")
    };
    let seconds = retry_after.as_deref().and_then(|s| s.trim().parse::<u64>().ok());
    let refused = Refused { status: Some(status), kind, retry_after: seconds, detail };
    let delay = llm::retry_delay_ms(Failure::Status { status, retry_after: retry_after.as_deref() }, jitter());
    match delay {
        Some(after_ms) if kind.retries() => Attempt::Retry { after_ms, refused },
        _ => Attempt::Fail(refused),
    }
}

fn jitter() -> u8 {
    let mut byte = [0u8; 1];
    getrandom::getrandom(&mut byte).map(|()| byte[0]).unwrap_or(128)
}

fn retry<T>(failure: Failure<'_>, detail: String) -> Attempt<T> {
    let refused = Refused { status: None, kind: FailureKind::Connection, retry_after: None, detail };
    match llm::retry_delay_ms(failure, jitter()) {
        Some(after_ms) => Attempt::Retry { after_ms, refused },
        None => Attempt::Fail(refused),
    }
}
