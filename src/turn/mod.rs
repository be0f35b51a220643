//! One chat turn as one pipeline, whichever transport carries it:
//!
//! load (one D1 batch, side by side with the key's Durable Object, which counts the request and
//! claims its `Idempotency-Key`) → admit → prompt → call → store → remember.
//!
//! [`start`] does everything up to the LLM call and returns a [`Turn`] that owns what the rest
//! needs, so the streaming transport can finish it after the response has begun. The JSON
//! transport is [`Turn::run_json`]: the same call, collected eagerly into the same
//! [`Answer`] type the stream collects chunk by chunk, stored by the same [`Turn::store`].

pub mod admit;
pub mod completion;
pub mod insight;
pub mod run;
pub mod tools;

use serde_json::json;
use worker::Env;

use crate::context::{log_warn, timed, Cx};
use crate::domain::agent::{self, Trace};
use crate::domain::chat::{resolve_agent, title_from, ChatRequest};
use crate::domain::config::Config;
use crate::domain::embed_token::{self, Viewer};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::idempotency::AnsweredBy;
use crate::domain::idempotency::StoredResult;
use crate::domain::ids::{new_id, IdKind};
use crate::domain::knowledge::{self, AgentKnowledge, PipelineSummary, Source};
use crate::domain::llm::{self, Offer};
use crate::domain::openai_api::CompletionRequest;
use crate::domain::providers::{self, Target, DEFAULT_PROVIDER};
use crate::domain::rate_limit::{Claim, KeyDecision, Reply};
use crate::domain::sse::{Answer, AnswerStatus, Outcome, Usage};
use crate::domain::stream::ErrorCode;
use crate::domain::time::Millis;
use crate::domain::timing::Timing;
use crate::domain::tools as domain_tools;
use crate::domain::usage::{self, Counters};
use crate::storage::keys::Located;
use crate::storage::{self, chats, limiter};
use tools::Toolbox;

/// What a request turns into once it is admitted.
// One short-lived value per request: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Start {
    /// A new execution.
    Run(Box<Turn>),
    /// A retry of a finished request with the same `Idempotency-Key`: its stored result.
    Replay(StoredResult),
}

/// A turn admitted and ready for the LLM: everything the call and the store need, owned.
pub struct Turn {
    pub env: Env,
    /// The workspace's database (its object, or D1 before its move).
    pub(crate) db: storage::Db,
    pub config: Config,
    pub request_id: String,
    key_hash: String,
    claim: Option<Claim>,
    workspace_id: String,
    pub chat_id: String,
    /// `(title, agent id)` when the chat is new: it is created with its first stored turn.
    new_chat: Option<(String, Option<String>)>,
    /// `(key id, user label)` when the turn is made with an embed token: a new chat is kept
    /// under them.
    embed: Option<(String, String)>,
    /// Where the answer goes: the chat, an insight, or only back to the caller.
    pub(crate) destination: Destination,
    user_message_id: String,
    user_content: String,
    pub assistant_message_id: String,
    /// The target being tried, then the one that answered.
    pub model: String,
    pub provider: String,
    /// Every target the turn may try, in order (`domain::providers::Providers::chain`), and
    /// the index of the current one: after the first content, the turn stays with it.
    targets: Vec<Target>,
    current: usize,
    /// A target has answered a call of this turn: later calls (tool steps) stay with it.
    answered: bool,
    pub messages: Vec<llm::Turn>,
    /// The records given to the model, in `[S1]`, `[S2]`, … order.
    pub sources: Vec<Source>,
    started_at: Millis,
    pub timing: Timing,
    /// The tools offered to the model, if any (see `domain::agent::offered`).
    toolbox: Option<Toolbox>,
    /// The number of the next model call, from 1.
    step: u32,
    /// The tool calls executed so far.
    pub traces: Vec<Trace>,
    /// Usage and text of the calls before the current one (tool steps).
    usage_before: Usage,
    text_before: String,
}

/// Where a turn's answer is stored.
pub(crate) enum Destination {
    /// The chat (new or continued), with the user's message.
    Chat,
    /// An insight's generation (`insight.rs`).
    Insight(insight::Job),
    /// A stateless completion of the OpenAI-compatible route (`completion.rs`): nothing but
    /// its usage is stored, and the caller's own tools go back to it.
    Completion(completion::Caller),
}

/// Why an answer could not be stored.
pub enum StoreFailure {
    /// The chat was deleted while the LLM was answering.
    ChatGone,
    /// An insight keeps only whole answers: this one ended with this code.
    Incomplete(ErrorCode),
    Storage(ApiError),
}

/// Loads, admits and prepares a turn. Every failure here is a JSON error with its real status,
/// and stores nothing; an idempotency key claimed for this request is released again on the
/// way out, whichever step failed.
pub async fn start(
    cx: &Cx,
    key_hash: &str,
    located: Located,
    viewer: Option<&Viewer>,
    input: &ChatRequest,
    claim: Option<Claim>,
) -> ApiResult<Start> {
    begin(cx, key_hash, located, Ask::Chat { input, viewer }, claim).await
}

/// What a request asks a turn for.
#[derive(Clone, Copy)]
pub(crate) enum Ask<'a> {
    /// `POST /api/chat`: a message, in a chat (new or continued).
    Chat { input: &'a ChatRequest, viewer: Option<&'a Viewer> },
    /// `POST /v1/chat/completions`: the caller's whole conversation, nothing stored.
    Completion(&'a CompletionRequest),
}

/// The load (one batch in the workspace's database beside the key's object), the admission
/// and the preparation of any turn a request asks for; a claimed `Idempotency-Key` is released
/// on every failure. `located`: where the key's workspace is (a key that carries its locator
/// costs no D1 statement; one of the first format cost one index lookup, `located.index_ms`).
pub(crate) async fn begin(
    cx: &Cx,
    key_hash: &str,
    located: Located,
    ask: Ask<'_>,
    claim: Option<Claim>,
) -> ApiResult<Start> {
    let config = cx.config()?;
    let index_ms = located.index_ms;
    let db = located.db;
    let (question, chat_id, agent_id, viewer) = match ask {
        Ask::Chat { input, viewer } => {
            (input.message.as_str(), input.chat_id.as_deref(), input.agent_id.as_deref(), viewer)
        }
        Ask::Completion(req) => (req.question(), None, req.model.agent_id(), None),
    };
    // A completion brings its own history.
    let history_budget = match ask {
        Ask::Chat { .. } => llm::history_budget(question, config.context_token_budget),
        Ask::Completion(_) => 0,
    };
    let retrieval = chats::Retrieval {
        query: knowledge::match_query(question),
        top_k: config.knowledge_top_k,
        pipeline: knowledge::about_pipeline(question),
    };
    let ((loaded, read_ms), (reply, limit_ms)) = futures::join!(
        timed(chats::load_turn(
            &db,
            chats::Whose::Key(key_hash),
            chat_id,
            agent_id,
            history_budget,
            &retrieval,
            viewer.map(|v| v.user.as_str()),
        )),
        timed(limiter::check(&cx.env, key_hash, config.rate_limit_per_minute, claim.clone())),
    );
    let mut timing = Timing { read_ms, limit_ms, do_calls: 1, ..Timing::default() };
    timing.index(located.via_index, index_ms);
    timing.store(db.is_object(), 1);
    // From here on, whatever the outcome, the caller sees where the time went so far.
    cx.set_header("Server-Timing", timing.header());
    // Whether the key's object claimed the request's `Idempotency-Key` for this request: then
    // every failure from here until the turn exists must release it, or the key would answer
    // 409 until the claim goes stale.
    let held = std::cell::Cell::new(matches!(&reply, Ok(Reply::Verdict { idempotency: Some(KeyDecision::Run), .. })));
    let prepared = prepare(cx, &db, key_hash, ask, claim.clone(), config, loaded, reply, timing, &held).await;
    if let (Err(_), true, Some(claim)) = (&prepared, held.get(), &claim) {
        release(&cx.env, key_hash, claim).await;
    }
    prepared
}

/// [`begin`] once the load and the limiter have answered: admission, the agent, the prompt.
#[allow(clippy::too_many_arguments)]
async fn prepare(
    cx: &Cx,
    db: &storage::Db,
    key_hash: &str,
    ask: Ask<'_>,
    claim: Option<Claim>,
    config: Config,
    loaded: ApiResult<chats::TurnContext>,
    reply: ApiResult<Reply>,
    mut timing: Timing,
    held: &std::cell::Cell<bool>,
) -> ApiResult<Start> {
    let mut loaded = loaded?;
    let ((admitted, adoptions), adopt_ms) =
        timed(admit::admit(cx, key_hash, loaded.key.take(), reply, claim.as_ref())).await;
    timing.do_calls += adoptions;
    timing.limit_ms += adopt_ms;
    cx.set_header("Server-Timing", timing.header());
    let admitted = admitted?;
    held.set(matches!(admitted.idempotency, Some(KeyDecision::Run)));
    let claim = match admitted.idempotency {
        None => None,
        Some(KeyDecision::Run) => claim,
        Some(KeyDecision::Conflict { retry_after_seconds }) => {
            return Err(ApiError::IdempotencyConflict { retry_after_seconds })
        }
        Some(KeyDecision::Mismatch) => return Err(ApiError::IdempotencyMismatch),
        Some(KeyDecision::Replay { result }) => return Ok(Start::Replay(result)),
    };
    let (input, viewer) = match ask {
        Ask::Chat { input, viewer } => (input, viewer),
        Ask::Completion(req) => {
            let turn = completion::prepare(cx, db.clone(), req, admitted.key, &mut loaded, config, timing)?;
            return Ok(Start::Run(Box::new(Turn { key_hash: key_hash.to_owned(), claim, ..turn })));
        }
    };
    let key = admitted.key;
    // A token reaches at most its key's agents, and only those it lists.
    let scope = match viewer {
        Some(v) => embed_token::agent_scope(&key.scope(), v.agent_ids.as_deref()),
        None => key.scope(),
    };

    if input.chat_id.is_some() && loaded.chat.is_none() {
        return Err(ApiError::NotFound("Chat not found", None));
    }
    let chat_agent = loaded.chat.as_ref().map(|c| c.agent_id.as_deref());
    // A scoped key: only its agents, before anything is called or stored. The chat's own
    // agent first, so another agent's chat is refused as such (not as an agent mismatch).
    if let Some(agent) = chat_agent {
        scope.check(agent)?;
    }
    let agent_id = resolve_agent(chat_agent, input.agent_id.as_deref())?;
    scope.check(agent_id.as_deref())?;
    let in_chat = loaded.chat.is_some();
    let plan = plan(&config, agent_id, loaded.agent.take(), loaded.has_records, in_chat)?;
    let chat_id = match &loaded.chat {
        Some(c) => c.id.clone(),
        None => new_id(IdKind::Chat)?,
    };
    let new_chat = loaded.chat.is_none().then(|| (title_from(&input.message), plan.agent_id.clone()));
    let mut turn =
        assemble(&cx.env, db.clone(), &cx.request_id, cx.now, config, timing, plan, &loaded, &input.message, None)?;
    turn.key_hash = key_hash.to_owned();
    turn.claim = claim;
    turn.workspace_id = key.workspace_id;
    turn.chat_id = chat_id;
    turn.new_chat = new_chat;
    turn.embed = viewer.map(|v| (key.id.clone(), v.user.clone()));
    Ok(Start::Run(Box::new(turn)))
}

/// Who answers a turn: the agent (or the default assistant), its instructions, the provider
/// targets in order, and the tools offered.
pub(crate) struct Plan {
    agent_id: Option<String>,
    instructions: String,
    targets: Vec<Target>,
    offered: Option<(Vec<domain_tools::Tool>, Vec<knowledge::Kind>)>,
}

/// The [`Plan`] for `agent_id` (`None`: the default assistant) with the agent storage found
/// for it. `in_chat`: the turn continues a chat (whose agent may since have been deleted).
pub(crate) fn plan(
    config: &Config,
    agent_id: Option<String>,
    agent: Option<chats::AgentForTurn>,
    has_records: bool,
    in_chat: bool,
) -> ApiResult<Plan> {
    let (instructions, targets, offered) = match (&agent_id, agent) {
        (None, _) => (
            config.default_instructions.clone(),
            config.providers.chain(Target { provider: DEFAULT_PROVIDER.into(), model: config.llm_model.clone() }, &[]),
            agent::offered(None, has_records),
        ),
        (Some(_), Some(agent)) => {
            let tools = domain_tools::from_stored(agent.tools.as_deref());
            let knowledge = AgentKnowledge::from_stored(agent.knowledge.as_deref());
            let offered = agent::offered(Some((&tools, &knowledge)), has_records);
            let primary = Target {
                provider: agent.provider.unwrap_or_else(|| DEFAULT_PROVIDER.into()),
                model: agent.model.unwrap_or_else(|| config.llm_model.clone()),
            };
            let fallbacks = providers::fallbacks_from_stored(agent.fallbacks.as_deref());
            (agent.instructions, config.providers.chain(primary, &fallbacks), offered)
        }
        (Some(_), None) if in_chat => {
            return Err(ApiError::NotFound(
                "Agent not found",
                Some(json!("the agent this chat was created with has been deleted; start a new chat")),
            ))
        }
        (Some(_), None) => return Err(ApiError::NotFound("Agent not found", None)),
    };
    Ok(Plan { agent_id, instructions, targets, offered })
}

/// A turn ready for the model: the prompt (instructions, the records retrieved as a data
/// block, the history, the message; or a caller's whole conversation, `stateless`) and
/// everything the loop needs. Whose turn it is (key, chat, insight) is for the caller to fill in.
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    env: &Env,
    db: storage::Db,
    request_id: &str,
    now: Millis,
    config: Config,
    timing: Timing,
    plan: Plan,
    loaded: &chats::TurnContext,
    message: &str,
    stateless: Option<(&[String], &[llm::Turn])>,
) -> ApiResult<Turn> {
    let first = plan.targets.first().cloned().ok_or_else(|| ApiError::internal("a turn has at least one target"))?;
    // The workspace's records, as a delimited block of data after the instructions; none (and
    // so exactly the prompt of a workspace without knowledge) when nothing was retrieved.
    let hits: Vec<Source> = loaded.hits.iter().filter_map(|h| h.to_source()).collect();
    let summary =
        loaded.pipeline.as_ref().filter(|(deals, _)| !deals.is_empty()).map(|(deals, stages)| PipelineSummary {
            top_deals: deals.iter().filter_map(|h| h.to_source()).collect(),
            by_stage: stages.iter().map(|s| s.to_total()).collect(),
        });
    let (block, sources) =
        knowledge::data_block(&hits, summary.as_ref(), knowledge::block_cap(config.context_token_budget));
    let messages = match stateless {
        // The caller's conversation is the history (the OpenAI-compatible route).
        Some((system, conversation)) => llm::build_stateless(&plan.instructions, &block, system, conversation),
        None => {
            llm::build_messages(&plan.instructions, &block, &loaded.history, message, config.context_token_budget).0
        }
    };
    Ok(Turn {
        env: env.clone(),
        request_id: request_id.to_owned(),
        db,
        key_hash: String::new(),
        claim: None,
        workspace_id: String::new(),
        new_chat: None,
        chat_id: String::new(),
        embed: None,
        destination: Destination::Chat,
        user_message_id: new_id(IdKind::Message)?,
        user_content: message.to_owned(),
        assistant_message_id: new_id(IdKind::Message)?,
        model: first.model,
        provider: first.provider,
        targets: plan.targets,
        current: 0,
        answered: false,
        messages,
        sources,
        started_at: now,
        timing,
        config,
        toolbox: plan.offered.map(|(tools, kinds)| Toolbox::new(tools, kinds)),
        step: 1,
        traces: Vec::new(),
        usage_before: Usage::default(),
        text_before: String::new(),
    })
}

async fn release(env: &Env, key_hash: &str, claim: &Claim) {
    let _ = limiter::finish(env, key_hash, claim, None).await;
}

impl Turn {
    /// The tools offered with the next call; on the last call the turn allows, with
    /// `tool_choice: "none"`, so the turn ends with an answer.
    pub fn offer(&self) -> Option<Offer<'_>> {
        let final_step = agent::is_final_step(self.step, self.config.agent_max_steps);
        match &self.destination {
            // The caller's tools beside the agent's.
            Destination::Completion(caller) if caller.offers_tools() => {
                Some(Offer { definitions: &caller.definitions, final_step })
            }
            _ => self.toolbox.as_ref().map(|t| Offer { definitions: &t.definitions, final_step }),
        }
    }

    /// The caller's generation parameters, if any (the OpenAI-compatible route).
    pub fn sampling(&self) -> Option<&crate::domain::openai_api::Sampling> {
        match &self.destination {
            Destination::Completion(caller) => Some(&caller.sampling),
            _ => None,
        }
    }

    /// The calls of an answer that go back to the caller (its own tools), not run here.
    pub fn caller_calls(&self, answer: &Answer) -> Vec<crate::domain::llm::ToolCall> {
        match &self.destination {
            Destination::Completion(caller) => {
                answer.tool_calls.iter().filter(|c| caller.owns(&c.function.name)).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Whether this answer is a tool step: it calls tools, and another model call is allowed.
    pub fn wants_tools(&self, answer: &Answer) -> bool {
        self.toolbox.is_some()
            && !answer.tool_calls.is_empty()
            && self.caller_calls(answer).is_empty()
            && answer.outcome == Outcome::Complete
            && !agent::is_final_step(self.step, self.config.agent_max_steps)
    }

    /// Runs the answer's tool calls and appends the exchange to the conversation; returns what
    /// ran (for the stream's `tool` events).
    pub async fn run_tool_step(&mut self, answer: &Answer) -> Vec<Trace> {
        let Some(toolbox) = &self.toolbox else { return Vec::new() };
        let (executed, ms) =
            timed(tools::run(&self.db, &self.request_id, &self.workspace_id, toolbox, &answer.tool_calls)).await;
        self.timing.tools_ms += ms;
        // One statement per call, side by side.
        let statements = answer.tool_calls.len().min(crate::domain::sse::MAX_TOOL_CALLS);
        self.timing.store(self.db.is_object(), u32::try_from(statements).unwrap_or(u32::MAX));
        self.messages.push(llm::Turn { content: answer.text.clone(), ..llm::Turn::calling(answer.tool_calls.clone()) });
        let mut ran = Vec::with_capacity(executed.len());
        for e in executed {
            self.messages.push(e.message);
            for source in e.sources {
                if self.sources.len() < agent::MAX_SOURCES && !self.sources.iter().any(|s| s.id == source.id) {
                    self.sources.push(source);
                }
            }
            ran.push(e.trace);
        }
        self.traces.extend(ran.iter().cloned());
        agent::add_usage(&mut self.usage_before, &answer.usage);
        self.text_before.push_str(&answer.text);
        self.step += 1;
        ran
    }

    /// The final call's answer with what the tool steps before it added: their text (if the
    /// model said something while calling tools) and their usage.
    pub fn whole_answer(&self, mut answer: Answer) -> Answer {
        if answer.outcome == Outcome::Complete
            && answer.text.trim().is_empty()
            && !answer.tool_calls.is_empty()
            && self.caller_calls(&answer).is_empty()
        {
            answer.outcome = Outcome::UpstreamError {
                message: "the model kept calling tools after its last allowed step instead of answering".into(),
            };
        }
        answer.text = format!("{}{}", self.text_before, answer.text);
        agent::add_usage(&mut answer.usage, &self.usage_before);
        answer
    }

    /// Stores the user message and the answer in one D1 transaction. `incomplete` carries the
    /// reason an answer is kept although the provider did not finish it.
    pub async fn store(&self, answer: &Answer, incomplete: Option<&str>, llm_ms: u64) -> Result<(), StoreFailure> {
        let db = self.db.clone();
        match &self.destination {
            Destination::Chat => {}
            Destination::Insight(job) => return insight::store(self, job, &db, answer, incomplete, llm_ms).await,
            Destination::Completion(_) => return completion::store(self, &db, answer, incomplete, llm_ms).await,
        }
        let status = if incomplete.is_some() { AnswerStatus::Incomplete } else { answer.outcome.status() };
        let finished = worker::Date::now().as_millis();
        let sources =
            (!self.sources.is_empty()).then(|| knowledge::sources_json(&self.sources, Some(&answer.text)).to_string());
        // Counted in the same transaction as the turn: no extra round trip, and a turn is
        // counted exactly when it is stored.
        let shown = incomplete.and_then(ErrorCode::parse).map_or(200, ErrorCode::usage_status);
        let counters =
            Counters::request(shown).with_llm(answer.usage.prompt_tokens, answer.usage.completion_tokens, llm_ms);
        let day = usage::day_of(self.started_at);
        let ledger = self.config.usage_ledger.then(|| chats::Ledger { key_hash: &self.key_hash, day: &day, counters });
        let saved = chats::save_turn(
            &db,
            &chats::NewTurn {
                workspace_id: &self.workspace_id,
                chat_id: &self.chat_id,
                new_chat: self.new_chat.as_ref().map(|(title, agent)| (title.as_str(), agent.as_deref())),
                embed: self.embed.as_ref().map(|(key, user)| (key.as_str(), user.as_str())),
                user_message_id: &self.user_message_id,
                user_content: &self.user_content,
                assistant_message_id: &self.assistant_message_id,
                assistant_content: &answer.text,
                model: answer.model.as_deref().unwrap_or(&self.model),
                provider: &self.provider,
                attempts: self.attempts(),
                status: status.as_str(),
                finish_reason: answer.finish_reason.as_deref(),
                prompt_tokens: Some(answer.usage.prompt_tokens),
                completion_tokens: Some(answer.usage.completion_tokens),
                usage_estimated: answer.usage.estimated,
                sources: sources.as_deref(),
                tool_calls: agent::traces_to_stored(&self.traces).as_deref(),
                latency_ms: i64::try_from(llm_ms).unwrap_or(i64::MAX),
                started_at: self.started_at,
                finished_at: finished as i64,
                ledger,
            },
        )
        .await;
        match saved {
            Ok(true) => Ok(()),
            Ok(false) => Err(StoreFailure::ChatGone),
            Err(err) => Err(StoreFailure::Storage(err)),
        }
    }

    /// Counts the turn in the usage ledger on its own, when it could not be stored (the stream
    /// transport, whose response has long started, has nobody else to do it).
    pub async fn count_unstored(&self, status: u16, llm_ms: u64) {
        if !self.config.usage_ledger {
            return;
        }
        let counters = Counters::request(status).with_llm(0, 0, llm_ms);
        let counted = storage::usage::count(&self.db, &self.key_hash, &usage::day_of(self.started_at), &counters).await;
        if let Err(err) = counted {
            log_warn(&self.request_id, "usage_not_counted", err.log_detail());
        }
    }

    /// How many targets were tried until the current one (1: the first).
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.current + 1).unwrap_or(u32::MAX)
    }

    /// The target answering (or being tried), for the `X-LLM-*` headers.
    pub fn answered_by(&self) -> AnsweredBy {
        AnsweredBy { provider: self.provider.clone(), model: self.model.clone(), attempts: self.attempts() }
    }

    /// The record a retry with the same `Idempotency-Key` gets back.
    pub fn result(&self, answer: &Answer, incomplete: Option<&str>) -> StoredResult {
        let mut result = StoredResult::from_answer(&self.chat_id, &self.assistant_message_id, answer);
        result.sources = knowledge::sources_json(&self.sources, Some(&answer.text));
        if result.model.is_none() {
            result.model = Some(self.model.clone());
        }
        if let Some(code) = incomplete {
            result.status = AnswerStatus::Incomplete;
            result.error_code = Some(code.to_owned());
        }
        result.answered_by = Some(Box::new(self.answered_by()));
        if let Destination::Completion(_) = self.destination {
            result.tool_calls = self.caller_calls(answer);
            result.traces.clone_from(&self.traces);
        }
        result
    }

    /// Remembers the stored result under the request's idempotency key, if it claimed one.
    pub async fn remember(&self, result: StoredResult) {
        if let Some(claim) = &self.claim {
            if let Err(err) = limiter::finish(&self.env, &self.key_hash, claim, Some(result)).await {
                log_warn(&self.request_id, "idempotency_not_recorded", err.log_detail());
            }
        }
    }

    /// Releases the request's idempotency key: it stored nothing, so a retry runs afresh.
    pub async fn forget(&self) {
        if let Some(claim) = &self.claim {
            release(&self.env, &self.key_hash, claim).await;
        }
    }
}
