//! The per-key Durable Object bound as `RATE_LIMITER`: a thin wrapper that loads the stored
//! limiter state, runs [`crate::domain::rate_limit::on_request`] and stores the result.
//!
//! Storage is the object's SQLite database, used through its synchronous API: the read, the
//! decision and the write happen with no `await` in between, so concurrent requests to one key
//! cannot interleave and the count is exact. State lives in storage, not memory, so it survives
//! eviction and restarts.

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::domain::rate_limit::{self, Stored};

/// The Worker's message to the object.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "op")]
pub enum Command {
    /// Count one request; `defaultLimit` applies when the key has no limit of its own.
    Check { default_limit: u32 },
    /// Set the key's own limit (at key creation).
    Configure { key_limit: Option<u32> },
}

#[durable_object]
pub struct RateLimiter {
    state: State,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        // Once per object instance rather than per request. Should it fail, the first request
        // fails too and the Worker lets it through (see `http::auth::admit`).
        let _ = state.storage().sql().exec(SCHEMA, None);
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let command: Command = req.json().await?;
        let sql = self.state.storage().sql();
        let rows: Vec<Row> = sql.exec("SELECT data FROM limiter WHERE id = 1", None)?.to_array()?;
        let stored: Stored = rows.first().and_then(|r| serde_json::from_str(&r.data).ok()).unwrap_or_default();
        let now = worker::Date::now().as_millis() as i64;
        let (reply, next) = match command {
            Command::Check { default_limit } => {
                let (verdict, next) = rate_limit::on_request(stored, now, default_limit);
                (serde_json::to_value(verdict)?, next)
            }
            Command::Configure { key_limit } => (serde_json::json!({ "ok": true }), Stored { key_limit, ..stored }),
        };
        let data = serde_json::to_string(&next)?;
        sql.exec("INSERT OR REPLACE INTO limiter (id, data) VALUES (1, ?)", vec![data.into()])?;
        Response::from_json(&reply)
    }
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS limiter (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)";

#[derive(Deserialize)]
struct Row {
    data: String,
}
