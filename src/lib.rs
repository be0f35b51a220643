//! Attive API Connection: a Cloudflare Worker through which customers talk to their
//! workspace's AI agents over HTTP.
//!
//! - `context`: the request's context (bindings, clock, config, headers, log), shared by the
//!   layers below `lib`.
//! - [`domain`]: the pure core (formats, rules, calculations); no `worker` types.
//! - `http`: where HTTP ends — routing, auth, handlers, the one error-to-response mapping.
//! - `storage`: the control plane (D1), each workspace's own database (its object, or D1
//!   before its move) behind one `Db`, the KV last-used index, the rate-limiter client.
//! - `turn`: one chat turn as one pipeline (load → prompt → call → store), shared by the JSON
//!   and the streaming transport; between `http` and `storage`/`upstream`.
//! - `upstream`: the LLM over `fetch`.
//! - `rate_limiter`: the per-key Durable Object.
//! - `workspace`: the per-workspace Durable Object (its own SQLite database).
//! - `scheduled`: the Cron Trigger's run (insights that are due).

mod context;
pub mod domain;
pub mod http;
mod rate_limiter;
mod scheduled;
mod storage;
mod turn;
mod upstream;
mod workspace;

pub use rate_limiter::RateLimiter;
pub use workspace::Workspace;

use worker::{event, Context, Env, Request, Response, Result, ScheduleContext, ScheduledEvent};

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    Ok(http::handle(req, env, ctx).await)
}

/// The Cron Trigger (`[triggers]` in wrangler.toml): insights that are due.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    scheduled::tick(&env).await;
}
