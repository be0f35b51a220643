//! Opaque pagination cursors for newest-first lists: the position `(updated_at, id)` of the
//! last item returned, hex-encoded so callers treat it as a token, not a format.

use super::error::{ApiError, ApiResult};
use super::time::Millis;

pub fn encode(updated_at: Millis, id: &str) -> String {
    hex::encode(format!("{updated_at}:{id}"))
}

/// # Errors
/// 400 on anything `encode` did not produce.
pub fn decode(cursor: &str) -> ApiResult<(Millis, String)> {
    let bad = || ApiError::invalid("cursor", "must be a cursor returned by a previous page");
    let bytes = hex::decode(cursor).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (at, id) = text.split_once(':').ok_or_else(bad)?;
    let at = at.parse::<Millis>().map_err(|_| bad())?;
    if id.is_empty() || id.len() > 64 {
        return Err(bad());
    }
    Ok((at, id.to_owned()))
}

/// `limit` query parameter: 1–100, `default` when absent.
///
/// # Errors
/// 400 naming `limit`.
pub fn limit(raw: Option<&str>, default: u32) -> ApiResult<u32> {
    match raw {
        None => Ok(default),
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be a whole number from 1 to 100")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = encode(1_795_000_000_000, "chat_abc");
        assert_eq!(decode(&c).unwrap(), (1_795_000_000_000, "chat_abc".to_owned()));
    }

    #[test]
    fn garbage_is_a_400() {
        for c in ["", "zz", "00", &hex::encode("x:chat"), &hex::encode("5:")] {
            assert_eq!(decode(c).unwrap_err().status(), 400, "{c}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(limit(None, 20).unwrap(), 20);
        assert_eq!(limit(Some("100"), 20).unwrap(), 100);
        for bad in ["0", "101", "-1", "x", ""] {
            assert!(limit(Some(bad), 20).is_err(), "{bad}");
        }
    }
}
