//! A workspace's data over its life, in its own database: the export's paged reads and the
//! import's writes (both built from `domain::lifecycle::SECTIONS`), the import's claim and
//! undo, and the deletion of chats past their retention or of one viewer.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{all, batch, changes, int, rows, stmt, text, Db, Stmt};
use crate::domain::error::ApiResult;
use crate::domain::ids::{new_id, IdKind};
use crate::domain::lifecycle::{Row, Scope, Section, DELETE_BATCH, EXPORT_PAGE, UNUSABLE_HASH};
use crate::domain::time::Millis;

/// One page of a section's rows after `after` (a rowid), oldest first, each with its rowid
/// (`_r`) and its fields named as the export names them. Messages are read only for chats up
/// to `chats_upto` (the last chat the export wrote), so no message comes without its chat.
pub async fn page(
    db: &Db,
    workspace_id: &str,
    section: &Section,
    after: i64,
    chats_upto: i64,
    with_hashes: bool,
) -> ApiResult<Vec<(i64, Map<String, Value>)>> {
    let columns: Vec<String> =
        section.exported(with_hashes).map(|f| format!("t.{} AS \"{}\"", f.column, f.name)).collect();
    let columns = columns.join(", ");
    // The unary `+` keeps SQLite from reading the page through an index on the workspace (or
    // the chat) and sorting all its rows by rowid for every page: it walks the rowids from
    // `after` instead, so each page costs its own rows, and the whole export one pass.
    let sql = match section.scope {
        Scope::Workspace => format!(
            "SELECT t.rowid AS _r, {columns} FROM {} t WHERE +t.workspace_id = ?1 AND t.rowid > ?2 \
             ORDER BY t.rowid LIMIT ?3",
            section.table
        ),
        Scope::Chats => format!(
            "SELECT t.rowid AS _r, {columns} FROM {} t WHERE t.rowid > ?2 \
             AND +t.chat_id IN (SELECT id FROM chats WHERE workspace_id = ?1 AND rowid <= ?4) \
             ORDER BY t.rowid LIMIT ?3",
            section.table
        ),
    };
    let params = [text(workspace_id), int(after), int(EXPORT_PAGE), int(chats_upto)];
    let params = if section.scope == Scope::Chats { &params[..] } else { &params[..3] };
    let list: Vec<Map<String, Value>> = all(stmt(db, &sql, params)?).await?;
    Ok(list
        .into_iter()
        .map(|mut row| {
            let rowid = row.remove("_r").and_then(|v| v.as_f64()).unwrap_or_default() as i64;
            (rowid, row)
        })
        .collect())
}

/// Whether the workspace holds any data at all, in one statement.
const HOLDS_DATA: &str = "EXISTS (SELECT 1 FROM agents WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM api_keys WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM knowledge_records WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM chats WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM insights WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM usage_daily WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM audit_log WHERE workspace_id = ?1) \
    OR EXISTS (SELECT 1 FROM imports WHERE workspace_id = ?1)";

/// What claiming a workspace for an import found.
pub enum Claim {
    /// It was empty and is now claimed: go ahead.
    Started,
    /// It holds what an earlier import wrote: that import's body hash and counts.
    Imported {
        fingerprint: String,
        counts: Value,
    },
    NotEmpty,
}

/// Claims an empty workspace for an import, in one transaction with the check that it is
/// empty, so two imports cannot both start.
pub async fn claim(db: &Db, workspace_id: &str, now: Millis) -> ApiResult<Claim> {
    #[derive(Deserialize)]
    struct Done {
        fingerprint: Option<String>,
        counts: Option<String>,
    }
    let insert = format!("INSERT INTO imports (workspace_id, started_at) SELECT ?1, ?2 WHERE NOT ({HOLDS_DATA})");
    let results = batch(
        db,
        vec![
            stmt(db, &insert, &[text(workspace_id), int(now)])?,
            stmt(db, "SELECT fingerprint, counts FROM imports WHERE workspace_id = ?1", &[text(workspace_id)])?,
        ],
    )
    .await?;
    if results.first().map(changes).transpose()?.unwrap_or(0) > 0 {
        return Ok(Claim::Started);
    }
    let done = match results.get(1) {
        Some(r) => rows::<Done>(r)?.into_iter().next(),
        None => None,
    };
    Ok(match done {
        Some(Done { fingerprint: Some(fingerprint), counts }) => Claim::Imported {
            fingerprint,
            counts: counts.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or(Value::Null),
        },
        _ => Claim::NotEmpty,
    })
}

/// The insert of one imported row, into the workspace's own rows.
fn insert(db: &Db, workspace_id: &str, row: &Row) -> ApiResult<Stmt> {
    let mut columns: Vec<&str> = Vec::with_capacity(row.values.len() + 2);
    let mut values: Vec<String> = Vec::with_capacity(row.values.len() + 2);
    if row.section.scope == Scope::Workspace {
        columns.push("workspace_id");
        values.push("?1".into());
    }
    if row.section.table == "knowledge_records" {
        // The full-text index's workspace token, as the records API writes it.
        columns.push("ws_token");
        values.push("replace(?1, '_', '')".into());
    }
    let mut params = vec![text(workspace_id)];
    for (column, value) in &row.values {
        columns.push(column);
        params.push(value.clone());
        values.push(format!("?{}", params.len()));
    }
    let sql = format!("INSERT INTO {} ({}) VALUES ({})", row.section.table, columns.join(", "), values.join(", "));
    stmt(db, &sql, &params)
}

/// Writes imported rows in one transaction, in the order given.
pub async fn write(db: &Db, workspace_id: &str, rows: &[Row]) -> ApiResult<()> {
    let statements = rows.iter().map(|r| insert(db, workspace_id, r)).collect::<ApiResult<Vec<_>>>()?;
    batch(db, statements).await.map(|_| ())
}

/// Marks the import finished with its body's hash and counts.
pub async fn finish(db: &Db, workspace_id: &str, fingerprint: &str, counts: &Value, now: Millis) -> ApiResult<()> {
    let sql = "UPDATE imports SET fingerprint = ?2, counts = ?3, finished_at = ?4 WHERE workspace_id = ?1";
    super::run(stmt(db, sql, &[text(workspace_id), text(fingerprint), text(&counts.to_string()), int(now)])?)
        .await
        .map(|_| ())
}

/// Undoes a failed import: everything of the workspace goes, and its claim (it was empty
/// before, so this is exactly what the import wrote).
pub async fn undo(db: &Db, workspace_id: &str) -> ApiResult<()> {
    let mut statements = vec![stmt(
        db,
        "DELETE FROM messages WHERE chat_id IN (SELECT id FROM chats WHERE workspace_id = ?1)",
        &[text(workspace_id)],
    )?];
    for table in ["chats", "knowledge_records", "insights", "usage_daily", "audit_log", "api_keys", "agents", "imports"]
    {
        statements.push(stmt(db, &format!("DELETE FROM {table} WHERE workspace_id = ?1"), &[text(workspace_id)])?);
    }
    batch(db, statements).await.map(|_| ())
}

/// The hashes of the workspace's keys that can authenticate (not those imported without one).
pub async fn restored_key_hashes(db: &Db) -> ApiResult<Vec<String>> {
    #[derive(Deserialize)]
    struct Key {
        key_hash: String,
    }
    let sql = "SELECT key_hash FROM api_keys WHERE key_hash NOT LIKE ?1";
    let keys: Vec<Key> = all(stmt(db, sql, &[text(&format!("{UNUSABLE_HASH}%"))])?).await?;
    Ok(keys.into_iter().map(|k| k.key_hash).collect())
}

/// Renames the workspace in its own database (the registry is renamed by the caller).
pub async fn rename(db: &Db, workspace_id: &str, name: &str) -> ApiResult<()> {
    super::run(stmt(db, "UPDATE workspaces SET name = ?2 WHERE id = ?1", &[text(workspace_id), text(name)])?)
        .await
        .map(|_| ())
}

/// Chats past a retention: none of their messages is as recent as the cutoff (`?2`).
const EXPIRED: &str = "workspace_id = ?1 AND updated_at < ?2 \
    AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.chat_id = chats.id AND m.created_at >= ?2)";

/// Deletes up to [`DELETE_BATCH`] chats past the retention of `days` (with their messages),
/// with an audit entry counting them in the same transaction; returns how many went.
pub async fn expire(db: &Db, workspace_id: &str, days: i64, cutoff: Millis, at: Millis) -> ApiResult<u64> {
    let chosen = format!("SELECT id FROM chats WHERE {EXPIRED} ORDER BY updated_at, id LIMIT ?3");
    let log = format!(
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, created_at, details) \
         SELECT ?4, ?1, 'retention', 'chats.expired', ?1, ?5, json_object('deletedChats', n, 'chatRetentionDays', CAST(?6 AS INTEGER)) \
         FROM (SELECT COUNT(*) AS n FROM ({chosen})) WHERE n > 0"
    );
    let p = [text(workspace_id), int(cutoff), int(DELETE_BATCH), text(&new_id(IdKind::Audit)?), int(at), int(days)];
    let results = batch(
        db,
        vec![
            stmt(db, &log, &p)?,
            stmt(db, &format!("DELETE FROM messages WHERE chat_id IN ({chosen})"), &p[..3])?,
            stmt(db, &format!("DELETE FROM chats WHERE id IN ({chosen})"), &p[..3])?,
        ],
    )
    .await?;
    results.get(2).map_or(Ok(0), changes)
}

/// One viewer's chats: the ids of a batch, and the hashes of the keys whose embed tokens made
/// them (their limiters keep the chats' idempotency results).
pub struct Erased {
    pub chat_ids: Vec<String>,
    pub key_hashes: Vec<String>,
}

/// Deletes up to [`DELETE_BATCH`] chats made under the viewer label `user` (with their
/// messages).
pub async fn erase(db: &Db, workspace_id: &str, user: &str) -> ApiResult<Erased> {
    #[derive(Deserialize)]
    struct Chat {
        id: String,
    }
    #[derive(Deserialize)]
    struct Key {
        key_hash: String,
    }
    let chosen = "SELECT id FROM chats WHERE workspace_id = ?1 AND embed_user = ?2 ORDER BY id LIMIT ?3";
    let keys = format!(
        "SELECT DISTINCT k.key_hash FROM api_keys k WHERE k.id IN (SELECT embed_key_id FROM chats WHERE id IN ({chosen}))"
    );
    let p = [text(workspace_id), text(user), int(DELETE_BATCH)];
    let results = batch(
        db,
        vec![
            stmt(db, &keys, &p)?,
            stmt(db, &format!("DELETE FROM messages WHERE chat_id IN ({chosen})"), &p)?,
            stmt(db, &format!("DELETE FROM chats WHERE id IN ({chosen}) RETURNING id"), &p)?,
        ],
    )
    .await?;
    let key_hashes = match results.first() {
        Some(r) => rows::<Key>(r)?.into_iter().map(|k| k.key_hash).collect(),
        None => Vec::new(),
    };
    let chat_ids = match results.get(2) {
        Some(r) => rows::<Chat>(r)?.into_iter().map(|c| c.id).collect(),
        None => Vec::new(),
    };
    Ok(Erased { chat_ids, key_hashes })
}

/// An audit entry about the workspace itself (its settings, an erasure), with `details`.
pub async fn audit(
    db: &Db,
    workspace_id: &str,
    actor: &str,
    action: &str,
    details: &Value,
    at: Millis,
) -> ApiResult<()> {
    let sql = "INSERT INTO audit_log (id, workspace_id, actor, action, target, created_at, details) \
               VALUES (?1, ?2, ?3, ?4, ?2, ?5, ?6)";
    let p = [
        text(&new_id(IdKind::Audit)?),
        text(workspace_id),
        text(actor),
        text(action),
        int(at),
        text(&details.to_string()),
    ];
    super::run(stmt(db, sql, &p)?).await.map(|_| ())
}
