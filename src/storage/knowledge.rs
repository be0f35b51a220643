//! Workspace knowledge: records and their full-text index (FTS5, kept in sync by triggers).
//! Writes carry many records in one bound JSON parameter (`json_each`), so a 500-record upsert
//! is one statement within D1's 100-parameter limit; each write and its audit entry are one
//! batch, one transaction.

use std::collections::HashMap;

use super::{Db, Stmt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{all, batch, changes, first, int, opt_text, rows, stmt, text};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{self, IdKind};
use crate::domain::knowledge::{self, Existing, Facts, Kind, Record, Source, StageTotal, UpsertStatus};
use crate::domain::time::Millis;
use crate::domain::tools;

/// A stored record, as read back.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub public_id: String,
    pub kind: String,
    pub external_id: String,
    pub title: String,
    pub body: Option<String>,
    pub url: Option<String>,
    pub source: Option<String>,
    pub account_name: Option<String>,
    pub amount: Option<f64>,
    pub currency: Option<String>,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub close_date: Option<String>,
    pub owner: Option<String>,
    pub properties: Option<String>,
    pub source_updated_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const ROW_COLUMNS: &str = "public_id, kind, external_id, title, body, url, source, account_name, amount, currency, \
                           stage, status, close_date, owner, properties, source_updated_at, created_at, updated_at";

#[derive(Deserialize)]
struct ExistingRow {
    kind: String,
    external_id: String,
    public_id: String,
    content_hash: String,
    source_updated_at: Option<Millis>,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// How many records the workspace holds, and what it holds under the keys of `keys`
/// (`[[kind, externalId], …]`), in one round trip.
async fn existing(db: &Db, workspace_id: &str, keys: &Value) -> ApiResult<(u64, HashMap<(Kind, String), Existing>)> {
    let count = stmt(db, "SELECT COUNT(*) AS n FROM knowledge_records WHERE workspace_id = ?1", &[text(workspace_id)])?;
    let found = stmt(
        db,
        // A row-value IN: one lookup per key in the (workspace_id, kind, external_id) index. (A
        // join on json_each let SQLite walk the whole workspace once per key instead: 25 s for
        // 500 keys in a workspace of 50,000 records.)
        "SELECT r.kind, r.external_id, r.public_id, r.content_hash, r.source_updated_at FROM knowledge_records r \
         WHERE r.workspace_id = ?1 AND (r.kind, r.external_id) IN \
         (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))",
        &[text(workspace_id), text(&keys.to_string())],
    )?;
    let results = batch(db, vec![count, found]).await?;
    let [count, found] = results.as_slice() else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    let total = rows::<Count>(count)?.first().map_or(0, |c| u64::try_from(c.n).unwrap_or(0));
    let map = rows::<ExistingRow>(found)?
        .into_iter()
        .filter_map(|r| {
            let kind = Kind::parse(&r.kind)?;
            let e = Existing {
                public_id: r.public_id,
                content_hash: r.content_hash,
                source_updated_at: r.source_updated_at,
            };
            Some(((kind, r.external_id), e))
        })
        .collect();
    Ok((total, map))
}

/// One record's outcome: its index in the request, its public id, its status.
pub struct Outcome {
    pub index: usize,
    pub id: String,
    pub kind: Kind,
    pub external_id: String,
    pub status: UpsertStatus,
}

/// The upsert would pass the workspace's cap.
pub struct OverCap {
    pub held: u64,
    pub adding: u64,
}

/// Creates or updates the records (all of them, or none), with one audit entry counting each
/// status. `new_id` makes the public ids of created records.
///
/// The statuses are decided from a read just before the write (same content → unchanged, an
/// older `sourceUpdatedAt` → unchanged); the write itself repeats the `sourceUpdatedAt` guard,
/// so a concurrent newer sync is never overwritten by an older one.
pub async fn upsert(
    db: &Db,
    workspace_id: &str,
    records: &[Record],
    cap: u64,
    actor: &str,
    now: Millis,
    mut new_id: impl FnMut() -> ApiResult<String>,
) -> ApiResult<Result<Vec<Outcome>, OverCap>> {
    let keys = Value::Array(records.iter().map(|r| json!([r.kind.as_str(), r.external_id])).collect());
    let (held, existing) = existing(db, workspace_id, &keys).await?;
    let statuses = knowledge::plan_upsert(records, &existing);
    let adding = statuses.iter().filter(|s| **s == UpsertStatus::Created).count() as u64;
    if held + adding > cap {
        return Ok(Err(OverCap { held, adding }));
    }
    let mut outcomes = Vec::with_capacity(records.len());
    let mut rows_to_write = Vec::new();
    for (index, (record, status)) in records.iter().zip(statuses).enumerate() {
        let id = match existing.get(&(record.kind, record.external_id.clone())) {
            Some(e) => e.public_id.clone(),
            None => new_id()?,
        };
        if status != UpsertStatus::Unchanged {
            rows_to_write.push(row_json(record, &id));
        }
        outcomes.push(Outcome { index, id, kind: record.kind, external_id: record.external_id.clone(), status });
    }
    let count = |s: UpsertStatus| outcomes.iter().filter(|o| o.status == s).count();
    let summary = format!(
        "{} records: {} created, {} updated, {} unchanged",
        outcomes.len(),
        count(UpsertStatus::Created),
        count(UpsertStatus::Updated),
        count(UpsertStatus::Unchanged)
    );
    // The cap is decided again inside the write's transaction, from what the workspace holds
    // at that moment: the read above is only a fast refusal. Concurrent upserts each counted
    // before the others wrote, so deciding on that read let four writers end 1,000 over.
    // The audit entry is written only if the records fit, and the records only if the entry
    // was: one transaction, all or nothing.
    let audit_id = ids::new_id(IdKind::Audit)?;
    let fits = stmt(
        db,
        &format!(
            "WITH {CAP_COUNTS} INSERT INTO audit_log (id, workspace_id, actor, action, target, target_name, created_at) \
             SELECT ?4, ?1, ?5, 'knowledge.upserted', 'knowledge', ?6, ?7 FROM counts WHERE adding = 0 OR held + adding <= ?3"
        ),
        &[
            text(workspace_id),
            text(&keys.to_string()),
            int(i64::try_from(cap).unwrap_or(i64::MAX)),
            text(&audit_id),
            text(actor),
            text(&summary),
            int(now),
        ],
    )?;
    let counts = stmt(
        db,
        &format!("WITH {CAP_COUNTS} SELECT held, adding FROM counts"),
        &[text(workspace_id), text(&keys.to_string())],
    )?;
    let mut statements = vec![counts, fits];
    if !rows_to_write.is_empty() {
        statements.push(write_statement(db, workspace_id, &Value::Array(rows_to_write), now, &audit_id)?);
    }
    let results = batch(db, statements).await?;
    let (Some(counts), Some(fits)) = (results.first(), results.get(1)) else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    if changes(fits)? == 0 {
        let held = rows::<CapCounts>(counts)?.first().map_or(OverCap { held, adding }, |c| OverCap {
            held: u64::try_from(c.held).unwrap_or(0),
            adding: u64::try_from(c.adding).unwrap_or(0),
        });
        return Ok(Err(held));
    }
    Ok(Ok(outcomes))
}

/// `counts(held, adding)`: what the workspace (?1) holds, and how many of the request's keys
/// (?2, `[[kind, externalId], …]`, each once) it does not hold yet, i.e. would be created.
const CAP_COUNTS: &str = "counts AS (SELECT (SELECT COUNT(*) FROM knowledge_records WHERE workspace_id = ?1) AS held, \
                          json_array_length(?2) - (SELECT COUNT(*) FROM knowledge_records WHERE workspace_id = ?1 \
                          AND (kind, external_id) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') \
                          FROM json_each(?2))) AS adding)";

#[derive(Deserialize)]
struct CapCounts {
    held: i64,
    adding: i64,
}

fn row_json(r: &Record, public_id: &str) -> Value {
    json!({
        "publicId": public_id,
        "kind": r.kind.as_str(),
        "externalId": r.external_id,
        "title": r.title,
        "body": r.body,
        "url": r.url,
        "source": r.source,
        "accountName": r.account_name,
        "amount": r.amount,
        "currency": r.currency,
        "stage": r.stage,
        "status": r.status.map(|s| s.as_str()),
        "closeDate": r.close_date,
        "owner": r.owner,
        "properties": r.properties.as_ref().map(|p| Value::Object(p.clone()).to_string()),
        "contentHash": r.content_hash(),
        "sourceUpdatedAt": r.source_updated_at,
    })
}

/// One statement for every record to write: insert, or update in place (keeping its id and
/// `created_at`) unless the stored copy comes from a newer sync. It writes only if the audit
/// entry `audit_id` was written before it in the same transaction (the cap held).
fn write_statement(db: &Db, workspace_id: &str, rows: &Value, now: Millis, audit_id: &str) -> ApiResult<Stmt> {
    let sql = "INSERT INTO knowledge_records (public_id, workspace_id, ws_token, kind, external_id, title, body, url, \
               source, account_name, amount, currency, stage, status, close_date, owner, properties, content_hash, \
               source_updated_at, created_at, updated_at) \
               SELECT json_extract(value, '$.publicId'), ?1, ?2, json_extract(value, '$.kind'), \
               json_extract(value, '$.externalId'), json_extract(value, '$.title'), json_extract(value, '$.body'), \
               json_extract(value, '$.url'), json_extract(value, '$.source'), json_extract(value, '$.accountName'), \
               json_extract(value, '$.amount'), json_extract(value, '$.currency'), json_extract(value, '$.stage'), \
               json_extract(value, '$.status'), json_extract(value, '$.closeDate'), json_extract(value, '$.owner'), \
               json_extract(value, '$.properties'), json_extract(value, '$.contentHash'), \
               json_extract(value, '$.sourceUpdatedAt'), ?4, ?4 FROM json_each(?3) \
               WHERE EXISTS (SELECT 1 FROM audit_log WHERE id = ?5) \
               ON CONFLICT (workspace_id, kind, external_id) DO UPDATE SET title = excluded.title, body = excluded.body, \
               url = excluded.url, source = excluded.source, account_name = excluded.account_name, \
               amount = excluded.amount, currency = excluded.currency, stage = excluded.stage, status = excluded.status, \
               close_date = excluded.close_date, owner = excluded.owner, properties = excluded.properties, \
               content_hash = excluded.content_hash, source_updated_at = excluded.source_updated_at, \
               updated_at = excluded.updated_at \
               WHERE excluded.source_updated_at IS NULL OR knowledge_records.source_updated_at IS NULL \
               OR excluded.source_updated_at >= knowledge_records.source_updated_at";
    stmt(
        db,
        sql,
        &[
            text(workspace_id),
            text(&knowledge::workspace_token(workspace_id)),
            text(&rows.to_string()),
            int(now),
            text(audit_id),
        ],
    )
}

#[derive(Deserialize)]
struct Key {
    kind: String,
    external_id: String,
}

/// Deletes the records by key; returns which of them existed. One transaction with its audit
/// entry.
pub async fn delete(
    db: &Db,
    workspace_id: &str,
    keys: &[(Kind, String)],
    actor: &str,
    now: Millis,
) -> ApiResult<Vec<bool>> {
    let list = Value::Array(keys.iter().map(|(k, e)| json!([k.as_str(), e])).collect()).to_string();
    // A row-value IN: each key is one lookup in the (workspace_id, kind, external_id) index,
    // whatever the workspace holds.
    let matching = "FROM knowledge_records WHERE workspace_id = ?1 AND (kind, external_id) IN \
                    (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))";
    let params = [text(workspace_id), text(&list)];
    let found = stmt(db, &format!("SELECT kind, external_id {matching}"), &params)?;
    let summary_sql = format!(
        "INSERT INTO audit_log (id, workspace_id, actor, action, target, target_name, target_prefix, created_at) \
         SELECT ?3, ?1, ?4, 'knowledge.deleted', 'knowledge', \
         (SELECT COUNT(*) {matching}) || ' deleted, ' || (CAST(?5 AS INTEGER) - (SELECT COUNT(*) {matching})) || ' not found', NULL, ?6"
    );
    let audit_id = crate::domain::ids::new_id(crate::domain::ids::IdKind::Audit)?;
    let log = stmt(
        db,
        &summary_sql,
        &[text(workspace_id), text(&list), text(&audit_id), text(actor), int(keys.len() as i64), int(now)],
    )?;
    let remove = stmt(db, &format!("DELETE {matching}"), &params)?;
    let results = batch(db, vec![found, log, remove]).await?;
    let found: Vec<(String, String)> = match results.first() {
        Some(r) => rows::<Key>(r)?.into_iter().map(|k| (k.kind, k.external_id)).collect(),
        None => Vec::new(),
    };
    Ok(keys.iter().map(|(k, e)| found.iter().any(|(fk, fe)| fk == k.as_str() && fe == e)).collect())
}

/// Newest first, `(updated_at, public_id)` as the cursor.
pub async fn list(
    db: &Db,
    workspace_id: &str,
    kind: Option<Kind>,
    limit: u32,
    after: Option<(Millis, String)>,
) -> ApiResult<Vec<Row>> {
    let (at, id) = after.unwrap_or((i64::MAX / 2, String::new()));
    let sql = format!(
        "SELECT {ROW_COLUMNS} FROM knowledge_records WHERE workspace_id = ?1 AND (?2 IS NULL OR kind = ?2) \
         AND (?5 = 0 OR updated_at < ?3 OR (updated_at = ?3 AND public_id < ?4)) \
         ORDER BY updated_at DESC, public_id DESC LIMIT ?6"
    );
    let params = [
        text(workspace_id),
        opt_text(kind.map(Kind::as_str)),
        int(at),
        text(&id),
        int(i64::from(!id.is_empty())),
        int(i64::from(limit)),
    ];
    all(stmt(db, &sql, &params)?).await
}

pub async fn get(db: &Db, workspace_id: &str, public_id: &str) -> ApiResult<Option<Row>> {
    let sql = format!("SELECT {ROW_COLUMNS} FROM knowledge_records WHERE workspace_id = ?1 AND public_id = ?2");
    first(stmt(db, &sql, &[text(workspace_id), text(public_id)])?).await
}

#[derive(Debug, Deserialize)]
pub struct KindCount {
    pub kind: String,
    pub n: i64,
    pub last: Option<Millis>,
}

pub async fn stats(db: &Db, workspace_id: &str) -> ApiResult<Vec<KindCount>> {
    let sql = "SELECT kind, COUNT(*) AS n, MAX(updated_at) AS last FROM knowledge_records WHERE workspace_id = ?1 GROUP BY kind";
    all(stmt(db, sql, &[text(workspace_id)])?).await
}

/// A retrieved record: the columns a source and its prompt line need.
#[derive(Debug, Clone, Deserialize)]
pub struct Hit {
    pub public_id: String,
    pub kind: String,
    pub external_id: String,
    pub title: String,
    pub url: Option<String>,
    pub snippet: Option<String>,
    pub score: Option<f64>,
    pub amount: Option<f64>,
    pub currency: Option<String>,
    pub stage: Option<String>,
    pub status: Option<String>,
    pub close_date: Option<String>,
    pub owner: Option<String>,
    pub account_name: Option<String>,
}

impl Hit {
    pub fn to_source(&self) -> Option<Source> {
        let facts = Facts {
            amount: self.amount,
            currency: self.currency.as_deref(),
            stage: self.stage.as_deref(),
            status: self.status.as_deref(),
            close_date: self.close_date.as_deref(),
            owner: self.owner.as_deref(),
            account_name: self.account_name.as_deref(),
        };
        Some(Source {
            id: self.public_id.clone(),
            kind: Kind::parse(&self.kind)?,
            external_id: self.external_id.clone(),
            title: self.title.clone(),
            url: self.url.clone(),
            snippet: self.snippet.clone().unwrap_or_default(),
            fields: facts.to_fields(),
        })
    }
}

const HIT_COLUMNS: &str = "r.public_id, r.kind, r.external_id, r.title, r.url, r.amount, r.currency, r.stage, \
                           r.status, r.close_date, r.owner, r.account_name";

/// The full-text retrieval, the same for the search route and the chat turn. `ws` is an SQL
/// expression for the workspace id (a bound parameter, or the key's workspace inside the chat
/// turn's batch); `extra` adds conditions on `r`. The match runs inside the workspace's own
/// index terms (`ws_token:"…" AND (…)`), so its cost does not grow with other workspaces' data.
pub fn search_sql(ws: &str, match_param: &str, limit_param: &str, extra: &str) -> String {
    format!(
        "SELECT {HIT_COLUMNS}, COALESCE(snippet(knowledge_fts, 2, '', '', '…', 24), '') AS snippet, \
         -bm25(knowledge_fts, 0.0, 5.0, 1.0, 3.0) AS score \
         FROM knowledge_fts JOIN knowledge_records r ON r.id = knowledge_fts.rowid \
         WHERE knowledge_fts MATCH ('ws_token:\"' || COALESCE(replace({ws}, '_', ''), 'none') || '\" AND (' || {match_param} || ')') \
         AND r.workspace_id = {ws} {extra} ORDER BY score DESC LIMIT {limit_param}"
    )
}

/// The pipeline summary's statements: the top open deals by amount, and counts and totals per
/// stage (and currency: amounts in different currencies are never added up).
pub fn pipeline_sql(ws: &str, limit_param: &str, extra: &str) -> (String, String) {
    let open = "(r.status = 'open' OR (r.status IS NULL AND lower(COALESCE(r.stage, '')) NOT LIKE 'closed%'))";
    (
        format!(
            "SELECT {HIT_COLUMNS}, '' AS snippet, NULL AS score FROM knowledge_records r \
             WHERE r.workspace_id = {ws} AND r.kind = 'deal' AND {open} AND r.amount IS NOT NULL {extra} \
             ORDER BY r.amount DESC LIMIT {limit_param}"
        ),
        format!(
            "SELECT r.stage, COUNT(*) AS count, MIN(COALESCE(SUM(r.amount), 0), 1e300) AS total_amount, r.currency \
             FROM knowledge_records r WHERE r.workspace_id = {ws} AND r.kind = 'deal' {extra} \
             GROUP BY r.stage, r.currency ORDER BY total_amount DESC LIMIT 20"
        ),
    )
}

#[derive(Debug, Clone, Deserialize)]
pub struct StageRow {
    pub stage: Option<String>,
    pub count: i64,
    /// Amounts are finite, their sum need not be: SQL caps it at 1e300 (an infinite sum would
    /// reach the Worker as null), and a null is read as that cap.
    pub total_amount: Option<f64>,
    pub currency: Option<String>,
}

impl StageRow {
    pub fn to_total(&self) -> StageTotal {
        StageTotal {
            stage: self.stage.clone(),
            count: u64::try_from(self.count).unwrap_or(0),
            total_amount: self.total_amount.unwrap_or(1e300),
            currency: self.currency.clone(),
        }
    }
}

/// The search route: exactly the retrieval a chat turn runs, for one workspace.
pub async fn search(db: &Db, workspace_id: &str, query: &str, kind: Option<Kind>, limit: u32) -> ApiResult<Vec<Hit>> {
    let sql = search_sql("?1", "?2", "?4", "AND (?3 IS NULL OR r.kind = ?3)");
    let params = [text(workspace_id), text(query), opt_text(kind.map(Kind::as_str)), int(i64::from(limit))];
    all(stmt(db, &sql, &params)?).await
}

/// The rows of an agent tool's statement (built in `domain::tools` from validated arguments,
/// every value bound), as JSON objects.
pub async fn tool_rows(db: &Db, statement: &tools::Statement) -> ApiResult<Vec<serde_json::Value>> {
    let params: Vec<super::Param> = statement
        .params
        .iter()
        .map(|p| match p {
            tools::Param::Text(s) => text(s),
            tools::Param::Int(n) => int(*n),
            tools::Param::Real(f) => super::real(*f),
        })
        .collect();
    all(stmt(db, &statement.sql, &params)?).await
}

/// The `search_records` tool: the search route's statement, within the kinds the agent reads.
pub async fn tool_search(
    db: &Db,
    workspace_id: &str,
    search: &tools::Search,
    kinds: &[Kind],
) -> ApiResult<Vec<serde_json::Value>> {
    let Some(match_expr) = &search.match_expr else { return Ok(Vec::new()) };
    let sql =
        search_sql("?1", "?2", "?4", "AND (?3 IS NULL OR r.kind = ?3) AND r.kind IN (SELECT value FROM json_each(?5))");
    let kinds =
        serde_json::to_string(&kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>()).map_err(ApiError::internal)?;
    let params = [
        text(workspace_id),
        text(match_expr),
        opt_text(search.kind.map(Kind::as_str)),
        int(i64::from(search.fetch_limit())),
        text(&kinds),
    ];
    all(stmt(db, &sql, &params)?).await
}
