//! Operator routes (`Authorization: Bearer <ADMIN_TOKEN>`): workspaces and their admins.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, read_json, Cx, Reply};
use crate::context::log;
use crate::domain::config::new_workspace_plane;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::placement::{Placement, Plane};
use crate::domain::settings::{NewAdmin, NewWorkspace};
use crate::domain::time::to_iso;
use crate::domain::token::{Token, TokenKind};
use crate::storage::{self, moves, workspaces};

const WORKSPACE_NOT_FOUND: ApiError = ApiError::NotFound("Workspace not found", None);

fn workspace_json(w: &workspaces::Workspace) -> Value {
    json!({
        "id": w.id,
        "name": w.name,
        "createdAt": to_iso(w.created_at),
        "placement": w.placement().to_json(),
        "dataPlane": w.data_plane,
    })
}

pub async fn list_workspaces(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let list = workspaces::list(&storage::control(&cx.env)?).await?;
    Ok(Reply::ok(json!({ "workspaces": list.iter().map(workspace_json).collect::<Vec<_>>() })))
}

/// Registers the workspace. Its object is created by its first request (an admin's), near
/// that request unless the placement says where.
pub async fn create_workspace(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let input = NewWorkspace::try_from(&read_json(req).await?)?;
    let ws = workspaces::Workspace {
        id: new_id(IdKind::Workspace)?,
        name: input.name,
        created_at: cx.now,
        placement: input.placement.stored().to_owned(),
        data_plane: new_workspace_plane(cx.env.var("NEW_WORKSPACE_DATA_PLANE").ok().map(|v| v.to_string()).as_deref())?
            .stored()
            .to_owned(),
    };
    workspaces::create(&storage::control(&cx.env)?, &ws).await?;
    Ok(Reply::created(workspace_json(&ws)))
}

/// Removes the registry row first (from then on nothing reaches the workspace: admins, the
/// key index and, on D1, its data go with it), then its object's storage, then its keys'
/// rate-limiter objects. What is left after a failure is recorded with the deletion and
/// finished by a later delete of the same id (which then answers 204 too).
pub async fn delete_workspace(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let control = storage::control(&cx.env)?;
    let id = m.param(0);
    let Some(ws) = workspaces::get(&control, id).await? else {
        let leftover = workspaces::leftover(&control, id).await?.ok_or(WORKSPACE_NOT_FOUND)?;
        clean_up(cx, &control, id, &leftover.placement, &leftover.hashes()).await;
        return Ok(Reply::no_content());
    };
    // The keys its object holds, read while it still answers (D1's are read with the delete).
    let in_object = match ws.plane() {
        Plane::D1 => Vec::new(),
        // Without the registry's vouching (`init`): an object that never got a database is
        // not given one just to be read and deleted.
        _ => storage::keys::hashes(&storage::open(
            &cx.env,
            &storage::Place { init: None, ..ws.place() },
            ApiError::internal("absent"),
        )?)
        .await
        .unwrap_or_default(),
    };
    workspaces::delete(&control, id, &in_object, cx.now).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    let leftover = workspaces::leftover(&control, id).await?;
    let hashes = leftover.as_ref().map(workspaces::Leftover::hashes).unwrap_or_default();
    clean_up(cx, &control, id, &ws.placement, &hashes).await;
    Ok(Reply::no_content())
}

/// Deletes a removed workspace's object storage and its keys' limiter state; forgets the
/// leftover once both are done, logs what failed otherwise.
async fn clean_up(cx: &Cx, control: &storage::Db, id: &str, placement: &str, hashes: &[String]) {
    let placement = Placement::from_stored(placement).unwrap_or(Placement::Auto);
    let destroyed = match storage::stub(&cx.env, id, placement.stub_options()) {
        Ok(stub) => storage::destroy(&stub).await,
        Err(err) => Err(err),
    };
    let limiters = super::keys::forget_limiters(cx, hashes).await;
    match destroyed {
        Ok(()) if limiters => {
            let _ = workspaces::drop_leftover(control, id).await;
        }
        Ok(()) => {}
        Err(err) => log(&json!({
            "requestId": cx.request_id, "level": "warn", "event": "workspace_object_not_deleted",
            "workspaceId": id, "detail": err.log_detail(),
        })),
    }
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
    if !workspaces::create_admin(&storage::control(&cx.env)?, &row).await? {
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
    let db = storage::control(&cx.env)?;
    if workspaces::delete_admin(&db, m.param(0), m.param(1)).await? {
        return Ok(Reply::no_content());
    }
    if workspaces::exists(&db, m.param(0)).await? {
        Err(ApiError::NotFound("Admin not found", None))
    } else {
        Err(WORKSPACE_NOT_FOUND)
    }
}

/// `GET /api/admin/data-plane`: where each workspace's data is, and each move's progress.
pub async fn data_plane(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let control = storage::control(&cx.env)?;
    let (list, moves) = futures::join!(workspaces::list(&control), moves::all_progress(&control));
    let (list, moves) = (list?, moves?);
    let mut counts = json!({ "d1": 0, "moving": 0, "object": 0 });
    let rows: Vec<Value> = list
        .iter()
        .map(|w| {
            counts[w.plane().stored()] = json!(counts[w.plane().stored()].as_u64().unwrap_or(0) + 1);
            let mut row = workspace_json(w);
            row["move"] = moves.iter().find(|p| p.workspace_id == w.id).map_or(Value::Null, move_json);
            row
        })
        .collect();
    Ok(Reply::ok(json!({ "workspaces": rows, "counts": counts })))
}

fn move_json(p: &moves::Progress) -> Value {
    json!({
        "step": p.step,
        "copied": p.copied(),
        "startedAt": to_iso(p.started_at),
        "updatedAt": to_iso(p.updated_at),
        "finishedAt": p.finished_at.map(to_iso),
        "error": p.error,
    })
}

/// `POST /api/admin/data-plane/move` `{"workspaceId"?, "pages"?}`: moves one workspace from D1
/// to its own object, at most `pages` pages per call (run it again until `dataPlane` is
/// `object`; safe to run again after any failure). Without `workspaceId`: the workspace being
/// moved, else the oldest still on D1.
pub async fn move_workspace(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let body = read_json(req).await?;
    let pages = crate::domain::validate::optional_int(&body, "pages", 1, 1_000)?.unwrap_or(100);
    let control = storage::control(&cx.env)?;
    let ws = match body.get("workspaceId") {
        None | Some(Value::Null) => moves::next(&control).await?,
        Some(Value::String(id)) => {
            let ws = workspaces::get(&control, id).await?.ok_or(WORKSPACE_NOT_FOUND)?;
            if let Some(other) = moves::moving(&control).await?.filter(|other| other != id) {
                return Err(ApiError::Conflict("Another workspace is being moved", json!({ "workspaceId": other })));
            }
            Some(ws)
        }
        Some(_) => return Err(ApiError::invalid("workspaceId", "must be a string")),
    };
    let Some(ws) = ws else {
        return Ok(Reply::ok(json!({ "workspaceId": null, "dataPlane": null, "remaining": 0 })));
    };
    if ws.plane() == Plane::Object {
        let remaining = moves::remaining(&control).await?;
        return Ok(Reply::ok(
            json!({ "workspaceId": ws.id, "dataPlane": "object", "step": "done", "remaining": remaining }),
        ));
    }
    let outcome = moves::run(&cx.env, &control, &ws, u32::try_from(pages).unwrap_or(100), || {
        worker::Date::now().as_millis() as i64
    })
    .await?;
    let mut reply = serde_json::to_value(&outcome).map_err(ApiError::internal)?;
    reply["remaining"] = json!(moves::remaining(&control).await?);
    Ok(Reply::ok(reply))
}
