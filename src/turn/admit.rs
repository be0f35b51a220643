//! Admitting a request made with an API key, once its D1 lookup and its Durable Object call
//! (which ran side by side) are both in: the key's existence and expiry, its rate limit, its
//! adoption by the object on its first request, and what its `Idempotency-Key` found.

use crate::context::{log, Cx};
use crate::domain::error::{ApiError, ApiResult, EXPIRED_KEY, INVALID_KEY};
use crate::domain::rate_limit::{Claim, KeyDecision, Reply};
use crate::storage::{self, keys::KeyAuth, limiter};

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
        // No key, no usage to count it in: a made-up key costs nothing.
        cx.usage_key(None);
        return (Err(ApiError::Unauthorized(INVALID_KEY)), 0);
    };
    if key.expires_at.is_some_and(|t| t <= cx.now) {
        return (Err(ApiError::Unauthorized(EXPIRED_KEY)), 0);
    }
    match reply {
        Ok(Reply::Unknown) => {
            let adopted = match cx.config() {
                Ok(config) => {
                    limiter::adopt(&cx.env, key_hash, config.rate_limit_per_minute, key_limit(&key), claim.cloned())
                        .await
                }
                Err(err) => Err(err),
            };
            (count(cx, key, adopted), 1)
        }
        // The object counted with the limit it knew; D1 has just said what the key's limit is
        // now. When an admin changed it, the object learns it here and recounts this very
        // request, so the new limit applies from the next request on, exactly.
        Ok(Reply::Verdict { verdict, idempotency }) => match cx.config() {
            Ok(config) if effective_limit(&key, config.rate_limit_per_minute) != verdict.limit => {
                let recount = limiter::Recount {
                    default_limit: config.rate_limit_per_minute,
                    key_limit: key_limit(&key),
                    counted: verdict.allowed,
                    claimed: matches!(idempotency, Some(KeyDecision::Run)),
                    claim: claim.cloned(),
                };
                let reply = match limiter::relimit(&cx.env, key_hash, &recount).await {
                    // The check's decision about the idempotency key stands unless the recount
                    // made one.
                    Ok(Reply::Verdict { verdict, idempotency: again }) => {
                        Ok(Reply::Verdict { verdict, idempotency: again.or(idempotency) })
                    }
                    // The recount failed: the first count (and the claim it may hold) stands,
                    // under the old limit for this one request.
                    other => {
                        let detail = match &other {
                            Err(err) => err.log_detail().unwrap_or("rate limiter failed").to_owned(),
                            Ok(reply) => format!("rate limiter answered {reply:?}"),
                        };
                        fail_open(cx, &detail);
                        Ok(Reply::Verdict { verdict, idempotency })
                    }
                };
                (count(cx, key, reply), 1)
            }
            _ => (count(cx, key, Ok(Reply::Verdict { verdict, idempotency })), 0),
        },
        other => (count(cx, key, other), 0),
    }
}

/// The key's own limit, as its object stores it.
fn key_limit(key: &KeyAuth) -> Option<u32> {
    key.rate_limit_per_minute.and_then(|n| u32::try_from(n).ok())
}

/// The limit a request of this key is counted with.
fn effective_limit(key: &KeyAuth, default_limit: u32) -> u32 {
    key_limit(key).unwrap_or(default_limit).max(1)
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
    log(
        &serde_json::json!({ "requestId": cx.request_id, "level": "warn", "event": "rate_limiter_unavailable", "detail": detail }),
    );
}
