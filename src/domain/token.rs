//! Secret token format shared by API keys and workspace admin tokens.
//!
//! `<prefix><30 random base62><6 base62 checksum>`, e.g. `atv_` + 36 characters. The checksum is
//! the CRC32 of everything before it (prefix included), as in GitHub's token format: a mistyped
//! or truncated key is rejected without touching storage, and an admin token cannot pass as an
//! API key even with its prefix swapped.
//!
//! API keys minted since each workspace has its own database also carry where that database
//! is: `atv2_<30 random><23-character locator><6 checksum>` (64 characters; the locator is
//! `domain::placement::Locator`, the workspace id and its jurisdiction, not a secret), so a
//! request reaches its workspace's object without asking D1 first. Keys of the first format
//! keep working (one D1 lookup finds their workspace). Secret scanners can match
//! `\batv_[0-9A-Za-z]{36}\b` and `\batv2_[0-9A-Za-z]{59}\b` (API keys) and
//! `\batvadm_[0-9A-Za-z]{36}\b` (admin tokens).
//!
//! Only the SHA-256 of a token is stored, plus a display prefix of its first dozen characters.

use sha2::{Digest, Sha256};

use super::base62;
use super::placement::{Locator, LOCATOR_LEN};

/// The prefix of API keys that carry their workspace's locator.
const LOCATED_KEY_PREFIX: &str = "atv2_";

const RANDOM_LEN: usize = 30; // 30 * log2(62) = 178 bits
const CHECKSUM_LEN: usize = 6;
pub const DISPLAY_PREFIX_LEN: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    ApiKey,
    AdminToken,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ApiKey => "atv_",
            Self::AdminToken => "atvadm_",
        }
    }
}

/// A token that passed the format and checksum check. Holding one proves nothing about
/// storage; it only means the string is worth looking up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    kind: TokenKind,
    secret: String,
    /// Where the key's workspace is, for keys of the second format.
    locator: Option<Locator>,
}

impl Token {
    /// A new random token.
    ///
    /// # Errors
    /// When the platform gives no randomness.
    pub fn generate(kind: TokenKind) -> Result<Self, getrandom::Error> {
        let body = format!("{}{}", kind.prefix(), base62::random(RANDOM_LEN)?);
        let secret = format!("{body}{}", checksum(&body));
        Ok(Self { kind, secret, locator: None })
    }

    /// A new random API key that carries its workspace's locator.
    ///
    /// # Errors
    /// When the platform gives no randomness.
    pub fn generate_located(locator: &Locator) -> Result<Self, getrandom::Error> {
        let body = format!("{LOCATED_KEY_PREFIX}{}{}", base62::random(RANDOM_LEN)?, locator.encode());
        let secret = format!("{body}{}", checksum(&body));
        Ok(Self { kind: TokenKind::ApiKey, secret, locator: Some(locator.clone()) })
    }

    /// Checks format and checksum; `None` for anything else, including the other kind.
    pub fn parse(kind: TokenKind, s: &str) -> Option<Self> {
        if kind == TokenKind::ApiKey {
            if let Some(rest) = s.strip_prefix(LOCATED_KEY_PREFIX) {
                return Self::parse_located(s, rest);
            }
        }
        let rest = s.strip_prefix(kind.prefix())?;
        if rest.len() != RANDOM_LEN + CHECKSUM_LEN || !base62::is_base62(rest) {
            return None;
        }
        let (body, sum) = s.split_at(kind.prefix().len() + RANDOM_LEN);
        (checksum(body) == sum).then(|| Self { kind, secret: s.to_owned(), locator: None })
    }

    fn parse_located(s: &str, rest: &str) -> Option<Self> {
        if rest.len() != RANDOM_LEN + LOCATOR_LEN + CHECKSUM_LEN || !base62::is_base62(rest) {
            return None;
        }
        let (body, sum) = s.split_at(s.len() - CHECKSUM_LEN);
        if checksum(body) != sum {
            return None;
        }
        let locator = Locator::decode(rest.get(RANDOM_LEN..RANDOM_LEN + LOCATOR_LEN)?)?;
        Some(Self { kind: TokenKind::ApiKey, secret: s.to_owned(), locator: Some(locator) })
    }

    /// Where the key's workspace is, when the key says (keys of the second format).
    pub fn locator(&self) -> Option<&Locator> {
        self.locator.as_ref()
    }

    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The full secret, to show exactly once at creation.
    pub fn reveal(&self) -> &str {
        &self.secret
    }

    /// Hex SHA-256, the only form that is stored.
    pub fn hash(&self) -> String {
        sha256_hex(&self.secret)
    }

    /// The first dozen characters, enough to recognise a key in a list.
    pub fn display_prefix(&self) -> String {
        self.secret.chars().take(DISPLAY_PREFIX_LEN).collect()
    }
}

pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Equality that takes the same time wherever the inputs differ. Both sides are hashed first so
/// the length of the secret does not leak either.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (ha, hb) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    ha.iter().zip(hb.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn checksum(body: &str) -> String {
    base62::encode_u32(crc32(body.as_bytes()), CHECKSUM_LEN)
}

/// CRC-32 (IEEE 802.3, reflected, as in zlib), bit by bit: tokens are short and this avoids a
/// table in the bundle.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn generated_tokens_have_the_documented_shape() {
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        let s = key.reveal();
        assert!(s.starts_with("atv_"));
        assert_eq!(s.len(), 4 + 36);
        assert!(base62::is_base62(&s[4..]));
        let admin = Token::generate(TokenKind::AdminToken).unwrap();
        assert!(admin.reveal().starts_with("atvadm_"));
        assert_eq!(admin.reveal().len(), 7 + 36);
    }

    #[test]
    fn a_generated_token_parses_back() {
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        assert_eq!(Token::parse(TokenKind::ApiKey, key.reveal()), Some(key));
    }

    #[test]
    fn every_single_character_change_is_caught() {
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        let original = key.reveal().as_bytes().to_vec();
        for i in 4..original.len() {
            for &c in base62::ALPHABET.iter() {
                if c == original[i] {
                    continue;
                }
                let mut changed = original.clone();
                changed[i] = c;
                let changed = String::from_utf8(changed).unwrap();
                assert!(Token::parse(TokenKind::ApiKey, &changed).is_none(), "{changed}");
            }
        }
    }

    #[test]
    fn kinds_are_not_interchangeable() {
        let admin = Token::generate(TokenKind::AdminToken).unwrap();
        assert!(Token::parse(TokenKind::ApiKey, admin.reveal()).is_none());
        let swapped = admin.reveal().replacen("atvadm_", "atv_", 1);
        assert!(Token::parse(TokenKind::ApiKey, &swapped).is_none());
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        assert!(Token::parse(TokenKind::AdminToken, key.reveal()).is_none());
    }

    #[test]
    fn malformed_strings_are_rejected() {
        for s in ["", "atv_", "atv_short", "Bearer atv_x", "ATV_0123", "atv_ñññññññññññññññññññññññññññññññññññ"]
        {
            assert!(Token::parse(TokenKind::ApiKey, s).is_none(), "{s}");
        }
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        assert!(Token::parse(TokenKind::ApiKey, &format!("{} ", key.reveal())).is_none());
        assert!(Token::parse(TokenKind::ApiKey, &key.reveal()[..39]).is_none());
    }

    #[test]
    fn display_prefix_is_the_first_dozen_characters() {
        let key = Token::generate(TokenKind::ApiKey).unwrap();
        assert_eq!(key.display_prefix(), key.reveal()[..12]);
        assert_ne!(key.hash(), key.reveal());
        assert_eq!(key.hash().len(), 64);
    }

    #[test]
    fn a_located_key_parses_back_with_its_locator() {
        use crate::domain::placement::Placement;
        for placement in [Placement::Auto, Placement::Eu] {
            let Some(loc) = Locator::new("ws_0123456789abcdefghijkl", placement) else { panic!("locator") };
            let key = Token::generate_located(&loc).unwrap();
            let s = key.reveal();
            assert!(s.starts_with("atv2_") && s.len() == 64 && base62::is_base62(&s[5..]), "{s}");
            let parsed = Token::parse(TokenKind::ApiKey, s).unwrap();
            assert_eq!(parsed.locator(), Some(&loc));
            assert_eq!(parsed.hash(), key.hash());
            assert_eq!(key.display_prefix(), s[..12]);
            assert!(Token::parse(TokenKind::AdminToken, s).is_none());
            // Every one-character change is caught by the checksum, the locator included.
            for i in 5..s.len() {
                let mut changed = s.as_bytes().to_vec();
                changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
                let changed = String::from_utf8(changed).unwrap();
                assert!(Token::parse(TokenKind::ApiKey, &changed).is_none(), "{changed}");
            }
        }
        assert!(Token::generate(TokenKind::ApiKey).unwrap().locator().is_none());
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret-longer"));
    }
}
