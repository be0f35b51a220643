//! Base62 (`0-9A-Za-z`): URL-safe, copy-paste-safe (a double click selects it whole) and free
//! of characters that shells or JSON would need to escape.

pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` uniformly random base62 characters from the platform CSPRNG
/// (`crypto.getRandomValues` on Workers).
///
/// # Errors
/// When the platform has no randomness to give, which callers must turn into a 500 rather
/// than fall back to something guessable.
pub fn random(len: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        getrandom::getrandom(&mut buf)?;
        // Rejection sampling: 248 = 4 * 62, so bytes below it map uniformly onto the alphabet.
        for &b in buf.iter().filter(|&&b| b < 248) {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(b % 62)]));
        }
    }
    Ok(out)
}

/// `value` in base62, left-padded with `0` to `width` characters.
pub fn encode_u32(mut value: u32, width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    while value > 0 {
        digits.push(ALPHABET[(value % 62) as usize]);
        value /= 62;
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

pub fn is_base62(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_has_the_asked_length_and_alphabet() {
        let s = random(40).unwrap();
        assert_eq!(s.len(), 40);
        assert!(is_base62(&s));
        assert_ne!(s, random(40).unwrap());
    }

    #[test]
    fn encode_pads_and_covers_u32() {
        assert_eq!(encode_u32(0, 6), "000000");
        assert_eq!(encode_u32(61, 6), "00000z");
        assert_eq!(encode_u32(62, 6), "000010");
        // 62^6 > 2^32, so six characters hold every u32.
        assert_eq!(encode_u32(u32::MAX, 6), "4gfFC3");
    }
}
