//! Browser-safe embed tokens (`atvet_…`): short-lived, scoped, origin-bound credentials that a
//! customer's server mints with its API key for a dashboard page. Self-contained and signed
//! (HMAC-SHA256 with the Worker's `EMBED_TOKEN_SECRET`), so minting stores nothing and checking
//! one needs no I/O; the request it is used on still checks the key it was minted with, so
//! revoking the key revokes every token at once.
//!
//! `atvet_<payload>.<mac>`: the payload is the claims as JSON, base64url without padding; the
//! MAC covers `atvet_<payload>`. A second secret (`EMBED_TOKEN_SECRET_PREVIOUS`) is accepted
//! too, so the secret can be rotated without breaking live dashboards.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use serde_json::Value;

use super::error::{ApiError, ApiResult};
use super::scope::Scope;
use super::time::Millis;
use super::validate::{self, Object, Text};

pub const PREFIX: &str = "atvet_";
/// What a token may be long, whole: small enough for any header.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// Clocks of the Workers that mint and check tokens are the same fleet's: a few seconds.
pub const LEEWAY_MS: Millis = 5_000;
pub const MIN_TTL_SECONDS: i64 = 60;
pub const MAX_TTL_SECONDS: i64 = 3_600;
pub const DEFAULT_TTL_SECONDS: i64 = 900;
pub const MAX_ORIGINS: usize = 10;

pub const INVALID: &str = "Invalid embed token";
pub const EXPIRED: &str = "Embed token expired";
pub const ORIGIN_NOT_ALLOWED: &str = "Origin not allowed for this token";
pub const ROUTE_NOT_ALLOWED: &str = "Embed tokens cannot use this route";

/// Whether a bearer credential is an embed token (by its prefix; nothing is checked yet).
pub fn looks_like(token: &str) -> bool {
    token.starts_with(PREFIX)
}

/// A refusal of the key behind a token, in the token's words: the key deleted (or never
/// there) reads as an invalid token, the key expired (or past a roll's grace period) as an
/// expired one, so the page fetches a new token minted with the current key.
pub fn key_refusal(err: ApiError) -> ApiError {
    match err {
        ApiError::Unauthorized(super::error::EXPIRED_KEY) => ApiError::Unauthorized(EXPIRED),
        ApiError::Unauthorized(_) => ApiError::Unauthorized(INVALID),
        other => other,
    }
}

/// Who chats through a token: the agents it lists (`None`: whatever the key may use) and the
/// viewer's label (empty when it has none), under which its chats are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub agent_ids: Option<Vec<String>>,
    pub user: String,
}

impl Claims {
    pub fn viewer(&self) -> Viewer {
        Viewer { agent_ids: self.agent_ids.clone(), user: self.user.clone().unwrap_or_default() }
    }
}

/// What a token allows, signed into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The SHA-256 (hex) of the API key it was minted with: every use checks that key.
    #[serde(rename = "k")]
    pub key_hash: String,
    /// The origins (`scheme://host[:port]`, lowercase) pages may use it from.
    #[serde(rename = "o")]
    pub origins: Vec<String>,
    /// Agents it may chat with; `None`: whatever the key may use.
    #[serde(rename = "a")]
    pub agent_ids: Option<Vec<String>>,
    /// Insights it may read; `None`: whatever the key may read.
    #[serde(rename = "i")]
    pub insight_ids: Option<Vec<String>>,
    /// Whether it may chat (and read its own chats).
    #[serde(rename = "c")]
    pub chat: bool,
    /// The viewer's label, which chats made with it are kept under.
    #[serde(rename = "u")]
    pub user: Option<String>,
    /// Epoch milliseconds after which it is refused.
    #[serde(rename = "e")]
    pub expires_at: Millis,
    /// Where the key's workspace is (`domain::placement::Locator`), when it is on its own
    /// object: the token is then checked there without D1. Absent in tokens minted before.
    #[serde(rename = "w", default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed, forged, or signed with a secret we do not have.
    Invalid,
    Expired,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], signed: &[u8]) -> Option<Vec<u8>> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(signed);
    Some(m.finalize().into_bytes().to_vec())
}

/// The token of `claims`, signed with `secret`; `None` when it would pass [`MAX_TOKEN_CHARS`]
/// or the secret is empty.
pub fn sign(claims: &Claims, secret: &[u8]) -> Option<String> {
    if secret.is_empty() {
        return None;
    }
    let payload = base64url_encode(&serde_json::to_vec(claims).ok()?);
    let signed = format!("{PREFIX}{payload}");
    let tag = base64url_encode(&mac(secret, signed.as_bytes())?);
    Some(format!("{signed}.{tag}")).filter(|t| t.len() <= MAX_TOKEN_CHARS)
}

/// The claims of a token signed with one of `secrets` (the current one first), if it has not
/// expired at `now`.
///
/// # Errors
/// [`Refusal`] saying whether it is invalid or expired (an expired token is reported only when
/// its signature is good, so nobody learns anything from a forged one).
pub fn verify(token: &str, secrets: &[&[u8]], now: Millis) -> Result<Claims, Refusal> {
    let claims = open(token, secrets)?;
    if is_expired(&claims, now) {
        return Err(Refusal::Expired);
    }
    Ok(claims)
}

/// Whether a token with good claims has expired at `now` (after [`LEEWAY_MS`]).
pub fn is_expired(claims: &Claims, now: Millis) -> bool {
    now > claims.expires_at.saturating_add(LEEWAY_MS)
}

/// The claims of a token signed with one of `secrets`, expired or not: the request path
/// reads the origins of an expired token first, so a browser page can read the 401 that
/// tells it to fetch a new one.
///
/// # Errors
/// [`Refusal::Invalid`] for anything malformed or not signed with one of `secrets`.
pub fn open(token: &str, secrets: &[&[u8]]) -> Result<Claims, Refusal> {
    if token.len() > MAX_TOKEN_CHARS {
        return Err(Refusal::Invalid);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(Refusal::Invalid)?;
    let payload = signed.strip_prefix(PREFIX).ok_or(Refusal::Invalid)?;
    let tag = base64url_decode(tag).ok_or(Refusal::Invalid)?;
    let good = secrets.iter().filter(|s| !s.is_empty()).any(|secret| {
        let mut m = match HmacSha256::new_from_slice(secret) {
            Ok(m) => m,
            Err(_) => return false,
        };
        m.update(signed.as_bytes());
        // Constant-time comparison.
        m.verify_slice(&tag).is_ok()
    });
    if !good {
        return Err(Refusal::Invalid);
    }
    serde_json::from_slice(&base64url_decode(payload).ok_or(Refusal::Invalid)?).map_err(|_| Refusal::Invalid)
}

/// A mint request (`POST /api/embed-tokens`), validated; whether its ids exist and are within
/// the key's scope is for the handler to ask storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub origins: Vec<String>,
    pub ttl_seconds: i64,
    pub agent_ids: Option<Vec<String>>,
    pub insight_ids: Option<Vec<String>>,
    pub chat: bool,
    pub user: Option<String>,
}

/// Ids a token may list, at most: more would not fit in [`MAX_TOKEN_CHARS`] anyway.
pub const MAX_IDS: usize = 20;
pub const USER: Text = Text::new(1, 200);

impl TryFrom<&Object> for MintRequest {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let origins_rule = || {
            ApiError::invalid(
                "origins",
                format!("must be a list of 1 to {MAX_ORIGINS} origins, each exactly scheme://host[:port] (http or https, no path)"),
            )
        };
        let origins = match obj.get("origins") {
            Some(Value::Array(list)) if (1..=MAX_ORIGINS).contains(&list.len()) => {
                let mut out: Vec<String> = Vec::with_capacity(list.len());
                for item in list {
                    let origin = item.as_str().and_then(parse_origin).ok_or_else(origins_rule)?;
                    if !out.contains(&origin) {
                        out.push(origin);
                    }
                }
                out
            }
            _ => return Err(origins_rule()),
        };
        let ttl_seconds =
            validate::optional_int(obj, "ttlSeconds", MIN_TTL_SECONDS, MAX_TTL_SECONDS)?.unwrap_or(DEFAULT_TTL_SECONDS);
        let chat = match obj.get("chat") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("chat", "must be a boolean")),
        };
        let user = validate::optional_text(obj, "user", USER)?;
        if user.as_deref().is_some_and(|u| !u.chars().all(validate::is_printable)) {
            return Err(ApiError::invalid("user", "must be 1 to 200 printable characters"));
        }
        Ok(Self {
            origins,
            ttl_seconds,
            agent_ids: ids(obj, "agentIds")?,
            insight_ids: ids(obj, "insightIds")?,
            chat,
            user,
        })
    }
}

/// `null` (absent included) or a list of up to [`MAX_IDS`] ids, without duplicates.
fn ids(obj: &Object, field: &str) -> ApiResult<Option<Vec<String>>> {
    let rule = || ApiError::invalid(field, format!("must be null or a list of at most {MAX_IDS} ids"));
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) if list.len() <= MAX_IDS => {
            let mut out: Vec<String> = Vec::with_capacity(list.len());
            for item in list {
                let id = item.as_str().filter(|s| !s.is_empty() && s.len() <= 100).ok_or_else(rule)?;
                if !out.iter().any(|o| o == id) {
                    out.push(id.to_owned());
                }
            }
            Ok(Some(out))
        }
        Some(_) => Err(rule()),
    }
}

/// The agents a token may chat with: its own list within the key's scope. A key limited to
/// some agents never reaches the default assistant, and neither does a token that lists
/// agents.
pub fn agent_scope(key: &Scope, token: Option<&[String]>) -> Scope {
    match (key, token) {
        (_, None) => key.clone(),
        (Scope::All, Some(ids)) => Scope::Only(ids.to_vec()),
        (Scope::Only(allowed), Some(ids)) => {
            Scope::Only(ids.iter().filter(|id| allowed.contains(id)).cloned().collect())
        }
    }
}

/// Whether a token (with its key's scope) may read an insight answered by `agent_id` (`None`:
/// the default assistant): it lists the insight, or lists none and the key may use its agent.
pub fn may_read_insight(claims: &Claims, key: &Scope, insight_id: &str, agent_id: Option<&str>) -> bool {
    let listed = claims.insight_ids.as_ref().is_none_or(|ids| ids.iter().any(|i| i == insight_id));
    listed && key.check(agent_id).is_ok()
}

/// An origin as a browser sends it: `http` or `https`, a host, an optional port, nothing else
/// (no path, no trailing slash, no credentials); lowercased. `None` for anything else.
pub fn parse_origin(s: &str) -> Option<String> {
    let lower = s.to_ascii_lowercase();
    let rest = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://"))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !host.starts_with(['.', '-'])
        && !host.ends_with(['.', '-']);
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65_535).contains(&n))
    });
    (host_ok && port_ok).then_some(lower)
}

/// Whether a request's `Origin` header is one the token lists.
pub fn allows_origin(claims: &Claims, origin: Option<&str>) -> bool {
    origin.and_then(parse_origin).is_some_and(|o| claims.origins.contains(&o))
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 4648 §5).
pub fn base64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET.get(index as usize).copied().unwrap_or(b'A')));
        }
    }
    out
}

/// The inverse of [`base64url_encode`]; `None` for any other character, padding, or a length
/// no encoding has.
pub fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let value = |c: u8| ALPHABET.iter().position(|&a| a == c).and_then(|p| u32::try_from(p).ok());
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    for chunk in s.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(bytes.get(1..chunk.len()).unwrap_or_default());
    }
    // A canonical encoding only: re-encoding must give the same text.
    (base64url_encode(&out) == s).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Millis = 1_800_000_000_000;

    fn claims() -> Claims {
        Claims {
            workspace: None,
            key_hash: "ab".repeat(32),
            origins: vec!["https://dash.example.com".into(), "http://127.0.0.1:8788".into()],
            agent_ids: Some(vec!["agent_0123456789012345678901".into()]),
            insight_ids: None,
            chat: true,
            user: Some("viewer-42".into()),
            expires_at: NOW + 900_000,
        }
    }

    fn mint(v: serde_json::Value) -> ApiResult<MintRequest> {
        MintRequest::try_from(v.as_object().unwrap())
    }

    #[test]
    fn mint_requests_have_defaults_and_bounds() {
        let m =
            mint(serde_json::json!({ "origins": ["https://Dash.example.com", "https://dash.example.com"] })).unwrap();
        assert_eq!(m.origins, ["https://dash.example.com"]);
        assert_eq!((m.ttl_seconds, m.chat, m.agent_ids, m.insight_ids, m.user), (900, false, None, None, None));
        let m = mint(serde_json::json!({
            "origins": ["http://127.0.0.1:8788"], "ttlSeconds": 60, "agentIds": ["agent_a", "agent_a"],
            "insightIds": [], "chat": true, "user": "viewer 1"
        }))
        .unwrap();
        assert_eq!((m.ttl_seconds, m.chat), (60, true));
        assert_eq!(m.agent_ids, Some(vec!["agent_a".to_owned()]));
        assert_eq!(m.insight_ids, Some(vec![]));
        for (bad, field) in [
            (serde_json::json!({}), "origins"),
            (serde_json::json!({ "origins": [] }), "origins"),
            (serde_json::json!({ "origins": ["https://a.example/"] }), "origins"),
            (serde_json::json!({ "origins": ["https://a.example/path"] }), "origins"),
            (serde_json::json!({ "origins": ["ftp://a.example"] }), "origins"),
            (serde_json::json!({ "origins": ["*"] }), "origins"),
            (
                serde_json::json!({ "origins": (0..11).map(|i| format!("https://a{i}.example")).collect::<Vec<_>>() }),
                "origins",
            ),
            (serde_json::json!({ "origins": ["https://a.example"], "ttlSeconds": 59 }), "ttlSeconds"),
            (serde_json::json!({ "origins": ["https://a.example"], "ttlSeconds": 3601 }), "ttlSeconds"),
            (serde_json::json!({ "origins": ["https://a.example"], "chat": "yes" }), "chat"),
            (serde_json::json!({ "origins": ["https://a.example"], "user": "" }), "user"),
            (serde_json::json!({ "origins": ["https://a.example"], "user": "a\nb" }), "user"),
            (serde_json::json!({ "origins": ["https://a.example"], "user": "u".repeat(201) }), "user"),
            (serde_json::json!({ "origins": ["https://a.example"], "agentIds": "agent_a" }), "agentIds"),
            (serde_json::json!({ "origins": ["https://a.example"], "insightIds": [1] }), "insightIds"),
        ] {
            match mint(bad.clone()) {
                Err(ApiError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_token_reaches_at_most_what_its_key_does() {
        let only = |ids: &[&str]| Scope::Only(ids.iter().map(|s| (*s).to_owned()).collect());
        let list = vec!["agent_a".to_owned(), "agent_b".to_owned()];
        assert_eq!(agent_scope(&Scope::All, None), Scope::All);
        assert_eq!(agent_scope(&Scope::All, Some(&list)), only(&["agent_a", "agent_b"]));
        assert_eq!(agent_scope(&only(&["agent_b", "agent_c"]), Some(&list)), only(&["agent_b"]));
        assert_eq!(agent_scope(&only(&["agent_c"]), None), only(&["agent_c"]));
        let mut c = claims();
        c.insight_ids = None;
        assert!(may_read_insight(&c, &Scope::All, "ins_1", None));
        assert!(
            !may_read_insight(&c, &only(&["agent_a"]), "ins_1", None),
            "scoped keys never reach the default assistant"
        );
        assert!(may_read_insight(&c, &only(&["agent_a"]), "ins_1", Some("agent_a")));
        c.insight_ids = Some(vec!["ins_2".into()]);
        assert!(!may_read_insight(&c, &Scope::All, "ins_1", None));
        assert!(may_read_insight(&c, &Scope::All, "ins_2", None));
    }

    #[test]
    fn a_signed_token_verifies_with_its_secret_or_the_previous_one() {
        let token = sign(&claims(), b"current").unwrap();
        assert!(token.starts_with(PREFIX) && token.len() <= MAX_TOKEN_CHARS, "{token}");
        assert_eq!(verify(&token, &[b"current"], NOW), Ok(claims()));
        // Rotated: the old secret is now the previous one.
        assert_eq!(verify(&token, &[b"next", b"current"], NOW), Ok(claims()));
        assert_eq!(verify(&token, &[b"next"], NOW), Err(Refusal::Invalid));
        assert_eq!(verify(&token, &[b"", b""], NOW), Err(Refusal::Invalid));
    }

    #[test]
    fn expiry_has_a_few_seconds_of_leeway_and_only_for_good_signatures() {
        let token = sign(&claims(), b"s").unwrap();
        let end = claims().expires_at;
        assert!(verify(&token, &[b"s"], end + LEEWAY_MS).is_ok());
        assert_eq!(verify(&token, &[b"s"], end + LEEWAY_MS + 1), Err(Refusal::Expired));
        assert_eq!(verify(&token, &[b"other"], end + LEEWAY_MS + 1), Err(Refusal::Invalid));
    }

    #[test]
    fn anything_altered_or_malformed_is_invalid() {
        let token = sign(&claims(), b"s").unwrap();
        let (signed, tag) = token.rsplit_once('.').unwrap();
        let mut forged = claims();
        forged.chat = false;
        forged.origins.push("https://evil.example".into());
        let forged_payload = base64url_encode(&serde_json::to_vec(&forged).unwrap());
        for bad in [
            format!("{PREFIX}{forged_payload}.{tag}"),
            format!("{signed}.{}", &tag[1..]),
            format!("{signed}x.{tag}"),
            signed.to_owned(),
            token.replacen(PREFIX, "atv_", 1),
            format!("{token}="),
            "atvet_.".into(),
            String::new(),
            "x".repeat(MAX_TOKEN_CHARS + 1),
        ] {
            assert_eq!(verify(&bad, &[b"s"], NOW), Err(Refusal::Invalid), "{bad}");
        }
        // A valid signature over a payload that is not claims is still invalid.
        let signed = format!("{PREFIX}{}", base64url_encode(b"{\"k\":1}"));
        let tag = base64url_encode(&mac(b"s", signed.as_bytes()).unwrap());
        assert_eq!(verify(&format!("{signed}.{tag}"), &[b"s"], NOW), Err(Refusal::Invalid));
    }

    #[test]
    fn tokens_past_the_size_cap_are_not_minted() {
        let mut big = claims();
        big.agent_ids = Some((0..50).map(|i| format!("agent_{i:022}")).collect());
        assert_eq!(sign(&big, b"s"), None);
        assert_eq!(sign(&claims(), b""), None);
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        for (given, parsed) in [
            ("https://Dash.Example.com", Some("https://dash.example.com")),
            ("http://127.0.0.1:8788", Some("http://127.0.0.1:8788")),
            ("https://a-b.c:443", Some("https://a-b.c:443")),
        ] {
            assert_eq!(parse_origin(given).as_deref(), parsed, "{given}");
        }
        for bad in [
            "https://dash.example.com/",
            "https://dash.example.com/path",
            "ftp://x.com",
            "https://",
            "https://user@x.com",
            "https://x.com:0",
            "https://x.com:65536",
            "https://x.com:",
            "https://-x.com",
            "dash.example.com",
            "https://x.com?q",
            "null",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
        let c = claims();
        assert!(allows_origin(&c, Some("https://DASH.example.com")));
        assert!(!allows_origin(&c, Some("https://evil.example")));
        assert!(!allows_origin(&c, Some("http://dash.example.com")));
        assert!(!allows_origin(&c, None));
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        for (raw, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url_encode(raw.as_bytes()), encoded);
            assert_eq!(base64url_decode(encoded).as_deref(), Some(raw.as_bytes()));
        }
        assert_eq!(base64url_encode(&[0xfb, 0xff]), "-_8");
        for bad in ["Zg==", "Z", "Zh", "Zm9v+", "Zm/v"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn base64url_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(base64url_decode(&base64url_encode(&bytes)), Some(bytes));
        }

        #[test]
        fn verification_never_panics(token in "\\PC{0,300}", dots in 0usize..3) {
            let token = format!("{PREFIX}{token}{}", ".".repeat(dots));
            let _ = verify(&token, &[b"s"], NOW);
        }
    }
}
