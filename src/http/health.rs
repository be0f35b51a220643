//! `GET /api/health`: up means D1 answers.

use serde_json::json;

use super::{Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};
use crate::storage;

pub async fn get(cx: &Cx) -> ApiResult<Reply> {
    let db = storage::db(&cx.env).map_err(|_| ApiError::Unavailable("D1"))?;
    storage::workspaces::ping(&db).await.map_err(|_| ApiError::Unavailable("D1"))?;
    Ok(Reply::ok(json!({ "status": "ok" })))
}
