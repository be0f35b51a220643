//! Client side of the rate-limiter Durable Object: one object per API key, addressed by the
//! key's hash (the key itself never leaves the request that carried it).

use worker::{Env, Method, Request, RequestInit};

use crate::domain::error::{ApiError, ApiResult};
use crate::domain::idempotency::StoredResult;
use crate::domain::rate_limit::{Claim, Command, Reply};

async fn call(env: &Env, key_hash: &str, command: Command) -> ApiResult<Reply> {
    let fail = |e: worker::Error| ApiError::internal(format!("rate limiter: {e}"));
    let body = serde_json::to_string(&command).map_err(|e| ApiError::internal(format!("rate limiter: {e}")))?;
    let namespace = env.durable_object("RATE_LIMITER").map_err(fail)?;
    let stub = namespace.id_from_name(key_hash).and_then(|id| id.get_stub()).map_err(fail)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let req = Request::new_with_init("https://rate-limiter/", &init).map_err(fail)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(fail)?;
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!("rate limiter answered {}", resp.status_code())));
    }
    resp.json::<Reply>().await.map_err(|e| ApiError::internal(format!("rate limiter reply: {e}")))
}

/// Counts one request (and claims its idempotency key, if any), if the key's object already
/// knows the key; `Reply::Unknown` otherwise, with nothing stored. Runs side by side with the
/// D1 lookup of the key.
pub async fn check(env: &Env, key_hash: &str, default_limit: u32, claim: Option<Claim>) -> ApiResult<Reply> {
    call(env, key_hash, Command::Check { default_limit, claim }).await
}

/// After D1 confirmed the key: the object stores it with its own limit and counts the request.
pub async fn adopt(
    env: &Env,
    key_hash: &str,
    default_limit: u32,
    key_limit: Option<u32>,
    claim: Option<Claim>,
) -> ApiResult<Reply> {
    call(env, key_hash, Command::Adopt { default_limit, key_limit, claim }).await
}

/// What a recount under a changed limit needs (see `Command::Relimit`).
pub struct Recount {
    pub default_limit: u32,
    pub key_limit: Option<u32>,
    /// The first count let the request through (and so spent a token).
    pub counted: bool,
    /// The first count claimed the request's idempotency key.
    pub claimed: bool,
    pub claim: Option<Claim>,
}

/// D1's limit differs from the one the object counted with: the object learns it and counts
/// the request again.
pub async fn relimit(env: &Env, key_hash: &str, r: &Recount) -> ApiResult<Reply> {
    let command = Command::Relimit {
        default_limit: r.default_limit,
        key_limit: r.key_limit,
        counted: r.counted,
        claim: r.claim.clone(),
        claimed: r.claimed,
    };
    call(env, key_hash, command).await
}

/// A claimed request ended: its result is remembered (`Some`), or the claim released (`None`).
pub async fn finish(env: &Env, key_hash: &str, claim: &Claim, result: Option<StoredResult>) -> ApiResult<()> {
    let command =
        Command::Finish { id: claim.id.clone(), fingerprint: claim.fingerprint.clone(), result: result.map(Box::new) };
    call(env, key_hash, command).await.map(|_| ())
}

/// Drops the key's idempotency results of erased chats.
pub async fn forget_chats(env: &Env, key_hash: &str, chat_ids: Vec<String>) -> ApiResult<()> {
    call(env, key_hash, Command::ForgetChats { chat_ids }).await.map(|_| ())
}

/// Drops the object's storage once its key is deleted.
pub async fn forget(env: &Env, key_hash: &str) -> ApiResult<()> {
    call(env, key_hash, Command::Forget).await.map(|_| ())
}
