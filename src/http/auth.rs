//! Who is calling: the operator (`ADMIN_TOKEN`), a workspace admin (admin token), or an API
//! key. Token format and checksum are checked before any storage call, so mistyped or made-up
//! tokens cost nothing.

use worker::Request;

use super::Cx;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::rate_limit::Verdict;
use crate::domain::token::{constant_time_eq, Token, TokenKind};
use crate::storage::{self, keys::KeyAuth, workspaces::Admin};

pub const MISSING_KEY: &str = "Missing API key";
pub const INVALID_KEY: &str = "Invalid API key";
pub const EXPIRED_KEY: &str = "API key expired";
const MISSING_ADMIN: &str = "Missing admin token";
const INVALID_ADMIN: &str = "Invalid admin token";

/// The `Authorization: Bearer <token>` value: `Ok(None)` when the header is absent, an error
/// for any other scheme.
fn bearer(req: &Request) -> Result<Option<String>, ()> {
    let Some(header) = req.headers().get("Authorization").ok().flatten() else {
        return Ok(None);
    };
    let header = header.trim();
    match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim().to_owned()))
        }
        _ if header.is_empty() => Ok(None),
        _ => Err(()),
    }
}

/// A token of `kind` from the header, checked for format and checksum only.
fn token(req: &Request, kind: TokenKind, missing: &'static str, invalid: &'static str) -> ApiResult<Token> {
    match bearer(req) {
        Ok(None) => Err(ApiError::Unauthorized(missing)),
        Ok(Some(raw)) => Token::parse(kind, &raw).ok_or(ApiError::Unauthorized(invalid)),
        Err(()) => Err(ApiError::Unauthorized(invalid)),
    }
}

/// The API key of the request, before storage is asked whether it exists.
pub fn api_key(req: &Request) -> ApiResult<Token> {
    token(req, TokenKind::ApiKey, MISSING_KEY, INVALID_KEY)
}

/// The operator routes. Closed (503) when no `ADMIN_TOKEN` is configured: never open.
pub fn operator(req: &Request, cx: &Cx) -> ApiResult<()> {
    let expected = cx.secret("ADMIN_TOKEN").ok_or(ApiError::NotConfigured("ADMIN_TOKEN"))?;
    match bearer(req) {
        Ok(None) => Err(ApiError::Unauthorized(MISSING_ADMIN)),
        Ok(Some(given)) if constant_time_eq(&given, &expected) => Ok(()),
        _ => Err(ApiError::Unauthorized(INVALID_ADMIN)),
    }
}

/// The workspace admin behind an admin token.
pub async fn workspace_admin(req: &Request, cx: &Cx) -> ApiResult<Admin> {
    let token = token(req, TokenKind::AdminToken, MISSING_ADMIN, INVALID_ADMIN)?;
    let db = storage::db(&cx.env)?;
    storage::workspaces::admin_by_token_hash(&db, &token.hash()).await?.ok_or(ApiError::Unauthorized(INVALID_ADMIN))
}

/// Decides an API-key request once its D1 lookup and its rate-limiter verdict are both in (the
/// two run concurrently): unknown → 401, expired → 401, over the limit → 429. Adds the
/// rate-limit headers, and schedules the last-used write after the response when the limiter
/// says it is due.
///
/// If the limiter itself fails, the request is let through (fail open) and the failure
/// logged: the limiter guards fair use, not access — access is decided by D1 above — and an
/// outage of one Durable Object should not take a customer's integration down.
pub fn admit(cx: &Cx, key: Option<KeyAuth>, verdict: ApiResult<Verdict>) -> ApiResult<KeyAuth> {
    let key = key.ok_or(ApiError::Unauthorized(INVALID_KEY))?;
    if key.expires_at.is_some_and(|t| t <= cx.now) {
        return Err(ApiError::Unauthorized(EXPIRED_KEY));
    }
    let verdict = match verdict {
        Ok(v) => v,
        Err(err) => {
            super::log(
                &serde_json::json!({ "requestId": cx.request_id, "level": "warn", "event": "rate_limiter_unavailable", "detail": err.log_detail() }),
            );
            return Ok(key);
        }
    };
    let (limit, remaining, reset) =
        (verdict.limit.to_string(), verdict.remaining.to_string(), verdict.reset_seconds.to_string());
    for (name, value) in [
        ("RateLimit-Limit", &limit),
        ("RateLimit-Remaining", &remaining),
        ("RateLimit-Reset", &reset),
        ("X-RateLimit-Limit", &limit),
        ("X-RateLimit-Remaining", &remaining),
        ("X-RateLimit-Reset", &reset),
    ] {
        cx.add_header(name, value.clone());
    }
    if verdict.touch {
        let (env, ws, id, at) = (cx.env.clone(), key.workspace_id.clone(), key.id.clone(), cx.now);
        cx.ctx.wait_until(async move {
            let _ = storage::last_used::mark(&env, &ws, &id, at).await;
        });
    }
    if !verdict.allowed {
        return Err(ApiError::RateLimited { retry_after_seconds: verdict.retry_after_seconds });
    }
    Ok(key)
}
