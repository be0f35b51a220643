//! Operator routes (`Authorization: Bearer <ADMIN_TOKEN>`): workspaces and their admins.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, read_json, Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::settings::{NewAdmin, NewWorkspace};
use crate::domain::time::to_iso;
use crate::domain::token::{Token, TokenKind};
use crate::storage::{self, workspaces};

const WORKSPACE_NOT_FOUND: ApiError = ApiError::NotFound("Workspace not found", None);

fn workspace_json(w: &workspaces::Workspace) -> Value {
    json!({ "id": w.id, "name": w.name, "createdAt": to_iso(w.created_at) })
}

pub async fn list_workspaces(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let list = workspaces::list(&storage::db(&cx.env)?).await?;
    Ok(Reply::ok(json!({ "workspaces": list.iter().map(workspace_json).collect::<Vec<_>>() })))
}

pub async fn create_workspace(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let input = NewWorkspace::try_from(&read_json(req).await?)?;
    let ws = workspaces::Workspace { id: new_id(IdKind::Workspace)?, name: input.name, created_at: cx.now };
    workspaces::create(&storage::db(&cx.env)?, &ws).await?;
    Ok(Reply::created(workspace_json(&ws)))
}

/// Deletes the workspace in D1 first (that is what revokes its keys and tokens), then drops its
/// keys' rate-limiter state. Should the second step fail half-way, no key is usable again: D1
/// no longer knows it; what is left is storage, which the log names.
pub async fn delete_workspace(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let hashes = workspaces::delete(&storage::db(&cx.env)?, m.param(0)).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    super::keys::forget_limiters(cx, &hashes).await;
    Ok(Reply::no_content())
}

pub async fn create_admin(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let input = NewAdmin::try_from(&read_json(req).await?)?;
    let token = Token::generate(TokenKind::AdminToken).map_err(|e| ApiError::internal(format!("rng: {e}")))?;
    let id = new_id(IdKind::Admin)?;
    let row = workspaces::NewAdminRow {
        id: &id,
        workspace_id: m.param(0),
        name: &input.name,
        email: &input.email,
        token_hash: &token.hash(),
        created_at: cx.now,
    };
    if !workspaces::create_admin(&storage::db(&cx.env)?, &row).await? {
        return Err(WORKSPACE_NOT_FOUND);
    }
    Ok(Reply::created(json!({
        "id": id,
        "workspaceId": m.param(0),
        "name": input.name,
        "email": input.email,
        "token": token.reveal(),
        "createdAt": to_iso(cx.now),
    })))
}

pub async fn delete_admin(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let db = storage::db(&cx.env)?;
    if workspaces::delete_admin(&db, m.param(0), m.param(1)).await? {
        return Ok(Reply::no_content());
    }
    if workspaces::exists(&db, m.param(0)).await? {
        Err(ApiError::NotFound("Admin not found", None))
    } else {
        Err(WORKSPACE_NOT_FOUND)
    }
}
