//! The per-key Durable Object bound as `RATE_LIMITER`: a thin wrapper that loads what the object
//! stores, runs [`crate::domain::rate_limit::on_command`] and applies the writes it asks for.
//! It holds the key's rate-limit state and the key's `Idempotency-Key` records: both must be
//! decided exactly, under concurrency, on a path every request already takes.
//!
//! Storage is the object's SQLite database, used through its synchronous API: the reads, the
//! decision and the writes happen with no `await` in between, so concurrent requests to one key
//! cannot interleave and the count is exact. State lives in storage, not memory, so it survives
//! eviction and restarts.
//!
//! An object writes nothing until D1 has confirmed its key (`adopt`): the tables are created by
//! the first write, not when the object starts, so a made-up key costs no storage.

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::domain::idempotency::Record;
use crate::domain::rate_limit::{self, Command, Stored};

#[durable_object]
pub struct RateLimiter {
    state: State,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let command: Command = req.json().await?;
        let sql = self.state.storage().sql();
        let now = worker::Date::now().as_millis() as i64;
        let record_id = match &command {
            Command::Check { claim: Some(c), .. }
            | Command::Adopt { claim: Some(c), .. }
            | Command::Relimit { claim: Some(c), .. } => Some(c.id.clone()),
            Command::Finish { id, .. } => Some(id.clone()),
            _ => None,
        };
        let record = record_id.as_deref().and_then(|id| load_record(&sql, id));
        let (reply, writes) = rate_limit::on_command(load(&sql), record, command, now);
        if writes.clear {
            self.state.storage().delete_all().await?;
            return Response::from_json(&reply);
        }
        for chat_id in &writes.forget_chats {
            // No table yet means no results to forget.
            let _ = sql.exec(
                "DELETE FROM idempotency WHERE instr(data, ?) > 0",
                vec![crate::domain::idempotency::chat_needle(chat_id).into()],
            );
        }
        if writes.limiter.is_some() || writes.record.is_some() {
            sql.exec(SCHEMA_LIMITER, None)?;
            sql.exec(SCHEMA_RECORDS, None)?;
        }
        if let Some(next) = writes.limiter {
            sql.exec(
                "INSERT OR REPLACE INTO limiter (id, data) VALUES (1, ?)",
                vec![serde_json::to_string(&next)?.into()],
            )?;
        }
        match writes.record {
            Some((id, Some(record))) => {
                // Expired records go as new ones arrive, so the table holds at most a day's keys.
                sql.exec("DELETE FROM idempotency WHERE expires_at <= ?", vec![(now as f64).into()])?;
                let data = serde_json::to_string(&record)?;
                let expires = record.expires_at() as f64;
                sql.exec(
                    "INSERT OR REPLACE INTO idempotency (id, data, expires_at) VALUES (?, ?, ?)",
                    vec![id.into(), data.into(), expires.into()],
                )?;
            }
            Some((id, None)) => {
                sql.exec("DELETE FROM idempotency WHERE id = ?", vec![id.into()])?;
            }
            None => {}
        }
        Response::from_json(&reply)
    }
}

const SCHEMA_LIMITER: &str =
    "CREATE TABLE IF NOT EXISTS limiter (id INTEGER PRIMARY KEY CHECK (id = 1), data TEXT NOT NULL)";
const SCHEMA_RECORDS: &str =
    "CREATE TABLE IF NOT EXISTS idempotency (id TEXT PRIMARY KEY, data TEXT NOT NULL, expires_at REAL NOT NULL)";

#[derive(Deserialize)]
struct Row {
    data: String,
}

/// The first row's `data`, as JSON; `None` when the table does not exist yet (the query then
/// fails), has no such row, or holds something unreadable.
fn first<T: serde::de::DeserializeOwned>(
    sql: &SqlStorage,
    query: &str,
    params: Option<Vec<worker::SqlStorageValue>>,
) -> Option<T> {
    let rows: Vec<Row> = sql.exec(query, params).ok()?.to_array().ok()?;
    rows.first().and_then(|r| serde_json::from_str(&r.data).ok())
}

/// The key's limiter state; `None` before the first write or after `forget`.
fn load(sql: &SqlStorage) -> Option<Stored> {
    first(sql, "SELECT data FROM limiter WHERE id = 1", None)
}

fn load_record(sql: &SqlStorage, id: &str) -> Option<Record> {
    first(sql, "SELECT data FROM idempotency WHERE id = ?", Some(vec![id.into()]))
}
