//! Where storage starts: D1 queries, the KV last-used index and the rate-limiter Durable Object
//! client. Each module owns the SQL of one resource; handlers never write SQL.

pub mod agents;
pub mod audit;
pub mod chats;
pub mod insights;
pub mod keys;
pub mod knowledge;
pub mod last_used;
pub mod limiter;
pub mod usage;
pub mod workspaces;

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use crate::domain::error::{ApiError, ApiResult};

pub fn db(env: &Env) -> ApiResult<D1Database> {
    env.d1("DB").map_err(|e| ApiError::internal(format!("D1 binding: {e}")))
}

/// Text parameter.
pub fn text(s: &str) -> JsValue {
    JsValue::from_str(s)
}

/// Integer parameter, bound as a JS number: D1 rejects BigInt, and our integers (epoch
/// milliseconds, counts) stay far below 2^53.
pub fn int(n: i64) -> JsValue {
    JsValue::from_f64(n as f64)
}

pub fn opt_text(s: Option<&str>) -> JsValue {
    s.map_or(JsValue::NULL, text)
}

pub fn opt_int(n: Option<i64>) -> JsValue {
    n.map_or(JsValue::NULL, int)
}

pub fn stmt(db: &D1Database, sql: &str, params: &[JsValue]) -> ApiResult<D1PreparedStatement> {
    db.prepare(sql).bind(params).map_err(d1_error)
}

pub fn d1_error(err: worker::Error) -> ApiError {
    ApiError::internal(format!("D1: {err}"))
}

pub async fn first<T: DeserializeOwned>(stmt: D1PreparedStatement) -> ApiResult<Option<T>> {
    stmt.first::<T>(None).await.map_err(d1_error)
}

pub async fn all<T: DeserializeOwned>(stmt: D1PreparedStatement) -> ApiResult<Vec<T>> {
    rows(&stmt.all().await.map_err(d1_error)?)
}

pub async fn run(stmt: D1PreparedStatement) -> ApiResult<D1Result> {
    stmt.run().await.map_err(d1_error)
}

/// Rows of one result. (A failed statement rejects the whole call, so a result here succeeded.)
pub fn rows<T: DeserializeOwned>(result: &D1Result) -> ApiResult<Vec<T>> {
    result.results::<T>().map_err(d1_error)
}

/// How many rows a write changed.
pub fn changes(result: &D1Result) -> ApiResult<u64> {
    let meta = result.meta().map_err(d1_error)?;
    Ok(meta.and_then(|m| m.changes).unwrap_or(0) as u64)
}

pub async fn batch(db: &D1Database, statements: Vec<D1PreparedStatement>) -> ApiResult<Vec<D1Result>> {
    db.batch(statements).await.map_err(d1_error)
}
