//! Static documents: the OpenAPI document and the settings web page (`GET /settings`), compiled into the Worker so it ships and versions
//! with the API it calls. Plain HTML, CSS and JavaScript; nothing is loaded from elsewhere.

use super::routes::Endpoint;
use super::{Body, Cx, Reply};

const HTML: &str = include_str!("../../assets/settings/index.html");
const SCRIPT: &str = include_str!("../../assets/settings/app.js");
const STYLE: &str = include_str!("../../assets/settings/app.css");
const ICON: &str = include_str!("../../assets/settings/favicon.svg");
/// The OpenAPI 3.1 document of every route, as checked into the repository.
pub const OPENAPI: &str = include_str!("../../openapi.json");

pub fn openapi() -> Reply {
    Reply { status: 200, body: Body::Asset { content_type: "application/json; charset=utf-8", text: OPENAPI } }
}

/// Only our own files, no inline script or style, never framed: the page handles admin tokens
/// and shows freshly created keys.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn settings(endpoint: Endpoint, cx: &Cx) -> Reply {
    let (content_type, text) = match endpoint {
        Endpoint::SettingsScript => ("text/javascript; charset=utf-8", SCRIPT),
        Endpoint::SettingsStyle => ("text/css; charset=utf-8", STYLE),
        Endpoint::SettingsIcon => ("image/svg+xml", ICON),
        _ => ("text/html; charset=utf-8", HTML),
    };
    cx.add_header("Content-Security-Policy", CSP.to_owned());
    cx.add_header("X-Frame-Options", "DENY".to_owned());
    Reply { status: 200, body: Body::Asset { content_type, text } }
}
