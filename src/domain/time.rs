//! Times are stored as milliseconds since the Unix epoch (integers below 2^53, which D1 binds
//! as numbers) and shown as ISO 8601 UTC strings everywhere in the API.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Millis = i64;

/// `2026-11-28T22:09:50.123Z`.
pub fn to_iso(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map_or_else(|| "1970-01-01T00:00:00.000Z".into(), |t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// Parses an RFC 3339 / ISO 8601 time with an offset (`Z` or `+02:00`).
pub fn parse_iso(s: &str) -> Option<Millis> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.timestamp_millis())
}

/// Exactly `YYYY-MM-DD` with ASCII digits, naming a day that exists (chrono's `%Y-%m-%d` alone
/// would also take `2026-1-5` and signs). Dates in this form order as text as they do as dates.
pub fn calendar_day(s: &str) -> Option<chrono::NaiveDate> {
    let shaped = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    shaped.then(|| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(to_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(to_iso(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn parses_offsets_and_round_trips() {
        assert_eq!(parse_iso("2026-11-18T11:06:40.123Z"), Some(1_795_000_000_123));
        assert_eq!(parse_iso("2026-11-18T13:06:40.123+02:00"), Some(1_795_000_000_123));
        assert_eq!(parse_iso(&to_iso(1_795_000_000_000)), Some(1_795_000_000_000));
    }

    #[test]
    fn calendar_days_are_exact() {
        assert!(calendar_day("2024-02-29").is_some());
        for s in ["2026-02-29", "2026-1-05", "+2026-01-5", "2026/01/05", "２０２６-01-05", "2026-01-05T00:00:00Z", ""]
        {
            assert_eq!(calendar_day(s), None, "{s}");
        }
    }

    #[test]
    fn rejects_non_times() {
        for s in ["", "tomorrow", "2026-13-01T00:00:00Z", "2026-11-18", "2026-11-18T08:26:40"] {
            assert_eq!(parse_iso(s), None, "{s}");
        }
    }
}
