//! The workspace audit log: who did what to which resource, newest first.

use serde::Deserialize;
use worker::{D1Database, D1PreparedStatement};

use super::{all, int, stmt, text};
use crate::domain::error::ApiResult;
use crate::domain::ids::{new_id, IdKind};
use crate::domain::time::Millis;

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub created_at: Millis,
}

/// A statement to put in the same batch as the change it records, so the log and the data
/// cannot disagree.
pub fn record(
    db: &D1Database,
    workspace_id: &str,
    actor: &str,
    action: &str,
    target: &str,
    at: Millis,
) -> ApiResult<D1PreparedStatement> {
    let sql =
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
    stmt(
        db,
        sql,
        &[text(&new_id(IdKind::Audit)?), text(workspace_id), text(actor), text(action), text(target), int(at)],
    )
}

/// Like [`record`], but only when `table` holds row `id` in the workspace: put before a delete
/// in the same batch, so deleting something that is not there logs nothing.
pub fn record_if_exists(
    db: &D1Database,
    workspace_id: &str,
    actor: &str,
    action: &str,
    table: Table,
    id: &str,
    at: Millis,
) -> ApiResult<D1PreparedStatement> {
    let sql = format!(
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, created_at) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM {} WHERE id = ?5 AND workspace_id = ?2)",
        table.name()
    );
    stmt(db, &sql, &[text(&new_id(IdKind::Audit)?), text(workspace_id), text(actor), text(action), text(id), int(at)])
}

/// The tables an audited delete can target (a closed set, so no name is ever spliced in from
/// input).
#[derive(Debug, Clone, Copy)]
pub enum Table {
    ApiKeys,
    Agents,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::ApiKeys => "api_keys",
            Self::Agents => "agents",
        }
    }
}

pub async fn list(db: &D1Database, workspace_id: &str, limit: u32) -> ApiResult<Vec<Entry>> {
    let sql = "SELECT id, actor, action, target, created_at FROM audit_log WHERE workspace_id = ?1 \
               ORDER BY created_at DESC, rowid DESC LIMIT ?2";
    all(stmt(db, sql, &[text(workspace_id), int(i64::from(limit))])?).await
}
