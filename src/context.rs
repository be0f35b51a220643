//! The context of one request, shared by every layer that serves it: the bindings, the
//! `waitUntil` handle, the clock and the request id, the configuration, the response headers
//! decided along the way, and the one JSON log line format. It sits beside `http` and `turn`
//! so that neither has to reach into the other for it.

use std::cell::RefCell;

use serde_json::{json, Value};
use worker::{Context, Env};

use crate::domain::config::Config;
use crate::domain::error::ApiResult;
use crate::domain::time::Millis;

/// Per-request context handed to every handler.
pub struct Cx {
    pub env: Env,
    pub ctx: Context,
    pub now: Millis,
    pub request_id: String,
    /// Headers a handler wants on the response whatever its outcome (the rate-limit headers
    /// belong on a 429 as much as on a 200).
    headers: RefCell<Vec<(&'static str, String)>>,
    usage: RefCell<UsageNote>,
}

/// What the usage ledger needs to know about a request made with an API key: whose it is, the
/// LLM time it spent, and whether it was already counted (a stored turn is counted in the batch
/// that stores it; a stream counts itself when it ends).
#[derive(Default)]
pub struct UsageNote {
    pub key_hash: Option<String>,
    /// The key's workspace database, where its usage is counted.
    pub db: Option<crate::storage::Db>,
    pub counted: bool,
    pub llm_ms: u64,
    /// Tokens of calls made before the request failed (an agent's tool steps).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl Cx {
    pub fn new(env: Env, ctx: Context, now: Millis, request_id: String) -> Self {
        Self { env, ctx, now, request_id, headers: RefCell::new(Vec::new()), usage: RefCell::default() }
    }

    /// The request is made with this key, of this workspace database (`None`: a key storage
    /// does not know, never counted).
    pub fn usage_key(&self, key: Option<(&str, &crate::storage::Db)>) {
        let mut note = self.usage.borrow_mut();
        note.key_hash = key.map(|(hash, _)| hash.to_owned());
        note.db = key.map(|(_, db)| db.clone());
    }

    /// Someone else counts this request (or already has).
    pub fn usage_counted(&self) {
        self.usage.borrow_mut().counted = true;
    }

    pub fn usage_llm_ms(&self, ms: u64) {
        self.usage.borrow_mut().llm_ms = ms;
    }

    /// Tokens already spent when the request fails after some model calls succeeded.
    pub fn usage_tokens(&self, prompt_tokens: u64, completion_tokens: u64) {
        let mut usage = self.usage.borrow_mut();
        usage.prompt_tokens = prompt_tokens;
        usage.completion_tokens = completion_tokens;
    }

    pub fn take_usage(&self) -> UsageNote {
        self.usage.take()
    }

    /// The headers collected so far, for the response.
    pub fn take_headers(&self) -> Vec<(&'static str, String)> {
        self.headers.take()
    }

    pub fn add_header(&self, name: &'static str, value: String) {
        self.headers.borrow_mut().push((name, value));
    }

    /// Like `add_header`, replacing an earlier value of the same header.
    pub fn set_header(&self, name: &'static str, value: String) {
        let mut headers = self.headers.borrow_mut();
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value));
    }

    /// The configuration (see [`config_of`]).
    pub fn config(&self) -> ApiResult<Config> {
        config_of(&self.env)
    }

    pub fn secret(&self, name: &str) -> Option<String> {
        secret_of(&self.env, name)
    }
}

/// The configuration, read from the environment once per isolate (vars and secrets only
/// change with a new deployment, which starts new isolates).
pub fn config_of(env: &Env) -> ApiResult<Config> {
    thread_local! {
        static CONFIG: std::cell::OnceCell<Config> = const { std::cell::OnceCell::new() };
    }
    if let Some(config) = CONFIG.with(|c| c.get().cloned()) {
        return Ok(config);
    }
    let config =
        Config::from_lookup(|name| env.var(name).ok().map(|v| v.to_string()).or_else(|| secret_of(env, name)))?;
    CONFIG.with(|c| {
        let _ = c.set(config.clone());
    });
    Ok(config)
}

fn secret_of(env: &Env, name: &str) -> Option<String> {
    env.secret(name).ok().map(|s| s.to_string()).filter(|s| !s.trim().is_empty())
}

/// Runs `f` and says how long it took in milliseconds (for `Server-Timing`). Workers clocks
/// advance only across I/O, which is exactly what these phases are made of.
pub async fn timed<F: std::future::Future>(f: F) -> (F::Output, u64) {
    let start = worker::Date::now().as_millis();
    let out = f.await;
    (out, worker::Date::now().as_millis().saturating_sub(start))
}

/// One JSON line to the Worker's log.
pub fn log(line: &Value) {
    worker::console_log!("{line}");
}

/// A warning about something that went wrong after the caller's answer was decided (it cannot
/// change the response any more, so the log is the only place it can be seen).
pub fn log_warn(request_id: &str, event: &str, detail: Option<&str>) {
    log(&json!({ "requestId": request_id, "level": "warn", "event": event, "detail": detail }));
}
