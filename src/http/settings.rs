//! Settings routes for workspace admins (`Authorization: Bearer <admin token>`): API keys,
//! agents and the audit log, always scoped to the admin's own workspace.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, query, read_json, Cx, Reply};
use crate::domain::cursor;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::knowledge::AgentKnowledge;
use crate::domain::settings::{AgentPatch, NewAgent, NewApiKey};
use crate::domain::time::{to_iso, Millis};
use crate::domain::token::{Token, TokenKind};
use crate::storage::{self, agents, audit, keys, last_used, limiter};

const KEY_NOT_FOUND: ApiError = ApiError::NotFound("API key not found", None);
const AGENT_NOT_FOUND: ApiError = ApiError::NotFound("Agent not found", None);

fn iso_or_null(t: Option<Millis>) -> Value {
    t.map_or(Value::Null, |t| Value::String(to_iso(t)))
}

fn key_json(k: &keys::ApiKey, last_used_at: Option<Millis>) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "createdBy": k.created_by_name,
        "createdAt": to_iso(k.created_at),
        "lastUsedAt": iso_or_null(last_used_at),
        "expiresAt": iso_or_null(k.expires_at),
        "rateLimitPerMinute": k.rate_limit_per_minute,
    })
}

pub async fn create_key(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let input = NewApiKey::parse(&read_json(req).await?, cx.now)?;
    let token = Token::generate(TokenKind::ApiKey).map_err(|e| ApiError::internal(format!("rng: {e}")))?;
    let hash = token.hash();
    let key = keys::ApiKey {
        id: new_id(IdKind::ApiKey)?,
        name: input.name,
        prefix: token.display_prefix(),
        created_by_name: admin.name.clone(),
        created_at: cx.now,
        expires_at: input.expires_at,
        rate_limit_per_minute: input.rate_limit_per_minute,
    };
    // The limiter is not told: the key's object learns its limit from D1 on the key's first
    // request, so it is created near the callers, not near this admin.
    let row = keys::NewKeyRow { key: &key, workspace_id: &admin.workspace_id, key_hash: &hash, admin_id: &admin.id };
    keys::create(&storage::db(&cx.env)?, &row).await?;
    let mut body = key_json(&key, None);
    if let Some(obj) = body.as_object_mut() {
        obj.remove("lastUsedAt");
        obj.insert("key".into(), json!(token.reveal()));
    }
    Ok(Reply::created(body))
}

pub async fn list_keys(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let db = storage::db(&cx.env)?;
    let (list, used) =
        futures::join!(keys::list(&db, &admin.workspace_id), last_used::for_workspace(&cx.env, &admin.workspace_id));
    let (list, used) = (list?, used?);
    let keys: Vec<Value> = list.iter().map(|k| key_json(k, used.get(&k.id).copied())).collect();
    Ok(Reply::ok(json!({ "keys": keys })))
}

/// Deletes the key in D1 first (revocation is complete from that moment: D1 is what
/// authentication reads), then drops its rate-limiter state and its last-used entry. Should a
/// later step fail, the key stays refused; only storage is left behind, and the log says so.
pub async fn delete_key(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let key_id = m.param(0);
    let hash = keys::delete(&storage::db(&cx.env)?, &admin.workspace_id, key_id, &admin.name, cx.now)
        .await?
        .ok_or(KEY_NOT_FOUND)?;
    forget_limiters(cx, &[hash]).await;
    let (env, ws, id) = (cx.env.clone(), admin.workspace_id.clone(), key_id.to_owned());
    cx.ctx.wait_until(async move {
        let _ = last_used::forget(&env, &ws, &id).await;
    });
    Ok(Reply::no_content())
}

/// Drops the rate-limiter state of deleted keys, a few at a time (a Worker invocation has a
/// handful of simultaneous connections). Failures are logged, never returned: the keys are
/// already refused by D1.
pub async fn forget_limiters(cx: &Cx, hashes: &[String]) {
    use futures::StreamExt;
    let failures: Vec<String> = futures::stream::iter(hashes)
        .map(|hash| limiter::forget(&cx.env, hash))
        .buffer_unordered(6)
        .filter_map(|r| async move { r.err().and_then(|e| e.log_detail().map(str::to_owned)) })
        .collect()
        .await;
    if !failures.is_empty() {
        super::log(&json!({
            "requestId": cx.request_id,
            "level": "warn",
            "event": "rate_limiter_state_left",
            "keys": failures.len(),
            "detail": failures.first(),
        }));
    }
}

pub async fn audit_log(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let limit = cursor::limit(query(req, "limit").as_deref(), 50)?;
    let entries = audit::list(&storage::db(&cx.env)?, &admin.workspace_id, limit).await?;
    let entries: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "targetName": e.target_name,
                "targetPrefix": e.target_prefix,
                "createdAt": to_iso(e.created_at),
            })
        })
        .collect();
    Ok(Reply::ok(json!({ "entries": entries })))
}

fn agent_json(a: &agents::Agent) -> Value {
    json!({
        "id": a.id,
        "name": a.name,
        "instructions": a.instructions,
        "model": a.model,
        "knowledge": AgentKnowledge::from_stored(a.knowledge.as_deref()).to_json(),
        "createdAt": to_iso(a.created_at),
        "updatedAt": to_iso(a.updated_at),
    })
}

pub async fn create_agent(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let input = NewAgent::try_from(&read_json(req).await?)?;
    let agent = agents::Agent {
        id: new_id(IdKind::Agent)?,
        name: input.name,
        instructions: input.instructions,
        model: input.model,
        knowledge: Some(input.knowledge.to_json().to_string()),
        created_at: cx.now,
        updated_at: cx.now,
    };
    agents::create(&storage::db(&cx.env)?, &admin.workspace_id, &agent, &admin.name).await?;
    Ok(Reply::created(agent_json(&agent)))
}

pub async fn list_agents(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let list = agents::list(&storage::db(&cx.env)?, &admin.workspace_id).await?;
    Ok(Reply::ok(json!({ "agents": list.iter().map(agent_json).collect::<Vec<_>>() })))
}

pub async fn get_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let agent = agents::get(&storage::db(&cx.env)?, &admin.workspace_id, m.param(0)).await?.ok_or(AGENT_NOT_FOUND)?;
    Ok(Reply::ok(agent_json(&agent)))
}

pub async fn update_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let patch = AgentPatch::try_from(&read_json(req).await?)?;
    let db = storage::db(&cx.env)?;
    let agent = agents::update(&db, &admin.workspace_id, m.param(0), &patch, &admin.name, cx.now)
        .await?
        .ok_or(AGENT_NOT_FOUND)?;
    Ok(Reply::ok(agent_json(&agent)))
}

pub async fn delete_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    if agents::delete(&storage::db(&cx.env)?, &admin.workspace_id, m.param(0), &admin.name, cx.now).await? {
        Ok(Reply::no_content())
    } else {
        Err(AGENT_NOT_FOUND)
    }
}
