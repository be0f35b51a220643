//! Agents: named instructions (and optionally a model) that chats run with.

use super::Db;
use serde::Deserialize;

use super::audit::{self, Table};
use super::{all, batch, changes, first, int, opt_text, stmt, text};
use crate::domain::error::ApiResult;
use crate::domain::settings::AgentPatch;
use crate::domain::time::Millis;
use crate::domain::tools;

#[derive(Debug, Clone, Deserialize)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub instructions: String,
    pub model: Option<String>,
    /// `None` reads as the `default` provider.
    pub provider: Option<String>,
    /// JSON `[{"provider", "model"}]`; `None` for none.
    pub fallbacks: Option<String>,
    /// `{"enabled", "kinds"}` as JSON; `None` is the default (enabled, every kind).
    pub knowledge: Option<String>,
    /// JSON array of tool names; `None` for none.
    pub tools: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str = "id, name, instructions, model, provider, fallbacks, knowledge, tools, created_at, updated_at";

pub async fn create(db: &Db, workspace_id: &str, a: &Agent, actor: &str) -> ApiResult<()> {
    let sql =
        "INSERT INTO agents (id, workspace_id, name, instructions, model, created_at, updated_at, knowledge, tools, \
               provider, fallbacks) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
    let params = [
        text(&a.id),
        text(workspace_id),
        text(&a.name),
        text(&a.instructions),
        opt_text(a.model.as_deref()),
        int(a.created_at),
        int(a.updated_at),
        opt_text(a.knowledge.as_deref()),
        opt_text(a.tools.as_deref()),
        opt_text(a.provider.as_deref()),
        opt_text(a.fallbacks.as_deref()),
    ];
    let target = audit::Target { id: &a.id, name: Some(&a.name), prefix: None };
    let log = audit::record(db, workspace_id, actor, "agent.created", &target, a.created_at)?;
    batch(db, vec![stmt(db, sql, &params)?, log]).await?;
    Ok(())
}

pub async fn list(db: &Db, workspace_id: &str) -> ApiResult<Vec<Agent>> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE workspace_id = ?1 ORDER BY created_at DESC, id DESC");
    all(stmt(db, &sql, &[text(workspace_id)])?).await
}

pub async fn get(db: &Db, workspace_id: &str, id: &str) -> ApiResult<Option<Agent>> {
    let sql = format!("SELECT {COLUMNS} FROM agents WHERE id = ?1 AND workspace_id = ?2");
    first(stmt(db, &sql, &[text(id), text(workspace_id)])?).await
}

/// Those of `ids` that are not agents of the workspace.
pub async fn unknown(db: &Db, workspace_id: &str, ids: &[String]) -> ApiResult<Vec<String>> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let sql = "SELECT id FROM agents WHERE workspace_id = ?1 AND id IN (SELECT value FROM json_each(?2))";
    let list = serde_json::to_string(ids).map_err(crate::domain::error::ApiError::internal)?;
    let known: Vec<Id> = all(stmt(db, sql, &[text(workspace_id), text(&list)])?).await?;
    Ok(ids.iter().filter(|id| !known.iter().any(|k| &k.id == *id)).cloned().collect())
}

/// Applies the patch (only the fields it sets) and logs it, in one transaction; returns the
/// agent as it now is, or `None` if it is not in this workspace.
pub async fn update(
    db: &Db,
    workspace_id: &str,
    id: &str,
    patch: &AgentPatch,
    details: &str,
    actor: &str,
    at: Millis,
) -> ApiResult<Option<Agent>> {
    // ?5 says whether `model` was given at all, so `null` can reset it while absence keeps it.
    let sql = "UPDATE agents SET name = COALESCE(?3, name), instructions = COALESCE(?4, instructions), \
               model = CASE WHEN ?5 = 1 THEN ?6 ELSE model END, updated_at = ?7, \
               knowledge = COALESCE(?8, knowledge), tools = COALESCE(?9, tools), \
               provider = CASE WHEN ?10 = 1 THEN ?11 ELSE provider END, fallbacks = COALESCE(?12, fallbacks) \
               WHERE id = ?1 AND workspace_id = ?2";
    let params = [
        text(id),
        text(workspace_id),
        opt_text(patch.name.as_deref()),
        opt_text(patch.instructions.as_deref()),
        int(i64::from(patch.model.is_some())),
        opt_text(patch.model.as_ref().and_then(|m| m.as_deref())),
        int(at),
        opt_text(patch.knowledge.as_ref().map(|k| k.to_json().to_string()).as_deref()),
        opt_text(patch.tools.as_ref().map(|t| tools::tools_json(t).to_string()).as_deref()),
        int(i64::from(patch.provider.is_some())),
        opt_text(patch.provider.as_ref().and_then(|p| p.as_deref())),
        opt_text(patch.fallbacks.as_ref().map(|f| serde_json::json!(f).to_string()).as_deref()),
    ];
    let log = audit::record_if_exists(
        db,
        workspace_id,
        actor,
        "agent.updated",
        Table::Agents,
        id,
        patch.name.as_deref(),
        Some(details),
        at,
    )?;
    let select = stmt(
        db,
        &format!("SELECT {COLUMNS} FROM agents WHERE id = ?1 AND workspace_id = ?2"),
        &[text(id), text(workspace_id)],
    )?;
    let results = batch(db, vec![log, stmt(db, sql, &params)?, select]).await?;
    match results.get(2) {
        Some(r) => Ok(super::rows::<Agent>(r)?.into_iter().next()),
        None => Ok(None),
    }
}

pub async fn delete(db: &Db, workspace_id: &str, id: &str, actor: &str, at: Millis) -> ApiResult<bool> {
    let log = audit::record_if_exists(db, workspace_id, actor, "agent.deleted", Table::Agents, id, None, None, at)?;
    let delete = stmt(db, "DELETE FROM agents WHERE id = ?1 AND workspace_id = ?2", &[text(id), text(workspace_id)])?;
    // Keys scoped to it lose it (a key left with none is refused until an admin edits it).
    let unscope = stmt(
        db,
        "UPDATE api_keys SET allowed_agent_ids = (SELECT json_group_array(value) FROM json_each(api_keys.allowed_agent_ids) \
         WHERE value <> ?1) WHERE workspace_id = ?2 AND allowed_agent_ids IS NOT NULL \
         AND EXISTS (SELECT 1 FROM json_each(api_keys.allowed_agent_ids) WHERE value = ?1)",
        &[text(id), text(workspace_id)],
    )?;
    let results = batch(db, vec![log, delete, unscope]).await?;
    match results.get(1) {
        Some(r) => Ok(changes(r)? > 0),
        None => Ok(false),
    }
}
