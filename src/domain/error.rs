//! The one error type of the HTTP surface, and its one mapping to a status code and a JSON body.
//!
//! Every failure a handler can meet ends up as an [`ApiError`]; `crate::http` turns it into a
//! response with [`ApiError::status`], [`ApiError::body`] and [`ApiError::headers`]. Internal
//! detail (a D1 message, an upstream body) is kept out of `Internal` bodies and only logged.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The body is not JSON at all.
    MalformedJson,
    /// A field is missing, of the wrong type or breaks a rule.
    InvalidField {
        field: String,
        rule: String,
    },
    /// A well-formed request that asks for something the resource cannot do.
    BadRequest {
        error: String,
        details: Option<Value>,
    },
    /// 401 with one of a few fixed messages, so the body never tells why a key is unknown.
    Unauthorized(&'static str),
    /// 403: the caller is known but may not do this (a key scoped to other agents).
    Forbidden(&'static str, Option<Value>),
    /// 404 with the resource's name in the message ("Chat not found").
    NotFound(&'static str, Option<Value>),
    MethodNotAllowed {
        allow: Vec<&'static str>,
    },
    PayloadTooLarge {
        limit_bytes: usize,
    },
    RateLimited {
        retry_after_seconds: u64,
    },
    /// 409: the request with this `Idempotency-Key` is still running.
    IdempotencyConflict {
        retry_after_seconds: u64,
    },
    /// 409: the request conflicts with the resource's state (e.g. a limit it would pass).
    Conflict(&'static str, Value),
    /// 422: the `Idempotency-Key` was first used with a different request.
    IdempotencyMismatch,
    /// The operator has not configured something the route needs (e.g. `ADMIN_TOKEN`).
    NotConfigured(&'static str),
    /// 500: a variable is set but cannot be used (`LLM_PROVIDERS`, `LLM_FALLBACKS`): nothing
    /// is silently used instead, and the body names the variable, never a value.
    Misconfigured(&'static str),
    /// A dependency we rely on (D1) is down.
    Unavailable(&'static str),
    /// 503: the workspace's data is being moved to its own database; try again shortly.
    Moving {
        retry_after_seconds: u64,
    },
    UpstreamTimeout,
    Upstream(String),
    /// Every provider target of a turn failed (or one failed in a way no other could help
    /// with): 502, 504, or 429 when every target answered 429; `details.attempts` lists them.
    UpstreamExhausted {
        status: u16,
        error: &'static str,
        details: Value,
        retry_after: Option<u64>,
    },
    /// Anything unexpected; the string is logged, never returned.
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The 401 messages of API keys that pass the format check but cannot be used.
pub const INVALID_KEY: &str = "Invalid API key";
pub const EXPIRED_KEY: &str = "API key expired";

impl ApiError {
    pub fn invalid(field: &str, rule: impl Into<String>) -> Self {
        Self::InvalidField { field: field.to_owned(), rule: rule.into() }
    }

    pub fn bad_request(error: impl Into<String>, details: Option<Value>) -> Self {
        Self::BadRequest { error: error.into(), details }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::Internal(detail.to_string())
    }

    pub fn status(&self) -> u16 {
        match self {
            Self::MalformedJson | Self::InvalidField { .. } | Self::BadRequest { .. } => 400,
            Self::Unauthorized(_) => 401,
            Self::Forbidden(..) => 403,
            Self::NotFound(..) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge { .. } => 413,
            Self::IdempotencyConflict { .. } | Self::Conflict(..) => 409,
            Self::IdempotencyMismatch => 422,
            Self::RateLimited { .. } => 429,
            Self::Internal(_) | Self::Misconfigured(_) => 500,
            Self::UpstreamExhausted { status, .. } => *status,
            Self::Upstream(_) => 502,
            Self::NotConfigured(_) | Self::Unavailable(_) | Self::Moving { .. } => 503,
            Self::UpstreamTimeout => 504,
        }
    }

    /// The JSON body: `{"error": "...", "details": ...}` with `details` only when there are some.
    pub fn body(&self) -> Value {
        let (error, details): (String, Option<Value>) = match self {
            Self::MalformedJson => ("Malformed JSON".into(), None),
            Self::InvalidField { field, rule } => {
                (format!("Invalid request: {field} {rule}"), Some(json!({ "field": field, "rule": rule })))
            }
            Self::BadRequest { error, details } => (error.clone(), details.clone()),
            Self::Unauthorized(msg) => ((*msg).into(), None),
            Self::NotFound(msg, details) | Self::Forbidden(msg, details) => ((*msg).into(), details.clone()),
            Self::MethodNotAllowed { allow } => ("Method not allowed".into(), Some(json!({ "allow": allow }))),
            Self::PayloadTooLarge { limit_bytes } => {
                ("Request body too large".into(), Some(json!({ "limitBytes": limit_bytes })))
            }
            Self::RateLimited { retry_after_seconds } => {
                ("Rate limit exceeded".into(), Some(json!({ "retryAfterSeconds": retry_after_seconds })))
            }
            Self::IdempotencyConflict { retry_after_seconds } => (
                "Idempotency key in use by a request still running".into(),
                Some(json!({ "retryAfterSeconds": retry_after_seconds })),
            ),
            Self::IdempotencyMismatch => ("Idempotency key reused with a different request".into(), None),
            Self::Conflict(msg, details) => ((*msg).into(), Some(details.clone())),
            Self::NotConfigured(what) => ("Service not configured".into(), Some(json!(what))),
            Self::Unavailable(what) => ("Service unavailable".into(), Some(json!(what))),
            Self::Moving { retry_after_seconds } => {
                ("Workspace is being moved".into(), Some(json!({ "retryAfterSeconds": retry_after_seconds })))
            }
            Self::UpstreamTimeout => ("Upstream timeout".into(), None),
            Self::Upstream(detail) => ("Upstream error".into(), Some(json!(detail))),
            Self::Internal(_) => ("Internal server error".into(), None),
            Self::Misconfigured(variable) => ("Service misconfigured".into(), Some(json!({ "variable": variable }))),
            Self::UpstreamExhausted { error, details, .. } => ((*error).into(), Some(details.clone())),
        };
        match details {
            Some(details) => json!({ "error": error, "details": details }),
            None => json!({ "error": error }),
        }
    }

    /// Extra response headers the status code promises (`Allow` on 405, `Retry-After` on 429).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::MethodNotAllowed { allow } => vec![("Allow", allow.join(", "))],
            Self::RateLimited { retry_after_seconds }
            | Self::IdempotencyConflict { retry_after_seconds }
            | Self::Moving { retry_after_seconds } => {
                vec![("Retry-After", retry_after_seconds.to_string())]
            }
            Self::UpstreamExhausted { retry_after: Some(seconds), .. } => vec![("Retry-After", seconds.to_string())],
            _ => Vec::new(),
        }
    }

    /// What to write to the log beyond the status: internal detail the caller never sees.
    pub fn log_detail(&self) -> Option<&str> {
        match self {
            Self::Internal(detail) | Self::Upstream(detail) => Some(detail),
            Self::Misconfigured(variable) => Some(variable),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_body() {
        let err = ApiError::internal("D1_ERROR: no such table: secrets");
        assert_eq!(err.status(), 500);
        assert_eq!(err.body(), json!({ "error": "Internal server error" }));
        assert_eq!(err.log_detail(), Some("D1_ERROR: no such table: secrets"));
    }

    #[test]
    fn details_are_omitted_when_absent() {
        let body = ApiError::Unauthorized("Invalid API key").body();
        assert_eq!(body, json!({ "error": "Invalid API key" }));
    }

    #[test]
    fn invalid_field_names_field_and_rule() {
        let err = ApiError::invalid("message", "must be 1-10000 characters");
        assert_eq!(err.status(), 400);
        assert_eq!(err.body()["details"]["field"], "message");
        assert_eq!(err.body()["details"]["rule"], "must be 1-10000 characters");
    }

    #[test]
    fn statuses_follow_the_contract() {
        assert_eq!(ApiError::MalformedJson.status(), 400);
        assert_eq!(ApiError::NotFound("Chat not found", None).status(), 404);
        assert_eq!(ApiError::UpstreamTimeout.status(), 504);
        assert_eq!(ApiError::Upstream("x".into()).status(), 502);
        assert_eq!(ApiError::NotConfigured("ADMIN_TOKEN").status(), 503);
        assert_eq!(ApiError::IdempotencyMismatch.status(), 422);
        assert_eq!(
            ApiError::IdempotencyMismatch.body(),
            json!({ "error": "Idempotency key reused with a different request" })
        );
        let conflict = ApiError::IdempotencyConflict { retry_after_seconds: 2 };
        assert_eq!(conflict.status(), 409);
        assert_eq!(conflict.headers(), vec![("Retry-After", "2".to_owned())]);
    }

    #[test]
    fn rate_limited_carries_retry_after() {
        let err = ApiError::RateLimited { retry_after_seconds: 7 };
        assert_eq!(err.status(), 429);
        assert_eq!(err.headers(), vec![("Retry-After", "7".to_owned())]);
        assert_eq!(err.body()["details"]["retryAfterSeconds"], 7);
    }

    #[test]
    fn a_workspace_being_moved_is_503_with_retry_after() {
        let err = ApiError::Moving { retry_after_seconds: 5 };
        assert_eq!(err.status(), 503);
        assert_eq!(err.headers(), vec![("Retry-After", "5".to_owned())]);
        assert_eq!(err.body()["error"], "Workspace is being moved");
    }

    #[test]
    fn method_not_allowed_lists_allow() {
        let err = ApiError::MethodNotAllowed { allow: vec!["GET", "POST"] };
        assert_eq!(err.headers(), vec![("Allow", "GET, POST".to_owned())]);
    }
}
