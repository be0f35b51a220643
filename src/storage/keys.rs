//! API keys: stored as SHA-256 and a display prefix, never the key itself.

use super::Db;
use serde::Deserialize;

use worker::Env;

use super::audit::{self, Table};
use super::{all, batch, changes, first, int, opt_int, opt_text, rows, stmt, text, workspaces, Place};
use crate::domain::error::{ApiError, ApiResult, INVALID_KEY};
use crate::domain::placement::{Locator, Plane};
use crate::domain::scope::Scope;
use crate::domain::settings::{KeyPatch, KeySettings};
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
    /// JSON array of agent ids, or `NULL` for all agents (see [`Scope`]).
    pub allowed_agent_ids: Option<String>,
    pub rolled_from: Option<String>,
    pub rolled_to: Option<String>,
}

impl ApiKey {
    pub fn scope(&self) -> Scope {
        Scope::from_stored(self.allowed_agent_ids.as_deref())
    }

    pub fn settings(&self) -> KeySettings {
        KeySettings {
            name: self.name.clone(),
            rate_limit_per_minute: self.rate_limit_per_minute,
            expires_at: self.expires_at,
            scope: self.scope(),
        }
    }
}

const COLUMNS: &str =
    "id, name, prefix, created_by_name, created_at, expires_at, rate_limit_per_minute, allowed_agent_ids, rolled_from, rolled_to";

pub struct NewKeyRow<'a> {
    pub key: &'a ApiKey,
    pub workspace_id: &'a str,
    pub key_hash: &'a str,
    pub admin_id: &'a str,
    /// The key is of the first format (its workspace is still on D1): the index records it in
    /// the same transaction.
    pub indexed: bool,
}

/// A new key's row, `?1`–`?12` (see [`params`]); a create inserts it as it is, a roll only
/// under a condition.
const INSERT_INTO: &str = "INSERT INTO api_keys (id, workspace_id, name, prefix, key_hash, created_by_admin_id, \
     created_by_name, created_at, expires_at, rate_limit_per_minute, allowed_agent_ids, rolled_from) \
     SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12";

/// `?1`–`?12` of a key's insert, in the column order of [`INSERT_INTO`].
fn params(row: &NewKeyRow<'_>) -> [super::Param; 12] {
    let k = row.key;
    [
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
        opt_text(k.allowed_agent_ids.as_deref()),
        opt_text(k.rolled_from.as_deref()),
    ]
}

fn insert(db: &Db, row: &NewKeyRow<'_>) -> ApiResult<super::Stmt> {
    stmt(db, INSERT_INTO, &params(row))
}

/// Inserts the key and its audit entry in one transaction.
pub async fn create(db: &Db, row: &NewKeyRow<'_>) -> ApiResult<()> {
    let k = row.key;
    let target = audit::Target { id: &k.id, name: Some(&k.name), prefix: Some(&k.prefix) };
    let log = audit::record(db, row.workspace_id, &k.created_by_name, "api_key.created", &target, k.created_at)?;
    let mut statements = vec![insert(db, row)?, log];
    if row.indexed {
        statements.push(workspaces::index_key(db, row.key_hash, row.workspace_id)?);
    }
    batch(db, statements).await?;
    Ok(())
}

pub async fn list(db: &Db, workspace_id: &str) -> ApiResult<Vec<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE workspace_id = ?1 ORDER BY created_at DESC, id DESC");
    all(stmt(db, &sql, &[text(workspace_id)])?).await
}

pub async fn get(db: &Db, workspace_id: &str, key_id: &str) -> ApiResult<Option<ApiKey>> {
    let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1 AND workspace_id = ?2");
    first(stmt(db, &sql, &[text(key_id), text(workspace_id)])?).await
}

/// Writes a key's new settings and the audit entry saying what changed, in one transaction;
/// returns the key as it now is, or `None` if it is gone.
/// Only the fields the patch sets are written, so a concurrent roll (which sets the old key's
/// expiry) or another edit of other fields is never undone by values read before it; and the
/// expiry of a key that has expired, or was rolled meanwhile, is never moved later (the
/// handler refuses that with 409; this guard covers a roll that lands between its read and
/// this write).
pub async fn update(
    db: &Db,
    workspace_id: &str,
    key_id: &str,
    patch: &KeyPatch,
    details: &str,
    actor: &str,
    at: Millis,
) -> ApiResult<Option<ApiKey>> {
    let log = audit::record_if_exists(
        db,
        workspace_id,
        actor,
        "api_key.updated",
        Table::ApiKeys,
        key_id,
        patch.name.as_deref(),
        Some(details),
        at,
    )?;
    let given = |set: bool| int(i64::from(set));
    let update = stmt(
        db,
        "UPDATE api_keys SET name = COALESCE(?3, name), \
         rate_limit_per_minute = CASE WHEN ?4 = 1 THEN ?5 ELSE rate_limit_per_minute END, \
         expires_at = CASE WHEN ?6 = 1 AND (expires_at IS NULL OR expires_at > ?10) \
         AND (rolled_to IS NULL OR (?7 IS NOT NULL AND ?7 <= expires_at)) THEN ?7 ELSE expires_at END, \
         allowed_agent_ids = CASE WHEN ?8 = 1 THEN ?9 ELSE allowed_agent_ids END \
         WHERE id = ?1 AND workspace_id = ?2",
        &[
            text(key_id),
            text(workspace_id),
            opt_text(patch.name.as_deref()),
            given(patch.rate_limit_per_minute.is_some()),
            opt_int(patch.rate_limit_per_minute.flatten()),
            given(patch.expires_at.is_some()),
            opt_int(patch.expires_at.flatten()),
            given(patch.scope.is_some()),
            opt_text(patch.scope.as_ref().and_then(Scope::to_stored).as_deref()),
            int(at),
        ],
    )?;
    let select = stmt(
        db,
        &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1 AND workspace_id = ?2"),
        &[text(key_id), text(workspace_id)],
    )?;
    let results = batch(db, vec![log, update, select]).await?;
    match results.get(2) {
        Some(r) => Ok(rows::<ApiKey>(r)?.into_iter().next()),
        None => Ok(None),
    }
}

/// A roll, in one transaction: the successor is inserted, the old key linked to it and given
/// its last moment, and the roll logged, only if the old key is still live and not rolled yet
/// at that moment (two concurrent rolls: one wins). Returns whether it happened.
pub async fn roll(db: &Db, row: &NewKeyRow<'_>, old_expires_at: Millis, details: &str) -> ApiResult<bool> {
    let k = row.key;
    // The insert runs first and only if the old key (`rolled_from`, ?12) can be rolled; the
    // rest then follow it.
    let insert = format!(
        "{INSERT_INTO} WHERE EXISTS (SELECT 1 FROM api_keys o \
         WHERE o.id = ?12 AND o.workspace_id = ?2 AND (o.expires_at IS NULL OR o.expires_at > ?8) \
         AND (o.rolled_to IS NULL OR NOT EXISTS (SELECT 1 FROM api_keys s WHERE s.id = o.rolled_to)))"
    );
    let old_id = k.rolled_from.as_deref().ok_or_else(|| ApiError::internal("a successor names the key it rolls"))?;
    let link = stmt(
        db,
        "UPDATE api_keys SET rolled_to = ?1, expires_at = ?3 WHERE id = ?2 AND workspace_id = ?4 \
         AND EXISTS (SELECT 1 FROM api_keys WHERE id = ?1 AND rolled_from = ?2)",
        &[text(&k.id), text(old_id), int(old_expires_at), text(row.workspace_id)],
    )?;
    let log = audit::record_if_exists(
        db,
        row.workspace_id,
        &k.created_by_name,
        "api_key.rolled",
        Table::ApiKeys,
        &k.id,
        None,
        Some(details),
        k.created_at,
    )?;
    let mut statements = vec![stmt(db, &insert, &params(row))?, link, log];
    if row.indexed {
        statements.push(workspaces::index_key(db, row.key_hash, row.workspace_id)?);
    }
    let results = batch(db, statements).await?;
    match results.first() {
        Some(r) => Ok(changes(r)? > 0),
        None => Ok(false),
    }
}

#[derive(Deserialize)]
struct Hash {
    key_hash: String,
}

/// Deletes a key of this workspace (and logs it, in the same transaction). Returns the deleted
/// key's hash, so its rate-limiter state can be dropped, or `None` if there was no such key.
/// The key is gone from D1 when this returns, and D1 is what every request checks.
pub async fn delete(db: &Db, workspace_id: &str, key_id: &str, actor: &str, at: Millis) -> ApiResult<Option<String>> {
    let log =
        audit::record_if_exists(db, workspace_id, actor, "api_key.deleted", Table::ApiKeys, key_id, None, None, at)?;
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
    pub allowed_agent_ids: Option<String>,
}

impl KeyAuth {
    pub fn scope(&self) -> Scope {
        Scope::from_stored(self.allowed_agent_ids.as_deref())
    }
}

pub const AUTH_SQL: &str =
    "SELECT id, workspace_id, expires_at, rate_limit_per_minute, allowed_agent_ids FROM api_keys WHERE key_hash = ?1";

pub async fn by_hash(db: &Db, hash: &str) -> ApiResult<Option<KeyAuth>> {
    first(stmt(db, AUTH_SQL, &[text(hash)])?).await
}

/// A key's workspace database, found before the key itself is checked there.
pub struct Located {
    pub db: Db,
    /// The locator new embed tokens of this key carry (its workspace is on its own object).
    pub locator: Option<Locator>,
    /// Whether D1 was asked (a key of the first format), and how long it took: for
    /// `Server-Timing`.
    pub via_index: bool,
    pub index_ms: u64,
}

/// Where the workspace of a key is: its locator says (keys of the second format: no D1 at
/// all), or the index does (the first format: one D1 lookup). The key itself is checked in
/// that database; a workspace that is gone, or a locator nobody issued, reads as an unknown
/// key (401), and a workspace being moved as 503.
pub async fn locate(env: &Env, locator: Option<&Locator>, hash: &str) -> ApiResult<Located> {
    let unknown = ApiError::Unauthorized(INVALID_KEY);
    if let Some(loc) = locator {
        let place = Place {
            workspace_id: loc.workspace_id.clone(),
            plane: Plane::Object,
            stub: loc.stub_options(),
            init: None,
        };
        let db = super::open_located(env, &place, unknown, hash)?;
        return Ok(Located { db, locator: Some(loc.clone()), via_index: false, index_ms: 0 });
    }
    let control = super::control(env)?;
    let started = worker::Date::now().as_millis();
    let ws = workspaces::by_key_hash(&control, hash).await?.ok_or_else(|| unknown.clone())?;
    let index_ms = worker::Date::now().as_millis().saturating_sub(started);
    Ok(Located { db: super::open(env, &ws.place(), unknown)?, locator: ws.locator(), via_index: true, index_ms })
}

/// Every key hash of the workspace (for dropping their limiters when it is deleted).
pub async fn hashes(db: &Db) -> ApiResult<Vec<String>> {
    #[derive(Deserialize)]
    struct H {
        key_hash: String,
    }
    let list: Vec<H> = all(stmt(db, "SELECT key_hash FROM api_keys", &[])?).await?;
    Ok(list.into_iter().map(|h| h.key_hash).collect())
}
