//! The usage ledger's rules: which UTC day a request counts on, what each outcome adds to the
//! counters, and which ranges the usage route accepts.
//!
//! A request counts once, on the UTC day it arrived, for the key that made it. `requests`
//! counts everything; a failure is also counted in its own column: `rateLimited` for 429,
//! `errors` for any other 4xx and for 5xx.

use chrono::{DateTime, Duration, NaiveDate};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::time::Millis;

/// The longest range the usage route answers, in days (a leap year).
pub const MAX_RANGE_DAYS: i64 = 366;
/// The range when none is given, and the window of a key's `requests30d`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// The counters of one key (or of all keys) over one day or a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counters {
    pub requests: i64,
    pub errors: i64,
    pub rate_limited: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub llm_ms: i64,
}

impl Counters {
    /// One request that ended with `status` (the HTTP status, or the status a stream's `error`
    /// event stands for).
    pub fn request(status: u16) -> Self {
        Self {
            requests: 1,
            errors: i64::from(is_error(status)),
            rate_limited: i64::from(status == 429),
            ..Self::default()
        }
    }

    /// Adds a turn's tokens and LLM time.
    pub fn with_llm(self, prompt_tokens: u64, completion_tokens: u64, llm_ms: u64) -> Self {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        Self { prompt_tokens: n(prompt_tokens), completion_tokens: n(completion_tokens), llm_ms: n(llm_ms), ..self }
    }

    pub fn add(&mut self, other: &Self) {
        self.requests = self.requests.saturating_add(other.requests);
        self.errors = self.errors.saturating_add(other.errors);
        self.rate_limited = self.rate_limited.saturating_add(other.rate_limited);
        self.prompt_tokens = self.prompt_tokens.saturating_add(other.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(other.completion_tokens);
        self.llm_ms = self.llm_ms.saturating_add(other.llm_ms);
    }
}

/// 4xx other than 429, and 5xx.
pub fn is_error(status: u16) -> bool {
    status >= 400 && status != 429
}

/// The UTC day of a time, `YYYY-MM-DD`.
pub fn day_of(ms: Millis) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| "1970-01-01".into(), |t| t.date_naive().to_string())
}

/// A validated range of UTC days, both ends included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl Range {
    /// `from`/`to` as the query gave them (absent or empty: not given). Without `to`, the range
    /// ends today; without `from`, it covers [`DEFAULT_RANGE_DAYS`] days ending at `to`.
    pub fn parse(from: Option<&str>, to: Option<&str>, now: Millis) -> ApiResult<Self> {
        let today = DateTime::from_timestamp_millis(now).map(|t| t.date_naive()).unwrap_or_default();
        let to = match to.filter(|s| !s.is_empty()) {
            Some(s) => parse_day("to", s)?,
            None => today,
        };
        let from = match from.filter(|s| !s.is_empty()) {
            Some(s) => parse_day("from", s)?,
            // Never before the first day there can be usage of.
            None => (to - Duration::days(DEFAULT_RANGE_DAYS - 1)).max(first_day()),
        };
        if from > to {
            return Err(ApiError::invalid("from", "must not be after to"));
        }
        let range = Self { from, to };
        if range.len() > MAX_RANGE_DAYS {
            return Err(ApiError::invalid("from", format!("must be at most {MAX_RANGE_DAYS} days before to")));
        }
        Ok(range)
    }

    /// The last [`DEFAULT_RANGE_DAYS`] days, today included.
    pub fn last_30_days(now: Millis) -> Self {
        let to = DateTime::from_timestamp_millis(now).map(|t| t.date_naive()).unwrap_or_default();
        Self { from: to - Duration::days(DEFAULT_RANGE_DAYS - 1), to }
    }

    pub fn len(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= 0
    }

    pub fn from_str(&self) -> String {
        self.from.to_string()
    }

    pub fn to_str(&self) -> String {
        self.to.to_string()
    }

    /// Every day of the range with its counters, zero where `rows` has none.
    pub fn fill(&self, rows: &[(String, Counters)]) -> Vec<(String, Counters)> {
        let mut by_day: std::collections::HashMap<&str, Counters> = std::collections::HashMap::new();
        for (day, c) in rows {
            by_day.entry(day.as_str()).or_default().add(c);
        }
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        let mut day = self.from;
        while day <= self.to {
            let date = day.to_string();
            let counters = by_day.get(date.as_str()).copied().unwrap_or_default();
            out.push((date, counters));
            day += Duration::days(1);
        }
        out
    }
}

/// 1970-01-01: requests are counted by Unix time, so no usage is older.
fn first_day() -> NaiveDate {
    DateTime::from_timestamp_millis(0).map(|t| t.date_naive()).unwrap_or_default()
}

/// `YYYY-MM-DD`, exactly: a real calendar date, four-digit year, from 1970 on.
fn parse_day(field: &str, s: &str) -> ApiResult<NaiveDate> {
    super::time::calendar_day(s)
        .filter(|d| *d >= first_day())
        .ok_or_else(|| ApiError::invalid(field, "must be a date as YYYY-MM-DD from 1970-01-01 on, e.g. 2026-11-01"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_29_NOV_2026: Millis = 1_795_953_600_000;

    fn field(err: ApiError) -> String {
        err.body()["details"]["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn days_are_utc() {
        assert_eq!(day_of(NOON_29_NOV_2026), "2026-11-29");
        // One millisecond before midnight UTC is still the day before.
        let midnight = 1_795_996_800_000; // 2026-11-30T00:00:00Z
        assert_eq!(day_of(midnight - 1), "2026-11-29");
        assert_eq!(day_of(midnight), "2026-11-30");
    }

    #[test]
    fn outcomes_count_in_their_columns() {
        assert_eq!(Counters::request(200), Counters { requests: 1, ..Counters::default() });
        assert_eq!(Counters::request(429), Counters { requests: 1, rate_limited: 1, ..Counters::default() });
        for status in [400, 401, 403, 404, 409, 413, 422, 500, 502, 504] {
            assert_eq!(
                Counters::request(status),
                Counters { requests: 1, errors: 1, ..Counters::default() },
                "{status}"
            );
        }
        let turn = Counters::request(200).with_llm(11, 7, 30);
        assert_eq!((turn.prompt_tokens, turn.completion_tokens, turn.llm_ms), (11, 7, 30));
    }

    #[test]
    fn default_range_is_the_last_30_days() {
        let r = Range::parse(None, None, NOON_29_NOV_2026).unwrap();
        assert_eq!((r.from_str(), r.to_str(), r.len()), ("2026-10-31".into(), "2026-11-29".into(), 30));
        assert_eq!(r, Range::last_30_days(NOON_29_NOV_2026));
        let r = Range::parse(Some(""), Some("2026-02-10"), NOON_29_NOV_2026).unwrap();
        assert_eq!(r.from_str(), "2026-01-12");
        let r = Range::parse(Some("2026-11-20"), None, NOON_29_NOV_2026).unwrap();
        assert_eq!((r.from_str(), r.to_str()), ("2026-11-20".into(), "2026-11-29".into()));
    }

    #[test]
    fn range_rules() {
        let now = NOON_29_NOV_2026;
        assert_eq!(Range::parse(Some("2024-01-01"), Some("2024-12-31"), now).unwrap().len(), 366);
        assert_eq!(Range::parse(Some("2026-11-29"), Some("2026-11-29"), now).unwrap().len(), 1);
        assert_eq!(field(Range::parse(Some("2024-01-01"), Some("2025-01-01"), now).unwrap_err()), "from");
        assert_eq!(field(Range::parse(Some("2026-11-02"), Some("2026-11-01"), now).unwrap_err()), "from");
        for bad in [
            "2026-02-30",
            "2026-1-01",
            "26-01-01",
            "2026/01/01",
            "2026-01-01T00:00:00Z",
            "+2026-01-1",
            "yesterday",
            "２０２６-01-01",
        ] {
            assert_eq!(field(Range::parse(Some(bad), None, now).unwrap_err()), "from", "{bad}");
            assert_eq!(field(Range::parse(None, Some(bad), now).unwrap_err()), "to", "{bad}");
        }
        // The default start never goes before 1970, and earlier dates are refused.
        let early = Range::parse(None, Some("1970-01-05"), now).unwrap();
        assert_eq!((early.from_str(), early.len()), ("1970-01-01".into(), 5));
        assert_eq!(field(Range::parse(None, Some("0000-01-05"), now).unwrap_err()), "to");
        assert_eq!(field(Range::parse(Some("1969-12-31"), None, now).unwrap_err()), "from");
    }

    #[test]
    fn every_day_appears_with_zeros_where_nothing_happened() {
        let r = Range::parse(Some("2026-02-27"), Some("2026-03-02"), NOON_29_NOV_2026).unwrap();
        let busy = Counters { requests: 3, prompt_tokens: 33, ..Counters::default() };
        let days = r.fill(&[("2026-03-01".into(), busy), ("2026-01-01".into(), busy)]);
        let dates: Vec<&str> = days.iter().map(|(d, _)| d.as_str()).collect();
        assert_eq!(dates, ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-02"]);
        assert_eq!(days[2].1, busy);
        assert_eq!(days[0].1, Counters::default());
        let leap = Range::parse(Some("2024-01-01"), Some("2024-12-31"), NOON_29_NOV_2026).unwrap();
        assert_eq!(leap.fill(&[]).len(), 366);
    }
}
