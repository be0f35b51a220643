//! Insights in D1: the saved questions, their last good answer, and the lease that keeps two
//! generations of one insight from running at once.

use super::Db;
use serde::Deserialize;

use super::audit::{self, Table};
use super::{all, batch, changes, first, int, keys, opt_int, opt_text, rows, stmt, text};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::insight::{Insight, InsightPatch, MAX_PER_WORKSPACE};
use crate::domain::time::Millis;
use crate::domain::usage::Counters;

const COLUMNS: &str = "id, name, prompt, agent_id, refresh_seconds, answer, sources, etag, model, generated_at, \
     next_refresh_at, failures, outdated, last_error_code, last_error_at, prompt_tokens, completion_tokens, \
     created_at, updated_at";

#[derive(Debug, Clone, Deserialize)]
struct Row {
    id: String,
    name: String,
    prompt: String,
    agent_id: Option<String>,
    refresh_seconds: i64,
    answer: Option<String>,
    sources: Option<String>,
    etag: Option<String>,
    model: Option<String>,
    generated_at: Option<Millis>,
    next_refresh_at: Millis,
    failures: i64,
    outdated: i64,
    last_error_code: Option<String>,
    last_error_at: Option<Millis>,
    prompt_tokens: Option<i64>,
    completion_tokens: Option<i64>,
    created_at: Millis,
    updated_at: Millis,
    #[serde(default)]
    workspace_id: Option<String>,
}

impl Row {
    fn into_insight(self) -> Insight {
        Insight {
            id: self.id,
            name: self.name,
            prompt: self.prompt,
            agent_id: self.agent_id,
            refresh_seconds: self.refresh_seconds,
            answer: self.answer,
            sources: self.sources,
            etag: self.etag,
            model: self.model,
            generated_at: self.generated_at,
            next_refresh_at: self.next_refresh_at,
            failures: self.failures,
            outdated: self.outdated != 0,
            last_error_code: self.last_error_code,
            last_error_at: self.last_error_at,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

fn one(list: Vec<Row>) -> Option<Insight> {
    list.into_iter().next().map(Row::into_insight)
}

/// Creates an insight held by its creator's first generation until `lease_until`, audited in
/// the same transaction; `false` when the workspace already has [`MAX_PER_WORKSPACE`] (the
/// count is taken inside the insert, so concurrent creates cannot pass it).
pub async fn create(db: &Db, workspace_id: &str, i: &Insight, actor: &str, lease_until: Millis) -> ApiResult<bool> {
    let sql = "INSERT INTO insights (id, workspace_id, name, prompt, agent_id, refresh_seconds, next_refresh_at, \
               lease_until, created_at, updated_at) \
               SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9 \
               WHERE (SELECT COUNT(*) FROM insights WHERE workspace_id = ?2) < ?10";
    let params = [
        text(&i.id),
        text(workspace_id),
        text(&i.name),
        text(&i.prompt),
        opt_text(i.agent_id.as_deref()),
        int(i.refresh_seconds),
        int(i.next_refresh_at),
        int(lease_until),
        int(i.created_at),
        int(MAX_PER_WORKSPACE),
    ];
    let log = audit::record_if_exists(
        db,
        workspace_id,
        actor,
        "insight.created",
        Table::Insights,
        &i.id,
        None,
        None,
        i.created_at,
    )?;
    let results = batch(db, vec![stmt(db, sql, &params)?, log]).await?;
    match results.first() {
        Some(r) => Ok(changes(r)? > 0),
        None => Ok(false),
    }
}

pub async fn count(db: &Db, workspace_id: &str) -> ApiResult<i64> {
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let n: Option<N> =
        first(stmt(db, "SELECT COUNT(*) AS n FROM insights WHERE workspace_id = ?1", &[text(workspace_id)])?).await?;
    Ok(n.map_or(0, |n| n.n))
}

pub async fn list(db: &Db, workspace_id: &str) -> ApiResult<Vec<Insight>> {
    let sql = format!("SELECT {COLUMNS} FROM insights WHERE workspace_id = ?1 ORDER BY created_at, id");
    let list: Vec<Row> = all(stmt(db, &sql, &[text(workspace_id)])?).await?;
    Ok(list.into_iter().map(Row::into_insight).collect())
}

pub async fn get(db: &Db, workspace_id: &str, id: &str) -> ApiResult<Option<Insight>> {
    let sql = format!("SELECT {COLUMNS} FROM insights WHERE id = ?1 AND workspace_id = ?2");
    Ok(one(all(stmt(db, &sql, &[text(id), text(workspace_id)])?).await?))
}

/// The insights of the workspace among `ids`.
pub async fn of_ids(db: &Db, workspace_id: &str, ids: &[String]) -> ApiResult<Vec<Insight>> {
    let sql =
        format!("SELECT {COLUMNS} FROM insights WHERE workspace_id = ?1 AND id IN (SELECT value FROM json_each(?2))");
    let list = serde_json::to_string(ids).map_err(ApiError::internal)?;
    let found: Vec<Row> = all(stmt(db, &sql, &[text(workspace_id), text(&list)])?).await?;
    Ok(found.into_iter().map(Row::into_insight).collect())
}

/// The key behind a hash and the insight `id` of its workspace, in one round trip: an insight
/// read costs what a key check costs.
pub async fn read_with_key(db: &Db, key_hash: &str, id: &str) -> ApiResult<(Option<keys::KeyAuth>, Option<Insight>)> {
    let sql = format!(
        "SELECT {COLUMNS} FROM insights WHERE id = ?2 \
         AND workspace_id = (SELECT workspace_id FROM api_keys WHERE key_hash = ?1)"
    );
    let p = [text(key_hash), text(id)];
    let results = batch(db, vec![stmt(db, keys::AUTH_SQL, &p[..1])?, stmt(db, &sql, &p)?]).await?;
    let [key, insight] = results.as_slice() else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    Ok((rows(key)?.into_iter().next(), one(rows(insight)?)))
}

/// Applies an edit, audited with what it changed; a new question (`reask`) marks the answer
/// outdated and due now. `None` when the insight is not in the workspace.
#[allow(clippy::too_many_arguments)]
pub async fn update(
    db: &Db,
    workspace_id: &str,
    id: &str,
    patch: &InsightPatch,
    reask: bool,
    details: &str,
    actor: &str,
    at: Millis,
) -> ApiResult<Option<Insight>> {
    let sql = "UPDATE insights SET name = COALESCE(?3, name), prompt = COALESCE(?4, prompt), \
               agent_id = CASE WHEN ?5 THEN ?6 ELSE agent_id END, refresh_seconds = COALESCE(?7, refresh_seconds), \
               outdated = CASE WHEN ?8 THEN 1 ELSE outdated END, \
               next_refresh_at = CASE WHEN ?8 THEN ?9 \
                 WHEN ?7 IS NOT NULL AND generated_at IS NOT NULL AND failures = 0 THEN generated_at + ?7 * 1000 \
                 ELSE next_refresh_at END, \
               updated_at = ?9 WHERE id = ?1 AND workspace_id = ?2";
    let params = [
        text(id),
        text(workspace_id),
        opt_text(patch.name.as_deref()),
        opt_text(patch.prompt.as_deref()),
        int(i64::from(patch.agent_id.is_some())),
        opt_text(patch.agent_id.as_ref().and_then(|a| a.as_deref())),
        opt_int(patch.refresh_seconds),
        int(i64::from(reask)),
        int(at),
    ];
    let log = audit::record_if_exists(
        db,
        workspace_id,
        actor,
        "insight.updated",
        Table::Insights,
        id,
        patch.name.as_deref(),
        Some(details),
        at,
    )?;
    let read = format!("SELECT {COLUMNS} FROM insights WHERE id = ?1 AND workspace_id = ?2");
    let results = batch(db, vec![log, stmt(db, sql, &params)?, stmt(db, &read, &params[..2])?]).await?;
    match results.get(2) {
        Some(r) => Ok(one(rows(r)?)),
        None => Ok(None),
    }
}

pub async fn delete(db: &Db, workspace_id: &str, id: &str, actor: &str, at: Millis) -> ApiResult<bool> {
    let log = audit::record_if_exists(db, workspace_id, actor, "insight.deleted", Table::Insights, id, None, None, at)?;
    let sql = "DELETE FROM insights WHERE id = ?1 AND workspace_id = ?2";
    let results = batch(db, vec![log, stmt(db, sql, &[text(id), text(workspace_id)])?]).await?;
    match results.get(1) {
        Some(r) => Ok(changes(r)? > 0),
        None => Ok(false),
    }
}

/// An audit entry on its own (a manual refresh, which changes nothing by itself).
pub async fn audit(db: &Db, workspace_id: &str, id: &str, action: &str, actor: &str, at: Millis) -> ApiResult<()> {
    let log = audit::record_if_exists(db, workspace_id, actor, action, Table::Insights, id, None, None, at)?;
    super::run(log).await.map(|_| ())
}

/// Takes the insight's lease until `until` if nobody holds it at `now`: the insight as it is
/// then, or `None` when another generation holds it (or it does not exist).
pub async fn claim(db: &Db, workspace_id: &str, id: &str, now: Millis, until: Millis) -> ApiResult<Option<Insight>> {
    let sql = format!(
        "UPDATE insights SET lease_until = ?3 WHERE id = ?1 AND workspace_id = ?2 \
         AND (lease_until IS NULL OR lease_until <= ?4) RETURNING {COLUMNS}"
    );
    Ok(one(all(stmt(db, &sql, &[text(id), text(workspace_id), int(until), int(now)])?).await?))
}

/// The insight's lease: `None` when no generation holds it (a finished one clears it), else
/// until when (in the past: that generation died).
pub async fn lease(db: &Db, workspace_id: &str, id: &str) -> ApiResult<Option<Millis>> {
    #[derive(Deserialize)]
    struct L {
        lease_until: Option<Millis>,
    }
    let sql = "SELECT lease_until FROM insights WHERE id = ?1 AND workspace_id = ?2";
    let l: Option<L> = first(stmt(db, sql, &[text(id), text(workspace_id)])?).await?;
    Ok(l.and_then(|l| l.lease_until))
}

/// Takes the lease of up to `limit` due insights, oldest due first, in one statement (so two
/// scheduled runs at once share them out, never both take one). `d1_only`: in the shared D1,
/// only workspaces not moved to their own object (a moved one's rows there are a stale copy).
pub async fn claim_due(
    db: &Db,
    now: Millis,
    until: Millis,
    limit: u32,
    d1_only: bool,
) -> ApiResult<Vec<(String, Insight)>> {
    let scope = if d1_only { "AND workspace_id IN (SELECT id FROM workspaces WHERE data_plane = 'd1')" } else { "" };
    let sql = format!(
        "UPDATE insights SET lease_until = ?2 WHERE id IN (SELECT id FROM insights WHERE next_refresh_at <= ?1 \
         AND (lease_until IS NULL OR lease_until <= ?1) {scope} ORDER BY next_refresh_at, id LIMIT ?3) \
         RETURNING workspace_id, {COLUMNS}"
    );
    let list: Vec<Row> = all(stmt(db, &sql, &[int(now), int(until), int(i64::from(limit))])?).await?;
    let mut out: Vec<(String, Insight)> =
        list.into_iter().filter_map(|mut r| r.workspace_id.take().map(|ws| (ws, r.into_insight()))).collect();
    out.sort_by_key(|(_, i)| i.next_refresh_at);
    Ok(out)
}

/// A finished generation.
pub struct Generated<'a> {
    pub answer: &'a str,
    pub sources: &'a str,
    pub etag: &'a str,
    pub model: &'a str,
    pub provider: &'a str,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub at: Millis,
    pub next_refresh_at: Millis,
}

/// Stores a generation and releases the lease, with its line in the usage ledger, in one
/// transaction. The question it answered (`asked`: prompt and agent) is compared with the
/// insight's current one: if an admin changed it meanwhile, the answer is kept but stays
/// outdated and due at once.
pub async fn store(
    db: &Db,
    workspace_id: &str,
    id: &str,
    asked: (&str, Option<&str>),
    g: &Generated<'_>,
    ledger: Option<(&str, &Counters)>,
) -> ApiResult<()> {
    let sql = "UPDATE insights SET answer = ?3, sources = ?4, etag = ?5, model = ?6, provider = ?7, \
               prompt_tokens = ?8, completion_tokens = ?9, generated_at = ?10, failures = 0, \
               last_error_code = NULL, last_error_at = NULL, lease_until = NULL, \
               outdated = CASE WHEN prompt = ?12 AND agent_id IS ?13 THEN 0 ELSE 1 END, \
               next_refresh_at = CASE WHEN prompt = ?12 AND agent_id IS ?13 THEN ?11 ELSE ?10 END \
               WHERE id = ?1 AND workspace_id = ?2";
    let params = [
        text(id),
        text(workspace_id),
        text(g.answer),
        text(g.sources),
        text(g.etag),
        text(g.model),
        text(g.provider),
        int(g.prompt_tokens),
        int(g.completion_tokens),
        int(g.at),
        int(g.next_refresh_at),
        text(asked.0),
        opt_text(asked.1),
    ];
    let mut statements = vec![stmt(db, sql, &params)?];
    if let Some((day, counters)) = ledger {
        statements.push(super::usage::count_insights_stmt(db, workspace_id, day, counters)?);
    }
    batch(db, statements).await.map(|_| ())
}

/// Records a failed generation (the last good answer stays) and releases the lease.
pub async fn fail(
    db: &Db,
    workspace_id: &str,
    id: &str,
    code: &str,
    at: Millis,
    next_refresh_at: Millis,
    ledger: Option<(&str, &Counters)>,
) -> ApiResult<()> {
    let sql = "UPDATE insights SET failures = failures + 1, last_error_code = ?3, last_error_at = ?4, \
               next_refresh_at = ?5, lease_until = NULL WHERE id = ?1 AND workspace_id = ?2";
    let params = [text(id), text(workspace_id), text(code), int(at), int(next_refresh_at)];
    let mut statements = vec![stmt(db, sql, &params)?];
    if let Some((day, counters)) = ledger {
        statements.push(super::usage::count_insights_stmt(db, workspace_id, day, counters)?);
    }
    batch(db, statements).await.map(|_| ())
}

/// When the Cron Trigger should next look at this workspace's insights: the earliest due time,
/// a running generation's counting from when its lease runs out. `None`: no insight.
pub async fn next_due(db: &Db, now: Millis) -> ApiResult<Option<Millis>> {
    #[derive(Deserialize)]
    struct Due {
        due: Option<Millis>,
    }
    let sql = "SELECT MIN(CASE WHEN lease_until > ?1 THEN MAX(lease_until, next_refresh_at) ELSE next_refresh_at END) \
               AS due FROM insights";
    let found: Option<Due> = first(stmt(db, sql, &[int(now)])?).await?;
    Ok(found.and_then(|d| d.due))
}
