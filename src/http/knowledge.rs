//! `/api/settings/knowledge/*`: the workspace's records, for workspace admins (and the
//! integrations they run). Every route is scoped to the admin's own workspace.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, query, read_json, read_json_up_to, Cx, Reply};
use crate::domain::cursor;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::knowledge::{self, Kind, SearchParams};
use crate::domain::time::to_iso;
use crate::storage::knowledge as records;

/// A request carries at most 500 records and 1 MiB.
const MAX_UPSERT_BYTES: usize = 1024 * 1024;

pub async fn upsert(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let config = cx.config()?;
    let input = knowledge::parse_upsert(&read_json_up_to(req, MAX_UPSERT_BYTES).await?, cx.now)?;
    let db = admin.db(&cx.env)?;
    let outcome =
        records::upsert(&db, &admin.workspace_id, &input, config.knowledge_max_records, &admin.name, cx.now, || {
            new_id(IdKind::Record)
        })
        .await?;
    let outcomes = outcome.map_err(|over| {
        ApiError::Conflict(
            "Knowledge record limit reached",
            json!({ "limit": config.knowledge_max_records, "held": over.held, "adding": over.adding }),
        )
    })?;
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({ "index": o.index, "id": o.id, "kind": o.kind.as_str(), "externalId": o.external_id, "status": o.status.as_str() })
        })
        .collect();
    Ok(Reply::ok(json!({ "results": results })))
}

pub async fn delete(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let keys = knowledge::parse_delete(&read_json(req).await?)?;
    let found = records::delete(&admin.db(&cx.env)?, &admin.workspace_id, &keys, &admin.name, cx.now).await?;
    let results: Vec<Value> = found
        .iter()
        .enumerate()
        .map(|(index, deleted)| json!({ "index": index, "status": if *deleted { "deleted" } else { "not_found" } }))
        .collect();
    Ok(Reply::ok(json!({ "results": results })))
}

fn kind_param(req: &Request) -> ApiResult<Option<Kind>> {
    match query(req, "kind").filter(|k| !k.is_empty()) {
        None => Ok(None),
        Some(k) => Kind::parse(&k).map(Some).ok_or_else(|| {
            ApiError::invalid("kind", "must be one of deal, account, contact, note, feedback, document")
        }),
    }
}

fn record_json(r: &records::Row) -> Value {
    let properties = r.properties.as_deref().and_then(|p| serde_json::from_str::<Value>(p).ok());
    json!({
        "id": r.public_id,
        "kind": r.kind,
        "externalId": r.external_id,
        "title": r.title,
        "body": r.body,
        "url": r.url,
        "source": r.source,
        "accountName": r.account_name,
        "amount": r.amount,
        "currency": r.currency,
        "stage": r.stage,
        "status": r.status,
        "closeDate": r.close_date,
        "owner": r.owner,
        "properties": properties,
        "sourceUpdatedAt": r.source_updated_at.map(to_iso),
        "createdAt": to_iso(r.created_at),
        "updatedAt": to_iso(r.updated_at),
    })
}

pub async fn list(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let limit = cursor::limit(query(req, "limit").as_deref(), 20)?;
    let after = query(req, "cursor").filter(|c| !c.is_empty()).map(|c| cursor::decode(&c)).transpose()?;
    let kind = kind_param(req)?;
    let admin = auth::workspace_admin(req, cx).await?;
    // One extra row tells whether there is a next page.
    let mut page = records::list(&admin.db(&cx.env)?, &admin.workspace_id, kind, limit + 1, after).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = if more { page.last().map(|r| cursor::encode(r.updated_at, &r.public_id)) } else { None };
    Ok(Reply::ok(json!({ "records": page.iter().map(record_json).collect::<Vec<_>>(), "nextCursor": next })))
}

pub async fn get(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let row = records::get(&admin.db(&cx.env)?, &admin.workspace_id, m.param(0))
        .await?
        .ok_or(ApiError::NotFound("Record not found", None))?;
    Ok(Reply::ok(record_json(&row)))
}

pub async fn stats(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let counts = records::stats(&admin.db(&cx.env)?, &admin.workspace_id).await?;
    let mut kinds = serde_json::Map::new();
    for kind in Kind::all() {
        let n = counts.iter().find(|c| c.kind == kind.as_str()).map_or(0, |c| c.n);
        kinds.insert(kind.as_str().to_owned(), json!(n));
    }
    let total: i64 = counts.iter().map(|c| c.n).sum();
    let last = counts.iter().filter_map(|c| c.last).max();
    Ok(Reply::ok(json!({ "total": total, "kinds": kinds, "lastUpdatedAt": last.map(to_iso) })))
}

/// Exactly the retrieval a chat turn runs, so admins can see what an agent would see.
pub async fn search(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let params = SearchParams::parse(
        query(req, "q").as_deref(),
        query(req, "kind").as_deref(),
        query(req, "limit").as_deref(),
        cx.config()?.knowledge_top_k,
    )?;
    let admin = auth::workspace_admin(req, cx).await?;
    let Some(q) = params.query else {
        return Ok(Reply::ok(json!({ "results": [] })));
    };
    let hits = records::search(&admin.db(&cx.env)?, &admin.workspace_id, &q, params.kind, params.limit).await?;
    let results: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({
                "id": h.public_id,
                "kind": h.kind,
                "externalId": h.external_id,
                "title": h.title,
                "url": h.url,
                "snippet": h.snippet.clone().unwrap_or_default(),
                "score": h.score.unwrap_or(0.0),
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "results": results })))
}
