//! Chats and their messages. The chat turn reads everything it needs in one D1 batch before the
//! LLM call and writes the turn in one batch after it.

use super::Db;
use super::Param;
use serde::Deserialize;

use super::{all, batch, changes, int, keys, knowledge, opt_int, opt_text, rows, stmt, text};
use crate::domain::agent;
use crate::domain::error::{ApiError, ApiResult};
use crate::domain::knowledge::SUMMARY_DEALS;
use crate::domain::llm::{self, Role, Turn};
use crate::domain::time::Millis;
use crate::domain::usage::Counters;

/// History turns read per request at most, whatever the budget.
pub const HISTORY_LIMIT: i64 = 200;

#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: String,
    pub agent_id: Option<String>,
    pub title: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AgentForTurn {
    pub instructions: String,
    pub model: Option<String>,
    /// `None` reads as the `default` provider.
    pub provider: Option<String>,
    /// JSON `[{"provider", "model"}]`, if any.
    pub fallbacks: Option<String>,
    /// As stored: see `domain::knowledge::AgentKnowledge` and `domain::tools`.
    pub knowledge: Option<String>,
    pub tools: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct HistoryRow {
    role: String,
    content: String,
    tool_calls: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct HasRecords {
    has_records: i64,
}

/// Whose turn is loaded: a key's (by its hash, checked in the same round trip), or a
/// workspace's own (an insight's generation).
#[derive(Debug, Clone, Copy)]
pub enum Whose<'a> {
    Key(&'a str),
    Workspace(&'a str),
}

/// Everything one chat turn needs, read in one round trip.
pub struct TurnContext {
    pub key: Option<keys::KeyAuth>,
    pub chat: Option<Chat>,
    pub agent: Option<AgentForTurn>,
    pub history: Vec<Turn>,
    /// Records retrieved for the message, best first.
    pub hits: Vec<knowledge::Hit>,
    /// The pipeline summary (top open deals, per-stage totals), when the message is about it.
    pub pipeline: Option<(Vec<knowledge::Hit>, Vec<knowledge::StageRow>)>,
    /// Whether the workspace holds any record (the default assistant offers tools only then).
    pub has_records: bool,
}

/// What the turn retrieves from the workspace's knowledge, decided from the message before the
/// batch (pure rules in `domain::knowledge`).
pub struct Retrieval {
    /// The full-text query; `None` when the message has no searchable words (then no MATCH
    /// statement is sent: an empty one is a syntax error and would fail the whole batch).
    pub query: Option<String>,
    pub top_k: u32,
    pub pipeline: bool,
}

/// One D1 batch: the key by hash, the chat (if continuing), the agent (the requested one, or
/// the chat's), and the chat's recent history. Every lookup is scoped to the key's workspace
/// inside SQL, so a foreign chat or agent id reads as absent.
///
/// Answers stored as `incomplete` (a stream that was cut off) are left out of the history: the
/// model should not build on half an answer it never finished; the question stays, so the next
/// turn still knows it was asked.
///
/// The history statement returns only the newest messages whose estimated tokens add up to at
/// most `history_budget` (a running sum in a window function, with the same estimate as
/// `domain::llm::estimate_tokens`), so what crosses from D1 grows with the budget, not with the
/// chat. The exact trimming (which also counts the instructions) stays with the caller.
pub async fn load_turn(
    db: &Db,
    whose: Whose<'_>,
    chat_id: Option<&str>,
    agent_id: Option<&str>,
    history_budget: usize,
    retrieval: &Retrieval,
    viewer: Option<&str>,
) -> ApiResult<TurnContext> {
    let (ws, key_hash) = match whose {
        Whose::Key(hash) => ("(SELECT workspace_id FROM api_keys WHERE key_hash = ?1)", hash),
        // No key: `?1` is the workspace, and the key statement finds nothing (no hash is a
        // workspace id).
        Whose::Workspace(id) => ("?1", id),
    };

    // The turn's agent may narrow or switch off its knowledge; the default assistant (no
    // agent) uses every kind.
    let agent_allows = format!(
        "AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.workspace_id = {ws}          AND a.id = COALESCE(?3, (SELECT agent_id FROM chats WHERE id = ?2 AND workspace_id = {ws}))          AND (json_extract(a.knowledge, '$.enabled') = 0 OR (json_type(a.knowledge, '$.kinds') = 'array'          AND r.kind NOT IN (SELECT value FROM json_each(a.knowledge, '$.kinds')))))"
    );
    // An embed token's viewer (`?8`, its `user` label) sees only the chats made with tokens of
    // the same key and label.
    let chat_sql = format!(
        "SELECT id, agent_id, title, created_at, updated_at FROM chats WHERE id = ?2 AND workspace_id = {ws} \
         AND (?8 IS NULL OR (embed_key_id = (SELECT id FROM api_keys WHERE key_hash = ?1) AND embed_user = ?8))"
    );
    let agent_sql = format!(
        "SELECT instructions, model, provider, fallbacks, knowledge, tools FROM agents WHERE workspace_id = {ws} \
         AND id = COALESCE(?3, (SELECT agent_id FROM chats WHERE id = ?2 AND workspace_id = {ws}))"
    );
    // Newest first, at most HISTORY_LIMIT rows (through the (chat_id, seq) index) before the
    // running sum, so the window never walks a long chat's whole history.
    let history_sql = format!(
        "SELECT role, content, tool_calls FROM (SELECT seq, role, content, tool_calls, \
         SUM((length(content) + 3) / 4 + {PER_MESSAGE}) OVER (ORDER BY seq DESC) AS used \
         FROM (SELECT seq, role, content, tool_calls FROM messages \
         WHERE chat_id = (SELECT id FROM chats WHERE id = ?2 AND workspace_id = {ws}) AND status = 'complete' \
         ORDER BY seq DESC LIMIT ?4)) WHERE used <= ?5 ORDER BY seq",
        PER_MESSAGE = llm::PER_MESSAGE_TOKENS
    );
    let budget = i64::try_from(history_budget).unwrap_or(i64::MAX / 2);
    let p = [
        text(key_hash),
        opt_text(chat_id),
        opt_text(agent_id),
        int(HISTORY_LIMIT),
        int(budget),
        opt_text(retrieval.query.as_deref()),
        int(i64::from(retrieval.top_k)),
        opt_text(viewer),
    ];
    let mut statements = vec![
        stmt(db, keys::AUTH_SQL, &p[..1])?,
        stmt(db, &chat_sql, &p)?,
        stmt(db, &agent_sql, &p[..3])?,
        stmt(db, &history_sql, &p[..5])?,
        stmt(
            db,
            &format!("SELECT EXISTS (SELECT 1 FROM knowledge_records WHERE workspace_id = {ws}) AS has_records"),
            &p[..1],
        )?,
    ];
    if retrieval.query.is_some() {
        statements.push(stmt(db, &knowledge::search_sql(ws, "?6", "?7", &agent_allows), &p[..7])?);
    }
    if retrieval.pipeline {
        let (deals, stages) = knowledge::pipeline_sql(ws, &SUMMARY_DEALS.to_string(), &agent_allows);
        statements.push(stmt(db, &deals, &p[..3])?);
        statements.push(stmt(db, &stages, &p[..3])?);
    }
    let results = batch(db, statements).await?;
    let (Some(key), Some(chat), Some(agent), Some(history), Some(has_records)) =
        (results.first(), results.get(1), results.get(2), results.get(3), results.get(4))
    else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    let mut rest = results.get(5..).unwrap_or_default().iter();
    let hits = match retrieval.query {
        Some(_) => rest.next().map(rows::<knowledge::Hit>).transpose()?.unwrap_or_default(),
        None => Vec::new(),
    };
    let pipeline = match (retrieval.pipeline, rest.next(), rest.next()) {
        (true, Some(deals), Some(stages)) => Some((rows(deals)?, rows(stages)?)),
        _ => None,
    };
    let history = rows::<HistoryRow>(history)?
        .into_iter()
        .filter_map(|r| {
            let exchange = agent::exchange(&agent::traces_from_stored(r.tool_calls.as_deref()));
            Role::parse(&r.role).map(|role| Turn { exchange, ..Turn::new(role, r.content) })
        })
        .collect();
    let has_records = rows::<HasRecords>(has_records)?.first().is_some_and(|r| r.has_records != 0);
    Ok(TurnContext {
        key: rows(key)?.into_iter().next(),
        chat: rows(chat)?.into_iter().next(),
        agent: rows(agent)?.into_iter().next(),
        history,
        hits,
        pipeline,
        has_records,
    })
}

/// One finished turn to store.
pub struct NewTurn<'a> {
    pub workspace_id: &'a str,
    pub chat_id: &'a str,
    /// `Some` when the chat is new: it is created in the same transaction as its first turn,
    /// so a failed first call leaves no empty chat behind.
    pub new_chat: Option<(&'a str, Option<&'a str>)>, // (title, agent_id)
    /// `(key id, user label)` when the chat is made with an embed token (see [`Viewer`]).
    pub embed: Option<(&'a str, &'a str)>,
    pub user_message_id: &'a str,
    pub user_content: &'a str,
    pub assistant_message_id: &'a str,
    pub assistant_content: &'a str,
    pub model: &'a str,
    /// The provider that answered, and how many targets the turn tried.
    pub provider: &'a str,
    pub attempts: u32,
    /// `complete`, or `incomplete` for a streamed answer the provider did not finish.
    pub status: &'a str,
    pub finish_reason: Option<&'a str>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The token counts are our estimate (the provider sent none).
    pub usage_estimated: bool,
    /// The sources the answer was given, with their `cited` flags (JSON), if any.
    pub sources: Option<&'a str>,
    /// The tools the answer called (JSON, see `domain::agent::Trace`), if any.
    pub tool_calls: Option<&'a str>,
    pub latency_ms: i64,
    pub started_at: Millis,
    pub finished_at: Millis,
    /// The turn's line in the usage ledger, written in the same batch.
    pub ledger: Option<Ledger<'a>>,
}

pub struct Ledger<'a> {
    pub key_hash: &'a str,
    pub day: &'a str,
    pub counters: Counters,
}

/// Writes the user message, the assistant message and the chat's `updated_at` in one batch
/// (one transaction). `seq` is computed inside the batch, so concurrent turns on one chat get
/// distinct, adjacent positions. Returns `false` when the chat vanished meanwhile (deleted).
pub async fn save_turn(db: &Db, t: &NewTurn<'_>) -> ApiResult<bool> {
    let mut statements = Vec::with_capacity(5);
    if let Some((title, agent_id)) = t.new_chat {
        let sql =
            "INSERT INTO chats (id, workspace_id, agent_id, title, created_at, updated_at, embed_key_id, embed_user) \
                   VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)";
        statements.push(stmt(
            db,
            sql,
            &[
                text(t.chat_id),
                text(t.workspace_id),
                opt_text(agent_id),
                text(title),
                int(t.started_at),
                opt_text(t.embed.map(|(key, _)| key)),
                opt_text(t.embed.map(|(_, user)| user)),
            ],
        )?);
    }
    let insert = "INSERT INTO messages (id, chat_id, seq, role, content, model, prompt_tokens, completion_tokens, \
                  latency_ms, created_at, status, finish_reason, usage_estimated, sources, tool_calls, provider, attempts) \
                  SELECT ?1, id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE chat_id = ?2), ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                  ?11, ?12, ?13, ?14, ?15, ?16, ?17 FROM chats WHERE id = ?2 AND workspace_id = ?10";
    let tokens = |n: Option<u64>| opt_int(n.and_then(|n| i64::try_from(n).ok()));
    statements.push(stmt(
        db,
        insert,
        &[
            text(t.user_message_id),
            text(t.chat_id),
            text(Role::User.as_str()),
            text(t.user_content),
            opt_text(None),
            opt_int(None),
            opt_int(None),
            opt_int(None),
            int(t.started_at),
            text(t.workspace_id),
            text("complete"),
            opt_text(None),
            int(0),
            opt_text(None),
            opt_text(None),
            opt_text(None),
            opt_int(None),
        ],
    )?);
    statements.push(stmt(
        db,
        insert,
        &[
            text(t.assistant_message_id),
            text(t.chat_id),
            text(Role::Assistant.as_str()),
            text(t.assistant_content),
            text(t.model),
            tokens(t.prompt_tokens),
            tokens(t.completion_tokens),
            int(t.latency_ms),
            int(t.finished_at),
            text(t.workspace_id),
            text(t.status),
            opt_text(t.finish_reason),
            int(i64::from(t.usage_estimated)),
            opt_text(t.sources),
            opt_text(t.tool_calls),
            text(t.provider),
            int(i64::from(t.attempts)),
        ],
    )?);
    if let Some(l) = &t.ledger {
        // Only if the chat still exists: a turn whose chat was deleted meanwhile is answered
        // 404 and counted as that.
        statements.push(super::usage::count_stmt(db, l.key_hash, l.day, &l.counters, Some(t.chat_id))?);
    }
    statements.push(stmt(
        db,
        "UPDATE chats SET updated_at = MAX(updated_at, ?1) WHERE id = ?2 AND workspace_id = ?3",
        &[int(t.finished_at), text(t.chat_id), text(t.workspace_id)],
    )?);
    let results = batch(db, statements).await?;
    match results.last() {
        Some(r) => Ok(changes(r)? > 0),
        None => Ok(false),
    }
}

/// The condition of a scoped key, whose parameter `?n` is the JSON list of agent ids it may see
/// the chats of (`NULL` for all), and of an embed token's viewer (`?n+1`: the key's id,
/// `?n+2`: the label; `NULL`: not a token), who sees only the chats made with tokens of the
/// same key and label.
fn in_scope(n: u8) -> String {
    let (k, u) = (n + 1, n + 2);
    format!(
        "(?{n} IS NULL OR agent_id IN (SELECT value FROM json_each(?{n}))) \
         AND (?{k} IS NULL OR (embed_key_id = ?{k} AND embed_user = ?{u}))"
    )
}

/// Who reads chats: a key (within its agent scope) or an embed token's viewer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Viewer<'a> {
    /// The agents' JSON list, or `None` for all.
    pub scope: Option<&'a str>,
    /// `(key id, user label)` of an embed token.
    pub embed: Option<(&'a str, &'a str)>,
}

impl Viewer<'_> {
    fn params(&self) -> [Param; 3] {
        [opt_text(self.scope), opt_text(self.embed.map(|(k, _)| k)), opt_text(self.embed.map(|(_, u)| u))]
    }
}

pub async fn list(
    db: &Db,
    workspace_id: &str,
    viewer: Viewer<'_>,
    limit: u32,
    after: Option<(Millis, String)>,
) -> ApiResult<Vec<Chat>> {
    let (at, id) = after.unwrap_or((i64::MAX / 2, String::new()));
    let use_cursor = !id.is_empty();
    let sql = format!(
        "SELECT id, agent_id, title, created_at, updated_at FROM chats WHERE workspace_id = ?1 \
         AND (?4 = 0 OR updated_at < ?2 OR (updated_at = ?2 AND id < ?3)) AND {} \
         ORDER BY updated_at DESC, id DESC LIMIT ?5",
        in_scope(6)
    );
    let [scope, key, user] = viewer.params();
    let p =
        [text(workspace_id), int(at), text(&id), int(i64::from(use_cursor)), int(i64::from(limit)), scope, key, user];
    all(stmt(db, &sql, &p)?).await
}

#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub id: String,
    pub role: String,
    pub content: String,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub latency_ms: Option<i64>,
    pub created_at: Millis,
    pub status: String,
    pub finish_reason: Option<String>,
    pub usage_estimated: i64,
    pub sources: Option<String>,
    pub tool_calls: Option<String>,
    pub provider: Option<String>,
    pub attempts: Option<i64>,
}

pub async fn get(
    db: &Db,
    workspace_id: &str,
    viewer: Viewer<'_>,
    chat_id: &str,
) -> ApiResult<Option<(Chat, Vec<Message>)>> {
    let scoped = in_scope(3);
    let chat_sql = format!(
        "SELECT id, agent_id, title, created_at, updated_at FROM chats WHERE id = ?1 AND workspace_id = ?2 AND {scoped}"
    );
    let msg_sql = format!(
        "SELECT m.id, m.role, m.content, m.model, m.prompt_tokens, m.completion_tokens, m.latency_ms, m.created_at, \
         m.status, m.finish_reason, m.usage_estimated, m.sources, m.tool_calls, m.provider, m.attempts FROM messages m \
         WHERE m.chat_id = (SELECT id FROM chats WHERE id = ?1 AND workspace_id = ?2 AND {scoped}) ORDER BY m.seq"
    );
    let [scope, key, user] = viewer.params();
    let p = [text(chat_id), text(workspace_id), scope, key, user];
    let results = batch(db, vec![stmt(db, &chat_sql, &p)?, stmt(db, &msg_sql, &p)?]).await?;
    let [chat, messages] = results.as_slice() else {
        return Err(ApiError::internal("D1 batch returned the wrong number of results"));
    };
    match rows::<Chat>(chat)?.into_iter().next() {
        Some(c) => Ok(Some((c, rows(messages)?))),
        None => Ok(None),
    }
}

pub async fn delete(db: &Db, workspace_id: &str, viewer: Viewer<'_>, chat_id: &str) -> ApiResult<bool> {
    let sql = format!("DELETE FROM chats WHERE id = ?1 AND workspace_id = ?2 AND {}", in_scope(3));
    let [scope, key, user] = viewer.params();
    let p = [text(chat_id), text(workspace_id), scope, key, user];
    let result = super::run(stmt(db, &sql, &p)?).await?;
    Ok(changes(&result)? > 0)
}
