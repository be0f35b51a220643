//! `X-Request-Id`: taken from the caller when it is a sane value, so their logs and ours join
//! up; otherwise generated. "Sane" keeps log lines single-line and bounded.

use super::base62;

pub fn accept_or_generate(incoming: Option<&str>) -> String {
    match incoming {
        Some(id) if is_sane(id) => id.to_owned(),
        _ => format!("req_{}", base62::random(20).unwrap_or_else(|_| "unknown".into())),
    }
}

fn is_sane(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_sane_incoming_id() {
        assert_eq!(accept_or_generate(Some("abc-123_x.y:z")), "abc-123_x.y:z");
    }

    #[test]
    fn replaces_missing_or_odd_ids() {
        for bad in [None, Some(""), Some("a b"), Some("line\nbreak"), Some("\"quoted\"")] {
            let id = accept_or_generate(bad);
            assert!(id.starts_with("req_"), "{bad:?} -> {id}");
            assert_eq!(id.len(), 24);
        }
        let long = "x".repeat(129);
        assert!(accept_or_generate(Some(&long)).starts_with("req_"));
    }
}
