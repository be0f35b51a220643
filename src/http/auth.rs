//! Who is calling: the operator (`ADMIN_TOKEN`), a workspace admin (admin token), or an API
//! key. Token format and checksum are checked before any storage call, so mistyped or made-up
//! tokens cost nothing.

use worker::Request;

use super::Cx;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::token::{constant_time_eq, Token, TokenKind};
use crate::storage::{self, workspaces::Admin};

pub const MISSING_KEY: &str = "Missing API key";
use crate::domain::error::INVALID_KEY;
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
