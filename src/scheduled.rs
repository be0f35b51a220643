//! The Cron Trigger (once a minute): regenerates the insights that are due, oldest due first,
//! at most `INSIGHTS_PER_TICK` per run, side by side. Each is leased in the statement that
//! picks it, so overlapping runs (or a manual refresh) never generate one insight twice at once.

use worker::Env;

use crate::context::{config_of, log};
use crate::domain::request_id;
use crate::domain::time::Millis;
use crate::storage::{self, insights};
use crate::turn::insight as generation;

pub async fn tick(env: &Env) {
    let run_id = request_id::accept_or_generate(None);
    let config = match config_of(env) {
        Ok(config) => config,
        Err(err) => {
            return log(
                &serde_json::json!({ "requestId": run_id, "level": "error", "event": "scheduled", "detail": err.log_detail() }),
            )
        }
    };
    let now = worker::Date::now().as_millis() as Millis;
    let until = now.saturating_add(generation::lease_ms(&config));
    let due = match storage::db(env) {
        Ok(db) => insights::claim_due(&db, now, until, config.insights_per_tick).await,
        Err(err) => Err(err),
    };
    let due = match due {
        Ok(due) => due,
        Err(err) => {
            return log(
                &serde_json::json!({ "requestId": run_id, "level": "error", "event": "scheduled", "detail": err.log_detail() }),
            )
        }
    };
    let count = due.len();
    let runs = due.iter().map(|(ws, insight)| {
        let (config, run_id) = (&config, &run_id);
        async move {
            if let Err(err) = generation::generate(env, config, run_id, ws, insight).await {
                log(&serde_json::json!({ "requestId": run_id, "level": "warn", "event": "insight_not_stored", "insightId": insight.id, "detail": err.log_detail() }));
            }
        }
    });
    futures::future::join_all(runs).await;
    log(&serde_json::json!({ "requestId": run_id, "event": "scheduled", "insights": count }));
}
