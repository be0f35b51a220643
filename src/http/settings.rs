//! Settings routes for workspace admins (`Authorization: Bearer <admin token>`): agents and
//! the audit log, always scoped to the admin's own workspace (API keys are in `keys`).

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, query, read_json, Cx, Reply};
use crate::domain::cursor;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::knowledge::AgentKnowledge;
use crate::domain::providers;
use crate::domain::settings::{AgentPatch, AgentSettings, NewAgent};
use crate::domain::time::to_iso;
use crate::domain::tools;
use crate::storage::{agents, audit};

const AGENT_NOT_FOUND: ApiError = ApiError::NotFound("Agent not found", None);

pub async fn audit_log(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let limit = cursor::limit(query(req, "limit").as_deref(), 50)?;
    let entries = audit::list(&admin.db(&cx.env)?, &admin.workspace_id, limit).await?;
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
                "details": e.details.as_deref().and_then(|d| serde_json::from_str::<Value>(d).ok()),
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
        "provider": a.provider.as_deref().unwrap_or(providers::DEFAULT_PROVIDER),
        "fallbacks": providers::fallbacks_from_stored(a.fallbacks.as_deref()),
        "knowledge": AgentKnowledge::from_stored(a.knowledge.as_deref()).to_json(),
        "tools": tools::tools_json(&tools::from_stored(a.tools.as_deref())),
        "createdAt": to_iso(a.created_at),
        "updatedAt": to_iso(a.updated_at),
    })
}

pub async fn create_agent(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let input = NewAgent::try_from(&read_json(req).await?)?;
    cx.config()?.providers.check_agent(input.provider.as_deref(), &input.fallbacks)?;
    let agent = agents::Agent {
        id: new_id(IdKind::Agent)?,
        name: input.name,
        instructions: input.instructions,
        model: input.model,
        provider: input.provider,
        fallbacks: (!input.fallbacks.is_empty()).then(|| json!(input.fallbacks).to_string()),
        knowledge: Some(input.knowledge.to_json().to_string()),
        tools: Some(tools::tools_json(&input.tools).to_string()),
        created_at: cx.now,
        updated_at: cx.now,
    };
    agents::create(&admin.db(&cx.env)?, &admin.workspace_id, &agent, &admin.name).await?;
    Ok(Reply::created(agent_json(&agent)))
}

pub async fn list_agents(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let list = agents::list(&admin.db(&cx.env)?, &admin.workspace_id).await?;
    Ok(Reply::ok(json!({ "agents": list.iter().map(agent_json).collect::<Vec<_>>() })))
}

pub async fn get_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let agent = agents::get(&admin.db(&cx.env)?, &admin.workspace_id, m.param(0)).await?.ok_or(AGENT_NOT_FOUND)?;
    Ok(Reply::ok(agent_json(&agent)))
}

pub async fn update_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let patch = AgentPatch::try_from(&read_json(req).await?)?;
    let provider = patch.provider.as_ref().and_then(|p| p.as_deref());
    cx.config()?.providers.check_agent(provider, patch.fallbacks.as_deref().unwrap_or_default())?;
    let db = admin.db(&cx.env)?;
    // Read first, so the audit entry can say what changed (a concurrent edit in between makes
    // its "from" values stale, never the agent itself wrong).
    let old = agents::get(&db, &admin.workspace_id, m.param(0)).await?.ok_or(AGENT_NOT_FOUND)?;
    let knowledge = AgentKnowledge::from_stored(old.knowledge.as_deref());
    let old_tools = tools::from_stored(old.tools.as_deref());
    let old_fallbacks = providers::fallbacks_from_stored(old.fallbacks.as_deref());
    let changes = patch.changes(&AgentSettings {
        name: &old.name,
        instructions: &old.instructions,
        model: old.model.as_deref(),
        provider: old.provider.as_deref(),
        fallbacks: &old_fallbacks,
        knowledge: &knowledge,
        tools: &old_tools,
    });
    let details = json!({ "changes": changes }).to_string();
    let agent = agents::update(&db, &admin.workspace_id, m.param(0), &patch, &details, &admin.name, cx.now)
        .await?
        .ok_or(AGENT_NOT_FOUND)?;
    Ok(Reply::ok(agent_json(&agent)))
}

pub async fn delete_agent(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    if agents::delete(&admin.db(&cx.env)?, &admin.workspace_id, m.param(0), &admin.name, cx.now).await? {
        Ok(Reply::no_content())
    } else {
        Err(AGENT_NOT_FOUND)
    }
}
