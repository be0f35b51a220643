//! Who is calling: the operator (`ADMIN_TOKEN`), a workspace admin (admin token), or an API
//! key. Token format and checksum are checked before any storage call, so mistyped or made-up
//! tokens cost nothing.

use worker::Request;

use super::Cx;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::rate_limit::{Claim, KeyDecision, Reply};
use crate::domain::token::{constant_time_eq, Token, TokenKind};
use crate::storage::{self, keys::KeyAuth, limiter, workspaces::Admin};

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

/// Decides an API-key request once its D1 lookup and its rate-limiter reply are both in (the
/// two run concurrently): unknown → 401, expired → 401, over the limit → 429. Adds the
/// rate-limit headers, and schedules the last-used write after the response when the limiter
/// says it is due. Also says how many limiter calls this took beyond the first (for
/// `Server-Timing`), whatever the outcome.
///
/// The limiter's first call never stores anything for a key it does not know, because at that
/// moment nobody knows whether the key exists. Only once D1 has confirmed the key does a second
/// call have the object adopt it (with its own limit) and count the request: the extra round
/// trip of a key's first request(s). A made-up key thus ends at 401 with no storage anywhere.
///
/// If the limiter itself fails, the request is let through (fail open) and the failure
/// logged: the limiter guards fair use, not access — access is decided by D1 above — and an
/// outage of one Durable Object should not take a customer's integration down.
pub async fn admit(
    cx: &Cx,
    key_hash: &str,
    key: Option<KeyAuth>,
    reply: ApiResult<Reply>,
    claim: Option<&Claim>,
) -> (ApiResult<Admitted>, u32) {
    let Some(key) = key else {
        return (Err(ApiError::Unauthorized(INVALID_KEY)), 0);
    };
    if key.expires_at.is_some_and(|t| t <= cx.now) {
        return (Err(ApiError::Unauthorized(EXPIRED_KEY)), 0);
    }
    match reply {
        Ok(Reply::Unknown) => {
            let adopted = match cx.config() {
                Ok(config) => {
                    let key_limit = key.rate_limit_per_minute.and_then(|n| u32::try_from(n).ok());
                    limiter::adopt(&cx.env, key_hash, config.rate_limit_per_minute, key_limit, claim.cloned()).await
                }
                Err(err) => Err(err),
            };
            (count(cx, key, adopted), 1)
        }
        other => (count(cx, key, other), 0),
    }
}

/// A key D1 confirmed and the limiter let through, with what its idempotency key found (when
/// the request claimed one and the limiter answered).
pub struct Admitted {
    pub key: KeyAuth,
    pub idempotency: Option<KeyDecision>,
}

/// Applies the limiter's verdict to a key D1 has confirmed.
fn count(cx: &Cx, key: KeyAuth, reply: ApiResult<Reply>) -> ApiResult<Admitted> {
    let (verdict, idempotency) = match reply {
        Ok(Reply::Verdict { verdict, idempotency }) => (verdict, idempotency),
        Ok(other) => {
            fail_open(cx, &format!("rate limiter answered {other:?}"));
            return Ok(Admitted { key, idempotency: None });
        }
        Err(err) => {
            fail_open(cx, err.log_detail().unwrap_or("rate limiter failed"));
            return Ok(Admitted { key, idempotency: None });
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
    Ok(Admitted { key, idempotency })
}

fn fail_open(cx: &Cx, detail: &str) {
    super::log(
        &serde_json::json!({ "requestId": cx.request_id, "level": "warn", "event": "rate_limiter_unavailable", "detail": detail }),
    );
}
