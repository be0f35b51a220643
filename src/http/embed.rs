//! `POST /api/embed-tokens`: a customer's server mints a browser-safe token with its API key.
//! Nothing is stored: the token is signed, and every use checks the key again.

use serde_json::json;
use worker::Request;

use super::{auth, read_json, Cx, Reply};
use crate::domain::embed_token::{self, Claims, MintRequest};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::time::to_iso;
use crate::storage::{agents, insights, keys, limiter};

pub async fn mint(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let token = auth::api_key(req)?;
    let hash = token.hash();
    let config = cx.config()?;
    let secret = cx.secret("EMBED_TOKEN_SECRET").ok_or(ApiError::NotConfigured("EMBED_TOKEN_SECRET"))?;
    let input = MintRequest::try_from(&read_json(req).await?)?;
    let located = auth::Caller::Key { hash: hash.clone(), locator: token.locator().cloned() }.locate(cx).await?;
    let db = located.db;
    let (key, verdict) =
        futures::join!(keys::by_hash(&db, &hash), limiter::check(&cx.env, &hash, config.rate_limit_per_minute, None));
    let key = crate::turn::admit::admit(cx, &hash, key?, verdict, None).await.0?.key;
    let scope = key.scope();
    // Unknown ids first (400, naming them), then what the key may not reach (403).
    let (unknown_agents, found_insights) = futures::join!(
        async {
            match &input.agent_ids {
                Some(ids) if !ids.is_empty() => agents::unknown(&db, &key.workspace_id, ids).await,
                _ => Ok(Vec::new()),
            }
        },
        async {
            match &input.insight_ids {
                Some(ids) if !ids.is_empty() => insights::of_ids(&db, &key.workspace_id, ids).await,
                _ => Ok(Vec::new()),
            }
        },
    );
    let (unknown_agents, found_insights) = (unknown_agents?, found_insights?);
    if !unknown_agents.is_empty() {
        return Err(unknown("Unknown agent ids", "agentIds", "must name agents of this workspace", &unknown_agents));
    }
    let missing: Vec<String> =
        input.insight_ids.iter().flatten().filter(|id| !found_insights.iter().any(|i| &i.id == *id)).cloned().collect();
    if !missing.is_empty() {
        return Err(unknown("Unknown insight ids", "insightIds", "must name insights of this workspace", &missing));
    }
    for id in input.agent_ids.iter().flatten() {
        scope.check(Some(id))?;
    }
    for insight in &found_insights {
        scope.check(insight.agent_id.as_deref()).map_err(|_| {
            ApiError::Forbidden(
                crate::domain::scope::NOT_ALLOWED,
                Some(json!({ "insightId": insight.id, "reason": "the insight is answered by an agent this key may not use" })),
            )
        })?;
    }
    let expires_at = cx.now.saturating_add(input.ttl_seconds.saturating_mul(1_000));
    let claims = Claims {
        key_hash: hash,
        origins: input.origins,
        agent_ids: input.agent_ids,
        insight_ids: input.insight_ids,
        chat: input.chat,
        user: input.user,
        expires_at,
        workspace: located.locator.map(|l| l.encode()),
    };
    let token = embed_token::sign(&claims, secret.as_bytes()).ok_or_else(|| {
        ApiError::bad_request(
            "Embed token too long",
            Some(json!(format!(
                "the token would pass {} characters: list fewer or shorter origins or ids",
                embed_token::MAX_TOKEN_CHARS
            ))),
        )
    })?;
    Ok(Reply::created(json!({
        "token": token,
        "expiresAt": to_iso(expires_at),
        "expiresIn": input.ttl_seconds,
        "origins": claims.origins,
        "agentIds": claims.agent_ids,
        "insightIds": claims.insight_ids,
        "chat": claims.chat,
        "user": claims.user,
    })))
}

fn unknown(error: &str, field: &str, rule: &str, ids: &[String]) -> ApiError {
    ApiError::bad_request(error, Some(json!({ "field": field, "rule": rule, "unknown": ids })))
}
