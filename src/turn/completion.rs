//! A stateless completion (`POST /v1/chat/completions`): the turn of a chat with the caller's
//! conversation as its history. The agent's instructions and the knowledge block come first,
//! its tools run here as on `/api/chat`; the caller's own tools are offered beside them and
//! their calls go back to the caller. Nothing is loaded from or stored into a chat: only the
//! usage is counted, in the key's ledger line.

use crate::storage::Db;
use serde_json::Value;

use super::{assemble, plan, Destination, StoreFailure, Turn};
use crate::context::Cx;
use crate::domain::config::Config;
use crate::domain::error::ApiResult;
use crate::domain::openai_api::{self, CompletionRequest, Sampling};
use crate::domain::sse::Answer;
use crate::domain::stream::ErrorCode;
use crate::domain::timing::Timing;
use crate::domain::usage::{self, Counters};
use crate::storage::{chats, keys::KeyAuth};

/// The caller's side of a completion: its tools (beside the agent's) and its parameters.
pub struct Caller {
    names: Vec<String>,
    /// The `tools` the model is offered: the agent's, then the caller's.
    pub(super) definitions: Value,
    pub(super) sampling: Sampling,
}

impl Caller {
    pub fn offers_tools(&self) -> bool {
        !self.names.is_empty()
    }

    /// Whether `name` is one of the caller's tools (its calls go back to the caller).
    pub fn owns(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// The turn of a completion, once its key is admitted: the agent it names within the key's
/// scope (404 `model_not_found` for one that does not exist), no tool name used twice.
pub(super) fn prepare(
    cx: &Cx,
    db: Db,
    req: &CompletionRequest,
    key: KeyAuth,
    loaded: &mut chats::TurnContext,
    config: Config,
    timing: Timing,
) -> ApiResult<Turn> {
    let agent_id = req.model.agent_id().map(str::to_owned);
    if agent_id.is_some() && loaded.agent.is_none() {
        return Err(openai_api::model_not_found(&req.model_id));
    }
    key.scope().check(agent_id.as_deref())?;
    let plan = plan(&config, agent_id, loaded.agent.take(), loaded.has_records, false)?;
    let mut turn = assemble(
        &cx.env,
        db,
        &cx.request_id,
        cx.now,
        config,
        timing,
        plan,
        loaded,
        req.question(),
        Some((&req.system, &req.conversation)),
    )?;
    let mut definitions: Vec<Value> = match &turn.toolbox {
        Some(toolbox) => toolbox.definitions.as_array().cloned().unwrap_or_default(),
        None => Vec::new(),
    };
    for tool in &req.tools {
        if turn.toolbox.as_ref().is_some_and(|t| t.offers(&tool.name)) {
            return Err(openai_api::tool_clash(&tool.name));
        }
        definitions.push(tool.definition.clone());
    }
    turn.workspace_id = key.workspace_id;
    turn.destination = Destination::Completion(Caller {
        names: req.tools.iter().map(|t| t.name.clone()).collect(),
        definitions: Value::Array(definitions),
        sampling: req.sampling.clone(),
    });
    Ok(turn)
}

/// The store step of a completion: its usage, in the key's ledger line. A partial answer (a
/// stream cut short) is counted with the status its stream ends with.
pub(super) async fn store(
    turn: &Turn,
    db: &Db,
    answer: &Answer,
    incomplete: Option<&str>,
    llm_ms: u64,
) -> Result<(), StoreFailure> {
    if !turn.config.usage_ledger {
        return Ok(());
    }
    let shown = incomplete.and_then(ErrorCode::parse).map_or(200, ErrorCode::usage_status);
    let counters =
        Counters::request(shown).with_llm(answer.usage.prompt_tokens, answer.usage.completion_tokens, llm_ms);
    crate::storage::usage::count(db, &turn.key_hash, &usage::day_of(turn.started_at), &counters)
        .await
        .map_err(StoreFailure::Storage)
}
