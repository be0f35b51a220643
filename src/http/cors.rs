//! CORS, by hand and in one place. Only embed tokens are meant for browsers: a preflight
//! (which carries no credentials) is answered for the routes a token may use, and a response
//! carries `Access-Control-Allow-Origin` only when the request's token lists its `Origin`.
//! Responses to API keys and admin tokens never do, so a page cannot read what a secret
//! obtains. The preflight is answered for the routes an embed token may use
//! (`routes::Endpoint::takes_embed_tokens`). Never `*`, never `Access-Control-Allow-Credentials` (no cookies are involved).

pub const ALLOW_METHODS: &str = "GET, POST, OPTIONS";
pub const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, Idempotency-Key, If-None-Match";
pub const EXPOSE_HEADERS: &str =
    "X-Request-Id, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, ETag, Idempotent-Replayed";
/// Chromium caps the preflight cache at 2 hours.
pub const MAX_AGE_SECONDS: &str = "7200";

/// The headers of a preflight's 204. The origin is echoed as the browser sent it: whether a
/// page may read the answer is decided on the real request, by its token.
pub fn preflight(origin: Option<&str>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("Access-Control-Allow-Methods", ALLOW_METHODS.to_owned()),
        ("Access-Control-Allow-Headers", ALLOW_HEADERS.to_owned()),
        ("Access-Control-Max-Age", MAX_AGE_SECONDS.to_owned()),
        ("Vary", "Origin".to_owned()),
    ];
    if let Some(origin) = origin.filter(|o| !o.is_empty()) {
        headers.push(("Access-Control-Allow-Origin", origin.to_owned()));
    }
    headers
}

/// The headers of a response to a request whose token lists `origin`: errors included, so
/// the page can read why it was refused.
pub fn allow(origin: &str) -> [(&'static str, String); 3] {
    [
        ("Access-Control-Allow-Origin", origin.to_owned()),
        ("Vary", "Origin".to_owned()),
        ("Access-Control-Expose-Headers", EXPOSE_HEADERS.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preflights_echo_the_origin_and_list_what_the_widget_sends() {
        let h = preflight(Some("https://dash.example"));
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("Access-Control-Allow-Origin"), Some("https://dash.example"));
        assert_eq!(get("Access-Control-Allow-Headers"), Some(ALLOW_HEADERS));
        assert_eq!(get("Access-Control-Max-Age"), Some("7200"));
        assert_eq!(get("Vary"), Some("Origin"));
        assert!(get("Access-Control-Allow-Credentials").is_none());
        assert!(preflight(None).iter().all(|(k, _)| *k != "Access-Control-Allow-Origin"));
    }
}
