//! The Chat Completions call: one `fetch` with a deadline, and at most one retry as the domain's
//! retry policy decides. The LLM key goes in the `Authorization` header and nowhere else: not
//! in errors, not in logs.

use std::time::Duration;

use futures::future::{select, Either};
use futures::pin_mut;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::domain::config::Config;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::llm::{self, Completion, Failure, Turn};

/// Upstream bodies larger than this are not a completion we can use.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

enum Attempt {
    Done(Completion),
    Retry { after_ms: u64, why: String },
    Fail(ApiError),
}

/// Sends the messages and returns the completion, within `LLM_TIMEOUT_MS` for everything
/// (both attempts and the pause between them).
///
/// # Errors
/// `UpstreamTimeout` (504) when the deadline passes; `Upstream` (502) for an error status or a
/// body that is not a completion.
pub async fn complete(config: &Config, model: &str, messages: &[Turn]) -> ApiResult<Completion> {
    let started = worker::Date::now().as_millis();
    let deadline = started + config.llm_timeout_ms;
    let body = llm::request_body(model, messages).to_string();
    let mut attempt_no = 0;
    loop {
        attempt_no += 1;
        let left = deadline.saturating_sub(worker::Date::now().as_millis());
        if left == 0 {
            return Err(ApiError::UpstreamTimeout);
        }
        match attempt(config, &body, left).await? {
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

async fn attempt(config: &Config, body: &str, budget_ms: u64) -> ApiResult<Attempt> {
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| ApiError::internal(format!("headers: {e}")));
    set("Content-Type", "application/json")?;
    set("Accept", "application/json")?;
    if let Some(key) = &config.llm_api_key {
        set("Authorization", &format!("Bearer {key}"))?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers.clone()).with_body(Some(body.into()));
    let request = Request::new_with_init(&config.completions_url(), &init)
        .map_err(|_| ApiError::NotConfigured("LLM_BASE_URL"))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let fetch = Fetch::Request(request);
        let mut resp = match fetch.send_with_signal(&signal).await {
            Ok(resp) => resp,
            Err(_) => return Ok(retry(Failure::Connection, "could not connect to the LLM provider".into())),
        };
        let status = resp.status_code();
        if !(200..300).contains(&status) {
            let retry_after = resp.headers().get("Retry-After").ok().flatten();
            let why = format!("LLM provider answered HTTP {status}");
            return Ok(retry(Failure::Status { status, retry_after: retry_after.as_deref() }, why));
        }
        let bytes = match resp.bytes().await {
            Ok(b) if b.len() <= MAX_BODY_BYTES => b,
            Ok(_) => return Ok(Attempt::Fail(ApiError::Upstream("LLM response too large".into()))),
            Err(_) => return Ok(retry(Failure::Connection, "LLM response was cut off".into())),
        };
        Ok(match llm::parse_completion(&bytes) {
            Ok(c) => Attempt::Done(c),
            Err(why) => Attempt::Fail(ApiError::Upstream(why)),
        })
    };
    let timer = Delay::from(Duration::from_millis(budget_ms));
    pin_mut!(call);
    pin_mut!(timer);
    match select(call, timer).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(((), _)) => {
            controller.abort();
            Err(ApiError::UpstreamTimeout)
        }
    }
}

fn retry(failure: Failure<'_>, why: String) -> Attempt {
    let mut jitter = [0u8; 1];
    let jitter = getrandom::getrandom(&mut jitter).map(|()| jitter[0]).unwrap_or(128);
    match llm::retry_delay_ms(failure, jitter) {
        Some(after_ms) => Attempt::Retry { after_ms, why },
        None => Attempt::Fail(ApiError::Upstream(why)),
    }
}
