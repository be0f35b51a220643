//! Moving a workspace that still lives in the shared D1 into its own object: one workspace at
//! a time, page by page (one D1 read and one object write each), with its progress in D1 so
//! any run can continue where the last one stopped; every table's count is compared before the
//! registry switches the workspace over. While it moves, its requests get 503 (the registry
//! says `moving`, and a D1 guard refuses any write that was already on its way).

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use worker::{Env, Stub};

use super::workspaces::{self, Workspace};
use super::{all, batch, first, int, object_call, rows, stmt, text, Db, ObjectResult};
use crate::domain::data_plane::{Command, Copied, Statement, COPIED, MOVE_PAGE_ROWS};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::placement::Plane;
use crate::domain::time::Millis;

/// A move's progress, as D1 keeps it.
#[derive(Debug, Clone, Deserialize)]
pub struct Progress {
    pub workspace_id: String,
    /// The table being copied, `verify`, or `done`.
    pub step: String,
    pub after_rowid: i64,
    /// JSON object: rows copied per table.
    pub copied: String,
    pub started_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
    pub error: Option<String>,
}

impl Progress {
    pub fn copied(&self) -> Map<String, Value> {
        serde_json::from_str(&self.copied).unwrap_or_default()
    }
}

const VERIFY: &str = "verify";
const DONE: &str = "done";

pub async fn progress(db: &Db, id: &str) -> ApiResult<Option<Progress>> {
    let sql = "SELECT workspace_id, step, after_rowid, copied, started_at, updated_at, finished_at, error \
               FROM data_plane_moves WHERE workspace_id = ?1";
    first(stmt(db, sql, &[text(id)])?).await
}

pub async fn all_progress(db: &Db) -> ApiResult<Vec<Progress>> {
    let sql = "SELECT workspace_id, step, after_rowid, copied, started_at, updated_at, finished_at, error \
               FROM data_plane_moves";
    all(stmt(db, sql, &[])?).await
}

async fn save(db: &Db, p: &Progress) -> ApiResult<()> {
    let sql = "INSERT OR REPLACE INTO data_plane_moves \
               (workspace_id, step, after_rowid, copied, started_at, updated_at, finished_at, error) \
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
    let params = [
        text(&p.workspace_id),
        text(&p.step),
        int(p.after_rowid),
        text(&p.copied),
        int(p.started_at),
        int(p.updated_at),
        super::opt_int(p.finished_at),
        super::opt_text(p.error.as_deref()),
    ];
    super::run(stmt(db, sql, &params)?).await.map(|_| ())
}

/// The workspace a move should work on: the one being moved, if any; else the oldest still
/// on D1. `None` when every workspace is on its own object.
pub async fn next(db: &Db) -> ApiResult<Option<Workspace>> {
    let sql = "SELECT id, name, created_at, placement, data_plane FROM workspaces WHERE data_plane != 'object' \
               ORDER BY data_plane = 'moving' DESC, created_at, id LIMIT 1";
    first(stmt(db, sql, &[])?).await
}

/// The workspace being moved, if any.
pub async fn moving(db: &Db) -> ApiResult<Option<String>> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let found: Option<Id> =
        first(stmt(db, "SELECT id FROM workspaces WHERE data_plane = 'moving' LIMIT 1", &[])?).await?;
    Ok(found.map(|i| i.id))
}

pub async fn remaining(db: &Db) -> ApiResult<i64> {
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let n: Option<N> =
        first(stmt(db, "SELECT COUNT(*) AS n FROM workspaces WHERE data_plane != 'object'", &[])?).await?;
    Ok(n.map_or(0, |n| n.n))
}

/// What one run did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub workspace_id: String,
    pub data_plane: &'static str,
    pub step: String,
    pub copied: Map<String, Value>,
    pub pages: u32,
    /// Per table: rows in D1 and in the object, once compared.
    pub verified: Option<Value>,
    pub error: Option<String>,
}

/// Moves `ws` by at most `max_pages` pages, then verifies and switches it over when every
/// table is copied. Safe to run again after any failure: pages are written with `OR IGNORE`
/// and the progress is saved after each.
pub async fn run(
    env: &Env,
    control: &Db,
    ws: &Workspace,
    max_pages: u32,
    now: impl Fn() -> Millis,
) -> ApiResult<Outcome> {
    let stub = super::stub(env, &ws.id, ws.placement().stub_options())?;
    let absent = ApiError::internal("the workspace's object lost its database during the move");
    let mut p = match progress(control, &ws.id).await? {
        Some(p) if p.step != DONE => p,
        _ => fresh(&ws.id, now()),
    };
    if ws.plane() == Plane::D1 {
        // From here on the workspace's requests get 503 and no D1 write of it can commit.
        workspaces::set_plane(control, &ws.id, Plane::D1, Plane::Moving).await?;
        save(control, &p).await?;
    }
    let _: Value = object_call(&stub, &Command::MoveBegin { init: ws.init() }, &absent).await?;
    let mut pages = 0;
    while pages < max_pages && p.step != VERIFY {
        let Some(table) = Copied::find(&p.step) else { break };
        let page =
            stmt(control, &table.page_sql(), &[text(&ws.id), int(p.after_rowid), int(i64::from(MOVE_PAGE_ROWS))])?;
        let found: Vec<Map<String, Value>> = all(page).await?;
        pages += 1;
        let Some(last) = found.last().and_then(|r| r.get("_rowid")).and_then(Value::as_i64) else {
            p.step = table.next().map_or(VERIFY, |t| t.table).to_owned();
            p.after_rowid = 0;
            p.updated_at = now();
            save(control, &p).await?;
            continue;
        };
        let statements: Vec<Statement> = found
            .iter()
            .map(|row| {
                table
                    .insert(row)
                    .ok_or_else(|| ApiError::internal(format!("a row of {} cannot be copied", table.table)))
            })
            .collect::<ApiResult<_>>()?;
        let _: Vec<ObjectResult> = object_call(&stub, &Command::MoveRows { statements }, &absent).await?;
        let mut copied = p.copied();
        let before = copied.get(table.table).and_then(Value::as_u64).unwrap_or(0);
        copied.insert(table.table.to_owned(), json!(before + found.len() as u64));
        p.copied = Value::Object(copied).to_string();
        p.after_rowid = last;
        p.updated_at = now();
        save(control, &p).await?;
    }
    let mut outcome = Outcome {
        workspace_id: ws.id.clone(),
        data_plane: Plane::Moving.stored(),
        step: p.step.clone(),
        copied: p.copied(),
        pages,
        verified: None,
        error: None,
    };
    if p.step != VERIFY {
        return Ok(outcome);
    }
    let (counts, equal) = verify(control, &stub, &ws.id, &absent).await?;
    outcome.verified = Some(counts.clone());
    if !equal {
        // Rows that changed under the copy (a write that committed just before the move began
        // and landed after its table was read): start over from an empty object.
        let error = format!("counts differ, copying again: {counts}");
        let _: Value = object_call(&stub, &Command::Destroy, &absent).await?;
        let mut again = fresh(&ws.id, p.started_at);
        again.error = Some(error.clone());
        save(control, &again).await?;
        outcome.step = again.step;
        outcome.copied = Map::new();
        outcome.error = Some(error);
        return Ok(outcome);
    }
    let _: Value = object_call(&stub, &Command::MoveFinish, &absent).await?;
    workspaces::set_plane(control, &ws.id, Plane::Moving, Plane::Object).await?;
    p.step = DONE.to_owned();
    p.finished_at = Some(now());
    p.updated_at = now();
    p.error = None;
    save(control, &p).await?;
    outcome.step = p.step;
    outcome.data_plane = Plane::Object.stored();
    Ok(outcome)
}

fn fresh(id: &str, at: Millis) -> Progress {
    Progress {
        workspace_id: id.to_owned(),
        step: COPIED.first().map_or(VERIFY, |c| c.table).to_owned(),
        after_rowid: 0,
        copied: "{}".to_owned(),
        started_at: at,
        updated_at: at,
        finished_at: None,
        error: None,
    }
}

/// Every table's rows in D1 and in the object: `{table: {"d1": n, "object": n}}`, and whether
/// they all agree.
async fn verify(control: &Db, stub: &Stub, id: &str, absent: &ApiError) -> ApiResult<(Value, bool)> {
    let in_d1 =
        batch(control, COPIED.iter().map(|c| stmt(control, &c.count_sql(), &[text(id)])).collect::<ApiResult<_>>()?)
            .await?;
    let statements = COPIED.iter().map(|c| Statement { sql: c.count_sql(), params: vec![json!(id)] }).collect();
    let in_object: Vec<ObjectResult> = object_call(stub, &Command::Count { statements }, absent).await?;
    #[derive(Deserialize)]
    struct N {
        n: i64,
    }
    let mut counts = Map::new();
    let mut equal = true;
    for (i, c) in COPIED.iter().enumerate() {
        let d1 = in_d1.get(i).map(rows::<N>).transpose()?.and_then(|r| r.into_iter().next()).map_or(-1, |n| n.n);
        let object = in_object
            .get(i)
            .and_then(|r| r.rows.first())
            .and_then(|r| r.get("n"))
            .and_then(Value::as_i64)
            .unwrap_or(-2);
        equal &= d1 == object;
        counts.insert(c.table.to_owned(), json!({ "d1": d1, "object": object }));
    }
    Ok((Value::Object(counts), equal))
}
