//! The control plane in D1: the workspace registry (placement, data plane), its admins and
//! admin sign-in by token hash, the index that finds the workspace of a key of the first
//! format, and the deletion of a workspace across D1, its object and its keys' limiters.

use serde::Deserialize;
use worker::Env;

use super::{all, batch, changes, first, int, opt_int, rows, stmt, text, Db, Place};
use crate::domain::data_plane::Init;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::placement::{Locator, Placement, Plane};
use crate::domain::time::Millis;

#[derive(Debug, Clone, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    /// As stored: see `domain::placement::Placement`.
    pub placement: String,
    /// As stored: see `domain::placement::Plane`.
    pub data_plane: String,
}

impl Workspace {
    pub fn placement(&self) -> Placement {
        Placement::from_stored(&self.placement).unwrap_or(Placement::Auto)
    }

    pub fn plane(&self) -> Plane {
        Plane::from_stored(&self.data_plane).unwrap_or(Plane::D1)
    }

    /// Where its data is; the registry vouches for it, so its object may create its database.
    pub fn place(&self) -> Place {
        Place {
            workspace_id: self.id.clone(),
            plane: self.plane(),
            stub: self.placement().stub_options(),
            init: Some(self.init()),
        }
    }

    pub fn init(&self) -> Init {
        Init { id: self.id.clone(), name: self.name.clone(), created_at: self.created_at }
    }

    /// The locator its keys of the second format carry (on the object data plane only).
    pub fn locator(&self) -> Option<Locator> {
        (self.plane() == Plane::Object).then(|| Locator::new(&self.id, self.placement())).flatten()
    }

    /// Its database: its object, or D1 while it has not moved.
    pub fn db(&self, env: &Env) -> ApiResult<Db> {
        super::open(env, &self.place(), ApiError::internal("the workspace's object has no database"))
    }
}

const COLUMNS: &str = "id, name, created_at, placement, data_plane";

pub async fn create(db: &Db, ws: &Workspace) -> ApiResult<()> {
    let insert = "INSERT INTO workspaces (id, name, created_at, placement, data_plane) VALUES (?1, ?2, ?3, ?4, ?5)";
    let params = [text(&ws.id), text(&ws.name), int(ws.created_at), text(&ws.placement), text(&ws.data_plane)];
    super::run(stmt(db, insert, &params)?).await?;
    Ok(())
}

pub async fn list(db: &Db) -> ApiResult<Vec<Workspace>> {
    all(stmt(db, &format!("SELECT {COLUMNS} FROM workspaces ORDER BY created_at DESC, id"), &[])?).await
}

pub async fn get(db: &Db, id: &str) -> ApiResult<Option<Workspace>> {
    first(stmt(db, &format!("SELECT {COLUMNS} FROM workspaces WHERE id = ?1"), &[text(id)])?).await
}

pub async fn exists(db: &Db, id: &str) -> ApiResult<bool> {
    Ok(get(db, id).await?.is_some())
}

/// Sets a workspace's data plane, if it is on `from`; whether it was.
pub async fn set_plane(db: &Db, id: &str, from: Plane, to: Plane) -> ApiResult<bool> {
    let sql = "UPDATE workspaces SET data_plane = ?3 WHERE id = ?1 AND data_plane = ?2";
    let result = super::run(stmt(db, sql, &[text(id), text(from.stored()), text(to.stored())])?).await?;
    Ok(changes(&result)? > 0)
}

/// Removes the workspace from the registry (and, by cascade, its admins, its index entries
/// and, while it is on D1, its data), so nothing can reach it from this moment; in the same
/// transaction, records what is left to clean up: its object and its keys' limiters (the
/// hashes of its keys in D1 and `object_hashes`, those its object held). `None` if there was
/// no such workspace.
pub async fn delete(db: &Db, id: &str, object_hashes: &[String], at: Millis) -> ApiResult<Option<Workspace>> {
    let hashes = serde_json::to_string(object_hashes).map_err(ApiError::internal)?;
    let keep = "INSERT OR REPLACE INTO workspace_leftovers (workspace_id, placement, key_hashes, deleted_at) \
                SELECT id, placement, (SELECT json_group_array(h) FROM (SELECT key_hash AS h FROM api_keys \
                WHERE workspace_id = ?1 UNION SELECT value AS h FROM json_each(?2))), ?3 FROM workspaces WHERE id = ?1";
    let results = batch(
        db,
        vec![
            stmt(db, &format!("SELECT {COLUMNS} FROM workspaces WHERE id = ?1"), &[text(id)])?,
            stmt(db, keep, &[text(id), text(&hashes), int(at)])?,
            stmt(db, "DELETE FROM workspaces WHERE id = ?1", &[text(id)])?,
        ],
    )
    .await?;
    let [row, _, deleted] = results.as_slice() else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    if changes(deleted)? == 0 {
        return Ok(None);
    }
    Ok(rows::<Workspace>(row)?.into_iter().next())
}

/// What is left to clean up of a deleted workspace (its object, its keys' limiters), kept
/// until it is done so a later delete of the same id can finish it.
#[derive(Debug, Clone, Deserialize)]
pub struct Leftover {
    pub placement: String,
    /// JSON array of key hashes.
    pub key_hashes: String,
}

impl Leftover {
    pub fn hashes(&self) -> Vec<String> {
        serde_json::from_str(&self.key_hashes).unwrap_or_default()
    }
}

pub async fn leftover(db: &Db, id: &str) -> ApiResult<Option<Leftover>> {
    first(stmt(db, "SELECT placement, key_hashes FROM workspace_leftovers WHERE workspace_id = ?1", &[text(id)])?).await
}

pub async fn drop_leftover(db: &Db, id: &str) -> ApiResult<()> {
    super::run(stmt(db, "DELETE FROM workspace_leftovers WHERE workspace_id = ?1", &[text(id)])?).await.map(|_| ())
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
pub async fn create_admin(db: &Db, a: &NewAdminRow<'_>) -> ApiResult<bool> {
    let sql = "INSERT INTO workspace_admins (id, workspace_id, name, email, token_hash, created_at) \
               SELECT ?1, id, ?3, ?4, ?5, ?6 FROM workspaces WHERE id = ?2";
    let params = [text(a.id), text(a.workspace_id), text(a.name), text(a.email), text(a.token_hash), int(a.created_at)];
    let result = super::run(stmt(db, sql, &params)?).await?;
    Ok(changes(&result)? > 0)
}

pub async fn delete_admin(db: &Db, workspace_id: &str, admin_id: &str) -> ApiResult<bool> {
    let sql = "DELETE FROM workspace_admins WHERE id = ?1 AND workspace_id = ?2";
    let result = super::run(stmt(db, sql, &[text(admin_id), text(workspace_id)])?).await?;
    Ok(changes(&result)? > 0)
}

/// A signed-in workspace admin, with the registry row of the workspace (read in the same
/// statement), which says where its data is.
#[derive(Debug, Clone)]
pub struct Admin {
    pub id: String,
    pub workspace_id: String,
    pub name: String,
    pub workspace: Workspace,
}

#[derive(Deserialize)]
struct AdminRow {
    id: String,
    name: String,
    workspace_id: String,
    workspace_name: String,
    created_at: Millis,
    placement: String,
    data_plane: String,
}

impl Admin {
    /// The workspace's database.
    pub fn db(&self, env: &Env) -> ApiResult<Db> {
        self.workspace.db(env)
    }
}

pub async fn admin_by_token_hash(db: &Db, hash: &str) -> ApiResult<Option<Admin>> {
    let sql = "SELECT a.id, a.name, a.workspace_id, w.name AS workspace_name, w.created_at, w.placement, w.data_plane \
               FROM workspace_admins a JOIN workspaces w ON w.id = a.workspace_id WHERE a.token_hash = ?1";
    let row: Option<AdminRow> = first(stmt(db, sql, &[text(hash)])?).await?;
    Ok(row.map(|r| Admin {
        id: r.id,
        name: r.name,
        workspace: Workspace {
            id: r.workspace_id.clone(),
            name: r.workspace_name,
            created_at: r.created_at,
            placement: r.placement,
            data_plane: r.data_plane,
        },
        workspace_id: r.workspace_id,
    }))
}

/// The workspace of a key of the first format, by its hash (the one D1 lookup such keys cost).
pub async fn by_key_hash(db: &Db, hash: &str) -> ApiResult<Option<Workspace>> {
    let sql = "SELECT w.id, w.name, w.created_at, w.placement, w.data_plane FROM api_key_index i \
               JOIN workspaces w ON w.id = i.workspace_id WHERE i.key_hash = ?1";
    first(stmt(db, sql, &[text(hash)])?).await
}

/// Records a key of the first format in the index (a workspace still on D1 mints those), in
/// the batch that inserts it (and only if it was).
pub fn index_key(db: &Db, hash: &str, workspace_id: &str) -> ApiResult<super::Stmt> {
    let sql = "INSERT OR IGNORE INTO api_key_index (key_hash, workspace_id) \
               SELECT key_hash, workspace_id FROM api_keys WHERE key_hash = ?1 AND workspace_id = ?2";
    stmt(db, sql, &[text(hash), text(workspace_id)])
}

pub async fn unindex_key(db: &Db, hash: &str) -> ApiResult<()> {
    super::run(stmt(db, "DELETE FROM api_key_index WHERE key_hash = ?1", &[text(hash)])?).await.map(|_| ())
}

/// Lowers the time the Cron Trigger next looks at the workspace's insights to `at`.
pub async fn insights_due(db: &Db, id: &str, at: Millis) -> ApiResult<()> {
    let sql = "UPDATE workspaces SET insights_due_at = MIN(COALESCE(insights_due_at, ?2), ?2) WHERE id = ?1 \
               AND data_plane = 'object'";
    super::run(stmt(db, sql, &[text(id), int(at)])?).await.map(|_| ())
}

/// Workspaces on their own object with insights that may be due at `now`, soonest first.
pub async fn with_insights_due(db: &Db, now: Millis, limit: u32) -> ApiResult<Vec<(Workspace, Millis)>> {
    let sql = format!(
        "SELECT {COLUMNS}, insights_due_at AS extra FROM workspaces WHERE insights_due_at <= ?1 \
         AND data_plane = 'object' ORDER BY insights_due_at LIMIT ?2"
    );
    with_extra(db, &sql, now, limit).await
}

/// Registry rows with one more number (`extra`), for the Cron Trigger's lists.
async fn with_extra(db: &Db, sql: &str, now: Millis, limit: u32) -> ApiResult<Vec<(Workspace, i64)>> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        name: String,
        created_at: Millis,
        placement: String,
        data_plane: String,
        extra: i64,
    }
    let list: Vec<Row> = all(stmt(db, sql, &[int(now), int(i64::from(limit))])?).await?;
    Ok(list
        .into_iter()
        .map(|r| {
            let ws = Workspace {
                id: r.id,
                name: r.name,
                created_at: r.created_at,
                placement: r.placement,
                data_plane: r.data_plane,
            };
            (ws, r.extra)
        })
        .collect())
}

/// After a scheduled run: the workspace's next due time (`None`: no insight), unless someone
/// lowered it since `seen` (then theirs stands).
pub async fn reset_insights_due(db: &Db, id: &str, seen: Millis, next: Option<Millis>) -> ApiResult<()> {
    let sql = "UPDATE workspaces SET insights_due_at = ?3 WHERE id = ?1 AND insights_due_at = ?2";
    super::run(stmt(db, sql, &[text(id), int(seen), opt_int(next)])?).await.map(|_| ())
}

/// One trivial query, for the health check.
pub async fn ping(db: &Db) -> ApiResult<()> {
    batch(db, vec![stmt(db, "SELECT 1", &[])?]).await.map(|_| ())
}

/// A workspace's own settings, as `GET /api/settings/workspace` shows them.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub id: String,
    pub name: String,
    pub created_at: Millis,
    pub chat_retention_days: Option<i64>,
}

pub async fn settings(db: &Db, id: &str) -> ApiResult<Option<Settings>> {
    let sql = "SELECT id, name, created_at, chat_retention_days FROM workspaces WHERE id = ?1";
    first(stmt(db, sql, &[text(id)])?).await
}

/// Writes what the patch sets; a retention set makes the workspace due for a sweep at once.
pub async fn update_settings(
    db: &Db,
    id: &str,
    name: Option<&str>,
    retention: Option<Option<i64>>,
    now: Millis,
) -> ApiResult<()> {
    let mut statements = Vec::new();
    if let Some(name) = name {
        statements.push(stmt(db, "UPDATE workspaces SET name = ?2 WHERE id = ?1", &[text(id), text(name)])?);
    }
    if let Some(days) = retention {
        let due = days.map(|_| now);
        let sql = "UPDATE workspaces SET chat_retention_days = ?2, retention_due_at = ?3 WHERE id = ?1";
        statements.push(stmt(db, sql, &[text(id), opt_int(days), opt_int(due)])?);
    }
    batch(db, statements).await.map(|_| ())
}

/// Workspaces whose chats may be past their retention at `now`, soonest due first, with it.
pub async fn with_retention_due(db: &Db, now: Millis, limit: u32) -> ApiResult<Vec<(Workspace, i64)>> {
    let sql = format!(
        "SELECT {COLUMNS}, chat_retention_days AS extra FROM workspaces WHERE retention_due_at <= ?1 \
         AND chat_retention_days IS NOT NULL AND data_plane <> 'moving' ORDER BY retention_due_at LIMIT ?2"
    );
    with_extra(db, &sql, now, limit).await
}

/// When the Cron Trigger next sweeps the workspace's chats.
pub async fn retention_due(db: &Db, id: &str, at: Millis) -> ApiResult<()> {
    let sql = "UPDATE workspaces SET retention_due_at = ?2 WHERE id = ?1 AND chat_retention_days IS NOT NULL";
    super::run(stmt(db, sql, &[text(id), int(at)])?).await.map(|_| ())
}

/// Points the keys of a restored backup at the workspace they were restored into (replacing
/// what the index said: a key answers in one workspace).
pub async fn index_restored_keys(db: &Db, workspace_id: &str, hashes: &[String]) -> ApiResult<()> {
    for chunk in hashes.chunks(50) {
        let statements = chunk
            .iter()
            .map(|h| {
                stmt(
                    db,
                    "INSERT OR REPLACE INTO api_key_index (key_hash, workspace_id) VALUES (?1, ?2)",
                    &[text(h), text(workspace_id)],
                )
            })
            .collect::<ApiResult<Vec<_>>>()?;
        batch(db, statements).await?;
    }
    Ok(())
}
