//! Per-key rate limiting with GCRA (the generic cell rate algorithm): a token bucket of
//! `limit` tokens refilled continuously over a minute, kept as one number, the theoretical
//! arrival time (TAT). A fresh key can burst `limit` requests, then gets one every
//! `60 s / limit`.

use super::time::Millis;

const WINDOW_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (`RateLimit-Reset`).
    pub reset_seconds: u64,
    /// Seconds until a request would be allowed, when this one was not.
    pub retry_after_seconds: u64,
    /// The state to store.
    pub state: State,
}

/// What the limiter stores per key: the TAT and the limit it was computed with, so a changed
/// limit can rescale the tokens already spent instead of misreading them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub tat: Millis,
    pub limit: u32,
}

/// Decides one request. `tat` is the stored state (`None` for a fresh key), `limit` the
/// requests per minute (at least 1). A clock that goes backwards, or a limit that was lowered,
/// cannot lock a key out for longer than one window: the state is clamped to it.
pub fn check(state: Option<State>, now: Millis, limit: u32) -> Decision {
    let limit = limit.max(1);
    let interval = interval_ms(limit);
    let tat = match state {
        None => now,
        Some(s) if s.limit.max(1) == limit => s.tat,
        // Same share of the bucket spent, in the new limit's units.
        Some(s) => {
            let spent = (s.tat - now).clamp(0, WINDOW_MS);
            now + spent * interval / interval_ms(s.limit)
        }
    };
    let tat = tat.clamp(now, now + WINDOW_MS);
    let new_tat = tat + interval;
    let allowed = new_tat - now <= WINDOW_MS;
    let stored = if allowed { new_tat } else { tat };
    let used = stored - now; // how much of the window is spoken for
    let remaining = ((WINDOW_MS - used) / interval).clamp(0, i64::from(limit)) as u32;
    Decision {
        allowed,
        limit,
        remaining,
        reset_seconds: ceil_secs(used),
        retry_after_seconds: if allowed { 0 } else { ceil_secs(new_tat - now - WINDOW_MS).max(1) },
        state: State { tat: stored, limit },
    }
}

/// How often the Worker may write a key's last-used time to KV (KV takes one write per second
/// per key, and a minute is plenty for "last used").
pub const TOUCH_EVERY_MS: Millis = 60_000;

/// Everything the per-key Durable Object keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub state: Option<State>,
    /// The key's own `rateLimitPerMinute`, set once when the key is created.
    pub key_limit: Option<u32>,
    /// When the Worker was last told to write last-used.
    pub touched_at: Option<Millis>,
}

/// The reply of the Durable Object to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    pub reset_seconds: u64,
    pub retry_after_seconds: u64,
    /// Whether this request should write the key's last-used time.
    pub touch: bool,
}

/// One request against the stored state: the decision and the state to store. `default_limit`
/// applies to keys without a limit of their own, so changing the var takes effect at once.
pub fn on_request(stored: Stored, now: Millis, default_limit: u32) -> (Verdict, Stored) {
    let limit = stored.key_limit.unwrap_or(default_limit);
    let d = check(stored.state, now, limit);
    let touch = d.allowed && stored.touched_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS || now < t);
    let verdict = Verdict {
        allowed: d.allowed,
        limit: d.limit,
        remaining: d.remaining,
        reset_seconds: d.reset_seconds,
        retry_after_seconds: d.retry_after_seconds,
        touch,
    };
    let next = Stored {
        state: Some(d.state),
        key_limit: stored.key_limit,
        touched_at: if touch { Some(now) } else { stored.touched_at },
    };
    (verdict, next)
}

fn interval_ms(limit: u32) -> i64 {
    (WINDOW_MS / i64::from(limit.max(1))).max(1)
}

fn ceil_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Millis = 1_800_000_000_000;

    fn run(limit: u32, times: &[Millis]) -> Vec<Decision> {
        let mut tat = None;
        times
            .iter()
            .map(|&now| {
                let d = check(tat, now, limit);
                tat = Some(d.state);
                d
            })
            .collect()
    }

    #[test]
    fn a_fresh_key_bursts_exactly_the_limit() {
        let ds = run(5, &[T0; 7]);
        let allowed: Vec<bool> = ds.iter().map(|d| d.allowed).collect();
        assert_eq!(allowed, [true, true, true, true, true, false, false]);
        let remaining: Vec<u32> = ds.iter().take(5).map(|d| d.remaining).collect();
        assert_eq!(remaining, [4, 3, 2, 1, 0]);
        assert_eq!(ds[5].retry_after_seconds, 12); // one token per 60/5 s
        assert_eq!(ds[4].reset_seconds, 60);
    }

    #[test]
    fn tokens_refill_over_time() {
        let ds = run(5, &[T0, T0, T0, T0, T0, T0 + 11_999, T0 + 12_000, T0 + 12_000]);
        assert!(!ds[5].allowed);
        assert_eq!(ds[5].retry_after_seconds, 1);
        assert!(ds[6].allowed);
        assert!(!ds[7].allowed);
        let later = check(Some(ds[6].state), T0 + 10 * 60_000, 5);
        assert!(later.allowed);
        assert_eq!(later.remaining, 4);
    }

    #[test]
    fn a_clock_going_backwards_locks_out_at_most_one_window() {
        let ds = run(5, &[T0; 5]);
        let earlier = T0 - 3_600_000;
        let d = check(Some(ds[4].state), earlier, 5);
        assert!(!d.allowed);
        assert!(d.retry_after_seconds <= 60, "{}", d.retry_after_seconds);
        assert!(check(Some(d.state), earlier + 60_000, 5).allowed);
    }

    #[test]
    fn limit_changes_apply_to_the_next_request() {
        let ds = run(5, &[T0; 5]);
        // Raised: room appears at once.
        let raised = check(Some(ds[4].state), T0, 10);
        assert!(raised.allowed);
        // Lowered: over budget, but never locked out beyond a window.
        let lowered = check(Some(ds[4].state), T0, 1);
        assert!(!lowered.allowed);
        assert!(lowered.retry_after_seconds <= 60);
    }

    #[test]
    fn key_limit_wins_over_default_and_touch_is_once_a_minute() {
        let mut stored = Stored { key_limit: Some(2), ..Stored::default() };
        let mut verdicts = Vec::new();
        for now in [T0, T0 + 1, T0 + 2, T0 + 60_000] {
            let (v, next) = on_request(stored, now, 100);
            stored = next;
            verdicts.push(v);
        }
        assert_eq!(verdicts.iter().map(|v| v.allowed).collect::<Vec<_>>(), [true, true, false, true]);
        assert_eq!(verdicts.iter().map(|v| v.touch).collect::<Vec<_>>(), [true, false, false, true]);
        assert_eq!(verdicts[0].limit, 2);
    }

    #[test]
    fn default_limit_changes_apply_to_keys_without_their_own() {
        let (v, stored) = on_request(Stored::default(), T0, 1);
        assert!(v.allowed);
        assert!(!on_request(stored, T0, 1).0.allowed);
        assert!(on_request(stored, T0, 3).0.allowed);
    }

    #[test]
    fn huge_limits_do_not_divide_by_zero() {
        let d = check(None, T0, 100_000);
        assert!(d.allowed);
        assert_eq!(d.limit, 100_000);
        let zero = check(None, T0, 0);
        assert!(zero.allowed);
        assert_eq!(zero.limit, 1);
    }
}
