//! Per-key rate limiting with GCRA (the generic cell rate algorithm): a token bucket of
//! `limit` tokens refilled continuously over a minute, kept as one number, the theoretical
//! arrival time (TAT). A fresh key can burst `limit` requests, then gets one every
//! `60 s / limit`.

use super::idempotency::{self, Decision as IdemDecision, Record, StoredResult};
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
///
/// Time is counted in ticks of `1/limit` ms, so one token is exactly [`WINDOW_MS`] ticks at
/// any limit and no interval is ever rounded (a limit of 100,000 has a 0.6 ms interval). The
/// TAT is kept as whole milliseconds plus the ticks beyond them (`sub`, below `limit`);
/// states stored before `sub` existed read it as 0, which is the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct State {
    pub tat: Millis,
    pub limit: u32,
    #[serde(default)]
    pub sub: u32,
}

/// Limits beyond this are read as it: far above what keys or the default may be set to, and
/// it keeps every tick count far inside `i128`.
const MAX_LIMIT: u32 = 1_000_000;

fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_LIMIT)
}

impl State {
    /// The TAT in ticks of its own limit.
    fn ticks(self) -> i128 {
        i128::from(self.tat) * i128::from(clamp_limit(self.limit)) + i128::from(self.sub)
    }

    fn from_ticks(ticks: i128, limit: u32) -> Self {
        let l = i128::from(clamp_limit(limit));
        let tat = Millis::try_from(ticks.div_euclid(l)).unwrap_or(Millis::MAX);
        let sub = u32::try_from(ticks.rem_euclid(l)).unwrap_or(0);
        Self { tat, limit, sub }
    }
}

/// Decides one request. `tat` is the stored state (`None` for a fresh key), `limit` the
/// requests per minute (at least 1). A clock that goes backwards, or a limit that was lowered,
/// cannot lock a key out for longer than one window: the state is clamped to it.
pub fn check(state: Option<State>, now: Millis, limit: u32) -> Decision {
    let limit = clamp_limit(limit);
    let l = i128::from(limit);
    let token = i128::from(WINDOW_MS);
    let now_t = i128::from(now) * l;
    let window = token * l;
    let tat = match state {
        None => now_t,
        // The part of the window already spoken for, in tokens, carried into this limit's
        // ticks: a token is the same number of ticks at every limit.
        Some(s) => {
            let old_l = i128::from(clamp_limit(s.limit));
            now_t + (s.ticks() - i128::from(now) * old_l).clamp(0, token * old_l)
        }
    };
    let tat = tat.clamp(now_t, now_t + window);
    let new_tat = tat + token;
    let allowed = new_tat - now_t <= window;
    let stored = if allowed { new_tat } else { tat };
    let used = stored - now_t; // how much of the window is spoken for
    let remaining = ((window - used) / token).clamp(0, l);
    let secs = |ticks: i128| u64::try_from((ticks.max(0) + l * 1000 - 1) / (l * 1000)).unwrap_or(u64::MAX);
    Decision {
        allowed,
        limit,
        remaining: u32::try_from(remaining).unwrap_or(0),
        reset_seconds: secs(used),
        retry_after_seconds: if allowed { 0 } else { secs(new_tat - now_t - window).max(1) },
        state: State::from_ticks(stored, limit),
    }
}

/// How often the Worker may write a key's last-used time to KV (KV takes one write per second
/// per key, and a minute is plenty for "last used").
pub const TOUCH_EVERY_MS: Millis = 60_000;

/// Everything the per-key Durable Object keeps once it knows its key.
///
/// Objects written before keys were adopted (see [`on_command`]) hold the same JSON, so they
/// read as known keys and keep their state: the migration needs no step of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub state: Option<State>,
    /// The key's own `rateLimitPerMinute`, learnt from D1 when the object adopts the key.
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

/// An `Idempotency-Key` a request wants to claim, checked in the same step as its count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// [`idempotency::record_id`]: the key, hashed with its route.
    pub id: String,
    pub fingerprint: String,
    /// From [`idempotency::stale_after_ms`].
    pub stale_after_ms: Millis,
}

/// The Worker's message to a key's object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "op")]
pub enum Command {
    /// Count one request, if the object already knows its key. Sent side by side with the D1
    /// lookup, before anyone knows whether the key exists, so it must never write for a key
    /// the object does not know: anyone can mint well-formed keys.
    Check {
        default_limit: u32,
        #[serde(default)]
        claim: Option<Claim>,
    },
    /// D1 has confirmed the key: store it with its own limit, then count the request. Sent
    /// only after a `Check` answered [`Reply::Unknown`], i.e. on a key's first request(s).
    Adopt {
        default_limit: u32,
        key_limit: Option<u32>,
        #[serde(default)]
        claim: Option<Claim>,
    },
    /// D1 says the key's limit is not the one the object counted this request with (an admin
    /// changed it): give back the token the `Check` took (`counted`), drop the claim it took
    /// (`claimed`) if the recount refuses the request, learn the new limit and count the
    /// request again under it. One extra round trip, on the first request after a change only;
    /// an object that never saw its key is never created by an admin's edit.
    Relimit {
        default_limit: u32,
        key_limit: Option<u32>,
        counted: bool,
        #[serde(default)]
        claim: Option<Claim>,
        #[serde(default)]
        claimed: bool,
    },
    /// A claimed request ended: remember its result, or (`None`: it stored nothing, e.g. a
    /// 404 or a provider failure before any answer) release the key so a retry runs afresh.
    Finish { id: String, fingerprint: String, result: Option<Box<StoredResult>> },
    /// The key was deleted: drop everything the object stores.
    Forget,
    /// These chats were erased: drop the idempotency results that would replay them.
    ForgetChats { chat_ids: Vec<String> },
}

/// What the object found for a claimed key (the serialisable form of [`IdemDecision`]).
// One short-lived value per request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "decision")]
pub enum KeyDecision {
    Run,
    Conflict { retry_after_seconds: u64 },
    Mismatch,
    Replay { result: StoredResult },
}

impl From<IdemDecision> for KeyDecision {
    fn from(d: IdemDecision) -> Self {
        match d {
            IdemDecision::Run => Self::Run,
            IdemDecision::Conflict { retry_after_seconds } => Self::Conflict { retry_after_seconds },
            IdemDecision::Mismatch => Self::Mismatch,
            IdemDecision::Replay(result) => Self::Replay { result },
        }
    }
}

/// The object's answer.
// One short-lived value per request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "result")]
pub enum Reply {
    /// The object has not adopted a key: nothing was counted and nothing stored.
    Unknown,
    /// The count, and for a request with an allowed claim, what its key found.
    Verdict {
        verdict: Verdict,
        idempotency: Option<KeyDecision>,
    },
    Done,
}

/// What the object must do to its storage after a command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Writes {
    pub limiter: Option<Stored>,
    /// `(record id, new record)`; `None` deletes the record.
    pub record: Option<(String, Option<Record>)>,
    /// Drop everything.
    pub clear: bool,
    /// Drop the idempotency results of these chats (see [`crate::domain::idempotency::chat_needle`]).
    pub forget_chats: Vec<String>,
}

/// The whole protocol of the per-key object, given what it stores: `stored` (`None`: a key it
/// never adopted) and `record`, the idempotency record the command names, if any.
///
/// Concurrent first requests all get `Unknown`, then each adopts; the object runs them one at
/// a time, so the second adoption finds the first one's state and the count stays exact. For
/// the same reason, of two requests racing with one idempotency key, one claims it and the
/// other finds the claim (409). A refused (429) request claims nothing.
pub fn on_command(stored: Option<Stored>, record: Option<Record>, command: Command, now: Millis) -> (Reply, Writes) {
    let (stored, default_limit, claim) = match command {
        Command::Check { default_limit, claim } => match stored {
            None => return (Reply::Unknown, Writes::default()),
            Some(stored) => (stored, default_limit, claim),
        },
        // D1 has just said what the key's limit is; it wins over what an earlier adoption
        // stored.
        Command::Adopt { default_limit, key_limit, claim } => {
            (Stored { key_limit, ..stored.unwrap_or_default() }, default_limit, claim)
        }
        Command::Relimit { default_limit, key_limit, counted, claim, claimed } => {
            let mut stored = Stored { key_limit, ..stored.unwrap_or_default() };
            // One request is one token whatever the limit (a change keeps the tokens spent),
            // so the refund is one interval of the limit the state is kept in now, even if
            // another request relimited it in between.
            if let (true, Some(state)) = (counted, stored.state.as_mut()) {
                *state = State::from_ticks(state.ticks() - i128::from(WINDOW_MS), state.limit);
            }
            let (verdict, next) = on_request(stored, now, default_limit);
            let mut writes = Writes { limiter: Some(next), ..Writes::default() };
            let idempotency = match claim {
                // The check's decision about the key stands; the caller keeps it.
                Some(_) if verdict.allowed && counted => None,
                Some(claim) if verdict.allowed => {
                    let decision = idempotency::decide(record, &claim.fingerprint, now, claim.stale_after_ms);
                    if decision == IdemDecision::Run {
                        writes.record = Some((claim.id, Some(Record::claim(claim.fingerprint, now))));
                    }
                    Some(KeyDecision::from(decision))
                }
                // Refused after all: a claim the check took is released, as for any refusal.
                Some(claim) if claimed => {
                    if matches!(&record, Some(Record::InProgress { fingerprint, .. }) if *fingerprint == claim.fingerprint)
                    {
                        writes.record = Some((claim.id, None));
                    }
                    None
                }
                _ => None,
            };
            return (Reply::Verdict { verdict, idempotency }, writes);
        }
        Command::Finish { id, fingerprint, result } => {
            let write = match (stored, result, record) {
                // A forgotten key's object stays empty.
                (None, _, _) => None,
                (Some(_), Some(result), _) => Some((id, Some(Record::complete(fingerprint, *result, now)))),
                // Release only our own unfinished claim, never a finished record.
                (Some(_), None, Some(Record::InProgress { fingerprint: held, .. })) if held == fingerprint => {
                    Some((id, None))
                }
                (Some(_), None, _) => None,
            };
            return (Reply::Done, Writes { record: write, ..Writes::default() });
        }
        Command::Forget => return (Reply::Done, Writes { clear: true, ..Writes::default() }),
        Command::ForgetChats { chat_ids } => {
            return (Reply::Done, Writes { forget_chats: chat_ids, ..Writes::default() })
        }
    };
    let (verdict, next) = on_request(stored, now, default_limit);
    let mut writes = Writes { limiter: Some(next), ..Writes::default() };
    let idempotency = match claim {
        Some(claim) if verdict.allowed => {
            let decision = idempotency::decide(record, &claim.fingerprint, now, claim.stale_after_ms);
            if decision == IdemDecision::Run {
                writes.record = Some((claim.id, Some(Record::claim(claim.fingerprint, now))));
            }
            Some(KeyDecision::from(decision))
        }
        _ => None,
    };
    (Reply::Verdict { verdict, idempotency }, writes)
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

    /// Every limit a key may have is enforced as announced: a burst of exactly `limit`
    /// passes, the next request does not, and the first one leaves `limit - 1`. (Intervals in
    /// whole milliseconds floored 100,000 to 60,000 and let 99,999 burst 100,000.)
    #[test]
    fn every_limit_is_exact_up_to_the_largest() {
        for limit in [1, 7, 59_999, 60_000, 60_001, 99_999, 100_000] {
            let mut state = None;
            for i in 0..limit {
                let d = check(state, T0, limit);
                assert!(d.allowed, "limit {limit}: request {i} refused");
                if i == 0 {
                    assert_eq!(d.remaining, limit - 1, "limit {limit}");
                }
                state = Some(d.state);
            }
            let over = check(state, T0, limit);
            assert!(!over.allowed, "limit {limit}: one more than the limit passed");
            assert_eq!(
                (over.remaining, over.retry_after_seconds),
                (0, 60_u64.div_ceil(u64::from(limit))),
                "limit {limit}"
            );
            // One interval later exactly one more fits.
            let later = T0 + (60_000 + i64::from(limit) - 1) / i64::from(limit);
            let d = check(over.state.into(), later, limit);
            assert!(d.allowed && !check(Some(d.state), later, limit).allowed, "limit {limit}");
        }
    }

    #[test]
    fn states_stored_before_sub_ticks_read_as_whole_milliseconds() {
        let old: State = serde_json::from_str(r#"{"tat":1800000012000,"limit":5}"#).unwrap();
        assert_eq!(old, State { tat: T0 + 12_000, limit: 5, sub: 0 });
        assert_eq!(check(Some(old), T0, 5).remaining, 3);
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

    fn check_cmd(claim: Option<Claim>) -> Command {
        Command::Check { default_limit: 100, claim }
    }

    fn verdict(reply: &Reply) -> Verdict {
        match reply {
            Reply::Verdict { verdict, .. } => *verdict,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unknown_key_is_never_counted_or_stored() {
        let claim = Claim { id: "r".into(), fingerprint: "f".into(), stale_after_ms: 1000 };
        let (reply, writes) = on_command(None, None, check_cmd(Some(claim)), T0);
        assert_eq!((reply, writes), (Reply::Unknown, Writes::default()));
    }

    #[test]
    fn adoption_stores_the_key_limit_and_concurrent_adoptions_count_exactly() {
        // Three first requests all saw `Unknown`; their adoptions reach the object in turn.
        let adopt = Command::Adopt { default_limit: 100, key_limit: Some(2), claim: None };
        let mut stored = None;
        let mut allowed = Vec::new();
        for _ in 0..3 {
            let (reply, writes) = on_command(stored, None, adopt.clone(), T0);
            let v = verdict(&reply);
            assert_eq!(v.limit, 2);
            allowed.push(v.allowed);
            stored = writes.limiter;
            assert!(stored.is_some());
        }
        assert_eq!(allowed, [true, true, false]);
        // Later requests find the key known and are decided on the concurrent path.
        let (reply, _) = on_command(stored, None, check_cmd(None), T0 + 30_000);
        assert!(matches!(verdict(&reply), Verdict { allowed: true, limit: 2, .. }), "{reply:?}");
    }

    #[test]
    fn forget_clears_everything() {
        let stored = Stored { key_limit: Some(3), ..Stored::default() };
        let (reply, writes) = on_command(Some(stored), None, Command::Forget, T0);
        assert_eq!(reply, Reply::Done);
        assert!(writes.clear);
    }

    /// Objects written before adoption existed: the key-creation route stored the key's own
    /// limit (`configure`), and requests stored the GCRA state. Both read as known keys.
    #[test]
    fn state_written_before_adoption_still_reads_as_a_known_key() {
        let configured: Stored = serde_json::from_str(r#"{"state":null,"key_limit":7,"touched_at":null}"#).unwrap();
        let (reply, _) = on_command(Some(configured), None, check_cmd(None), T0);
        assert!(matches!(verdict(&reply), Verdict { allowed: true, limit: 7, remaining: 6, .. }), "{reply:?}");
        let used: Stored = serde_json::from_str(
            r#"{"state":{"tat":1800000060000,"limit":60},"key_limit":null,"touched_at":1800000000000}"#,
        )
        .unwrap();
        let (reply, _) = on_command(Some(used), None, Command::Check { default_limit: 60, claim: None }, T0);
        assert!(!verdict(&reply).allowed, "{reply:?}");
    }

    fn result() -> StoredResult {
        serde_json::from_value(serde_json::json!({
            "chatId": "chat_1", "messageId": "msg_1", "response": "hi", "status": "complete",
            "finishReason": "stop", "usage": { "promptTokens": 1, "completionTokens": 1, "estimated": false }
        }))
        .unwrap()
    }

    #[test]
    fn a_claim_is_taken_once_then_conflicts_then_replays() {
        let known = Some(Stored::default());
        let claim = Claim { id: "r1".into(), fingerprint: "f1".into(), stale_after_ms: 600_000 };
        let (reply, writes) = on_command(known, None, check_cmd(Some(claim.clone())), T0);
        assert!(matches!(reply, Reply::Verdict { idempotency: Some(KeyDecision::Run), .. }), "{reply:?}");
        let Some((id, Some(record))) = writes.record else { panic!("{writes:?}") };
        assert_eq!(id, "r1");
        // The twin request finds the claim.
        let (reply, writes) = on_command(known, Some(record.clone()), check_cmd(Some(claim.clone())), T0 + 10);
        assert!(matches!(reply, Reply::Verdict { idempotency: Some(KeyDecision::Conflict { .. }), .. }), "{reply:?}");
        assert_eq!(writes.record, None);
        // A different body under the same key.
        let other = Claim { fingerprint: "f2".into(), ..claim.clone() };
        let (reply, _) = on_command(known, Some(record.clone()), check_cmd(Some(other)), T0 + 10);
        assert!(matches!(reply, Reply::Verdict { idempotency: Some(KeyDecision::Mismatch), .. }), "{reply:?}");
        // Finished: replayed afterwards.
        let finish = Command::Finish { id: "r1".into(), fingerprint: "f1".into(), result: Some(Box::new(result())) };
        let (_, writes) = on_command(known, Some(record), finish, T0 + 20);
        let Some((_, Some(done))) = writes.record else { panic!("{writes:?}") };
        let (reply, _) = on_command(known, Some(done), check_cmd(Some(claim)), T0 + 30);
        assert!(matches!(reply, Reply::Verdict { idempotency: Some(KeyDecision::Replay { .. }), .. }), "{reply:?}");
    }

    #[test]
    fn a_released_claim_runs_again_and_a_refused_request_claims_nothing() {
        let known = Some(Stored::default());
        let claim = Claim { id: "r1".into(), fingerprint: "f1".into(), stale_after_ms: 600_000 };
        let held = Record::claim("f1", T0);
        let release = Command::Finish { id: "r1".into(), fingerprint: "f1".into(), result: None };
        let (_, writes) = on_command(known, Some(held.clone()), release.clone(), T0);
        assert_eq!(writes.record, Some(("r1".into(), None)));
        // Another request's claim, or a finished record, is not released.
        let (_, writes) = on_command(known, Some(Record::claim("f2", T0)), release.clone(), T0);
        assert_eq!(writes.record, None);
        // A forgotten key's object stays empty.
        let finish = Command::Finish { id: "r1".into(), fingerprint: "f1".into(), result: Some(Box::new(result())) };
        assert_eq!(on_command(None, Some(held), finish, T0).1, Writes::default());
        // Over the limit: 429, and the key stays free.
        let spent = Stored { key_limit: Some(1), ..Stored::default() };
        let (_, writes) = on_command(Some(spent), None, check_cmd(None), T0);
        let (reply, writes) = on_command(writes.limiter, None, check_cmd(Some(claim)), T0);
        assert!(matches!(reply, Reply::Verdict { verdict: Verdict { allowed: false, .. }, idempotency: None }));
        assert_eq!(writes.record, None);
    }

    fn relimit(key_limit: Option<u32>, counted: bool, claim: Option<Claim>, claimed: bool) -> Command {
        Command::Relimit { default_limit: 100, key_limit, counted, claim, claimed }
    }

    /// Spends `n` requests through `Check`, starting from an adopted key with `limit`.
    fn spent(limit: u32, n: usize) -> Stored {
        let mut stored = Stored { key_limit: Some(limit), ..Stored::default() };
        for _ in 0..n {
            stored = on_request(stored, T0, 100).1;
        }
        stored
    }

    #[test]
    fn a_changed_limit_applies_to_the_very_request_that_finds_it() {
        // Limit 5, four requests spent; the admin lowers it to 2. The fifth request was counted
        // by `Check` under 5 (allowed), then D1 said 2: the recount refuses it, and a sixth
        // too. Nothing was stored twice: the refund gave the check's token back first.
        let stored = spent(5, 4);
        let (_, after_check) = on_request(stored, T0, 100);
        let (reply, writes) = on_command(Some(after_check), None, relimit(Some(2), true, None, false), T0);
        assert!(!verdict(&reply).allowed);
        assert_eq!(verdict(&reply).limit, 2);
        let next = writes.limiter.unwrap();
        assert_eq!(next.key_limit, Some(2));
        assert!(!on_request(next, T0, 100).0.allowed);

        // Raised from 2 to 10 after two requests: the refused third request is recounted and
        // allowed, and exactly 10 requests in all fit in the window.
        let stored = spent(2, 2);
        let (check, after_check) = on_request(stored, T0, 100);
        assert!(!check.allowed);
        let (reply, writes) = on_command(Some(after_check), None, relimit(Some(10), false, None, false), T0);
        assert!(verdict(&reply).allowed);
        let mut next = writes.limiter.unwrap();
        let mut allowed = 3;
        loop {
            let (v, n) = on_request(next, T0, 100);
            if !v.allowed {
                break;
            }
            allowed += 1;
            next = n;
        }
        assert_eq!(allowed, 10);

        // Back to the default (null in D1).
        let (reply, _) = on_command(Some(spent(2, 1)), None, relimit(None, true, None, false), T0);
        assert_eq!(verdict(&reply).limit, 100);
    }

    #[test]
    fn relimit_keeps_or_releases_the_claim_the_check_took() {
        let claim = Claim { id: "r".into(), fingerprint: "f".into(), stale_after_ms: 60_000 };
        let held = Record::claim("f", T0);
        // Still allowed: the check's decision stands, nothing to write for the key.
        let (reply, writes) =
            on_command(Some(spent(5, 1)), Some(held.clone()), relimit(Some(4), true, Some(claim.clone()), true), T0);
        assert!(matches!(reply, Reply::Verdict { idempotency: None, verdict } if verdict.allowed));
        assert_eq!(writes.record, None);
        // Refused by the recount: the claim goes, so a retry later runs afresh.
        let (reply, writes) =
            on_command(Some(spent(5, 5)), Some(held), relimit(Some(1), true, Some(claim.clone()), true), T0);
        assert!(!verdict(&reply).allowed);
        assert_eq!(writes.record, Some(("r".into(), None)));
        // Refused by the check, allowed by the recount: the claim is decided now.
        let (reply, writes) = on_command(Some(spent(1, 1)), None, relimit(Some(5), false, Some(claim), false), T0);
        assert!(matches!(reply, Reply::Verdict { idempotency: Some(KeyDecision::Run), .. }));
        assert!(matches!(writes.record, Some((_, Some(Record::InProgress { .. })))));
    }

    #[test]
    fn commands_and_replies_round_trip_as_json() {
        let wire = serde_json::to_value(Command::Adopt { default_limit: 60, key_limit: None, claim: None }).unwrap();
        assert_eq!(wire, serde_json::json!({ "op": "adopt", "defaultLimit": 60, "keyLimit": null, "claim": null }));
        let old: Command = serde_json::from_value(serde_json::json!({ "op": "check", "defaultLimit": 5 })).unwrap();
        assert_eq!(old, check_cmd(None).clone_with_limit(5));
        let reply: Reply = serde_json::from_value(serde_json::json!({ "result": "unknown" })).unwrap();
        assert_eq!(reply, Reply::Unknown);
        let v =
            Verdict { allowed: true, limit: 1, remaining: 0, reset_seconds: 60, retry_after_seconds: 0, touch: false };
        for reply in [
            Reply::Verdict { verdict: v, idempotency: None },
            Reply::Verdict { verdict: v, idempotency: Some(KeyDecision::Replay { result: result() }) },
            Reply::Verdict { verdict: v, idempotency: Some(KeyDecision::Conflict { retry_after_seconds: 2 }) },
        ] {
            let back: Reply = serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            assert_eq!(back, reply);
        }
    }

    impl Command {
        fn clone_with_limit(&self, limit: u32) -> Self {
            match self {
                Self::Check { claim, .. } => Self::Check { default_limit: limit, claim: claim.clone() },
                other => other.clone(),
            }
        }
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
