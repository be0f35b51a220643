//! Who is calling: the operator (`ADMIN_TOKEN`), a workspace admin (admin token), or an API
//! key. Token format and checksum are checked before any storage call, so mistyped or made-up
//! tokens cost nothing.

use worker::Request;

use super::{cors, Cx};
use crate::domain::embed_token::{self, Claims};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::placement::Locator;
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
    let db = storage::control(&cx.env)?;
    storage::workspaces::admin_by_token_hash(&db, &token.hash()).await?.ok_or(ApiError::Unauthorized(INVALID_ADMIN))
}

/// The credential of a route open to both API keys and embed tokens.
pub enum Caller {
    Key {
        hash: String,
        /// Where its workspace is, for keys of the second format.
        locator: Option<Locator>,
    },
    /// A token whose signature, origin, expiry and route were checked; its key is checked by
    /// the handler's lookup, exactly as a key's would be.
    Embed { claims: Box<Claims> },
}

impl Caller {
    /// The hash of the key the request is made with (a token's: the key that minted it).
    pub fn key_hash(&self) -> &str {
        match self {
            Self::Key { hash, .. } => hash,
            Self::Embed { claims } => &claims.key_hash,
        }
    }

    /// Where the key's workspace is, when the credential says.
    pub fn locator(&self) -> Option<Locator> {
        match self {
            Self::Key { locator, .. } => locator.clone(),
            Self::Embed { claims } => claims.workspace.as_deref().and_then(Locator::decode),
        }
    }

    /// The key's workspace database: found from the credential (no D1) or the index (one
    /// D1 lookup); a refusal in the credential's words. A request whose key cannot be
    /// found is not counted in any usage.
    pub async fn locate(&self, cx: &Cx) -> ApiResult<storage::keys::Located> {
        match storage::keys::locate(&cx.env, self.locator().as_ref(), self.key_hash()).await {
            Ok(located) => {
                cx.usage_key(Some((self.key_hash(), &located.db)));
                Ok(located)
            }
            Err(err) => {
                cx.usage_key(None);
                Err(self.refusal(err))
            }
        }
    }

    pub fn claims(&self) -> Option<&Claims> {
        match self {
            Self::Key { .. } => None,
            Self::Embed { claims } => Some(claims),
        }
    }

    /// A refusal of the key, in the words of the credential used.
    pub fn refusal(&self, err: ApiError) -> ApiError {
        match self {
            Self::Key { .. } => err,
            Self::Embed { .. } => embed_token::key_refusal(err),
        }
    }
}

/// Whether the request's bearer credential is an embed token (by its prefix only).
pub fn is_embed(req: &Request) -> bool {
    matches!(bearer(req), Ok(Some(t)) if embed_token::looks_like(&t))
}

/// The CORS headers of a request made with a good token from one of its origins, on a route
/// it may not use: its page can read the 403 too.
pub fn embed_cors(req: &Request, cx: &Cx) {
    let Ok(Some(raw)) = bearer(req) else { return };
    let Ok(claims) = open(&raw, cx) else { return };
    let origin = req.headers().get("Origin").ok().flatten();
    if let Some(origin) = origin.filter(|o| embed_token::allows_origin(&claims, Some(o))) {
        for (name, value) in cors::allow(&origin) {
            cx.add_header(name, value);
        }
    }
}

/// An API key or an embed token. A token is checked without I/O, in an order that lets a
/// page read every refusal it can act on: signature (401), then its origins against the
/// request's `Origin` (403; from here on the response carries the CORS headers), then expiry
/// (401), then whether it may chat (`chat_route`, 403).
pub fn key_or_embed(req: &Request, cx: &Cx, chat_route: bool) -> ApiResult<Caller> {
    let raw = match bearer(req) {
        Ok(Some(raw)) if embed_token::looks_like(&raw) => raw,
        _ => {
            let key = api_key(req)?;
            return Ok(Caller::Key { hash: key.hash(), locator: key.locator().cloned() });
        }
    };
    let claims = open(&raw, cx).map_err(|_| ApiError::Unauthorized(embed_token::INVALID))?;
    let origin = req.headers().get("Origin").ok().flatten();
    if !embed_token::allows_origin(&claims, origin.as_deref()) {
        return Err(ApiError::Forbidden(embed_token::ORIGIN_NOT_ALLOWED, None));
    }
    for (name, value) in cors::allow(origin.as_deref().unwrap_or_default()) {
        cx.add_header(name, value);
    }
    if embed_token::is_expired(&claims, cx.now) {
        return Err(ApiError::Unauthorized(embed_token::EXPIRED));
    }
    if chat_route && !claims.chat {
        return Err(ApiError::Forbidden(
            embed_token::ROUTE_NOT_ALLOWED,
            Some(serde_json::json!("this token was minted without \"chat\": true")),
        ));
    }
    Ok(Caller::Embed { claims: Box::new(claims) })
}

/// A token's claims if it is signed with the current secret or the previous one.
fn open(raw: &str, cx: &Cx) -> Result<Claims, embed_token::Refusal> {
    let current = cx.secret("EMBED_TOKEN_SECRET").unwrap_or_default();
    let previous = cx.secret("EMBED_TOKEN_SECRET_PREVIOUS").unwrap_or_default();
    embed_token::open(raw, &[current.as_bytes(), previous.as_bytes()])
}
