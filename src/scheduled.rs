//! The Cron Trigger (once a minute): regenerates the insights that are due, oldest due first,
//! at most `INSIGHTS_PER_TICK` per run, side by side. Each is leased in the statement that
//! picks it, so overlapping runs (or a manual refresh) never generate one insight twice at once.
//!
//! Insights live in each workspace's own object, which nobody can scan from outside: the
//! registry keeps, per workspace, the earliest time one may be due, and only those objects are
//! asked. Workspaces still on D1 are claimed there, all at once, as before the split.

use worker::Env;

use crate::context::{config_of, log};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::insight::Insight;
use crate::domain::lifecycle::{self, RETENTION_BATCHES_PER_TICK, RETENTION_RECHECK_MS, RETENTION_WORKSPACES_PER_TICK};
use crate::domain::placement::{Placement, Plane};
use crate::domain::request_id;
use crate::domain::time::Millis;
use crate::storage::{self, insights, workspaces, Db, Place};
use crate::turn::insight as generation;

pub async fn tick(env: &Env) {
    let run_id = request_id::accept_or_generate(None);
    let fail = |detail: Option<&str>| {
        log(&serde_json::json!({ "requestId": run_id, "level": "error", "event": "scheduled", "detail": detail }))
    };
    let config = match config_of(env) {
        Ok(config) => config,
        Err(err) => return fail(err.log_detail()),
    };
    let now = worker::Date::now().as_millis() as Millis;
    let until = now.saturating_add(generation::lease_ms(&config));
    let due = match claim(env, now, until, config.insights_per_tick).await {
        Ok(due) => due,
        Err(err) => return fail(err.log_detail()),
    };
    let count = due.len();
    let runs = due.iter().map(|(db, ws, insight)| {
        let (config, run_id) = (&config, &run_id);
        async move {
            if let Err(err) = generation::generate(env, db, config, run_id, ws, insight).await {
                log(&serde_json::json!({ "requestId": run_id, "level": "warn", "event": "insight_not_stored", "insightId": insight.id, "detail": err.log_detail() }));
            }
        }
    });
    futures::future::join_all(runs).await;
    let expired = sweep_retention(env, &run_id, now).await;
    log(&serde_json::json!({ "requestId": run_id, "event": "scheduled", "insights": count, "expiredChats": expired }));
}

/// Deletes the chats past their workspace's retention, in bounded batches (each with the
/// audit entry counting it), for the workspaces the registry says are due. A workspace with
/// more left stays due for the next run; one done is looked at again in an hour.
async fn sweep_retention(env: &Env, run_id: &str, now: Millis) -> u64 {
    let fail = |event: &str, detail: Option<&str>| {
        log(&serde_json::json!({ "requestId": run_id, "level": "warn", "event": event, "detail": detail }))
    };
    let due = match storage::control(env) {
        Ok(control) => match workspaces::with_retention_due(&control, now, RETENTION_WORKSPACES_PER_TICK).await {
            Ok(due) => due.into_iter().map(|d| (control.clone(), d)).collect(),
            Err(err) => {
                fail("retention_not_swept", err.log_detail());
                Vec::new()
            }
        },
        Err(err) => {
            fail("retention_not_swept", err.log_detail());
            Vec::new()
        }
    };
    let mut total = 0;
    for (control, (ws, days)) in due {
        let cutoff = lifecycle::retention_cutoff(now, days);
        let swept = async {
            let db = ws.db(env)?;
            for _ in 0..RETENTION_BATCHES_PER_TICK {
                let n = storage::lifecycle::expire(&db, &ws.id, days, cutoff, now).await?;
                total += n;
                if n < lifecycle::DELETE_BATCH as u64 {
                    return Ok::<bool, ApiError>(false);
                }
            }
            Ok(true)
        };
        let next = match swept.await {
            Ok(true) => now,
            Ok(false) => now.saturating_add(RETENTION_RECHECK_MS),
            Err(err) => {
                fail("retention_not_swept", err.log_detail());
                continue;
            }
        };
        if let Err(err) = workspaces::retention_due(&control, &ws.id, next).await {
            fail("retention_not_swept", err.log_detail());
        }
    }
    total
}

/// Takes the lease of up to `limit` due insights: first in D1 (workspaces not moved yet), then
/// in the objects of the workspaces the registry says may have some due, soonest first.
async fn claim(env: &Env, now: Millis, until: Millis, limit: u32) -> ApiResult<Vec<(Db, String, Insight)>> {
    let control = storage::control(env)?;
    // Each generation writes through its workspace's guarded D1 handle, so a move that begins
    // meanwhile refuses its store.
    let mut due = Vec::new();
    for (ws, i) in insights::claim_due(&control, now, until, limit, true).await? {
        let place =
            Place { workspace_id: ws.clone(), plane: Plane::D1, stub: Placement::Auto.stub_options(), init: None };
        due.push((storage::open(env, &place, ApiError::internal("no database"))?, ws, i));
    }
    let left = limit.saturating_sub(u32::try_from(due.len()).unwrap_or(u32::MAX));
    if left == 0 {
        return Ok(due);
    }
    for (ws, seen) in workspaces::with_insights_due(&control, now, left).await? {
        let left = limit.saturating_sub(u32::try_from(due.len()).unwrap_or(u32::MAX));
        if left == 0 {
            break;
        }
        let db = ws.db(env)?;
        let claimed = insights::claim_due(&db, now, until, left, false).await?;
        let next = insights::next_due(&db, now).await?;
        workspaces::reset_insights_due(&control, &ws.id, seen, next).await?;
        due.extend(claimed.into_iter().map(|(id, i)| (db.clone(), id, i)));
    }
    Ok(due)
}
