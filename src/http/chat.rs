//! `POST /api/chat`: the product. Before the LLM call, one D1 batch (key, chat, agent,
//! history) runs side by side with the rate-limiter call; after it, one D1 batch stores the
//! turn. Nothing is written when the LLM fails, so a retry continues cleanly.

use serde_json::json;
use worker::Request;

use super::{auth, read_json, timed, Cx, Reply};
use crate::domain::chat::{resolve_agent, title_from, ChatRequest};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::ids::{new_id, IdKind};
use crate::domain::llm;
use crate::domain::timing::Timing;
use crate::storage::{self, chats, limiter};
use crate::upstream;

/// Keeps the `Server-Timing` header of the response current as the turn goes on.
struct TimingHeader<'a> {
    cx: &'a Cx,
    timing: std::cell::Cell<Timing>,
}

impl<'a> TimingHeader<'a> {
    fn new(cx: &'a Cx, timing: Timing) -> Self {
        cx.set_header("Server-Timing", timing.header());
        Self { cx, timing: std::cell::Cell::new(timing) }
    }

    fn update(&self, f: impl FnOnce(&mut Timing)) {
        let mut t = self.timing.get();
        f(&mut t);
        self.timing.set(t);
        self.cx.set_header("Server-Timing", t.header());
    }
}

pub async fn post(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let token = auth::api_key(req)?;
    let config = cx.config()?;
    let input = ChatRequest::try_from(&read_json(req).await?)?;
    let hash = token.hash();
    let db = storage::db(&cx.env)?;

    let ((turn, read_ms), (verdict, limit_ms)) = futures::join!(
        timed(chats::load_turn(&db, &hash, input.chat_id.as_deref(), input.agent_id.as_deref())),
        timed(limiter::check(&cx.env, &hash, config.rate_limit_per_minute)),
    );
    // From here on, whatever the outcome, the caller sees where the time went so far.
    let timing = TimingHeader::new(cx, Timing { read_ms, limit_ms, d1_calls: 1, do_calls: 1, ..Timing::default() });
    let turn = turn?;
    let key = auth::admit(cx, turn.key, verdict)?;

    if input.chat_id.is_some() && turn.chat.is_none() {
        return Err(ApiError::NotFound("Chat not found", None));
    }
    let chat_agent = turn.chat.as_ref().map(|c| c.agent_id.as_deref());
    let agent_id = resolve_agent(chat_agent, input.agent_id.as_deref())?;
    let (instructions, model) = match (&agent_id, turn.agent) {
        (None, _) => (config.default_instructions.clone(), config.llm_model.clone()),
        (Some(_), Some(agent)) => (agent.instructions, agent.model.unwrap_or_else(|| config.llm_model.clone())),
        (Some(_), None) if turn.chat.is_some() => {
            return Err(ApiError::NotFound(
                "Agent not found",
                Some(json!("the agent this chat was created with has been deleted; start a new chat")),
            ))
        }
        (Some(_), None) => return Err(ApiError::NotFound("Agent not found", None)),
    };

    let (messages, _dropped) =
        llm::build_messages(&instructions, &turn.history, &input.message, config.context_token_budget);
    let (completion, llm_ms) = timed(upstream::llm::complete(&config, &model, &messages)).await;
    timing.update(|t| t.llm_ms = llm_ms);
    let completion = completion?;
    let finished = worker::Date::now().as_millis();

    let chat_id = match &turn.chat {
        Some(c) => c.id.clone(),
        None => new_id(IdKind::Chat)?,
    };
    let title = title_from(&input.message);
    let assistant_id = new_id(IdKind::Message)?;
    let (saved, write_ms) = timed(chats::save_turn(
        &db,
        &chats::NewTurn {
            workspace_id: &key.workspace_id,
            chat_id: &chat_id,
            new_chat: turn.chat.is_none().then_some((title.as_str(), agent_id.as_deref())),
            user_message_id: &new_id(IdKind::Message)?,
            user_content: &input.message,
            assistant_message_id: &assistant_id,
            assistant_content: &completion.content,
            model: completion.model.as_deref().unwrap_or(&model),
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            latency_ms: i64::try_from(llm_ms).unwrap_or(i64::MAX),
            started_at: cx.now,
            finished_at: finished as i64,
        },
    ))
    .await;
    timing.update(|t| {
        t.write_ms = write_ms;
        t.d1_calls += 1;
    });
    if !saved? {
        // The chat was deleted while the LLM was answering.
        return Err(ApiError::NotFound("Chat not found", None));
    }
    Ok(Reply::ok(json!({ "chatId": chat_id, "response": completion.content, "messageId": assistant_id })))
}
