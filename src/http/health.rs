//! `GET /api/health`: up means D1 answers and the configuration is usable.

use serde_json::json;

use super::{Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};
use crate::storage;

/// Up means D1 answers and the provider configuration can be used: a broken `LLM_PROVIDERS`
/// or `LLM_FALLBACKS` fails every chat, so health says so (naming the variable) too.
pub async fn get(cx: &Cx) -> ApiResult<Reply> {
    let db = storage::control(&cx.env).map_err(|_| ApiError::Unavailable("D1"))?;
    storage::workspaces::ping(&db).await.map_err(|_| ApiError::Unavailable("D1"))?;
    if let Err(err @ ApiError::Misconfigured(_)) = cx.config() {
        return Err(err);
    }
    Ok(Reply::ok(json!({ "status": "ok" })))
}
