//! Where HTTP ends: routing, authentication, body reading, and turning results and
//! [`ApiError`]s into responses. Handlers live one module per resource.

mod admin;
pub(crate) mod auth;
mod chat;
mod chats;
mod cors;
mod embed;
mod health;
mod insights;
mod keys;
mod knowledge;
mod lifecycle;
mod openai;
mod pages;
pub mod routes;
mod settings;
mod sse;

use futures::StreamExt;
use serde_json::{json, Value};
use worker::{Context, Env, Request, Response};

pub(crate) use crate::context::{log, log_warn, Cx};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::request_id;
use crate::domain::time::Millis;
use crate::domain::usage::{self, Counters};
use routes::{Endpoint, Matched};

/// JSON bodies larger than this are refused with 413 before they are read: the largest valid
/// request (20,000 characters of agent instructions, each up to a 12-byte `\u` escape pair) is
/// far below it.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// A successful outcome: status and body.
pub struct Reply {
    pub status: u16,
    pub body: Body,
}

pub enum Body {
    None,
    Json(Value),
    /// Server-Sent Events, written as they come (see `sse`).
    EventStream(sse::Frames),
    /// Newline-delimited JSON, written as it is read (an export).
    Ndjson(sse::Frames),
    /// A static asset (the settings page's files, the OpenAPI document).
    Asset {
        content_type: &'static str,
        bytes: Vec<u8>,
    },
}

impl Reply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body: Body::Json(body) }
    }

    pub fn created(body: Value) -> Self {
        Self { status: 201, body: Body::Json(body) }
    }

    pub fn no_content() -> Self {
        Self { status: 204, body: Body::None }
    }
}

/// The whole request: route, run, respond, log one line.
pub async fn handle(mut req: Request, env: Env, ctx: Context) -> Response {
    let started = worker::Date::now().as_millis();
    let request_id = request_id::accept_or_generate(req.headers().get("X-Request-Id").ok().flatten().as_deref());
    // The raw method: `worker::Method` reads any method it does not know (e.g. QUERY) as GET,
    // which would serve it as one instead of answering 405.
    let method = req.inner().method().to_ascii_uppercase();
    let path = req.path();
    let cx = Cx::new(env, ctx, started as Millis, request_id.clone());

    let preflight = method == "OPTIONS" && routes::any_method(&path).is_some_and(routes::Endpoint::takes_embed_tokens);
    let (pattern, outcome) = match routes::resolve(&method, &path) {
        _ if preflight => {
            let origin = req.headers().get("Origin").ok().flatten();
            for (name, value) in cors::preflight(origin.as_deref()) {
                cx.add_header(name, value);
            }
            ("(preflight)", Ok(Reply::no_content()))
        }
        // Before anything else: a token on a route it may never use costs no lookup.
        Ok(matched) if !matched.endpoint.takes_embed_tokens() && auth::is_embed(&req) => {
            auth::embed_cors(&req, &cx);
            (matched.pattern, Err(ApiError::Forbidden(crate::domain::embed_token::ROUTE_NOT_ALLOWED, None)))
        }
        Ok(matched) => (matched.pattern, dispatch(&mut req, &matched, &cx).await),
        Err(err) => ("(unmatched)", Err(err)),
    };
    let (status, body, mut headers) = match outcome {
        Ok(reply) => (reply.status, reply.body, Vec::new()),
        Err(err) => {
            if let Some(detail) = err.log_detail() {
                log(
                    &json!({ "requestId": request_id, "level": "error", "route": pattern, "status": err.status(), "detail": detail }),
                );
            }
            // The OpenAI-compatible routes answer errors in OpenAI's shape, so SDKs raise
            // their own exception classes.
            let body = if path.starts_with("/v1/") { crate::domain::openai_api::error_json(&err) } else { err.body() };
            (err.status(), Body::Json(body), err.headers())
        }
    };
    count_usage(&cx, status).await;
    headers.extend(cx.take_headers());
    headers.push(("X-Request-Id", request_id.clone()));
    let response = build(status, body, &headers, method == "HEAD");
    let duration_ms = worker::Date::now().as_millis().saturating_sub(started);
    log(
        &json!({ "requestId": request_id, "method": method, "route": pattern, "status": status, "durationMs": duration_ms }),
    );
    response
}

/// Counts a request made with an API key in the usage ledger, unless its turn already was.
/// A failure is counted before the response leaves (an admin reading usage right after sees
/// it; errors are not the path latency matters on), a success after it, off the critical
/// path. A failed write is retried once, then logged: the response never depends on it.
async fn count_usage(cx: &Cx, status: u16) {
    let note = cx.take_usage();
    let (Some(hash), Some(db), false) = (note.key_hash, note.db, note.counted) else { return };
    if !cx.config().is_ok_and(|c| c.usage_ledger) {
        return;
    }
    let counters = Counters::request(status).with_llm(note.prompt_tokens, note.completion_tokens, note.llm_ms);
    let (request_id, day) = (cx.request_id.clone(), usage::day_of(cx.now));
    let write = async move {
        let mut last = None;
        for _ in 0..2 {
            match crate::storage::usage::count(&db, &hash, &day, &counters).await {
                Ok(()) => return,
                Err(err) => last = Some(err),
            }
        }
        log_warn(&request_id, "usage_not_counted", last.as_ref().and_then(ApiError::log_detail));
    };
    if status >= 400 {
        write.await;
    } else {
        cx.ctx.wait_until(write);
    }
}

async fn dispatch(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    match m.endpoint {
        Endpoint::Health => health::get(cx).await,
        Endpoint::OpenApi
        | Endpoint::SettingsPage
        | Endpoint::SettingsScript
        | Endpoint::SettingsStyle
        | Endpoint::SettingsIcon
        | Endpoint::SettingsModule
        | Endpoint::EmbedScript => pages::serve(m.endpoint, m, cx).await,
        Endpoint::ListWorkspaces => admin::list_workspaces(req, cx).await,
        Endpoint::CreateWorkspace => admin::create_workspace(req, cx).await,
        Endpoint::DeleteWorkspace => admin::delete_workspace(req, m, cx).await,
        Endpoint::DataPlane => admin::data_plane(req, cx).await,
        Endpoint::MoveWorkspace => admin::move_workspace(req, cx).await,
        Endpoint::BackupWorkspace => lifecycle::backup(req, m, cx).await,
        Endpoint::RestoreWorkspace => lifecycle::import(req, m, cx).await,
        Endpoint::CreateAdmin => admin::create_admin(req, m, cx).await,
        Endpoint::DeleteAdmin => admin::delete_admin(req, m, cx).await,
        Endpoint::ListApiKeys => keys::list(req, cx).await,
        Endpoint::CreateApiKey => keys::create(req, cx).await,
        Endpoint::UpdateApiKey => keys::update(req, m, cx).await,
        Endpoint::DeleteApiKey => keys::delete(req, m, cx).await,
        Endpoint::RollApiKey => keys::roll(req, m, cx).await,
        Endpoint::Usage => keys::usage(req, cx).await,
        Endpoint::AuditLog => settings::audit_log(req, cx).await,
        Endpoint::Export => lifecycle::export(req, cx).await,
        Endpoint::WorkspaceSettings => lifecycle::get_settings(req, cx).await,
        Endpoint::UpdateWorkspaceSettings => lifecycle::update_settings(req, cx).await,
        Endpoint::Erasure => lifecycle::erase(req, cx).await,
        Endpoint::ListAgents => settings::list_agents(req, cx).await,
        Endpoint::CreateAgent => settings::create_agent(req, cx).await,
        Endpoint::GetAgent => settings::get_agent(req, m, cx).await,
        Endpoint::UpdateAgent => settings::update_agent(req, m, cx).await,
        Endpoint::DeleteAgent => settings::delete_agent(req, m, cx).await,
        Endpoint::UpsertRecords => knowledge::upsert(req, cx).await,
        Endpoint::DeleteRecords => knowledge::delete(req, cx).await,
        Endpoint::ListRecords => knowledge::list(req, cx).await,
        Endpoint::GetRecord => knowledge::get(req, m, cx).await,
        Endpoint::KnowledgeStats => knowledge::stats(req, cx).await,
        Endpoint::SearchKnowledge => knowledge::search(req, cx).await,
        Endpoint::Chat => chat::post(req, cx).await,
        Endpoint::ListChats => chats::list(req, cx).await,
        Endpoint::GetChat => chats::get(req, m, cx).await,
        Endpoint::DeleteChat => chats::delete(req, m, cx).await,
        Endpoint::CreateEmbedToken => embed::mint(req, cx).await,
        Endpoint::GetInsight => insights::read(req, m, cx).await,
        Endpoint::ListInsights => insights::list(req, cx).await,
        Endpoint::CreateInsight => insights::create(req, cx).await,
        Endpoint::GetInsightSettings => insights::get(req, m, cx).await,
        Endpoint::UpdateInsight => insights::update(req, m, cx).await,
        Endpoint::DeleteInsight => insights::delete(req, m, cx).await,
        Endpoint::RefreshInsight => insights::refresh(req, m, cx).await,
        Endpoint::ChatCompletions => openai::completions(req, cx).await,
        Endpoint::ListModels => openai::models(req, cx).await,
        Endpoint::GetModel => openai::model(req, m, cx).await,
    }
}

/// NDJSON is UTF-8 by definition; the type goes without a parameter, as clients compare it.
const NDJSON: &str = crate::domain::lifecycle::CONTENT_TYPE;

/// The response; for `HEAD` (`head`), the same status and headers without the body, its
/// `Content-Length` saying how long the `GET` body is.
fn build(status: u16, body: Body, headers: &[(&'static str, String)], head: bool) -> Response {
    let builder = Response::builder().with_status(status);
    let fixed = |bytes: Vec<u8>| {
        if head {
            let length = bytes.len().to_string();
            let mut r = Response::builder().with_status(status).empty();
            let _ = r.headers_mut().set("Content-Length", &length);
            r
        } else {
            builder.fixed(bytes)
        }
    };
    let (mut response, content_type, cache) = match body {
        Body::None => (Response::builder().with_status(status).empty(), None, "no-store"),
        // No Content-Encoding, ever: a compressor holds small events back until it has enough
        // to compress, and the caller would stare at nothing.
        Body::EventStream(frames) => match Response::builder().with_status(status).from_stream(frames) {
            Ok(r) => (r, Some("text/event-stream; charset=utf-8"), "no-cache"),
            Err(_) => (Response::builder().with_status(500).empty(), None, "no-store"),
        },
        // A HEAD of an export reads nothing: its length is not known before it is written.
        Body::Ndjson(_) if head => (Response::builder().with_status(status).empty(), Some(NDJSON), "no-store"),
        Body::Ndjson(lines) => match Response::builder().with_status(status).from_stream(lines) {
            Ok(r) => (r, Some(NDJSON), "no-store"),
            Err(_) => (Response::builder().with_status(500).empty(), None, "no-store"),
        },
        Body::Json(v) => (fixed(v.to_string().into_bytes()), Some("application/json; charset=utf-8"), "no-store"),
        Body::Asset { content_type, bytes } => (fixed(bytes), Some(content_type), "no-cache"),
    };
    let out = response.headers_mut();
    // Header values here are our own ASCII; a failure could only lose that one header, never
    // the response, so it is not worth failing the request over.
    if let Some(content_type) = content_type {
        let _ = out.set("Content-Type", content_type);
    }
    let _ = out.set("Cache-Control", cache);
    let _ = out.set("X-Content-Type-Options", "nosniff");
    let _ = out.set("Referrer-Policy", "no-referrer");
    for (name, value) in headers {
        let _ = out.set(name, value);
    }
    response
}

/// Reads a JSON object body, refusing oversized bodies with 413 without buffering them: the
/// declared length is checked first, and a streamed body is cut off once it passes the limit.
pub async fn read_json(req: &mut Request) -> ApiResult<crate::domain::validate::Object> {
    read_json_up_to(req, MAX_BODY_BYTES).await
}

/// [`read_json`] for a route whose body is optional: no body at all reads as `{}`.
pub async fn read_optional_json(req: &mut Request) -> ApiResult<crate::domain::validate::Object> {
    read_body(req, MAX_BODY_BYTES, true).await
}

/// [`read_json`] with another limit, for the routes that take bulk data.
pub async fn read_json_up_to(req: &mut Request, limit: usize) -> ApiResult<crate::domain::validate::Object> {
    read_body(req, limit, false).await
}

async fn read_body(req: &mut Request, limit: usize, optional: bool) -> ApiResult<crate::domain::validate::Object> {
    let too_large = ApiError::PayloadTooLarge { limit_bytes: limit };
    let declared = req.headers().get("Content-Length").ok().flatten().and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut body = Vec::new();
    if let Ok(mut stream) = req.stream() {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| ApiError::bad_request("Could not read request body", None))?;
            if body.len() + chunk.len() > limit {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
    }
    if optional && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(crate::domain::validate::Object::new());
    }
    crate::domain::validate::object(&body)
}

/// A query parameter by name.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.url().ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
