//! API keys: stored as SHA-256 and a display prefix, never the key itself.

use serde::Deserialize;
use worker::D1Database;

use super::audit::{self, Table};
use super::{all, batch, first, int, opt_int, rows, stmt, text};
use crate::domain::error::ApiResult;
use crate::domain::time::Millis;

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub created_by_name: String,
    pub created_at: Millis,
    pub expires_at: Option<Millis>,
    pub rate_limit_per_minute: Option<i64>,
}

pub struct NewKeyRow<'a> {
    pub key: &'a ApiKey,
    pub workspace_id: &'a str,
    pub key_hash: &'a str,
    pub admin_id: &'a str,
}

/// Inserts the key and its audit entry in one transaction.
pub async fn create(db: &D1Database, row: &NewKeyRow<'_>) -> ApiResult<()> {
    let k = row.key;
    let insert =
        "INSERT INTO api_keys (id, workspace_id, name, prefix, key_hash, created_by_admin_id, created_by_name, \
                  created_at, expires_at, rate_limit_per_minute) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let params = [
        text(&k.id),
        text(row.workspace_id),
        text(&k.name),
        text(&k.prefix),
        text(row.key_hash),
        text(row.admin_id),
        text(&k.created_by_name),
        int(k.created_at),
        opt_int(k.expires_at),
        opt_int(k.rate_limit_per_minute),
    ];
    let target = audit::Target { id: &k.id, name: Some(&k.name), prefix: Some(&k.prefix) };
    let log = audit::record(db, row.workspace_id, &k.created_by_name, "api_key.created", &target, k.created_at)?;
    batch(db, vec![stmt(db, insert, &params)?, log]).await?;
    Ok(())
}

pub async fn list(db: &D1Database, workspace_id: &str) -> ApiResult<Vec<ApiKey>> {
    let sql = "SELECT id, name, prefix, created_by_name, created_at, expires_at, rate_limit_per_minute \
               FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at DESC, id DESC";
    all(stmt(db, sql, &[text(workspace_id)])?).await
}

#[derive(Deserialize)]
struct Hash {
    key_hash: String,
}

/// Deletes a key of this workspace (and logs it, in the same transaction). Returns the deleted
/// key's hash, so its rate-limiter state can be dropped, or `None` if there was no such key.
/// The key is gone from D1 when this returns, and D1 is what every request checks.
pub async fn delete(
    db: &D1Database,
    workspace_id: &str,
    key_id: &str,
    actor: &str,
    at: Millis,
) -> ApiResult<Option<String>> {
    let log = audit::record_if_exists(db, workspace_id, actor, "api_key.deleted", Table::ApiKeys, key_id, None, at)?;
    let delete = stmt(
        db,
        "DELETE FROM api_keys WHERE id = ?1 AND workspace_id = ?2 RETURNING key_hash",
        &[text(key_id), text(workspace_id)],
    )?;
    let results = batch(db, vec![log, delete]).await?;
    match results.get(1) {
        Some(result) => Ok(rows::<Hash>(result)?.into_iter().next().map(|h| h.key_hash)),
        None => Ok(None),
    }
}

/// What authentication needs to know about a key.
#[derive(Debug, Clone, Deserialize)]
pub struct KeyAuth {
    pub id: String,
    pub workspace_id: String,
    pub expires_at: Option<Millis>,
    /// The key's own limit, which its rate-limiter object learns when it adopts the key.
    pub rate_limit_per_minute: Option<i64>,
}

pub const AUTH_SQL: &str =
    "SELECT id, workspace_id, expires_at, rate_limit_per_minute FROM api_keys WHERE key_hash = ?1";

pub async fn by_hash(db: &D1Database, hash: &str) -> ApiResult<Option<KeyAuth>> {
    first(stmt(db, AUTH_SQL, &[text(hash)])?).await
}
