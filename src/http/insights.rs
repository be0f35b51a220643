//! Insights: the workspace admin's saved questions (`/api/settings/insights…`) and their
//! read route (`GET /api/insights/{id}`, for API keys and embed tokens), which serves the
//! stored answer and never calls the LLM.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, read_json, Body, Cx, Reply};
use crate::domain::embed_token;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::insight::{self, Insight, InsightPatch, NewInsight, MAX_PER_WORKSPACE, NOT_FOUND};
use crate::storage::{self, agents, insights, limiter};
use crate::turn::insight as generation;

/// `GET /api/insights/{id}`: the key check and the insight in one D1 round trip, beside the
/// key's rate limiter.
pub async fn read(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let caller = auth::key_or_embed(req, cx, false)?;
    let hash = caller.key_hash().to_owned();
    let config = cx.config()?;
    let db = caller.locate(cx).await?.db;
    let (loaded, verdict) = futures::join!(
        insights::read_with_key(&db, &hash, m.param(0)),
        limiter::check(&cx.env, &hash, config.rate_limit_per_minute, None)
    );
    let (key, found) = loaded?;
    let key = crate::turn::admit::admit(cx, &hash, key, verdict, None).await.0.map_err(|e| caller.refusal(e))?.key;
    let found = found.ok_or(NOT_FOUND)?;
    let allowed = match caller.claims() {
        None => key.scope().check(found.agent_id.as_deref()),
        Some(claims) if embed_token::may_read_insight(claims, &key.scope(), &found.id, found.agent_id.as_deref()) => {
            Ok(())
        }
        Some(_) => Err(ApiError::Forbidden("Insight not allowed for this token", None)),
    };
    allowed?;
    let etag = found.current_etag();
    cx.add_header("ETag", etag.clone());
    cx.add_header("Cache-Control", insight::cache_control(found.next_refresh_at, cx.now));
    let if_none_match = req.headers().get("If-None-Match").ok().flatten();
    if insight::not_modified(if_none_match.as_deref(), &etag) {
        return Ok(Reply { status: 304, body: Body::None });
    }
    Ok(Reply::ok(found.read_json(cx.now)))
}

pub async fn list(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let list = insights::list(&admin.db(&cx.env)?, &admin.workspace_id).await?;
    Ok(Reply::ok(json!({ "insights": list.iter().map(|i| i.settings_json(cx.now)).collect::<Vec<_>>() })))
}

pub async fn get(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let found = insights::get(&admin.db(&cx.env)?, &admin.workspace_id, m.param(0)).await?.ok_or(NOT_FOUND)?;
    Ok(Reply::ok(found.settings_json(cx.now)))
}

/// 400 unless `agent_id` (if any) is an agent of the workspace.
async fn check_agent(db: &storage::Db, workspace_id: &str, agent_id: Option<&str>) -> ApiResult<()> {
    let Some(id) = agent_id else { return Ok(()) };
    match agents::get(db, workspace_id, id).await? {
        Some(_) => Ok(()),
        None => {
            Err(ApiError::invalid("agentId", "must be an agent of this workspace, or null for the default assistant"))
        }
    }
}

/// Generates the insight after the response, under `waitUntil`; the lease is already held.
/// Should the platform cut it short, the lease expires and the scheduled job takes over.
fn generate_later(cx: &Cx, db: &storage::Db, workspace_id: String, found: Insight) {
    let Ok(config) = cx.config() else { return };
    let (env, request_id, db) = (cx.env.clone(), cx.request_id.clone(), db.clone());
    cx.ctx.wait_until(async move {
        if let Err(err) = generation::generate(&env, &db, &config, &request_id, &workspace_id, &found).await {
            crate::context::log_warn(&request_id, "insight_not_stored", err.log_detail());
        }
    });
}

pub async fn create(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let input = NewInsight::try_from(&read_json(req).await?)?;
    let config = cx.config()?;
    let db = admin.db(&cx.env)?;
    check_agent(&db, &admin.workspace_id, input.agent_id.as_deref()).await?;
    let found = Insight {
        id: new_id(IdKind::Insight)?,
        name: input.name,
        prompt: input.prompt,
        agent_id: input.agent_id,
        refresh_seconds: input.refresh_seconds,
        next_refresh_at: cx.now,
        created_at: cx.now,
        updated_at: cx.now,
        ..Insight::default()
    };
    let lease_until = cx.now.saturating_add(generation::lease_ms(&config));
    if !insights::create(&db, &admin.workspace_id, &found, &admin.name, lease_until).await? {
        let held = insights::count(&db, &admin.workspace_id).await.unwrap_or(MAX_PER_WORKSPACE);
        return Err(ApiError::Conflict("Insight limit reached", json!({ "limit": MAX_PER_WORKSPACE, "count": held })));
    }
    let body = found.settings_json(cx.now);
    generation::note_due(&cx.env, &db, &admin.workspace_id).await;
    generate_later(cx, &db, admin.workspace_id, found);
    Ok(Reply::created(body))
}

pub async fn update(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let patch = InsightPatch::try_from(&read_json(req).await?)?;
    let config = cx.config()?;
    let db = admin.db(&cx.env)?;
    let (old, agent_ok) = futures::join!(
        insights::get(&db, &admin.workspace_id, m.param(0)),
        check_agent(&db, &admin.workspace_id, patch.agent_id.as_ref().and_then(|a| a.as_deref())),
    );
    let old = old?.ok_or(NOT_FOUND)?;
    agent_ok?;
    let reask = patch.changes_question(&old.prompt, old.agent_id.as_deref());
    let details = json!({ "changes": changes(&patch, &old) }).to_string();
    let updated = insights::update(&db, &admin.workspace_id, m.param(0), &patch, reask, &details, &admin.name, cx.now)
        .await?
        .ok_or(NOT_FOUND)?;
    if reask {
        let until = cx.now.saturating_add(generation::lease_ms(&config));
        if let Some(claimed) = insights::claim(&db, &admin.workspace_id, &updated.id, cx.now, until).await? {
            generate_later(cx, &db, admin.workspace_id.clone(), claimed);
        }
    }
    generation::note_due(&cx.env, &db, &admin.workspace_id).await;
    Ok(Reply::ok(updated.settings_json(cx.now)))
}

/// What an edit changed, for the audit log (a prompt is long: only that it changed).
fn changes(patch: &InsightPatch, old: &Insight) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(name) = patch.name.as_ref().filter(|n| **n != old.name) {
        out.insert("name".into(), json!({ "from": old.name, "to": name }));
    }
    if patch.prompt.as_ref().is_some_and(|p| *p != old.prompt) {
        out.insert("prompt".into(), json!("changed"));
    }
    if let Some(agent) = patch.agent_id.as_ref().filter(|a| **a != old.agent_id) {
        out.insert("agentId".into(), json!({ "from": old.agent_id, "to": agent }));
    }
    if let Some(seconds) = patch.refresh_seconds.filter(|s| *s != old.refresh_seconds) {
        out.insert("refreshSeconds".into(), json!({ "from": old.refresh_seconds, "to": seconds }));
    }
    Value::Object(out)
}

pub async fn delete(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    if insights::delete(&admin.db(&cx.env)?, &admin.workspace_id, m.param(0), &admin.name, cx.now).await? {
        Ok(Reply::no_content())
    } else {
        Err(NOT_FOUND)
    }
}

/// `POST …/refresh`: generates the insight now and answers with it (see
/// `turn::insight::refresh`).
pub async fn refresh(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let config = cx.config()?;
    let db = admin.db(&cx.env)?;
    let ws = admin.workspace_id.as_str();
    generation::refresh(&cx.env, &db, &config, &cx.request_id, ws, m.param(0)).await?.ok_or(NOT_FOUND)?;
    let now = worker::Date::now().as_millis() as i64;
    insights::audit(&db, ws, m.param(0), "insight.refreshed", &admin.name, now).await?;
    let found = insights::get(&db, ws, m.param(0)).await?.ok_or(NOT_FOUND)?;
    Ok(Reply::ok(found.settings_json(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_are_audited_by_what_changed() {
        let old = Insight { name: "A".into(), prompt: "p".into(), refresh_seconds: 3_600, ..Insight::default() };
        let patch = InsightPatch {
            name: Some("B".into()),
            prompt: Some("p".into()),
            agent_id: Some(Some("agent_x".into())),
            refresh_seconds: Some(3_600),
        };
        let c = changes(&patch, &old);
        assert_eq!(c["name"], json!({ "from": "A", "to": "B" }));
        assert_eq!(c["agentId"], json!({ "from": null, "to": "agent_x" }));
        assert!(c.get("prompt").is_none() && c.get("refreshSeconds").is_none());
    }
}
