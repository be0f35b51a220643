//! Client side of the rate-limiter Durable Object: one object per API key, addressed by the
//! key's hash (the key itself never leaves the request that carried it).

use serde_json::{json, Value};
use worker::{Env, Method, Request, RequestInit};

use crate::domain::error::{ApiError, ApiResult};
use crate::domain::rate_limit::Verdict;

async fn call(env: &Env, key_hash: &str, body: &Value) -> ApiResult<worker::Response> {
    let fail = |e: worker::Error| ApiError::internal(format!("rate limiter: {e}"));
    let namespace = env.durable_object("RATE_LIMITER").map_err(fail)?;
    let stub = namespace.id_from_name(key_hash).and_then(|id| id.get_stub()).map_err(fail)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.to_string().into()));
    let req = Request::new_with_init("https://rate-limiter/", &init).map_err(fail)?;
    let resp = stub.fetch_with_request(req).await.map_err(fail)?;
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!("rate limiter answered {}", resp.status_code())));
    }
    Ok(resp)
}

/// Counts one request for the key.
pub async fn check(env: &Env, key_hash: &str, default_limit: u32) -> ApiResult<Verdict> {
    let mut resp = call(env, key_hash, &json!({ "op": "check", "defaultLimit": default_limit })).await?;
    resp.json::<Verdict>().await.map_err(|e| ApiError::internal(format!("rate limiter reply: {e}")))
}

/// Records the key's own limit, at creation.
pub async fn configure(env: &Env, key_hash: &str, key_limit: Option<u32>) -> ApiResult<()> {
    call(env, key_hash, &json!({ "op": "configure", "keyLimit": key_limit })).await.map(|_| ())
}
