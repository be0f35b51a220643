//! Static documents: the OpenAPI document and the settings web page (`GET /settings`). They are
//! static assets deployed with the Worker (`[assets]` in wrangler.toml, staged by `make build`),
//! not compiled into the wasm, which has a size budget; the Worker reads them through the
//! `ASSETS` binding so they carry the headers of every route. Plain HTML, CSS and JavaScript;
//! nothing is loaded from elsewhere.

use super::routes::{Endpoint, Matched};
use super::{Body, Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};

/// Only our own files, no inline script or style, never framed: the page handles admin tokens
/// and shows freshly created keys.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

const JS: &str = "text/javascript; charset=utf-8";

/// The asset an endpoint serves, and its content type.
fn asset(endpoint: Endpoint, m: &Matched) -> ApiResult<(String, &'static str)> {
    Ok(match endpoint {
        Endpoint::OpenApi => ("/api/openapi.json".into(), "application/json; charset=utf-8"),
        Endpoint::SettingsScript => ("/settings/app.js".into(), JS),
        Endpoint::SettingsStyle => ("/settings/app.css".into(), "text/css; charset=utf-8"),
        Endpoint::SettingsIcon => ("/settings/favicon.svg".into(), "image/svg+xml"),
        Endpoint::EmbedScript => ("/embed/v1.js".into(), JS),
        Endpoint::SettingsModule => {
            let name = m.param(0);
            let plain = name.strip_suffix(".js").is_some_and(|stem| {
                !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
            if !plain {
                return Err(ApiError::NotFound("Not found", None));
            }
            (format!("/settings/js/{name}"), JS)
        }
        _ => ("/settings/index.html".into(), "text/html; charset=utf-8"),
    })
}

/// # Errors
/// 503 when the Worker has no `ASSETS` binding; 404 for a module that does not exist; 500 when
/// another asset is missing (a build that did not stage it).
pub async fn serve(endpoint: Endpoint, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let (path, content_type) = asset(endpoint, m)?;
    let assets = cx.env.assets("ASSETS").map_err(|_| ApiError::NotConfigured("ASSETS"))?;
    // The host is not looked at: the binding serves its own files only.
    let mut resp = assets.fetch(format!("https://assets.invalid{path}"), None).await.map_err(ApiError::internal)?;
    if resp.status_code() == 404 && endpoint == Endpoint::SettingsModule {
        return Err(ApiError::NotFound("Not found", None));
    }
    if resp.status_code() != 200 {
        return Err(ApiError::internal(format!("asset {path} answered {}", resp.status_code())));
    }
    let bytes = resp.bytes().await.map_err(ApiError::internal)?;
    if !matches!(endpoint, Endpoint::OpenApi | Endpoint::EmbedScript) {
        cx.add_header("Content-Security-Policy", CSP.to_owned());
        cx.add_header("X-Frame-Options", "DENY".to_owned());
    }
    Ok(Reply { status: 200, body: Body::Asset { content_type, bytes } })
}
