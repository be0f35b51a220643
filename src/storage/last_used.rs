//! Last-used times of API keys, in KV (`LAST_USED`).
//!
//! One entry per key, `lu:{workspace}:{key}`, with the time in its metadata so that listing a
//! workspace's keys reads them all with one `list` call. Written at most once a minute per key
//! (the rate-limiter object says when), after the response, and never read to decide whether a
//! key is valid: KV is eventually consistent.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use worker::{Env, KvStore};

use crate::domain::error::{ApiError, ApiResult};
use crate::domain::time::{to_iso, Millis};

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    at: Millis,
}

fn kv(env: &Env) -> ApiResult<KvStore> {
    env.kv("LAST_USED").map_err(|e| ApiError::internal(format!("KV binding: {e}")))
}

fn kv_error(e: worker::kv::KvError) -> ApiError {
    ApiError::internal(format!("KV: {e:?}"))
}

fn prefix(workspace_id: &str) -> String {
    format!("lu:{workspace_id}:")
}

pub async fn mark(env: &Env, workspace_id: &str, key_id: &str, at: Millis) -> ApiResult<()> {
    let name = format!("{}{key_id}", prefix(workspace_id));
    kv(env)?
        .put(&name, to_iso(at))
        .map_err(kv_error)?
        .metadata(Meta { at })
        .map_err(kv_error)?
        .execute()
        .await
        .map_err(kv_error)
}

pub async fn forget(env: &Env, workspace_id: &str, key_id: &str) -> ApiResult<()> {
    kv(env)?.delete(&format!("{}{key_id}", prefix(workspace_id))).await.map_err(kv_error)
}

/// Every key of the workspace that was ever used, with when. One KV call per thousand keys.
pub async fn for_workspace(env: &Env, workspace_id: &str) -> ApiResult<HashMap<String, Millis>> {
    let store = kv(env)?;
    let prefix = prefix(workspace_id);
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut list = store.list().prefix(prefix.clone());
        if let Some(c) = cursor.take() {
            list = list.cursor(c);
        }
        let page = list.execute().await.map_err(kv_error)?;
        for key in page.keys {
            let at = key.metadata.and_then(|m| serde_json::from_value::<Meta>(m).ok()).map(|m| m.at);
            if let (Some(id), Some(at)) = (key.name.strip_prefix(&prefix), at) {
                out.insert(id.to_owned(), at);
            }
        }
        match page.cursor {
            Some(c) if !page.list_complete && !c.is_empty() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}
