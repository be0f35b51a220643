//! A workspace's data over its life: the export (workspace admin) and the operator's backup
//! and restore, the workspace settings (name, chat retention), and the erasure of one
//! viewer's chats.

use futures::StreamExt;
use serde_json::{json, Value};
use worker::Request;

use super::routes::Matched;
use super::{auth, log, log_warn, read_json, Body, Cx, Reply};
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::lifecycle::{
    self, Counts, Fingerprint, Importer, Line, LineError, Row, WorkspacePatch, IMPORT_BATCH, IMPORT_BATCH_BYTES,
    MAX_LINE_BYTES, NOT_EMPTY, SECTIONS, UNUSABLE_HASH,
};
use crate::domain::placement::Plane;
use crate::domain::time::{to_iso, Millis};
use crate::storage::lifecycle::{self as store, Claim};
use crate::storage::{self, limiter, workspaces, Db};

const WORKSPACE_NOT_FOUND: ApiError = ApiError::NotFound("Workspace not found", None);

// ---------------------------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------------------------

/// `GET /api/settings/export`: the admin's own workspace, without key hashes.
pub async fn export(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    Ok(stream(cx, admin.db(&cx.env)?, &admin.workspace_id, false))
}

/// `GET /api/admin/workspaces/{id}/export`: the operator's backup, with each key's hash.
pub async fn backup(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let ws = workspaces::get(&storage::control(&cx.env)?, m.param(0)).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    Ok(stream(cx, ws.db(&cx.env)?, &ws.id, true))
}

/// Where an export is: the header, then each section page by page, then the end line.
struct Export {
    db: Db,
    workspace_id: String,
    with_hashes: bool,
    exported_at: Millis,
    request_id: String,
    /// `None` before the header; `Some(n)` while section `n` is read (`SECTIONS.len()`: the
    /// end line is next).
    section: Option<usize>,
    after: i64,
    /// The last chat written, so no message comes without its chat.
    chats_upto: i64,
    counts: Counts,
    done: bool,
}

/// The export as a stream: each step reads one page, so memory holds one page at a time and
/// a slow reader slows the reads. A failure ends the stream without its end line (and breaks
/// the connection), so the client can always tell an export is incomplete.
fn stream(cx: &Cx, db: Db, workspace_id: &str, with_hashes: bool) -> Reply {
    let start = Export {
        db,
        workspace_id: workspace_id.to_owned(),
        with_hashes,
        exported_at: cx.now,
        request_id: cx.request_id.clone(),
        section: None,
        after: 0,
        chats_upto: 0,
        counts: Counts::default(),
        done: false,
    };
    let frames = futures::stream::unfold(start, |mut ex| async move {
        if ex.done {
            return None;
        }
        match next_chunk(&mut ex).await {
            Ok(bytes) => Some((Ok(bytes), ex)),
            Err(err) => {
                log_warn(&ex.request_id, "export_failed", err.log_detail());
                ex.done = true;
                Some((Err(worker::Error::RustError("the export failed; it is incomplete".into())), ex))
            }
        }
    });
    let day = to_iso(cx.now).get(..10).unwrap_or_default().to_owned();
    cx.set_header("Content-Disposition", format!("attachment; filename=\"{workspace_id}-{day}.ndjson\""));
    Reply { status: 200, body: Body::Ndjson(Box::pin(frames)) }
}

/// The next piece of the export: the header, a page of lines, or the end line.
async fn next_chunk(ex: &mut Export) -> ApiResult<Vec<u8>> {
    let Some(mut index) = ex.section else {
        ex.section = Some(0);
        return Ok(lifecycle::header_line(&ex.workspace_id, ex.exported_at).into_bytes());
    };
    while let Some(section) = SECTIONS.get(index) {
        let page = store::page(&ex.db, &ex.workspace_id, section, ex.after, ex.chats_upto, ex.with_hashes).await?;
        let Some(&(last, _)) = page.last() else {
            if section.kind == "chat" {
                ex.chats_upto = ex.after;
            }
            index += 1;
            ex.section = Some(index);
            ex.after = 0;
            continue;
        };
        ex.after = last;
        ex.counts.add(section.kind, page.len() as u64);
        let mut out = Vec::with_capacity(page.len() * 256);
        for (_, row) in &page {
            out.extend_from_slice(lifecycle::row_line(section, row, ex.with_hashes).as_bytes());
        }
        return Ok(out);
    }
    ex.done = true;
    Ok(lifecycle::end_line(&ex.counts).into_bytes())
}

// ---------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------

fn not_empty(workspace_id: &str) -> ApiError {
    ApiError::Conflict(NOT_EMPTY, json!({ "workspaceId": workspace_id }))
}

/// `POST /api/admin/workspaces/{id}/import`: an export (or a backup) into a workspace that
/// holds nothing, streamed, every line checked; a failure leaves it empty again.
pub async fn import(req: &mut Request, m: &Matched, cx: &Cx) -> ApiResult<Reply> {
    auth::operator(req, cx)?;
    let control = storage::control(&cx.env)?;
    let ws = workspaces::get(&control, m.param(0)).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    if ws.plane() != Plane::Object {
        return Err(ApiError::Conflict(
            "Workspace is still in the shared database",
            json!({ "dataPlane": ws.data_plane, "hint": "move it to its own database first (POST /api/admin/data-plane/move)" }),
        ));
    }
    let db = ws.db(&cx.env)?;
    match store::claim(&db, &ws.id, cx.now).await? {
        Claim::NotEmpty => Err(not_empty(&ws.id)),
        // The same export again changes nothing and answers as the first time did.
        Claim::Imported { fingerprint, counts } => {
            let mut seen = Fingerprint::default();
            let mut body = req.stream().map_err(|_| unreadable())?;
            while let Some(chunk) = body.next().await {
                seen.update(&chunk.map_err(|_| unreadable())?);
            }
            if seen.finish() == fingerprint {
                // The first run may have failed after it finished, before the control plane
                // knew of its keys and insights: telling it again is harmless.
                after_import(&control, &ws.id, &store::restored_key_hashes(&db).await?, &counts, cx.now).await?;
                Ok(Reply::ok(json!({ "counts": counts })))
            } else {
                Err(not_empty(&ws.id))
            }
        }
        Claim::Started => {
            // Read and finished, or undone: a failure before the import is marked finished
            // leaves the workspace empty (and importable) again.
            let written = async {
                let done = read_into(req, cx, &db, &ws.id).await?;
                let counts = done.counts.to_json();
                store::finish(&db, &ws.id, &done.fingerprint, &counts, cx.now).await?;
                Ok::<_, ApiError>((done, counts))
            };
            let (done, counts) = match written.await {
                Ok(done) => done,
                Err(err) => {
                    // Twice: nothing of a refused import may stay.
                    if store::undo(&db, &ws.id).await.is_err() {
                        if let Err(again) = store::undo(&db, &ws.id).await {
                            log(&json!({ "requestId": cx.request_id, "level": "error", "event": "import_not_undone",
                                         "workspaceId": ws.id, "detail": again.log_detail() }));
                        }
                    }
                    return Err(err);
                }
            };
            after_import(&control, &ws.id, &done.key_hashes, &counts, cx.now).await?;
            Ok(Reply::ok(json!({ "counts": counts })))
        }
    }
}

/// What follows a finished import in the control plane: its keys indexed to this workspace,
/// and its insights due for the Cron Trigger. Both are repeatable, so the same export sent
/// again (after a failure here) does them again.
async fn after_import(
    control: &Db,
    workspace_id: &str,
    key_hashes: &[String],
    counts: &Value,
    now: Millis,
) -> ApiResult<()> {
    workspaces::index_restored_keys(control, workspace_id, key_hashes).await?;
    if counts["insight"].as_u64().unwrap_or(0) > 0 {
        workspaces::insights_due(control, workspace_id, now).await?;
    }
    Ok(())
}

fn unreadable() -> ApiError {
    ApiError::bad_request("Could not read request body", None)
}

/// What an import wrote.
struct Imported {
    counts: Counts,
    fingerprint: String,
    /// The hashes of the keys of an operator's backup (they work again in this workspace).
    key_hashes: Vec<String>,
}

/// Rows waiting to be written, with the line each came from.
#[derive(Default)]
struct Pending {
    rows: Vec<(u64, Row)>,
    bytes: usize,
}

/// Reads the body line by line, checks each, and writes rows in batches as they come.
async fn read_into(req: &mut Request, cx: &Cx, db: &Db, workspace_id: &str) -> ApiResult<Imported> {
    let mut importer = Importer::new(cx.now);
    let mut fingerprint = Fingerprint::default();
    let mut pending = Pending::default();
    let mut key_hashes = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    let mut body = req.stream().map_err(|_| unreadable())?;
    let mut ended = false;
    while !ended {
        let chunk = match body.next().await {
            Some(chunk) => chunk.map_err(|_| unreadable())?,
            None => {
                ended = true;
                Vec::new()
            }
        };
        fingerprint.update(&chunk);
        buffer.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(pos) = buffer.get(start..).and_then(|rest| rest.iter().position(|&b| b == b'\n')) {
            let line = buffer.get(start..start + pos).unwrap_or_default();
            line_no += 1;
            take(&mut importer, line, line_no, &mut pending, &mut key_hashes)?;
            start += pos + 1;
        }
        buffer.drain(..start);
        if ended && !buffer.is_empty() {
            line_no += 1;
            let line = std::mem::take(&mut buffer);
            take(&mut importer, &line, line_no, &mut pending, &mut key_hashes)?;
        }
        if buffer.len() > MAX_LINE_BYTES {
            let rule = format!("is longer than {MAX_LINE_BYTES} bytes");
            return Err(LineError { line: line_no + 1, kind: None, field: None, rule }.to_api_error());
        }
        if ended || pending.rows.len() >= IMPORT_BATCH || pending.bytes >= IMPORT_BATCH_BYTES {
            flush(db, workspace_id, &mut pending).await?;
        }
    }
    importer.finish().map_err(|e| e.to_api_error())?;
    Ok(Imported { counts: importer.counts().clone(), fingerprint: fingerprint.finish(), key_hashes })
}

/// One line through the rules; a row joins the pending batch.
fn take(
    importer: &mut Importer,
    line: &[u8],
    line_no: u64,
    pending: &mut Pending,
    key_hashes: &mut Vec<String>,
) -> ApiResult<()> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(Line::Row(row)) = importer.feed(line).map_err(|e| e.to_api_error())? {
        if row.section.kind == "apiKey" {
            let hash = row.values.iter().find(|(c, _)| *c == "key_hash").and_then(|(_, v)| v.as_str());
            if let Some(h) = hash.filter(|h| !h.starts_with(UNUSABLE_HASH)) {
                key_hashes.push(h.to_owned());
            }
        }
        pending.bytes += line.len();
        pending.rows.push((line_no, row));
    }
    Ok(())
}

/// Writes the pending rows in one transaction. A row the database refuses although it passed
/// every rule here is the caller's data too (400 naming the batch's lines), not our failure.
async fn flush(db: &Db, workspace_id: &str, pending: &mut Pending) -> ApiResult<()> {
    if pending.rows.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(pending);
    let (first, last) = (batch.rows.first().map_or(0, |r| r.0), batch.rows.last().map_or(0, |r| r.0));
    let rows: Vec<Row> = batch.rows.into_iter().map(|(_, r)| r).collect();
    match store::write(db, workspace_id, &rows).await {
        Err(ApiError::Internal(detail)) if refused_data(&detail) => Err(LineError {
            line: first,
            kind: None,
            field: None,
            rule: format!("a line from {first} to {last} breaks a constraint of the stored data or is too large"),
        }
        .to_api_error()),
        other => other,
    }
}

/// Whether the database refused the rows themselves (a constraint, a row over its size limit),
/// as opposed to failing.
fn refused_data(detail: &str) -> bool {
    let detail = detail.to_ascii_lowercase();
    ["constraint", "toobig", "too big", "too large"].iter().any(|word| detail.contains(word))
}

// ---------------------------------------------------------------------------------------------
// Settings and erasure
// ---------------------------------------------------------------------------------------------

fn settings_json(s: &workspaces::Settings) -> Value {
    json!({ "id": s.id, "name": s.name, "chatRetentionDays": s.chat_retention_days, "createdAt": to_iso(s.created_at) })
}

/// `GET /api/settings/workspace`.
pub async fn get_settings(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let control = storage::control(&cx.env)?;
    let settings = workspaces::settings(&control, &admin.workspace_id).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    Ok(Reply::ok(settings_json(&settings)))
}

/// `PATCH /api/settings/workspace`: name and chat retention, with an audit entry saying what
/// changed. A retention set is applied by the next run of the Cron Trigger.
pub async fn update_settings(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let patch = WorkspacePatch::try_from(&read_json(req).await?)?;
    let control = storage::control(&cx.env)?;
    let old = workspaces::settings(&control, &admin.workspace_id).await?.ok_or(WORKSPACE_NOT_FOUND)?;
    let db = admin.db(&cx.env)?;
    let name = patch.name.as_deref();
    workspaces::update_settings(&control, &admin.workspace_id, name, patch.chat_retention_days, cx.now).await?;
    if let Some(name) = name {
        store::rename(&db, &admin.workspace_id, name).await?;
    }
    let mut changes = serde_json::Map::new();
    if let Some(name) = name.filter(|n| *n != old.name) {
        changes.insert("name".into(), json!({ "from": old.name, "to": name }));
    }
    if let Some(days) = patch.chat_retention_days.filter(|d| *d != old.chat_retention_days) {
        changes.insert("chatRetentionDays".into(), json!({ "from": old.chat_retention_days, "to": days }));
    }
    if !changes.is_empty() {
        let details = json!({ "changes": changes });
        store::audit(&db, &admin.workspace_id, &admin.name, "workspace.updated", &details, cx.now).await?;
    }
    let now = workspaces::Settings {
        name: name.map_or(old.name.clone(), str::to_owned),
        chat_retention_days: patch.chat_retention_days.unwrap_or(old.chat_retention_days),
        ..old
    };
    Ok(Reply::ok(settings_json(&now)))
}

/// Batches an erasure runs before it answers: 40,000 chats of one viewer.
const ERASURE_MAX_BATCHES: usize = 200;

/// `POST /api/settings/erasure`: every chat made under one embed viewer label goes, with its
/// messages and the idempotency results that would replay it.
pub async fn erase(req: &mut Request, cx: &Cx) -> ApiResult<Reply> {
    let admin = auth::workspace_admin(req, cx).await?;
    let label = lifecycle::erasure_label(&read_json(req).await?)?;
    let db = admin.db(&cx.env)?;
    let mut deleted = 0u64;
    for _ in 0..ERASURE_MAX_BATCHES {
        let erased = store::erase(&db, &admin.workspace_id, &label).await?;
        let n = erased.chat_ids.len();
        deleted += n as u64;
        for hash in &erased.key_hashes {
            if let Err(err) = limiter::forget_chats(&cx.env, hash, erased.chat_ids.clone()).await {
                log_warn(&cx.request_id, "idempotency_results_not_erased", err.log_detail());
            }
        }
        if n < lifecycle::DELETE_BATCH as usize {
            break;
        }
    }
    let details = lifecycle::erasure_details(&label, deleted);
    store::audit(&db, &admin.workspace_id, &admin.name, "chats.erased", &details, cx.now).await?;
    Ok(Reply::ok(json!({ "deletedChats": deleted })))
}
