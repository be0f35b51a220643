//! The workspace audit log: who did what to which resource, newest first.

use super::{Db, Stmt};
use serde::Deserialize;

use super::{all, int, opt_text, stmt, text};
use crate::domain::error::ApiResult;
use crate::domain::ids::{new_id, IdKind};
use crate::domain::time::Millis;

#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    pub id: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub target_name: Option<String>,
    pub target_prefix: Option<String>,
    pub created_at: Millis,
    /// JSON, e.g. `{"changes": {"rateLimitPerMinute": {"from": 100, "to": 5}}}`.
    pub details: Option<String>,
}

/// What an entry is about: the id, and a snapshot of what a person recognises it by (a key's
/// name and display prefix, an agent's name), kept after the thing itself is deleted.
pub struct Target<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub prefix: Option<&'a str>,
}

/// A statement to put in the same batch as the change it records, so the log and the data
/// cannot disagree.
pub fn record(
    db: &Db,
    workspace_id: &str,
    actor: &str,
    action: &str,
    target: &Target<'_>,
    at: Millis,
) -> ApiResult<Stmt> {
    let sql =
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, target_name, target_prefix, created_at) \
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    stmt(
        db,
        sql,
        &[
            text(&new_id(IdKind::Audit)?),
            text(workspace_id),
            text(actor),
            text(action),
            text(target.id),
            opt_text(target.name),
            opt_text(target.prefix),
            int(at),
        ],
    )
}

/// Like [`record`], but only when `table` holds row `id` in the workspace, and with the name
/// (and a key's prefix) read from that row: put before a change or delete in the same batch,
/// so deleting something that is not there logs nothing, and the entry names what was there.
/// `new_name` replaces the stored name when the change renames it; `details` (JSON) says what
/// changed.
#[allow(clippy::too_many_arguments)]
pub fn record_if_exists(
    db: &Db,
    workspace_id: &str,
    actor: &str,
    action: &str,
    table: Table,
    id: &str,
    new_name: Option<&str>,
    details: Option<&str>,
    at: Millis,
) -> ApiResult<Stmt> {
    let prefix = match table {
        Table::ApiKeys => "prefix",
        Table::Agents | Table::Insights => "NULL",
    };
    let sql = format!(
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, target_name, target_prefix, created_at, details) \
         SELECT ?1, ?2, ?3, ?4, ?5, COALESCE(?7, name), {prefix}, ?6, ?8 FROM {} WHERE id = ?5 AND workspace_id = ?2",
        table.name()
    );
    let params = [
        text(&new_id(IdKind::Audit)?),
        text(workspace_id),
        text(actor),
        text(action),
        text(id),
        int(at),
        opt_text(new_name),
        opt_text(details),
    ];
    stmt(db, &sql, &params)
}

/// The tables an audited delete can target (a closed set, so no name is ever spliced in from
/// input).
#[derive(Debug, Clone, Copy)]
pub enum Table {
    ApiKeys,
    Agents,
    Insights,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::ApiKeys => "api_keys",
            Self::Agents => "agents",
            Self::Insights => "insights",
        }
    }
}

pub async fn list(db: &Db, workspace_id: &str, limit: u32) -> ApiResult<Vec<Entry>> {
    let sql = "SELECT id, actor, action, target, target_name, target_prefix, created_at, details FROM audit_log WHERE workspace_id = ?1 \
               ORDER BY created_at DESC, rowid DESC LIMIT ?2";
    all(stmt(db, sql, &[text(workspace_id), int(i64::from(limit))])?).await
}
