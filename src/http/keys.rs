//! API keys as workspace admins manage them (`Authorization: Bearer <admin token>`): create,
//! list, edit, roll, delete, and the usage ledger of the workspace's keys.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, query, read_json, read_optional_json, Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::scope::{self, Scope};
use crate::domain::settings::{self, KeyPatch, NewApiKey};
use crate::domain::time::{to_iso, Millis};
use crate::domain::token::{Token, TokenKind};
use crate::domain::usage::{Counters, Range};
use crate::storage::{self, agents, keys, last_used, limiter, workspaces::Admin};

const KEY_NOT_FOUND: ApiError = ApiError::NotFound("API key not found", None);

fn iso_or_null(t: Option<Millis>) -> Value {
    t.map_or(Value::Null, |t| Value::String(to_iso(t)))
}

/// A key as every settings route shows it (never its secret, which only create and roll
/// return, once).
fn key_json(k: &keys::ApiKey) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "createdBy": k.created_by_name,
        "createdAt": to_iso(k.created_at),
        "expiresAt": iso_or_null(k.expires_at),
        "rateLimitPerMinute": k.rate_limit_per_minute,
        "allowedAgentIds": k.scope().to_json(),
        "rolledFrom": k.rolled_from,
        "rolledTo": k.rolled_to,
    })
}

/// A new key's reply: the key and, this once, its secret.
fn revealed(k: &keys::ApiKey, token: &Token) -> Value {
    let mut body = key_json(k);
    body["key"] = json!(token.reveal());
    body
}

/// 400 naming any of the scope's agents that are not this workspace's.
async fn check_agents(db: &storage::Db, workspace_id: &str, scope: &Scope) -> ApiResult<()> {
    let Some(ids) = scope.agents() else { return Ok(()) };
    let unknown = agents::unknown(db, workspace_id, ids).await?;
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(scope::unknown_agents(&unknown))
    }
}

/// A fresh key with its secret, not stored yet.
/// A minted key's row; a key of the first format also goes to the index.
fn new_row<'a>(admin: &'a Admin, key: &'a keys::ApiKey, hash: &'a str, token: &Token) -> keys::NewKeyRow<'a> {
    keys::NewKeyRow {
        key,
        workspace_id: &admin.workspace_id,
        key_hash: hash,
        admin_id: &admin.id,
        indexed: token.locator().is_none(),
    }
}

/// Keys of a workspace on its own object carry its locator; a workspace still on D1 mints
/// keys of the first format (found through the index), as before the split.
fn mint(admin: &Admin, cx: &Cx, name: String) -> ApiResult<(keys::ApiKey, Token)> {
    let token = match admin.workspace.locator() {
        Some(locator) => Token::generate_located(&locator),
        None => Token::generate(TokenKind::ApiKey),
    }
    .map_err(|e| ApiError::internal(format!("rng: {e}")))?;
    let key = keys::ApiKey {
        id: new_id(IdKind::ApiKey)?,
        name,
        prefix: token.display_prefix(),
        created_by_name: admin.name.clone(),
        created_at: cx.now,
        expires_at: None,
        rate_limit_per_minute: None,
        allowed_agent_ids: None,
        rolled_from: None,
        rolled_to: None,
    };
    Ok((key, token))
}

pub async fn create(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let input = NewApiKey::parse(&read_json(req).await?, cx.now)?;
    let db = admin.db(&cx.env)?;
    check_agents(&db, &admin.workspace_id, &input.scope).await?;
    let (mut key, token) = mint(&admin, cx, input.name)?;
    key.expires_at = input.expires_at;
    key.rate_limit_per_minute = input.rate_limit_per_minute;
    key.allowed_agent_ids = input.scope.to_stored();
    // The limiter is not told: the key's object learns its limit from D1 on the key's first
    // request, so it is created near the callers, not near this admin.
    let hash = token.hash();
    let row = new_row(&admin, &key, &hash, &token);
    keys::create(&db, &row).await?;
    Ok(Reply::created(revealed(&key, &token)))
}

pub async fn list(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let db = admin.db(&cx.env)?;
    let since = Range::last_30_days(cx.now).from_str();
    let (list, used, requests) = futures::join!(
        keys::list(&db, &admin.workspace_id),
        last_used::for_workspace(&cx.env, &admin.workspace_id),
        storage::usage::requests_since(&db, &admin.workspace_id, &since),
    );
    let (list, used, requests) = (list?, used?, requests?);
    let keys: Vec<Value> = list
        .iter()
        .map(|k| {
            let mut body = key_json(k);
            body["lastUsedAt"] = iso_or_null(used.get(&k.id).copied());
            body["requests30d"] = json!(requests.get(&k.id).copied().unwrap_or(0));
            body
        })
        .collect();
    Ok(Reply::ok(json!({ "keys": keys })))
}

/// `PATCH`: any of name, limit, expiry and scope. A new limit reaches the key's limiter on the
/// key's next request (D1 is read on every request; the object recounts when they disagree),
/// so the object is never created here, far from the key's callers.
pub async fn update(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let patch = KeyPatch::parse(&read_json(req).await?, cx.now)?;
    let db = admin.db(&cx.env)?;
    // The key and the scope's agents are read side by side; an unknown key is answered first.
    let no_scope = Scope::All;
    let (key, agents_known) = futures::join!(
        keys::get(&db, &admin.workspace_id, m.param(0)),
        check_agents(&db, &admin.workspace_id, patch.scope.as_ref().unwrap_or(&no_scope)),
    );
    let key = key?.ok_or(KEY_NOT_FOUND)?;
    settings::check_key_edit(&patch, key.expires_at, key.rolled_to.is_some(), cx.now)?;
    agents_known?;
    let (_, changes) = patch.apply(&key.settings());
    if changes.as_object().is_none_or(serde_json::Map::is_empty) {
        return Ok(Reply::ok(key_json(&key)));
    }
    let details = json!({ "changes": changes }).to_string();
    let key = keys::update(&db, &admin.workspace_id, &key.id, &patch, &details, &admin.name, cx.now)
        .await?
        .ok_or(KEY_NOT_FOUND)?;
    Ok(Reply::ok(key_json(&key)))
}

/// A roll: a successor with the same name, limit, expiry and scope, while the old key keeps
/// working for the grace period (or until its own expiry, if sooner).
pub async fn roll(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let grace = settings::grace_seconds(&read_optional_json(req).await?)?;
    let db = admin.db(&cx.env)?;
    let old = keys::get(&db, &admin.workspace_id, m.param(0)).await?.ok_or(KEY_NOT_FOUND)?;
    if old.expires_at.is_some_and(|t| t <= cx.now) {
        return Err(ApiError::NotFound("API key not found", Some(json!("the key has expired; create a new one"))));
    }
    // A successor that was deleted since does not count: the key can be rolled again.
    if let Some(successor) = &old.rolled_to {
        if keys::get(&db, &admin.workspace_id, successor).await?.is_some() {
            return Err(ApiError::Conflict("API key already rolled", json!({ "rolledTo": successor })));
        }
    }
    let (mut key, token) = mint(&admin, cx, old.name.clone())?;
    key.expires_at = old.expires_at;
    key.rate_limit_per_minute = old.rate_limit_per_minute;
    key.allowed_agent_ids = old.allowed_agent_ids.clone();
    key.rolled_from = Some(old.id.clone());
    let old_until = settings::rolled_expiry(old.expires_at, cx.now, grace);
    let details = json!({ "rolledFrom": old.id, "gracePeriodSeconds": grace, "previousExpiresAt": to_iso(old_until) })
        .to_string();
    let hash = token.hash();
    let row = new_row(&admin, &key, &hash, &token);
    if !keys::roll(&db, &row, old_until, &details).await? {
        // Rolled, expired or deleted by someone else in the meantime.
        return Err(KEY_NOT_FOUND);
    }
    let mut body = revealed(&key, &token);
    body["previous"] = json!({ "id": old.id, "expiresAt": to_iso(old_until) });
    Ok(Reply::created(body))
}

/// Deletes the key in D1 first (revocation is complete from that moment: D1 is what
/// authentication reads), then drops its rate-limiter state and its last-used entry. Should a
/// later step fail, the key stays refused; only storage is left behind, and the log says so.
/// Its usage stays, under its name, for past ranges.
pub async fn delete(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let key_id = m.param(0);
    let hash = keys::delete(&admin.db(&cx.env)?, &admin.workspace_id, key_id, &admin.name, cx.now)
        .await?
        .ok_or(KEY_NOT_FOUND)?;
    // A key of the first format leaves the index too (its row is what refuses it, already).
    if let Err(err) = storage::workspaces::unindex_key(&storage::control(&cx.env)?, &hash).await {
        super::log(
            &json!({ "requestId": cx.request_id, "level": "warn", "event": "key_index_left", "detail": err.log_detail() }),
        );
    }
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
pub async fn forget_limiters(cx: &Cx, hashes: &[String]) -> bool {
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
    failures.is_empty()
}

fn counters_json(c: &Counters) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

/// `GET /api/settings/usage?from=&to=&keyId=`: every UTC day of the range (zeros included) and
/// each key's sums, deleted keys too.
pub async fn usage(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let range = Range::parse(query(req, "from").as_deref(), query(req, "to").as_deref(), cx.now)?;
    let key_id = query(req, "keyId").filter(|k| !k.is_empty());
    let found = storage::usage::read(&admin.db(&cx.env)?, &admin.workspace_id, &range, key_id.as_deref()).await?;
    if key_id.is_some() && found.keys.is_empty() {
        return Err(KEY_NOT_FOUND);
    }
    let mut totals = Counters::default();
    let days: Vec<Value> = found
        .days
        .iter()
        .map(|(date, c)| {
            totals.add(c);
            let mut day = counters_json(c);
            day["date"] = json!(date);
            day
        })
        .collect();
    let keys: Vec<Value> = found
        .keys
        .iter()
        .map(|k| {
            let mut key = counters_json(&k.counters());
            key["keyId"] = json!(k.key_id);
            key["name"] = json!(k.name);
            key["prefix"] = json!(k.prefix);
            key["deleted"] = json!(k.deleted != 0);
            key
        })
        .collect();
    Ok(Reply::ok(json!({
        "from": range.from_str(),
        "to": range.to_str(),
        "keyId": key_id,
        "days": days,
        "keys": keys,
        "totals": counters_json(&totals),
    })))
}
