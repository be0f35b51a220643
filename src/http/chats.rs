//! The chat read API, authenticated with an API key and scoped to its workspace:
//! `GET /api/chats`, `GET /api/chats/{id}`, `DELETE /api/chats/{id}`.

use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, query, Cx, Reply};
use crate::domain::agent;
use crate::domain::cursor;
use crate::domain::embed_token;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::time::to_iso;
use crate::storage::{self, chats, keys, limiter};

const CHAT_NOT_FOUND: ApiError = ApiError::NotFound("Chat not found", None);

/// Who reads: the key's workspace, the agents it (or its token) is limited to (as the JSON
/// list storage binds, or `None` for all) and, for an embed token, the key's id and the
/// viewer's label, after the key lookup and the rate limiter ran side by side. A scoped key
/// sees only its agents' chats, a token only its viewer's; the others read as absent.
struct Reader {
    /// The workspace's database.
    db: storage::Db,
    workspace_id: String,
    scope: Option<String>,
    embed: Option<(String, String)>,
}

impl Reader {
    fn viewer(&self) -> chats::Viewer<'_> {
        chats::Viewer {
            scope: self.scope.as_deref(),
            embed: self.embed.as_ref().map(|(k, u)| (k.as_str(), u.as_str())),
        }
    }
}

async fn reader(req: &Request, cx: &Cx) -> ApiResult<Reader> {
    let caller = auth::key_or_embed(req, cx, true)?;
    let config = cx.config()?;
    let hash = caller.key_hash().to_owned();
    let db = caller.locate(cx).await?.db;
    let (key, verdict) =
        futures::join!(keys::by_hash(&db, &hash), limiter::check(&cx.env, &hash, config.rate_limit_per_minute, None));
    let admitted = crate::turn::admit::admit(cx, &hash, key?, verdict, None).await.0;
    let key = admitted.map_err(|e| caller.refusal(e))?.key;
    Ok(match caller.claims() {
        None => Reader { scope: key.scope().to_stored(), workspace_id: key.workspace_id, embed: None, db },
        Some(claims) => {
            let viewer = claims.viewer();
            Reader {
                scope: embed_token::agent_scope(&key.scope(), viewer.agent_ids.as_deref()).to_stored(),
                workspace_id: key.workspace_id,
                embed: Some((key.id, viewer.user)),
                db,
            }
        }
    })
}

fn chat_json(c: &chats::Chat) -> Value {
    json!({
        "id": c.id,
        "agentId": c.agent_id,
        "title": c.title,
        "createdAt": to_iso(c.created_at),
        "updatedAt": to_iso(c.updated_at),
    })
}

pub async fn list(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let limit = cursor::limit(query(req, "limit").as_deref(), 20)?;
    let after = query(req, "cursor").filter(|c| !c.is_empty()).map(|c| cursor::decode(&c)).transpose()?;
    let r = reader(req, cx).await?;
    // One extra row tells whether there is a next page.
    let mut page = chats::list(&r.db, &r.workspace_id, r.viewer(), limit + 1, after).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next = if more { page.last().map(|c| cursor::encode(c.updated_at, &c.id)) } else { None };
    Ok(Reply::ok(json!({ "chats": page.iter().map(chat_json).collect::<Vec<_>>(), "nextCursor": next })))
}

pub async fn get(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let r = reader(req, cx).await?;
    let (chat, messages) = chats::get(&r.db, &r.workspace_id, r.viewer(), m.param(0)).await?.ok_or(CHAT_NOT_FOUND)?;
    let mut body = chat_json(&chat);
    let messages: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "role": m.role,
                "content": m.content,
                "model": m.model,
                "provider": m.provider,
                "attempts": m.attempts,
                "promptTokens": m.prompt_tokens,
                "completionTokens": m.completion_tokens,
                "latencyMs": m.latency_ms,
                "createdAt": to_iso(m.created_at),
                "status": m.status,
                "finishReason": m.finish_reason,
                "usageEstimated": m.usage_estimated != 0,
                "sources": m.sources.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or_else(|| json!([])),
                "toolCalls": agent::traces_from_stored(m.tool_calls.as_deref()),
            })
        })
        .collect();
    if let Some(obj) = body.as_object_mut() {
        obj.insert("messages".into(), Value::Array(messages));
    }
    Ok(Reply::ok(body))
}

pub async fn delete(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    let r = reader(req, cx).await?;
    if chats::delete(&r.db, &r.workspace_id, r.viewer(), m.param(0)).await? {
        Ok(Reply::no_content())
    } else {
        Err(CHAT_NOT_FOUND)
    }
}
