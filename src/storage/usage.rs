//! The usage ledger: per key and UTC day, upserted where a request ends (in the batch that
//! stores a chat turn, or on its own for everything else) and summed for the usage route.

use super::{Db, Stmt};
use serde::Deserialize;

use super::{all, batch, int, opt_text, rows, run, stmt, text};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::usage::{Counters, Range};

/// Adds `c` to the key's row for `day`. The key is found by its hash, so a request can be
/// counted before (or without) its handler having read the key; a hash that is no key inserts
/// nothing. `and_chat`: count only if this chat of the key's workspace exists (inside a turn's
/// batch, after the chat's insert: a turn whose chat was deleted meanwhile is not a success).
const COUNT_SQL: &str = "INSERT INTO usage_daily (workspace_id, key_id, day, key_name, key_prefix, requests, errors, \
     rate_limited, prompt_tokens, completion_tokens, llm_ms) \
     SELECT workspace_id, id, ?2, name, prefix, ?3, ?4, ?5, ?6, ?7, ?8 FROM api_keys WHERE key_hash = ?1 \
     AND (?9 IS NULL OR EXISTS (SELECT 1 FROM chats c WHERE c.id = ?9 AND c.workspace_id = api_keys.workspace_id)) \
     ON CONFLICT (workspace_id, key_id, day) DO UPDATE SET requests = requests + excluded.requests, errors = errors + excluded.errors, \
     rate_limited = rate_limited + excluded.rate_limited, prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
     completion_tokens = completion_tokens + excluded.completion_tokens, llm_ms = llm_ms + excluded.llm_ms, \
     key_name = excluded.key_name, key_prefix = excluded.key_prefix";

pub fn count_stmt(db: &Db, key_hash: &str, day: &str, c: &Counters, and_chat: Option<&str>) -> ApiResult<Stmt> {
    stmt(
        db,
        COUNT_SQL,
        &[
            text(key_hash),
            text(day),
            int(c.requests),
            int(c.errors),
            int(c.rate_limited),
            int(c.prompt_tokens),
            int(c.completion_tokens),
            int(c.llm_ms),
            opt_text(and_chat),
        ],
    )
}

/// The ledger line of a workspace's insights (their generations are nobody's key's).
pub const INSIGHTS_KEY_ID: &str = "insights";
pub const INSIGHTS_KEY_NAME: &str = "Insights";

/// Adds `c` to the workspace's insights line for `day`: a statement for the batch that stores
/// the generation.
pub fn count_insights_stmt(db: &Db, workspace_id: &str, day: &str, c: &Counters) -> ApiResult<Stmt> {
    let sql = "INSERT INTO usage_daily (workspace_id, key_id, day, key_name, key_prefix, requests, errors, \
         rate_limited, prompt_tokens, completion_tokens, llm_ms) \
         SELECT id, ?2, ?3, ?4, '', ?5, ?6, 0, ?7, ?8, ?9 FROM workspaces WHERE id = ?1 \
         ON CONFLICT (workspace_id, key_id, day) DO UPDATE SET requests = requests + excluded.requests, \
         errors = errors + excluded.errors, prompt_tokens = prompt_tokens + excluded.prompt_tokens, \
         completion_tokens = completion_tokens + excluded.completion_tokens, llm_ms = llm_ms + excluded.llm_ms";
    stmt(
        db,
        sql,
        &[
            text(workspace_id),
            text(INSIGHTS_KEY_ID),
            text(day),
            text(INSIGHTS_KEY_NAME),
            int(c.requests),
            int(c.errors),
            int(c.prompt_tokens),
            int(c.completion_tokens),
            int(c.llm_ms),
        ],
    )
}

/// Counts one request on its own (every outcome but a stored turn).
pub async fn count(db: &Db, key_hash: &str, day: &str, c: &Counters) -> ApiResult<()> {
    run(count_stmt(db, key_hash, day, c, None)?).await.map(|_| ())
}

const SUMS: &str = "COALESCE(SUM(u.requests), 0) AS requests, COALESCE(SUM(u.errors), 0) AS errors, \
     COALESCE(SUM(u.rate_limited), 0) AS rate_limited, COALESCE(SUM(u.prompt_tokens), 0) AS prompt_tokens, \
     COALESCE(SUM(u.completion_tokens), 0) AS completion_tokens, COALESCE(SUM(u.llm_ms), 0) AS llm_ms";

/// One row of sums as D1 returns it: flat, snake case (serde's `flatten` cannot read D1's
/// numbers, which arrive as floats, into integers).
#[derive(Debug, Clone, Deserialize)]
pub struct SumRow {
    #[serde(default)]
    pub day: String,
    #[serde(default)]
    pub key_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub deleted: i64,
    requests: i64,
    errors: i64,
    rate_limited: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    llm_ms: i64,
}

impl SumRow {
    pub fn counters(&self) -> Counters {
        Counters {
            requests: self.requests,
            errors: self.errors,
            rate_limited: self.rate_limited,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            llm_ms: self.llm_ms,
        }
    }
}

pub struct Usage {
    pub days: Vec<(String, Counters)>,
    /// Per key: `key_id`, `name`, `prefix`, `deleted` and the sums.
    pub keys: Vec<SumRow>,
}

/// The workspace's usage over `range`, per day and per key (all keys, or `key_id`'s): the
/// workspace's keys (zeros if unused) and deleted keys that were used in the range (or the one
/// asked for by id, used at any time). One batch.
pub async fn read(db: &Db, workspace_id: &str, range: &Range, key_id: Option<&str>) -> ApiResult<Usage> {
    let days_sql = format!(
        "SELECT u.day, {SUMS} FROM usage_daily u WHERE u.workspace_id = ?1 AND u.day BETWEEN ?2 AND ?3 \
         AND (?4 IS NULL OR u.key_id = ?4) GROUP BY u.day"
    );
    // A deleted key's name and prefix are those of its latest row (SQLite takes the bare
    // columns from the row that holds MAX(day)).
    let keys_sql = format!(
        "SELECT k.id AS key_id, k.name, k.prefix, 0 AS deleted, {SUMS} FROM api_keys k \
         LEFT JOIN usage_daily u ON u.workspace_id = k.workspace_id AND u.key_id = k.id AND u.day BETWEEN ?2 AND ?3 \
         WHERE k.workspace_id = ?1 AND (?4 IS NULL OR k.id = ?4) GROUP BY k.id \
         UNION ALL \
         SELECT key_id, name, prefix, key_id <> '{INSIGHTS_KEY_ID}' AS deleted, requests, errors, rate_limited, prompt_tokens, completion_tokens, llm_ms \
         FROM (SELECT u.key_id, u.key_name AS name, u.key_prefix AS prefix, MAX(u.day) AS latest, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.requests ELSE 0 END) AS requests, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.errors ELSE 0 END) AS errors, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.rate_limited ELSE 0 END) AS rate_limited, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.prompt_tokens ELSE 0 END) AS prompt_tokens, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.completion_tokens ELSE 0 END) AS completion_tokens, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN u.llm_ms ELSE 0 END) AS llm_ms, \
           SUM(CASE WHEN u.day BETWEEN ?2 AND ?3 THEN 1 ELSE 0 END) AS days_in_range \
           FROM usage_daily u WHERE u.workspace_id = ?1 AND (?4 IS NULL OR u.key_id = ?4) \
           AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = u.key_id) GROUP BY u.key_id) \
         WHERE days_in_range > 0 OR ?4 IS NOT NULL \
         ORDER BY requests DESC, name, key_id"
    );
    let p = [text(workspace_id), text(&range.from_str()), text(&range.to_str()), opt_text(key_id)];
    let results = batch(db, vec![stmt(db, &days_sql, &p)?, stmt(db, &keys_sql, &p)?]).await?;
    let [days, keys] = results.as_slice() else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    let days: Vec<(String, Counters)> =
        rows::<SumRow>(days)?.into_iter().map(|d| (d.day.clone(), d.counters())).collect();
    Ok(Usage { days: range.fill(&days), keys: rows(keys)? })
}

#[derive(Debug, Clone, Deserialize)]
struct Requests {
    key_id: String,
    requests: i64,
}

/// Requests per key of the workspace since `from` (a day), for the key list.
pub async fn requests_since(
    db: &Db,
    workspace_id: &str,
    from: &str,
) -> ApiResult<std::collections::HashMap<String, i64>> {
    let sql = "SELECT key_id, SUM(requests) AS requests FROM usage_daily WHERE workspace_id = ?1 AND day >= ?2 GROUP BY key_id";
    let list: Vec<Requests> = all(stmt(db, sql, &[text(workspace_id), text(from)])?).await?;
    Ok(list.into_iter().map(|r| (r.key_id, r.requests)).collect())
}
