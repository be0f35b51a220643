//! The Chat Completions call over `fetch`: with a deadline, and at most one retry as the
//! domain's retry policy decides, both before the provider has answered 2xx. The JSON mode
//! then reads the whole body; the streaming mode hands the open body to the SSE transport.
//! The LLM key goes in the `Authorization` header and nowhere else: not in errors, not in logs.

use std::time::Duration;

use futures::future::{select, Either};
use futures::pin_mut;
use worker::{AbortController, ByteStream, Delay, Fetch, Headers, Method, Request, RequestInit, Response};

use crate::domain::config::Config;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::llm::{self, Completion, Failure, Offer, Turn};

/// Upstream bodies larger than this are not a completion we can use.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

enum Attempt<T> {
    Done(T),
    Retry { after_ms: u64, why: String },
    Fail(ApiError),
}

/// Sends the messages and returns the completion, within `LLM_TIMEOUT_MS` for everything
/// (both attempts and the pause between them).
///
/// # Errors
/// `UpstreamTimeout` (504) when the deadline passes; `Upstream` (502) for an error status or a
/// body that is not a completion.
pub async fn complete(
    config: &Config,
    model: &str,
    messages: &[Turn],
    tools: Option<Offer<'_>>,
) -> ApiResult<Completion> {
    let body = llm::request_body(model, messages, tools).to_string();
    let body = body.as_str();
    let with_tools = tools.is_some();
    with_retries(config, |budget| async move {
        let (mut resp, controller) = match send(config, body, "application/json", budget, with_tools).await? {
            Attempt::Done(sent) => sent,
            Attempt::Retry { after_ms, why } => return Ok(Attempt::Retry { after_ms, why }),
            Attempt::Fail(e) => return Ok(Attempt::Fail(e)),
        };
        let read = resp.bytes();
        let timer = Delay::from(Duration::from_millis(budget));
        pin_mut!(read);
        pin_mut!(timer);
        let bytes = match select(read, timer).await {
            Either::Left((Ok(b), _)) if b.len() <= MAX_BODY_BYTES => b,
            Either::Left((Ok(_), _)) => return Ok(Attempt::Fail(ApiError::Upstream("LLM response too large".into()))),
            Either::Left((Err(_), _)) => return Ok(retry(Failure::Connection, "LLM response was cut off".into())),
            Either::Right(_) => {
                controller.abort();
                return Err(ApiError::UpstreamTimeout);
            }
        };
        Ok(match llm::parse_completion(&bytes) {
            Ok(c) => Attempt::Done(c),
            Err(why) => Attempt::Fail(ApiError::Upstream(why)),
        })
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
    /// Closes the provider connection (on a deadline or when the caller went away), so the
    /// provider stops generating tokens nobody will read.
    pub fn abort(&mut self) {
        if let Some(c) = self.controller.take() {
            c.abort();
        }
    }
}

/// Asks for a streamed completion and waits only for the provider's 2xx headers, within
/// `LLM_TIMEOUT_MS` (retrying once as `complete` does). Everything up to here fails with the
/// same errors as the JSON mode, before the caller's stream has started.
pub async fn open_stream(
    config: &Config,
    model: &str,
    messages: &[Turn],
    tools: Option<Offer<'_>>,
) -> ApiResult<OpenStream> {
    let body = llm::stream_request_body(model, messages, tools).to_string();
    let body = body.as_str();
    let with_tools = tools.is_some();
    with_retries(config, |budget| async move {
        Ok(match send(config, body, "text/event-stream", budget, with_tools).await? {
            Attempt::Done((mut resp, controller)) => match resp.stream() {
                Ok(body) => Attempt::Done(OpenStream { body, controller: Some(controller) }),
                Err(_) => Attempt::Fail(ApiError::Upstream("LLM response has no body".into())),
            },
            Attempt::Retry { after_ms, why } => Attempt::Retry { after_ms, why },
            Attempt::Fail(e) => Attempt::Fail(e),
        })
    })
    .await
}

/// Runs `attempt` (given the milliseconds left) until it is done, fails, or the deadline
/// passes; at most two attempts.
async fn with_retries<T, F, Fut>(config: &Config, mut attempt: F) -> ApiResult<T>
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ApiResult<Attempt<T>>>,
{
    let deadline = worker::Date::now().as_millis() + config.llm_timeout_ms;
    let mut attempt_no = 0;
    loop {
        attempt_no += 1;
        let left = deadline.saturating_sub(worker::Date::now().as_millis());
        if left == 0 {
            return Err(ApiError::UpstreamTimeout);
        }
        match attempt(left).await? {
            Attempt::Done(c) => return Ok(c),
            Attempt::Fail(e) => return Err(e),
            Attempt::Retry { why, .. } if attempt_no >= 2 => return Err(ApiError::Upstream(why)),
            Attempt::Retry { after_ms, why } => {
                let left = deadline.saturating_sub(worker::Date::now().as_millis());
                if after_ms >= left {
                    return Err(ApiError::Upstream(why));
                }
                Delay::from(Duration::from_millis(after_ms)).await;
            }
        }
    }
}

/// One request, until the provider's status and headers are in (or `budget_ms` passes).
async fn send(
    config: &Config,
    body: &str,
    accept: &str,
    budget_ms: u64,
    with_tools: bool,
) -> ApiResult<Attempt<(Response, AbortController)>> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| ApiError::internal(format!("headers: {e}")));
    set("Content-Type", "application/json")?;
    set("Accept", accept)?;
    if let Some(key) = &config.llm_api_key {
        set("Authorization", &format!("Bearer {key}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers.clone()).with_body(Some(body.into()));
    let request = Request::new_with_init(&config.completions_url(), &init)
        .map_err(|_| ApiError::NotConfigured("LLM_BASE_URL"))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let call = fetch.send_with_signal(&signal);
    let timer = Delay::from(Duration::from_millis(budget_ms));
    pin_mut!(call);
    pin_mut!(timer);
    let resp = match select(call, timer).await {
        Either::Left((Ok(resp), _)) => resp,
        Either::Left((Err(_), _)) => {
            return Ok(retry(Failure::Connection, "could not connect to the LLM provider".into()))
        }
        Either::Right(((), _)) => {
            controller.abort();
            return Err(ApiError::UpstreamTimeout);
        }
    };
    let status = resp.status_code();
    if with_tools && (status == 400 || status == 422) {
        // Blame tool support only when the provider's own message is about tools: a 400 can
        // as well be a context too long for the model.
        let mut resp = resp;
        let body = resp.text();
        let timer = Delay::from(Duration::from_millis(budget_ms.min(2_000)));
        pin_mut!(body);
        pin_mut!(timer);
        let text = match select(body, timer).await {
            Either::Left((Ok(text), _)) => text,
            _ => String::new(),
        };
        let why = if llm::mentions_tools(&text) {
            llm::tools_refused(status)
        } else {
            format!("LLM provider answered HTTP {status}")
        };
        return Ok(Attempt::Fail(ApiError::Upstream(why)));
    }
    if !(200..300).contains(&status) {
        let retry_after = resp.headers().get("Retry-After").ok().flatten();
        let why = format!("LLM provider answered HTTP {status}");
        return Ok(retry(Failure::Status { status, retry_after: retry_after.as_deref() }, why));
    }
    Ok(Attempt::Done((resp, controller)))
}

fn retry<T>(failure: Failure<'_>, why: String) -> Attempt<T> {
    let mut jitter = [0u8; 1];
    let jitter = getrandom::getrandom(&mut jitter).map(|()| jitter[0]).unwrap_or(128);
    match llm::retry_delay_ms(failure, jitter) {
        Some(after_ms) => Attempt::Retry { after_ms, why },
        None => Attempt::Fail(ApiError::Upstream(why)),
    }
}
