//! Workspaces and their admins (operator routes), and admin sign-in by token hash.

use serde::Deserialize;
use worker::D1Database;

use super::{all, batch, changes, first, int, rows, stmt, text};
use crate::domain::error::ApiResult;
use crate::domain::time::Millis;

#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
}

pub async fn create(db: &D1Database, ws: &Workspace) -> ApiResult<()> {
    let insert = "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)";
    super::run(stmt(db, insert, &[text(&ws.id), text(&ws.name), int(ws.created_at)])?).await?;
    Ok(())
}

pub async fn list(db: &D1Database) -> ApiResult<Vec<Workspace>> {
    all(stmt(db, "SELECT id, name, created_at FROM workspaces ORDER BY created_at DESC, id", &[])?).await
}

pub async fn exists(db: &D1Database, id: &str) -> ApiResult<bool> {
    let found: Option<serde_json::Value> =
        first(stmt(db, "SELECT 1 AS found FROM workspaces WHERE id = ?1", &[text(id)])?).await?;
    Ok(found.is_some())
}

#[derive(Deserialize)]
struct Hash {
    key_hash: String,
}

/// Deletes the workspace and, by cascade, its admins, keys, agents, chats, messages and audit
/// log. Returns the hashes of the keys it had (read in the same transaction, so none is
/// missed), so their rate-limiter state can be dropped; `None` if there was no such workspace.
pub async fn delete(db: &D1Database, id: &str) -> ApiResult<Option<Vec<String>>> {
    let results = batch(
        db,
        vec![
            stmt(db, "SELECT key_hash FROM api_keys WHERE workspace_id = ?1", &[text(id)])?,
            stmt(db, "DELETE FROM workspaces WHERE id = ?1", &[text(id)])?,
        ],
    )
    .await?;
    let [hashes, deleted] = results.as_slice() else {
        return Err(crate::domain::error::ApiError::internal("D1 batch returned the wrong number of results"));
    };
    if changes(deleted)? == 0 {
        return Ok(None);
    }
    Ok(Some(rows::<Hash>(hashes)?.into_iter().map(|h| h.key_hash).collect()))
}

pub struct NewAdminRow<'a> {
    pub id: &'a str,
    pub workspace_id: &'a str,
    pub name: &'a str,
    pub email: &'a str,
    pub token_hash: &'a str,
    pub created_at: Millis,
}

/// Inserts the admin only if the workspace exists (one statement, so a concurrent workspace
/// delete cannot leave an orphan). Returns whether it was inserted.
pub async fn create_admin(db: &D1Database, a: &NewAdminRow<'_>) -> ApiResult<bool> {
    let sql = "INSERT INTO workspace_admins (id, workspace_id, name, email, token_hash, created_at) \
               SELECT ?1, id, ?3, ?4, ?5, ?6 FROM workspaces WHERE id = ?2";
    let params = [text(a.id), text(a.workspace_id), text(a.name), text(a.email), text(a.token_hash), int(a.created_at)];
    let result = super::run(stmt(db, sql, &params)?).await?;
    Ok(changes(&result)? > 0)
}

pub async fn delete_admin(db: &D1Database, workspace_id: &str, admin_id: &str) -> ApiResult<bool> {
    let sql = "DELETE FROM workspace_admins WHERE id = ?1 AND workspace_id = ?2";
    let result = super::run(stmt(db, sql, &[text(admin_id), text(workspace_id)])?).await?;
    Ok(changes(&result)? > 0)
}

/// A signed-in workspace admin.
#[derive(Debug, Clone, Deserialize)]
pub struct Admin {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
}

pub async fn admin_by_token_hash(db: &D1Database, hash: &str) -> ApiResult<Option<Admin>> {
    let sql = "SELECT id, workspace_id, name FROM workspace_admins WHERE token_hash = ?1";
    first(stmt(db, sql, &[text(hash)])?).await
}

/// One trivial query, for the health check.
pub async fn ping(db: &D1Database) -> ApiResult<()> {
    batch(db, vec![stmt(db, "SELECT 1", &[])?]).await.map(|_| ())
}
