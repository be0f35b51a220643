//! The OpenAI-compatible API: `POST /v1/chat/completions`, `GET /v1/models`,
//! `GET /v1/models/{id}`, authenticated with an API key like `/api/chat` (its scope, rate
//! limit, usage ledger, `Idempotency-Key`). A third transport of the one turn: JSON, or the
//! OpenAI chunk format through the same streaming sink (`sse::Protocol::OpenAi`). Errors on
//! `/v1/*` take OpenAI's shape in `http::handle`.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::sse::{self, Protocol};
use super::{auth, read_json, Cx, Reply};
use crate::domain::idempotency::{self, StoredResult};
use crate::domain::knowledge;
use crate::domain::openai_api::{self as api, ChunkHead, Completion, CompletionRequest, DEFAULT_MODEL};
use crate::domain::rate_limit::Claim;
use crate::domain::sse::Answer;
use crate::domain::stream::ErrorCode;
use crate::storage::{agents, keys, limiter};
use crate::turn::run::{Finished, Whole};
use crate::turn::{self, Ask, Start, Turn};

/// The completion id of a turn: its message id, so a replay answers with the same one.
pub fn completion_id(message_id: &str) -> String {
    format!("chatcmpl-{}", message_id.trim_start_matches("msg_"))
}

fn seconds(cx: &Cx) -> i64 {
    cx.now / 1_000
}

/// Our extension of a completion: what the SDKs keep and ignore.
fn extension(sources: Value, request_id: &str, traces: &[crate::domain::agent::Trace]) -> Value {
    json!({ "sources": sources, "requestId": request_id, "toolCalls": traces })
}

pub async fn completions(req: &mut Request, cx: &Cx) -> super::ApiResult<Reply> {
    let token = auth::api_key(req)?;
    let hash = token.hash();
    let located = auth::Caller::Key { hash: hash.clone(), locator: token.locator().cloned() }.locate(cx).await;
    let config = cx.config()?;
    let idempotency_key = req.headers().get(idempotency::HEADER).ok().flatten();
    let body = read_json(req).await?;
    let input = CompletionRequest::try_from(&body)?;
    let claim = match idempotency_key {
        None => None,
        Some(value) => {
            let key = idempotency::parse_key(&value).map_err(idempotency::invalid_key)?;
            Some(Claim {
                id: idempotency::record_id("v1/chat/completions", &key),
                fingerprint: idempotency::fingerprint(&body),
                stale_after_ms: idempotency::stale_after_ms(config.llm_timeout_ms.max(config.llm_stream_max_ms)),
            })
        }
    };
    match turn::begin(cx, &hash, located?, Ask::Completion(&input), claim).await? {
        Start::Replay(result) => {
            cx.set_header(idempotency::REPLAYED_HEADER, "true".to_owned());
            for (name, value) in result.answered_by.iter().flat_map(|a| a.headers()) {
                cx.set_header(name, value);
            }
            if input.stream {
                let protocol = Protocol::openai(&result.message_id, seconds(cx), &input.model_id, input.include_usage);
                Ok(sse::replay(cx, &result, &protocol))
            } else {
                replayed(&result, &input, cx)
            }
        }
        Start::Run(turn) if input.stream => {
            let protocol =
                Protocol::openai(&turn.assistant_message_id, seconds(cx), &input.model_id, input.include_usage);
            sse::respond(cx, req, *turn, protocol).await
        }
        Start::Run(turn) => {
            let (turn, finished) = turn.run(&mut Whole).await;
            cx.set_header("Server-Timing", turn.timing.header());
            for (name, value) in turn.answered_by().headers() {
                cx.set_header(name, value);
            }
            cx.usage_llm_ms(turn.timing.llm_ms);
            match finished {
                Finished::Stored { answer, code: None, .. } => {
                    // Counted when it was stored.
                    cx.usage_counted();
                    Ok(Reply::ok(completion(&turn, &answer, &input, cx)))
                }
                Finished::Stored { code: Some(code), .. } => {
                    cx.usage_counted();
                    Err(code.as_api_error())
                }
                Finished::Failed { error, usage, .. } => {
                    cx.usage_tokens(usage.prompt_tokens, usage.completion_tokens);
                    Err(error)
                }
            }
        }
    }
}

fn completion(turn: &Turn, answer: &Answer, input: &CompletionRequest, cx: &Cx) -> Value {
    let calls = turn.caller_calls(answer);
    api::completion_json(&Completion {
        id: &completion_id(&turn.assistant_message_id),
        created: seconds(cx),
        model: &input.model_id,
        content: &answer.text,
        tool_calls: &calls,
        finish_reason: api::finish_reason(answer.finish_reason.as_deref(), !calls.is_empty()),
        prompt_tokens: answer.usage.prompt_tokens,
        completion_tokens: answer.usage.completion_tokens,
        attive: extension(knowledge::sources_json(&turn.sources, Some(&answer.text)), &cx.request_id, &turn.traces),
    })
}

/// A retry's answer: the stored result as the completion it was (an answer that ended
/// incomplete answers with its error, as it did).
fn replayed(result: &StoredResult, input: &CompletionRequest, cx: &Cx) -> super::ApiResult<Reply> {
    if let Some(code) = result.error_code.as_deref().and_then(ErrorCode::parse) {
        return Err(code.as_api_error());
    }
    Ok(Reply::ok(api::completion_json(&Completion {
        id: &completion_id(&result.message_id),
        created: seconds(cx),
        model: &input.model_id,
        content: &result.response,
        tool_calls: &result.tool_calls,
        finish_reason: api::finish_reason(result.finish_reason.as_deref(), !result.tool_calls.is_empty()),
        prompt_tokens: result.usage.prompt_tokens,
        completion_tokens: result.usage.completion_tokens,
        attive: extension(result.sources.clone(), &cx.request_id, &result.traces),
    })))
}

/// The frames that end a streamed completion: the caller's tool calls (if the model made
/// any), the last chunk with its finish reason and our extension, the usage when asked for,
/// then `[DONE]`.
pub fn end_frames(head: &ChunkHead<'_>, turn: &Turn, answer: &Answer, include_usage: bool) -> Vec<String> {
    let calls = turn.caller_calls(answer);
    let mut frames = Vec::with_capacity(4);
    if !calls.is_empty() {
        frames.push(api::tool_calls_chunk(head, &calls));
    }
    let attive = extension(knowledge::sources_json(&turn.sources, Some(&answer.text)), &turn.request_id, &turn.traces);
    frames.push(api::finish_chunk(
        head,
        api::finish_reason(answer.finish_reason.as_deref(), !calls.is_empty()),
        attive,
    ));
    if include_usage {
        frames.push(api::usage_chunk(head, answer.usage.prompt_tokens, answer.usage.completion_tokens));
    }
    frames.push(api::DONE.to_owned());
    frames
}

/// A stored completion as the stream it was: an answer that ended incomplete replays its text
/// and then its error, without `[DONE]`.
pub fn replay_frames(
    head: &ChunkHead<'_>,
    result: &StoredResult,
    request_id: &str,
    include_usage: bool,
) -> Vec<String> {
    let mut frames = vec![api::role_chunk(head)];
    if !result.response.is_empty() {
        frames.push(api::content_chunk(head, &result.response));
    }
    if let Some(code) = result.error_code.as_deref() {
        let error = ErrorCode::parse(code).map_or_else(
            || crate::domain::error::ApiError::Upstream(format!("the answer is incomplete ({code})")),
            ErrorCode::as_api_error,
        );
        frames.push(api::error_chunk(&error));
        return frames;
    }
    if !result.tool_calls.is_empty() {
        frames.push(api::tool_calls_chunk(head, &result.tool_calls));
    }
    let reason = api::finish_reason(result.finish_reason.as_deref(), !result.tool_calls.is_empty());
    frames.push(api::finish_chunk(head, reason, extension(result.sources.clone(), request_id, &result.traces)));
    if include_usage {
        frames.push(api::usage_chunk(head, result.usage.prompt_tokens, result.usage.completion_tokens));
    }
    frames.push(api::DONE.to_owned());
    frames
}

/// The models a key may use: `attive-default` when it reaches the default assistant, and its
/// agents. The key check and the agents' list side by side with the limiter.
async fn models_of(req: &Request, cx: &Cx) -> super::ApiResult<Vec<Value>> {
    let token = auth::api_key(req)?;
    let config = cx.config()?;
    let hash = token.hash();
    let db = auth::Caller::Key { hash: hash.clone(), locator: token.locator().cloned() }.locate(cx).await?.db;
    let (key, verdict) =
        futures::join!(keys::by_hash(&db, &hash), limiter::check(&cx.env, &hash, config.rate_limit_per_minute, None));
    let key = crate::turn::admit::admit(cx, &hash, key?, verdict, None).await.0?.key;
    let scope = key.scope();
    let list = agents::list(&db, &key.workspace_id).await?;
    let mut models = Vec::with_capacity(list.len() + 1);
    if scope.check(None).is_ok() {
        // The workspace's creation is not at hand; the epoch of the API's first release is
        // as good a "created" as any for a model that always existed.
        models.push(api::model_json(DEFAULT_MODEL, 1_767_225_600_000));
    }
    let mut agents: Vec<&agents::Agent> = list.iter().filter(|a| scope.check(Some(&a.id)).is_ok()).collect();
    agents.sort_by_key(|a| (a.created_at, a.id.clone()));
    models.extend(agents.into_iter().map(|a| api::model_json(&a.id, a.created_at)));
    Ok(models)
}

pub async fn models(req: &mut Request, cx: &Cx) -> super::ApiResult<Reply> {
    Ok(Reply::ok(api::model_list(models_of(req, cx).await?)))
}

pub async fn model(req: &mut Request, m: &Matched, cx: &Cx) -> super::ApiResult<Reply> {
    let id = m.param(0);
    let models = models_of(req, cx).await?;
    models.into_iter().find(|v| v["id"] == id).map(Reply::ok).ok_or_else(|| api::model_not_found(id))
}
