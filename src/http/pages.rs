//! Static documents: the OpenAPI document and the settings web page (`GET /settings`). They are
//! static assets deployed with the Worker (`[assets]` in wrangler.toml, staged by `make build`),
//! not compiled into the wasm, which has a size budget; the Worker reads them through the
//! `ASSETS` binding so they carry the headers of every route. Plain HTML, CSS and JavaScript;
//! nothing is loaded from elsewhere.

use super::routes::Endpoint;
use super::{Body, Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};

/// Only our own files, no inline script or style, never framed: the page handles admin tokens
/// and shows freshly created keys.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The asset an endpoint serves, and its content type.
fn asset(endpoint: Endpoint) -> (&'static str, &'static str) {
    match endpoint {
        Endpoint::OpenApi => ("/api/openapi.json", "application/json; charset=utf-8"),
        Endpoint::SettingsScript => ("/settings/app.js", "text/javascript; charset=utf-8"),
        Endpoint::SettingsStyle => ("/settings/app.css", "text/css; charset=utf-8"),
        Endpoint::SettingsIcon => ("/settings/favicon.svg", "image/svg+xml"),
        _ => ("/settings/index.html", "text/html; charset=utf-8"),
    }
}

/// # Errors
/// 503 when the Worker has no `ASSETS` binding; 500 when the asset is missing (a build that did
/// not stage it).
pub async fn serve(endpoint: Endpoint, cx: &Cx) -> ApiResult<Reply> {
    let (path, content_type) = asset(endpoint);
    let assets = cx.env.assets("ASSETS").map_err(|_| ApiError::NotConfigured("ASSETS"))?;
    // The host is not looked at: the binding serves its own files only.
    let mut resp = assets.fetch(format!("https://assets.invalid{path}"), None).await.map_err(ApiError::internal)?;
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!("asset {path} answered {}", resp.status_code())));
    }
    let bytes = resp.bytes().await.map_err(ApiError::internal)?;
    if endpoint != Endpoint::OpenApi {
        cx.add_header("Content-Security-Policy", CSP.to_owned());
        cx.add_header("X-Frame-Options", "DENY".to_owned());
    }
    Ok(Reply { status: 200, body: Body::Asset { content_type, bytes } })
}
