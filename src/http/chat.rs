//! `POST /api/chat`: authenticate, parse, pick the transport, hand the turn to
//! [`crate::turn`]. JSON and streaming differ only in how the answer travels.

use serde_json::json;
use worker::Request;

use super::{auth, read_json, sse, Cx, Reply};
use crate::domain::chat::{wants_stream, ChatRequest};
use crate::domain::embed_token::Claims;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::idempotency::{self, StoredResult};
use crate::domain::rate_limit::Claim;
use crate::domain::stream::ErrorCode;
use crate::turn::run::{Finished, Whole};
use crate::turn::{self, Start};

pub async fn post(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let caller = auth::key_or_embed(req, cx, true)?;
    let hash = caller.key_hash().to_owned();
    // Where the key's workspace is (no I/O for keys that say; an index lookup for the first
    // format), before the body is read: a bad body is counted in its usage too. A key that
    // cannot be found is refused after the body's own errors, as before.
    let located = caller.locate(cx).await;
    // A token's chats are its viewer's: they see, continue and replay only their own.
    let viewer = caller.claims().map(Claims::viewer);
    let config = cx.config()?;
    let accept = req.headers().get("Accept").ok().flatten();
    let idempotency_key = req.headers().get(idempotency::HEADER).ok().flatten();
    let body = read_json(req).await?;
    let input = ChatRequest::try_from(&body)?;
    let stream = wants_stream(&body, accept.as_deref())?;
    let located = located?;
    let claim = match idempotency_key {
        None => None,
        Some(value) => {
            let key = idempotency::parse_key(&value).map_err(idempotency::invalid_key)?;
            let scope = viewer.as_ref().map_or_else(|| "chat".to_owned(), |v| format!("chat\nembed\n{}", v.user));
            Some(Claim {
                id: idempotency::record_id(&scope, &key),
                fingerprint: idempotency::fingerprint(&body),
                stale_after_ms: idempotency::stale_after_ms(config.llm_timeout_ms.max(config.llm_stream_max_ms)),
            })
        }
    };
    match turn::start(cx, &hash, located, viewer.as_ref(), &input, claim).await.map_err(|e| caller.refusal(e))? {
        Start::Replay(result) => {
            cx.set_header(idempotency::REPLAYED_HEADER, "true".to_owned());
            for (name, value) in result.answered_by.iter().flat_map(|a| a.headers()) {
                cx.set_header(name, value);
            }
            if stream {
                Ok(sse::replay(cx, &result, &sse::Protocol::Attive))
            } else {
                json_reply(&result, cx)
            }
        }
        Start::Run(turn) if stream => sse::respond(cx, req, *turn, sse::Protocol::Attive).await,
        Start::Run(turn) => {
            let (turn, finished) = turn.run(&mut Whole).await;
            cx.set_header("Server-Timing", turn.timing.header());
            for (name, value) in turn.answered_by().headers() {
                cx.set_header(name, value);
            }
            cx.usage_llm_ms(turn.timing.llm_ms);
            match finished {
                Finished::Stored { result, .. } => {
                    // Counted in the batch that stored it.
                    cx.usage_counted();
                    json_reply(&result, cx)
                }
                Finished::Failed { error, usage, .. } => {
                    cx.usage_tokens(usage.prompt_tokens, usage.completion_tokens);
                    Err(error)
                }
            }
        }
    }
}

/// The seed's three fields, and the `sources` the answer was given. A replayed stream that ended incomplete answers as that stream
/// did: with its error, not with half an answer presented as whole.
fn json_reply(result: &StoredResult, cx: &Cx) -> ApiResult<Reply> {
    if let Some(code) = &result.error_code {
        let error = ErrorCode::parse(code)
            .map_or_else(|| ApiError::Upstream(format!("the answer is incomplete ({code})")), |c| c.as_api_error());
        let mut body = error.body();
        body["details"] = json!({ "code": code, "chatId": result.chat_id, "messageId": result.message_id, "requestId": cx.request_id });
        return Ok(Reply { status: error.status(), body: super::Body::Json(body) });
    }
    Ok(Reply::ok(json!({
        "chatId": result.chat_id,
        "response": result.response,
        "messageId": result.message_id,
        "sources": result.sources,
    })))
}
