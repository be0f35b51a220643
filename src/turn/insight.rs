//! An insight's generation: the same turn as a chat's (the agent's instructions, the
//! workspace's knowledge, its tools, the provider fallbacks), answered whole, with no chat
//! and no key. Its answer replaces the insight's; a failure keeps the last good one and backs
//! off. The caller holds the insight's lease (see `storage::insights::claim`).

use crate::storage::Db;
use worker::Env;

use super::run::{Finished, Whole};
use super::{assemble, plan, Destination, StoreFailure, Turn};
use crate::context::{log, timed};
use crate::domain::config::Config;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::insight::{self, Insight};
use crate::domain::knowledge;
use crate::domain::llm;
use crate::domain::sse::Answer;
use crate::domain::stream::ErrorCode;
use crate::domain::time::Millis;
use crate::domain::timing::Timing;
use crate::domain::usage::{self, Counters};
use crate::storage::{self, chats, insights};

/// What the store needs to know about the insight being generated.
pub struct Job {
    pub id: String,
    prompt: String,
    agent_id: Option<String>,
    refresh_seconds: i64,
}

/// How long a generation holds its insight: the whole turn's deadline and room for the load
/// and the store. A generation that dies leaves the lease to expire, and the next run takes
/// the insight again.
pub fn lease_ms(config: &Config) -> Millis {
    i64::try_from(config.llm_timeout_ms).unwrap_or(i64::MAX / 4).saturating_add(30_000)
}

/// Generates `i` now and stores the outcome. `Err` only when the outcome could not be stored
/// either (then the lease expires and a later run retries).
pub async fn generate(
    env: &Env,
    db: &Db,
    config: &Config,
    request_id: &str,
    workspace_id: &str,
    i: &Insight,
) -> ApiResult<()> {
    let outcome = generate_once(env, db, config, request_id, workspace_id, i).await;
    note_due(env, db, workspace_id).await;
    outcome
}

/// Tells the registry when the Cron Trigger should next look at a workspace on its own object
/// (it cannot scan every object). A failure is logged: the registry's time only gets later
/// through the scheduled run, so at worst the workspace is looked at once too often.
pub async fn note_due(env: &Env, db: &Db, workspace_id: &str) {
    if !db.is_object() {
        return;
    }
    let now = worker::Date::now().as_millis() as Millis;
    let noted = match (insights::next_due(db, now).await, storage::control(env)) {
        (Ok(Some(due)), Ok(control)) => storage::workspaces::insights_due(&control, workspace_id, due).await,
        (Ok(None), _) => Ok(()),
        (Err(err), _) | (_, Err(err)) => Err(err),
    };
    if let Err(err) = noted {
        log(
            &serde_json::json!({ "level": "warn", "event": "insight_due_not_noted", "workspaceId": workspace_id, "detail": err.log_detail() }),
        );
    }
}

async fn generate_once(
    env: &Env,
    db: &Db,
    config: &Config,
    request_id: &str,
    workspace_id: &str,
    i: &Insight,
) -> ApiResult<()> {
    let started = worker::Date::now().as_millis() as Millis;
    let turn = match prepare(env, config, request_id, db, workspace_id, i, started).await {
        Ok(turn) => turn,
        Err(err) => {
            let code = failure_code(&err);
            return record_failure(db, config, workspace_id, i, code, started, &Counters::request(500)).await;
        }
    };
    let (turn, finished) = turn.run(&mut Whole).await;
    match finished {
        Finished::Stored { .. } => Ok(()),
        Finished::Failed { error, usage: spent, code } => {
            let counters = Counters::request(error.status()).with_llm(
                spent.prompt_tokens,
                spent.completion_tokens,
                turn.timing.llm_ms,
            );
            record_failure(db, config, workspace_id, i, code.as_str(), started, &counters).await
        }
    }
}

/// A refresh asked for now: generates the insight, or, when a generation is already running
/// (the scheduled job's, another refresh), waits for that one instead of starting a second;
/// if that one died (its lease ran out without an outcome), generates after all. `None` when
/// the insight does not exist.
pub async fn refresh(
    env: &Env,
    db: &Db,
    config: &Config,
    request_id: &str,
    workspace_id: &str,
    id: &str,
) -> ApiResult<Option<()>> {
    let lease = lease_ms(config);
    let now = || worker::Date::now().as_millis() as Millis;
    let start = now();
    if let Some(claimed) = insights::claim(db, workspace_id, id, start, start.saturating_add(lease)).await? {
        return generate(env, db, config, request_id, workspace_id, &claimed).await.map(Some);
    }
    if insights::get(db, workspace_id, id).await?.is_none() {
        return Ok(None);
    }
    let give_up = start.saturating_add(lease);
    loop {
        worker::Delay::from(std::time::Duration::from_millis(400)).await;
        let at = now();
        match insights::lease(db, workspace_id, id).await? {
            // It finished (and cleared its lease): its outcome is the answer.
            None => return Ok(Some(())),
            Some(until) if until > at && at < give_up => continue,
            // It died: its lease ran out without an outcome. Generate after all.
            Some(_) => break,
        }
    }
    let at = now();
    if let Some(claimed) = insights::claim(db, workspace_id, id, at, at.saturating_add(lease)).await? {
        generate(env, db, config, request_id, workspace_id, &claimed).await?;
    }
    Ok(Some(()))
}

async fn prepare(
    env: &Env,
    config: &Config,
    request_id: &str,
    db: &Db,
    workspace_id: &str,
    i: &Insight,
    now: Millis,
) -> ApiResult<Turn> {
    let retrieval = chats::Retrieval {
        query: knowledge::match_query(&i.prompt),
        top_k: config.knowledge_top_k,
        pipeline: knowledge::about_pipeline(&i.prompt),
    };
    let budget = llm::history_budget(&i.prompt, config.context_token_budget);
    let (loaded, read_ms) = timed(chats::load_turn(
        db,
        chats::Whose::Workspace(workspace_id),
        None,
        i.agent_id.as_deref(),
        budget,
        &retrieval,
        None,
    ))
    .await;
    let mut loaded = loaded?;
    let mut timing = Timing { read_ms, ..Timing::default() };
    timing.store(db.is_object(), 1);
    let plan = plan(config, i.agent_id.clone(), loaded.agent.take(), loaded.has_records, false)?;
    let mut turn = assemble(env, db.clone(), request_id, now, config.clone(), timing, plan, &loaded, &i.prompt, None)?;
    turn.workspace_id = workspace_id.to_owned();
    turn.destination = Destination::Insight(Job {
        id: i.id.clone(),
        prompt: i.prompt.clone(),
        agent_id: i.agent_id.clone(),
        refresh_seconds: i.refresh_seconds,
    });
    Ok(turn)
}

/// The code a failure before the model call is recorded with.
fn failure_code(err: &ApiError) -> &'static str {
    match err {
        ApiError::NotFound("Agent not found", _) => "agent_not_found",
        ApiError::Misconfigured(_) | ApiError::NotConfigured(_) => "misconfigured",
        _ => "storage_failed",
    }
}

async fn record_failure(
    db: &Db,
    config: &Config,
    workspace_id: &str,
    i: &Insight,
    code: &str,
    at: Millis,
    counters: &Counters,
) -> ApiResult<()> {
    let next = insight::next_after_failure(at, i.failures.saturating_add(1), i.refresh_seconds);
    let day = usage::day_of(at);
    let ledger = config.usage_ledger.then_some((day.as_str(), counters));
    log(&serde_json::json!({ "event": "insight_failed", "insightId": i.id, "code": code }));
    insights::fail(db, workspace_id, &i.id, code, at, next, ledger).await
}

/// The store step of an insight's turn: only a whole answer replaces the last good one.
pub(super) async fn store(
    turn: &Turn,
    job: &Job,
    db: &Db,
    answer: &Answer,
    incomplete: Option<&str>,
    llm_ms: u64,
) -> Result<(), StoreFailure> {
    if let Some(code) = incomplete.and_then(ErrorCode::parse) {
        return Err(StoreFailure::Incomplete(code));
    }
    let at = worker::Date::now().as_millis() as Millis;
    let sources = knowledge::sources_json(&turn.sources, Some(&answer.text)).to_string();
    let etag = insight::etag(Some(&answer.text), &sources);
    let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let counters = Counters::request(200).with_llm(answer.usage.prompt_tokens, answer.usage.completion_tokens, llm_ms);
    let day = usage::day_of(turn.started_at);
    let ledger = turn.config.usage_ledger.then_some((day.as_str(), &counters));
    let generated = insights::Generated {
        answer: &answer.text,
        sources: &sources,
        etag: &etag,
        model: answer.model.as_deref().unwrap_or(&turn.model),
        provider: &turn.provider,
        prompt_tokens: tokens(answer.usage.prompt_tokens),
        completion_tokens: tokens(answer.usage.completion_tokens),
        at,
        next_refresh_at: insight::next_after_success(at, job.refresh_seconds),
    };
    insights::store(db, &turn.workspace_id, &job.id, (&job.prompt, job.agent_id.as_deref()), &generated, ledger)
        .await
        .map_err(StoreFailure::Storage)
}
