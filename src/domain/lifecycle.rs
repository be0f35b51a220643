//! A workspace's data over its life: the export format (NDJSON, version 1) and reading it
//! back line by line with every rule checked, the workspace settings (retention), and the
//! erasure of one viewer's chats.
//!
//! The format is described once, as [`SECTIONS`]: each type of line, its table and its fields
//! with their column and kind. Storage builds its paged reads and its inserts from the same
//! description, so export and import cannot drift apart.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::knowledge;
use super::settings::NAME;
use super::time::{self, Millis};
use super::validate::{self, Object, Text};

pub const VERSION: i64 = 1;
pub const CONTENT_TYPE: &str = "application/x-ndjson";
/// Rows per read of an export: 150,000 rows are 300 round trips, well inside a request's
/// subrequest limit, and a page of long messages stays a few MB.
pub const EXPORT_PAGE: i64 = 500;
/// Rows per write of an import (one transaction each), or fewer once [`IMPORT_BATCH_BYTES`]
/// of lines are waiting.
pub const IMPORT_BATCH: usize = 200;
pub const IMPORT_BATCH_BYTES: usize = 1024 * 1024;
/// The longest line an import reads (a record's body is at most 32,000 characters, a message
/// is far below this).
pub const MAX_LINE_BYTES: usize = 2 * 1024 * 1024;
pub const NOT_EMPTY: &str = "Workspace is not empty";
pub const INVALID_IMPORT: &str = "Invalid import";

/// How a field is stored and shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    /// A whole number ≥ 0.
    Int,
    /// A finite number ≥ 0.
    Real,
    /// Epoch milliseconds in storage, ISO 8601 in the export.
    Time,
    /// JSON text in storage, the JSON value itself in the export.
    Json,
    /// 0/1 in storage.
    Bool,
    /// `YYYY-MM-DD`.
    Day,
}

#[derive(Debug, PartialEq)]
pub struct Field {
    /// The name in the export (camelCase, as the API shows it).
    pub name: &'static str,
    pub column: &'static str,
    pub kind: Kind,
    pub presence: Presence,
    /// For text: the longest value, in characters; or the values allowed.
    pub rule: Rule,
}

/// Whether a line must carry a field, and what an absent one stands for. An export always
/// carries every field; the defaults are for exports written by hand or by other tools.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Presence {
    Optional,
    Required,
    Default(Fallback),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fallback {
    Zero,
    False,
    Text(&'static str),
    /// The time of the import.
    Now,
    /// The value of an earlier field of the same line (`updatedAt` ← `createdAt`).
    Field(&'static str),
    /// A message's place in its chat: after the chat's messages so far.
    NextSeq,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    None,
    MaxChars(usize),
    OneOf(&'static [&'static str]),
    /// JSON: a list.
    List,
    /// JSON: an object.
    Object,
}

/// Which rows of a workspace a section reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Rows with the workspace's `workspace_id`.
    Workspace,
    /// Messages: rows of the workspace's chats (they carry no `workspace_id`).
    Chats,
}

#[derive(Debug, PartialEq)]
pub struct Section {
    /// The line's `type`.
    pub kind: &'static str,
    pub table: &'static str,
    pub scope: Scope,
    pub fields: &'static [Field],
    /// Fields that together identify a row (no two lines may repeat them).
    pub identity: &'static [&'static [&'static str]],
}

const ID: usize = 200;
const SHORT: usize = 1_000;
/// The longest text of one field. A row the database finds too large (over 2 MB) is refused
/// with its lines, as a constraint is.
const LONG: usize = 1_000_000;

const REQUIRED: Presence = Presence::Required;
const OPTIONAL: Presence = Presence::Optional;
const ZERO: Presence = Presence::Default(Fallback::Zero);
const FALSE: Presence = Presence::Default(Fallback::False);

const fn f(name: &'static str, column: &'static str, kind: Kind, presence: Presence, rule: Rule) -> Field {
    Field { name, column, kind, presence, rule }
}
const fn text(name: &'static str, column: &'static str, max: usize) -> Field {
    f(name, column, Kind::Text, OPTIONAL, Rule::MaxChars(max))
}
const fn req_text(name: &'static str, column: &'static str, max: usize) -> Field {
    f(name, column, Kind::Text, REQUIRED, Rule::MaxChars(max))
}
/// Text that stands for `fallback` when absent.
const fn text_or(name: &'static str, column: &'static str, max: usize, fallback: &'static str) -> Field {
    f(name, column, Kind::Text, Presence::Default(Fallback::Text(fallback)), Rule::MaxChars(max))
}
const fn int(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Int, OPTIONAL, Rule::None)
}
const fn req_int(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Int, REQUIRED, Rule::None)
}
/// A counter: 0 when absent.
const fn count(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Int, ZERO, Rule::None)
}
const fn at(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Time, OPTIONAL, Rule::None)
}
/// `createdAt`: the import's time when absent.
const fn created() -> Field {
    f("createdAt", "created_at", Kind::Time, Presence::Default(Fallback::Now), Rule::None)
}
/// `updatedAt`: the line's `createdAt` when absent.
const fn updated() -> Field {
    f("updatedAt", "updated_at", Kind::Time, Presence::Default(Fallback::Field("createdAt")), Rule::None)
}
/// JSON stored as text: a list.
const fn list(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Json, OPTIONAL, Rule::List)
}
/// JSON stored as text: an object.
const fn object(name: &'static str, column: &'static str) -> Field {
    f(name, column, Kind::Json, OPTIONAL, Rule::Object)
}

/// The hash of an API key, in the operator's backup only.
pub const KEY_HASH: &str = "keyHash";

/// Every type of line, parents before children: the order an export writes them in.
pub const SECTIONS: &[Section] = &[
    Section {
        kind: "agent",
        table: "agents",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "id", ID),
            req_text("name", "name", SHORT),
            req_text("instructions", "instructions", LONG),
            text("model", "model", SHORT),
            text("provider", "provider", SHORT),
            list("fallbacks", "fallbacks"),
            object("knowledge", "knowledge"),
            list("tools", "tools"),
            created(),
            updated(),
        ],
        identity: &[&["id"]],
    },
    Section {
        kind: "apiKey",
        table: "api_keys",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "id", ID),
            req_text("name", "name", SHORT),
            req_text("prefix", "prefix", ID),
            text("createdByAdminId", "created_by_admin_id", ID),
            text_or("createdByName", "created_by_name", SHORT, "(imported)"),
            created(),
            at("expiresAt", "expires_at"),
            int("rateLimitPerMinute", "rate_limit_per_minute"),
            list("allowedAgentIds", "allowed_agent_ids"),
            text("rolledFrom", "rolled_from", ID),
            text("rolledTo", "rolled_to", ID),
            text(KEY_HASH, "key_hash", 64),
        ],
        identity: &[&["id"], &[KEY_HASH]],
    },
    Section {
        kind: "record",
        table: "knowledge_records",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "public_id", ID),
            req_text("kind", "kind", SHORT),
            req_text("externalId", "external_id", SHORT),
            req_text("title", "title", SHORT),
            text("body", "body", LONG),
            text("url", "url", SHORT * 4),
            text("source", "source", SHORT),
            text("accountName", "account_name", SHORT),
            f("amount", "amount", Kind::Real, OPTIONAL, Rule::None),
            text("currency", "currency", SHORT),
            text("stage", "stage", SHORT),
            text("status", "status", SHORT),
            text("closeDate", "close_date", SHORT),
            text("owner", "owner", SHORT),
            object("properties", "properties"),
            at("sourceUpdatedAt", "source_updated_at"),
            created(),
            updated(),
        ],
        identity: &[&["id"], &["kind", "externalId"]],
    },
    Section {
        kind: "chat",
        table: "chats",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "id", ID),
            text("agentId", "agent_id", ID),
            text_or("title", "title", LONG, ""),
            created(),
            updated(),
            text("embedKeyId", "embed_key_id", ID),
            text("embedUser", "embed_user", SHORT),
        ],
        identity: &[&["id"]],
    },
    Section {
        kind: "message",
        table: "messages",
        scope: Scope::Chats,
        fields: &[
            req_text("id", "id", ID),
            req_text("chatId", "chat_id", ID),
            f("seq", "seq", Kind::Int, Presence::Default(Fallback::NextSeq), Rule::None),
            f("role", "role", Kind::Text, REQUIRED, Rule::OneOf(&["user", "assistant"])),
            req_text("content", "content", LONG),
            text("model", "model", SHORT),
            int("promptTokens", "prompt_tokens"),
            int("completionTokens", "completion_tokens"),
            int("latencyMs", "latency_ms"),
            created(),
            f(
                "status",
                "status",
                Kind::Text,
                Presence::Default(Fallback::Text("complete")),
                Rule::OneOf(&["complete", "incomplete"]),
            ),
            text("finishReason", "finish_reason", SHORT),
            f("usageEstimated", "usage_estimated", Kind::Bool, FALSE, Rule::None),
            list("sources", "sources"),
            list("toolCalls", "tool_calls"),
            text("provider", "provider", SHORT),
            int("attempts", "attempts"),
        ],
        identity: &[&["id"], &["chatId", "seq"]],
    },
    Section {
        kind: "insight",
        table: "insights",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "id", ID),
            req_text("name", "name", SHORT),
            req_text("prompt", "prompt", LONG),
            text("agentId", "agent_id", ID),
            req_int("refreshSeconds", "refresh_seconds"),
            text("answer", "answer", LONG),
            list("sources", "sources"),
            text("etag", "etag", SHORT),
            text("model", "model", SHORT),
            text("provider", "provider", SHORT),
            at("generatedAt", "generated_at"),
            f("nextRefreshAt", "next_refresh_at", Kind::Time, Presence::Default(Fallback::Now), Rule::None),
            count("failures", "failures"),
            f("outdated", "outdated", Kind::Bool, FALSE, Rule::None),
            text("lastErrorCode", "last_error_code", SHORT),
            at("lastErrorAt", "last_error_at"),
            int("promptTokens", "prompt_tokens"),
            int("completionTokens", "completion_tokens"),
            created(),
            updated(),
        ],
        identity: &[&["id"]],
    },
    Section {
        kind: "usageDay",
        table: "usage_daily",
        scope: Scope::Workspace,
        fields: &[
            req_text("keyId", "key_id", ID),
            f("day", "day", Kind::Day, REQUIRED, Rule::None),
            text_or("keyName", "key_name", SHORT, ""),
            text_or("keyPrefix", "key_prefix", ID, ""),
            count("requests", "requests"),
            count("errors", "errors"),
            count("rateLimited", "rate_limited"),
            count("promptTokens", "prompt_tokens"),
            count("completionTokens", "completion_tokens"),
            count("llmMs", "llm_ms"),
        ],
        identity: &[&["keyId", "day"]],
    },
    Section {
        kind: "auditEntry",
        table: "audit_log",
        scope: Scope::Workspace,
        fields: &[
            req_text("id", "id", ID),
            req_text("actor", "actor", SHORT),
            req_text("action", "action", SHORT),
            req_text("target", "target", SHORT),
            text("targetName", "target_name", SHORT),
            text("targetPrefix", "target_prefix", ID),
            created(),
            object("details", "details"),
        ],
        identity: &[&["id"]],
    },
];

/// The section of a line's `type`.
pub fn section(kind: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.kind == kind)
}

impl Section {
    /// The fields an export of this kind shows: the key hash only in an operator's backup.
    pub fn exported(&self, with_hashes: bool) -> impl Iterator<Item = &'static Field> + '_ {
        self.fields.iter().filter(move |f| with_hashes || f.name != KEY_HASH)
    }
}

/// Counts of lines by type, every type present (0 when none), in [`SECTIONS`] order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counts(BTreeMap<&'static str, u64>);

impl Counts {
    pub fn add(&mut self, kind: &'static str, n: u64) {
        *self.0.entry(kind).or_insert(0) += n;
    }

    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).copied().unwrap_or(0)
    }

    pub fn to_json(&self) -> Value {
        Value::Object(SECTIONS.iter().map(|s| (s.kind.to_owned(), Value::from(self.get(s.kind)))).collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Writing an export
// ---------------------------------------------------------------------------------------------

/// The first line.
pub fn header_line(workspace_id: &str, exported_at: Millis) -> String {
    let rest = json!({ "version": VERSION, "workspaceId": workspace_id, "exportedAt": time::to_iso(exported_at) });
    typed("export", &rest)
}

/// The last line: without it an export is incomplete.
pub fn end_line(counts: &Counts) -> String {
    typed("end", &json!({ "counts": counts.to_json() }))
}

/// `{"type": kind, …fields}` and a newline: `type` first, so a reader can tell a line's kind
/// from its first bytes.
fn typed(kind: &str, fields: &Value) -> String {
    let rest = fields.to_string();
    let rest = rest.strip_prefix('{').unwrap_or(&rest);
    let comma = if rest == "}" { "" } else { "," };
    format!("{{\"type\":{}{comma}{rest}\n", Value::from(kind))
}

/// One stored row (columns named by the export's field names, as storage selects them) as a
/// line of `section`, `type` first.
pub fn row_line(section: &Section, row: &Map<String, Value>, with_hashes: bool) -> String {
    let mut out = String::with_capacity(256);
    out.push_str("{\"type\":");
    out.push_str(&Value::from(section.kind).to_string());
    for field in section.exported(with_hashes) {
        let value = row.get(field.name).unwrap_or(&Value::Null);
        // A key restored without its hash has none to back up.
        let unusable = field.name == KEY_HASH && value.as_str().is_some_and(|h| h.starts_with(UNUSABLE_HASH));
        let value = if unusable { &Value::Null } else { value };
        out.push(',');
        out.push_str(&Value::from(field.name).to_string());
        out.push(':');
        out.push_str(&shown(field.kind, value).to_string());
    }
    out.push_str("}\n");
    out
}

/// A stored value as the export shows it.
fn shown(kind: Kind, value: &Value) -> Value {
    match (kind, value) {
        (Kind::Time, Value::Number(n)) => n.as_i64().map_or(Value::Null, |ms| Value::from(time::to_iso(ms))),
        // Stored JSON is ours; should one ever not parse, it is shown as the text it is.
        (Kind::Json, Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| value.clone()),
        (Kind::Bool, Value::Number(n)) => Value::Bool(n.as_f64().is_some_and(|x| x != 0.0)),
        // Local runtimes hand whole numbers back as floats.
        (Kind::Int, Value::Number(n)) => {
            n.as_f64().filter(|x| x.fract() == 0.0).map_or(value.clone(), |x| json!(x as i64))
        }
        _ => value.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading one back
// ---------------------------------------------------------------------------------------------

/// A broken rule of one line: 400 `Invalid import` with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub kind: Option<&'static str>,
    pub field: Option<String>,
    pub rule: String,
}

impl LineError {
    fn new(line: u64, rule: impl Into<String>) -> Self {
        Self { line, kind: None, field: None, rule: rule.into() }
    }

    pub fn to_api_error(&self) -> ApiError {
        let mut details = json!({ "line": self.line, "rule": self.rule });
        if let Some(kind) = self.kind {
            details["type"] = json!(kind);
        }
        if let Some(field) = &self.field {
            details["field"] = json!(field);
        }
        ApiError::bad_request(INVALID_IMPORT, Some(details))
    }
}

/// One row to insert: its section and its column values in the section's field order (a
/// record's normalised by the knowledge rules, plus its content hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub section: &'static Section,
    pub values: Vec<(&'static str, Value)>,
}

/// What a line was.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    Header { workspace_id: String },
    Row(Row),
    End,
}

/// Reads an export line by line, keeping what the rules across lines need: the ids seen (no
/// row twice, children after their parents) and the counts the end line must match.
#[derive(Debug, Default)]
pub struct Importer {
    line: u64,
    started: bool,
    ended: bool,
    counts: Counts,
    seen: HashSet<(usize, String)>,
    /// The chats seen so far, with how many messages each has had.
    chats: HashMap<String, i64>,
    /// When the import runs: bounds a record's `sourceUpdatedAt` as the records API does.
    now: Millis,
}

impl Importer {
    pub fn new(now: Millis) -> Self {
        Self { now, ..Self::default() }
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// The next line (without its newline). Blank lines are skipped.
    ///
    /// # Errors
    /// The first rule the line breaks.
    pub fn feed(&mut self, raw: &[u8]) -> Result<Option<Line>, LineError> {
        self.line += 1;
        let n = self.line;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        if self.ended {
            return Err(LineError::new(n, "nothing may follow the end line"));
        }
        let value: Value =
            serde_json::from_slice(raw).map_err(|_| LineError::new(n, "must be one JSON object per line"))?;
        let Value::Object(obj) = value else {
            return Err(LineError::new(n, "must be one JSON object per line"));
        };
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
        if !self.started {
            if kind != "export" {
                return Err(LineError::new(n, "the first line must be the export's header (type \"export\")"));
            }
            if obj.get("version").and_then(Value::as_i64) != Some(VERSION) {
                return Err(LineError {
                    field: Some("version".into()),
                    ..LineError::new(n, format!("must be {VERSION} (the only version this service reads)"))
                });
            }
            self.started = true;
            let workspace_id = obj.get("workspaceId").and_then(Value::as_str).unwrap_or_default().to_owned();
            return Ok(Some(Line::Header { workspace_id }));
        }
        if kind == "end" {
            self.check_counts(&obj)?;
            self.ended = true;
            return Ok(Some(Line::End));
        }
        let Some((index, section)) = SECTIONS.iter().enumerate().find(|(_, s)| s.kind == kind) else {
            let kinds: Vec<&str> = SECTIONS.iter().map(|s| s.kind).collect();
            return Err(LineError {
                field: Some("type".into()),
                ..LineError::new(n, format!("must be one of {}, or end", kinds.join(", ")))
            });
        };
        let fail = |field: &str, rule: String| LineError {
            line: n,
            kind: Some(section.kind),
            field: Some(field.to_owned()),
            rule,
        };
        let mut next_seq = 1;
        if section.scope == Scope::Chats {
            let chat = obj.get("chatId").and_then(Value::as_str).unwrap_or_default();
            let Some(messages) = self.chats.get_mut(chat) else {
                return Err(fail("chatId", "must name a chat on an earlier line".into()));
            };
            *messages += 1;
            next_seq = *messages;
        }
        let row = parse_row(section, &obj, self.now, next_seq).map_err(|(field, rule)| fail(&field, rule))?;
        for identity in section.identity {
            let parts: Vec<String> = identity
                .iter()
                .filter_map(|name| {
                    let field = section.fields.iter().find(|f| f.name == *name)?;
                    row.values.iter().find(|(c, _)| *c == field.column).map(|(_, v)| v.to_string())
                })
                .collect();
            if parts.len() != identity.len() || parts.iter().any(|p| p == "null") {
                continue;
            }
            if !self.seen.insert((index, parts.join("\u{1f}"))) {
                return Err(fail(identity.join("+").as_str(), format!("repeats an earlier {}", section.kind)));
            }
        }
        if section.kind == "chat" {
            self.chats.insert(obj.get("id").and_then(Value::as_str).unwrap_or_default().to_owned(), 0);
        }
        self.counts.add(section.kind, 1);
        Ok(Some(Line::Row(row)))
    }

    /// After the body: an export without its end line is incomplete.
    ///
    /// # Errors
    /// No header, or no end line.
    pub fn finish(&self) -> Result<(), LineError> {
        if !self.started {
            return Err(LineError::new(1, "the body is empty; an export starts with its header line"));
        }
        if !self.ended {
            return Err(LineError::new(
                self.line + 1,
                "the export ends without its end line: it is incomplete (was the download cut off?)",
            ));
        }
        Ok(())
    }

    fn check_counts(&self, obj: &Object) -> Result<(), LineError> {
        let n = self.line;
        let counts = obj.get("counts").and_then(Value::as_object);
        let wrong = |rule: String| LineError { field: Some("counts".into()), ..LineError::new(n, rule) };
        let Some(counts) = counts else {
            return Err(wrong("must be an object of counts by type".into()));
        };
        for s in SECTIONS {
            let said = counts.get(s.kind).and_then(Value::as_u64).unwrap_or(0);
            let got = self.counts.get(s.kind);
            if said != got {
                return Err(wrong(format!("say {said} {} lines but the export has {got}", s.kind)));
            }
        }
        Ok(())
    }
}

/// The values of one line of `section`, checked field by field.
fn parse_row(section: &'static Section, obj: &Object, now: Millis, next_seq: i64) -> Result<Row, (String, String)> {
    if let Some(unknown) = obj.keys().find(|k| *k != "type" && !section.fields.iter().any(|f| f.name == k.as_str())) {
        return Err((unknown.clone(), format!("is not a field of {}", section.kind)));
    }
    let mut values = Vec::with_capacity(section.fields.len() + 1);
    for field in section.fields {
        let given = obj.get(field.name).filter(|v| !v.is_null());
        let value = match (given, field.presence) {
            (None, Presence::Optional) => Value::Null,
            (None, Presence::Required) => return Err((field.name.to_owned(), "is required".into())),
            (None, Presence::Default(fallback)) => match fallback {
                Fallback::Zero | Fallback::False => Value::from(0),
                Fallback::Text(t) => Value::from(t),
                Fallback::Now => Value::from(now),
                Fallback::NextSeq => Value::from(next_seq),
                Fallback::Field(name) => {
                    let column = section.fields.iter().find(|f| f.name == name).map_or("", |f| f.column);
                    values.iter().find(|(c, _)| *c == column).map_or(Value::Null, |(_, v): &(&str, Value)| v.clone())
                }
            },
            (Some(v), _) => field_value(field, v).map_err(|rule| (field.name.to_owned(), rule))?,
        };
        values.push((field.column, value));
    }
    match section.kind {
        "record" => normalise_record(obj, now, &mut values)?,
        "apiKey" => key_hash(&mut values)?,
        _ => {}
    }
    Ok(Row { section, values })
}

/// A record is checked by the records API's own rules, and stored as that API would store it
/// (normalised, with its content hash).
fn normalise_record(
    obj: &Object,
    now: Millis,
    values: &mut Vec<(&'static str, Value)>,
) -> Result<(), (String, String)> {
    let record = knowledge::parse_one(&Value::Object(obj.clone()), now).map_err(|e| (e.field.to_owned(), e.rule))?;
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::from);
    let normalised = [
        ("kind", Value::from(record.kind.as_str())),
        ("external_id", Value::from(record.external_id.clone())),
        ("title", Value::from(record.title.clone())),
        ("body", text(&record.body)),
        ("url", text(&record.url)),
        ("source", text(&record.source)),
        ("account_name", text(&record.account_name)),
        ("amount", record.amount.map_or(Value::Null, Value::from)),
        ("currency", text(&record.currency)),
        ("stage", text(&record.stage)),
        ("status", record.status.map_or(Value::Null, |s| Value::from(s.as_str()))),
        ("close_date", text(&record.close_date)),
        ("owner", text(&record.owner)),
        (
            "properties",
            record.properties.as_ref().map_or(Value::Null, |p| Value::from(Value::Object(p.clone()).to_string())),
        ),
        ("source_updated_at", record.source_updated_at.map_or(Value::Null, Value::from)),
    ];
    for (column, value) in normalised {
        if let Some(slot) = values.iter_mut().find(|(c, _)| *c == column) {
            slot.1 = value;
        }
    }
    values.push(("content_hash", Value::from(record.content_hash())));
    Ok(())
}

/// A key's hash as SHA-256 hex; a key from a workspace admin's export (no hash) is kept as a
/// row that lists but never authenticates: no SHA-256 hex equals its placeholder.
fn key_hash(values: &mut [(&'static str, Value)]) -> Result<(), (String, String)> {
    let id = values.iter().find(|(c, _)| *c == "id").and_then(|(_, v)| v.as_str()).unwrap_or_default().to_owned();
    let Some(slot) = values.iter_mut().find(|(c, _)| *c == "key_hash") else { return Ok(()) };
    match slot.1.as_str() {
        None => slot.1 = Value::from(format!("{UNUSABLE_HASH}{id}")),
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {}
        Some(_) => return Err((KEY_HASH.into(), "must be a SHA-256 hash: 64 lowercase hex digits".into())),
    }
    Ok(())
}

/// The stored hash of a key imported without one.
pub const UNUSABLE_HASH: &str = "none:";

/// One given field's stored value, or the rule it breaks.
fn field_value(field: &Field, value: &Value) -> Result<Value, String> {
    match field.kind {
        Kind::Text => {
            let s = value.as_str().ok_or("must be a string")?;
            match field.rule {
                Rule::MaxChars(max) if s.chars().count() > max => Err(format!("must be at most {max} characters")),
                Rule::OneOf(allowed) if !allowed.contains(&s) => Err(format!("must be one of {}", allowed.join(", "))),
                _ => Ok(Value::from(s)),
            }
        }
        Kind::Int => value
            .as_i64()
            .or_else(|| value.as_f64().filter(|x| x.fract() == 0.0 && x.abs() < 9e15).map(|x| x as i64))
            .filter(|n| *n >= 0)
            .map(Value::from)
            .ok_or_else(|| "must be a whole number, 0 or more".into()),
        Kind::Real => value
            .as_f64()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(Value::from)
            .ok_or_else(|| "must be a number, 0 or more".into()),
        Kind::Time => value
            .as_str()
            .and_then(time::parse_iso)
            .map(Value::from)
            .ok_or_else(|| "must be an ISO 8601 time with its offset, e.g. 2026-12-01T09:30:00.000Z".into()),
        Kind::Json => match field.rule {
            Rule::List if !value.is_array() => Err("must be a list".into()),
            Rule::Object if !value.is_object() => Err("must be an object".into()),
            _ => Ok(Value::from(value.to_string())),
        },
        Kind::Bool => value.as_bool().map(|b| Value::from(i64::from(b))).ok_or_else(|| "must be true or false".into()),
        Kind::Day => value
            .as_str()
            .filter(|s| time::calendar_day(s).is_some())
            .map(Value::from)
            .ok_or_else(|| "must be a day as YYYY-MM-DD".into()),
    }
}

/// SHA-256 (hex) of an import's body, fed as it streams: the same export imported again is
/// recognised and answered with the counts it had, changing nothing.
#[derive(Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

// ---------------------------------------------------------------------------------------------
// Settings: retention, and erasure of one viewer's chats
// ---------------------------------------------------------------------------------------------

pub const RETENTION_MIN_DAYS: i64 = 1;
pub const RETENTION_MAX_DAYS: i64 = 3650;
const DAY_MS: Millis = 86_400_000;
/// Chats deleted per statement by retention and erasure (each with its messages).
pub const DELETE_BATCH: i64 = 200;
/// Batches the scheduled job runs per workspace per tick; a workspace with more left is due
/// again at the next tick.
pub const RETENTION_BATCHES_PER_TICK: u32 = 10;
/// Workspaces the scheduled job sweeps per tick.
pub const RETENTION_WORKSPACES_PER_TICK: u32 = 20;
/// How long after a finished sweep a workspace is looked at again.
pub const RETENTION_RECHECK_MS: Millis = 3_600_000;

/// `PATCH /api/settings/workspace`: what to change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkspacePatch {
    pub name: Option<String>,
    /// `Some(None)`: keep chats forever.
    pub chat_retention_days: Option<Option<i64>>,
}

impl TryFrom<&Object> for WorkspacePatch {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let name = validate::optional_text(obj, "name", NAME)?.map(|n| n.trim().to_owned());
        let retention = if validate::has(obj, "chatRetentionDays") {
            let rule = || {
                ApiError::invalid(
                    "chatRetentionDays",
                    format!(
                        "must be a whole number of days from {RETENTION_MIN_DAYS} to {RETENTION_MAX_DAYS}, or null to keep chats forever"
                    ),
                )
            };
            match obj.get("chatRetentionDays") {
                Some(Value::Null) => Some(None),
                Some(Value::Number(_)) => Some(Some(
                    validate::optional_int(obj, "chatRetentionDays", RETENTION_MIN_DAYS, RETENTION_MAX_DAYS)
                        .map_err(|_| rule())?
                        .ok_or_else(rule)?,
                )),
                _ => return Err(rule()),
            }
        } else {
            None
        };
        let patch = Self { name, chat_retention_days: retention };
        if patch == Self::default() {
            return Err(ApiError::invalid("body", "must set at least one of name, chatRetentionDays"));
        }
        Ok(patch)
    }
}

/// Chats whose last message is before this are past a retention of `days`.
pub fn retention_cutoff(now: Millis, days: i64) -> Millis {
    now.saturating_sub(days.saturating_mul(DAY_MS))
}

/// `POST /api/settings/erasure`: the viewer label whose chats go.
///
/// # Errors
/// 400 when `embedUser` is not a label an embed token could carry.
pub fn erasure_label(obj: &Object) -> ApiResult<String> {
    let rule = "must be the user label given to embed tokens: 1 to 200 printable characters";
    let label = validate::required_text(obj, "embedUser", Text::new(1, 200))
        .map_err(|_| ApiError::invalid("embedUser", rule))?;
    if !label.chars().all(validate::is_printable) {
        return Err(ApiError::invalid("embedUser", rule));
    }
    Ok(label)
}

/// What the audit log keeps of an erasure: how many chats, and not the label (a person's
/// identifier, the very thing being erased) but a short hash an operator can match a request
/// against.
pub fn erasure_details(label: &str, deleted: u64) -> Value {
    let digest = hex::encode(Sha256::digest(label.as_bytes()));
    json!({ "deletedChats": deleted, "embedUserSha256": digest.get(..16).unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_764_800_000_000;

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap()
    }

    fn header() -> Vec<u8> {
        header_line("ws_src", NOW).into_bytes()
    }

    fn chat_line(id: &str) -> String {
        json!({ "type": "chat", "id": id, "title": "Hi", "createdAt": "2026-12-01T00:00:00.000Z",
                "updatedAt": "2026-12-01T00:00:01.000Z", "agentId": null })
        .to_string()
    }

    fn message_line(id: &str, chat: &str, seq: i64) -> String {
        json!({ "type": "message", "id": id, "chatId": chat, "seq": seq, "role": "user", "content": "hello",
                "createdAt": "2026-12-01T00:00:00.000Z", "status": "complete", "usageEstimated": false,
                "toolCalls": [{ "name": "query_records" }] })
        .to_string()
    }

    fn run(lines: &[String]) -> Result<Importer, LineError> {
        let mut imp = Importer::new(NOW);
        imp.feed(&header())?;
        for l in lines {
            imp.feed(l.as_bytes())?;
        }
        imp.finish()?;
        Ok(imp)
    }

    fn end(chats: u64, messages: u64) -> String {
        let mut c = Counts::default();
        c.add("chat", chats);
        c.add("message", messages);
        end_line(&c).trim_end().to_owned()
    }

    #[test]
    fn a_stored_row_round_trips_through_its_line() {
        let section = section("message").unwrap();
        let mut row = Map::new();
        for (k, v) in [
            ("id", json!("msg_1")),
            ("chatId", json!("chat_1")),
            ("seq", json!(2.0)),
            ("role", json!("assistant")),
            ("content", json!("Hi \"there\"\n")),
            ("createdAt", json!(NOW)),
            ("status", json!("incomplete")),
            ("usageEstimated", json!(1)),
            ("toolCalls", json!("[{\"name\":\"query_records\",\"arguments\":{\"limit\":5}}]")),
            ("provider", json!("backup")),
        ] {
            row.insert(k.into(), v);
        }
        let line = row_line(section, &row, false);
        assert!(line.starts_with("{\"type\":\"message\","), "{line}");
        let head: Value = serde_json::from_str(&header_line("ws_1", NOW)).unwrap();
        assert_eq!((head["type"].as_str(), head["version"].as_i64()), (Some("export"), Some(1)));
        assert!(header_line("ws_1", NOW).starts_with("{\"type\":\"export\","));
        assert!(end_line(&Counts::default()).starts_with("{\"type\":\"end\",\"counts\":{"));
        assert!(line.ends_with("}\n"));
        let shown: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(shown["seq"], json!(2));
        assert_eq!(shown["usageEstimated"], json!(true));
        assert_eq!(shown["createdAt"], json!(time::to_iso(NOW)));
        assert_eq!(shown["toolCalls"][0]["arguments"]["limit"], json!(5));
        assert_eq!(shown["model"], Value::Null);

        let mut imp = Importer::new(NOW);
        imp.feed(&header()).unwrap();
        imp.feed(chat_line("chat_1").as_bytes()).unwrap();
        let Some(Line::Row(parsed)) = imp.feed(line.trim_end().as_bytes()).unwrap() else { panic!("a row") };
        let get = |c: &str| parsed.values.iter().find(|(col, _)| *col == c).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("created_at"), json!(NOW));
        assert_eq!(get("usage_estimated"), json!(1));
        assert_eq!(get("seq"), json!(2));
        assert_eq!(get("content"), json!("Hi \"there\"\n"));
        let calls: Value = serde_json::from_str(get("tool_calls").as_str().unwrap()).unwrap();
        assert_eq!(calls[0]["arguments"]["limit"], json!(5));
    }

    #[test]
    fn the_key_hash_is_in_the_operators_backup_only() {
        let s = section("apiKey").unwrap();
        let mut row = Map::new();
        row.insert("keyHash".into(), json!("ab".repeat(32)));
        assert!(!row_line(s, &row, false).contains("keyHash"));
        assert!(row_line(s, &row, true).contains(&"ab".repeat(32)));
        // A key restored without its hash is backed up without one, so the backup restores.
        row.insert("keyHash".into(), json!(format!("{UNUSABLE_HASH}key_1")));
        let line: Value = serde_json::from_str(&row_line(s, &row, true)).unwrap();
        assert_eq!(line["keyHash"], Value::Null);
    }

    #[test]
    fn a_key_without_its_hash_is_kept_unusable() {
        let key = json!({ "type": "apiKey", "id": "key_1", "name": "k", "prefix": "atv2_ab", "createdByName": "Ada",
                          "createdAt": time::to_iso(NOW) });
        let mut imp = Importer::new(NOW);
        imp.feed(&header()).unwrap();
        let Some(Line::Row(row)) = imp.feed(key.to_string().as_bytes()).unwrap() else { panic!("a row") };
        let hash = row.values.iter().find(|(c, _)| *c == "key_hash").map(|(_, v)| v.clone()).unwrap();
        assert_eq!(hash, json!("none:key_1"));
        let mut bad = key.clone();
        bad["id"] = json!("key_2");
        bad["keyHash"] = json!("XYZ");
        assert_eq!(imp.feed(bad.to_string().as_bytes()).unwrap_err().field.as_deref(), Some("keyHash"));
    }

    #[test]
    fn lines_written_by_hand_get_the_defaults_an_export_would_carry() {
        let mut imp = Importer::new(NOW);
        imp.feed(&header()).unwrap();
        let chat = json!({ "type": "chat", "id": "c1", "createdAt": "2025-10-01T00:00:00.000Z" });
        let Some(Line::Row(chat)) = imp.feed(chat.to_string().as_bytes()).unwrap() else { panic!("a row") };
        let get = |row: &Row, c: &str| row.values.iter().find(|(col, _)| *col == c).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get(&chat, "updated_at"), get(&chat, "created_at"));
        assert_eq!(get(&chat, "title"), json!(""));
        for (i, role) in ["user", "assistant"].iter().enumerate() {
            let line =
                json!({ "type": "message", "id": format!("m{i}"), "chatId": "c1", "role": role, "content": "hi" });
            let Some(Line::Row(m)) = imp.feed(line.to_string().as_bytes()).unwrap() else { panic!("a row") };
            assert_eq!(get(&m, "seq"), json!(i + 1));
            assert_eq!((get(&m, "status"), get(&m, "usage_estimated")), (json!("complete"), json!(0)));
            assert_eq!(get(&m, "created_at"), json!(NOW));
        }
        let day = json!({ "type": "usageDay", "keyId": "key_1", "day": "2026-12-01", "requests": 3 });
        let Some(Line::Row(d)) = imp.feed(day.to_string().as_bytes()).unwrap() else { panic!("a row") };
        assert_eq!((get(&d, "requests"), get(&d, "errors")), (json!(3), json!(0)));
        let err =
            imp.feed(json!({ "type": "message", "id": "m9", "chatId": "c1", "content": "x" }).to_string().as_bytes());
        assert_eq!(err.unwrap_err().field.as_deref(), Some("role"));
    }

    #[test]
    fn a_complete_export_is_read_with_its_counts() {
        let imp = run(&[chat_line("c1"), message_line("m1", "c1", 1), message_line("m2", "c1", 2), end(1, 2)]).unwrap();
        assert_eq!(imp.counts().get("message"), 2);
        assert_eq!(imp.counts().to_json()["agent"], json!(0));
    }

    #[test]
    fn an_export_without_its_end_line_is_incomplete() {
        let err = run(&[chat_line("c1"), message_line("m1", "c1", 1)]).unwrap_err();
        assert_eq!(err.line, 4);
        assert!(err.rule.contains("incomplete"), "{}", err.rule);
        let empty = Importer::new(NOW);
        assert_eq!(empty.finish().unwrap_err().line, 1);
    }

    #[test]
    fn each_broken_rule_names_its_line() {
        let cases: Vec<(Vec<String>, u64, &str)> = vec![
            (vec!["{not json".into()], 2, "JSON"),
            (vec!["[1,2]".into()], 2, "JSON object"),
            (vec![json!({ "type": "planet" }).to_string()], 2, "must be one of"),
            (vec![message_line("m1", "c9", 1)], 2, "earlier line"),
            (vec![chat_line("c1"), chat_line("c1")], 3, "repeats"),
            (vec![chat_line("c1"), message_line("m1", "c1", 1), message_line("m2", "c1", 1)], 4, "repeats"),
            (vec![chat_line("c1"), message_line("m1", "c1", 1).replace("\"user\"", "\"system\"")], 3, "one of"),
            (vec![chat_line("c1").replace("2026-12-01T00:00:01.000Z", "yesterday")], 2, "ISO 8601"),
            (vec![chat_line("c1").replace("\"title\"", "\"tilte\"")], 2, "not a field"),
            (vec![chat_line("c1"), end(2, 0)], 3, "say 2 chat"),
            (vec![end(0, 0), chat_line("c1")], 3, "follow the end"),
        ];
        for (lines, line, rule) in cases {
            let err = run(&lines).unwrap_err();
            assert_eq!(err.line, line, "{lines:?}: {err:?}");
            assert!(err.rule.contains(rule), "{lines:?}: {err:?}");
            assert_eq!(err.to_api_error().body()["details"]["line"], json!(line));
        }
        let mut imp = Importer::new(NOW);
        let err = imp.feed(br#"{"type":"export","version":2}"#).unwrap_err();
        assert_eq!((err.line, err.field.as_deref()), (1, Some("version")));
        let err = Importer::new(NOW).feed(chat_line("c1").as_bytes()).unwrap_err();
        assert!(err.rule.contains("header"));
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let mut imp = Importer::new(NOW);
        imp.feed(&header()).unwrap();
        assert_eq!(imp.feed(b"  ").unwrap(), None);
        let err = imp.feed(b"nope").unwrap_err();
        assert_eq!(err.line, 3);
    }

    #[test]
    fn records_follow_the_records_api_rules_and_get_their_hash() {
        let line = json!({ "type": "record", "id": "rec_1", "kind": "deal", "externalId": "D-1", "title": "Acme",
                           "currency": "usd", "status": "open", "amount": 10, "createdAt": time::to_iso(NOW),
                           "updatedAt": time::to_iso(NOW) });
        let mut imp = Importer::new(NOW);
        imp.feed(&header()).unwrap();
        let Some(Line::Row(row)) = imp.feed(line.to_string().as_bytes()).unwrap() else { panic!("a row") };
        let get = |c: &str| row.values.iter().find(|(col, _)| *col == c).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("currency"), json!("USD"));
        assert_eq!(get("content_hash").as_str().unwrap().len(), 64);
        let mut bad = line.clone();
        bad["kind"] = json!("note");
        let err = imp.feed(bad.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("status"));
        let mut twice = line.clone();
        twice["id"] = json!("rec_2");
        let err = imp.feed(twice.to_string().as_bytes()).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("kind+externalId"));
    }

    #[test]
    fn every_section_has_an_id_or_identity_and_unique_columns() {
        for s in SECTIONS {
            assert!(!s.identity.is_empty(), "{}", s.kind);
            let mut columns: Vec<&str> = s.fields.iter().map(|f| f.column).collect();
            columns.sort_unstable();
            columns.dedup();
            assert_eq!(columns.len(), s.fields.len(), "{}", s.kind);
            for identity in s.identity {
                for name in *identity {
                    assert!(s.fields.iter().any(|f| f.name == *name), "{}: {name}", s.kind);
                }
            }
        }
    }

    #[test]
    fn workspace_patch_rules() {
        let p = WorkspacePatch::try_from(&obj(json!({ "chatRetentionDays": 365 }))).unwrap();
        assert_eq!(p.chat_retention_days, Some(Some(365)));
        let p = WorkspacePatch::try_from(&obj(json!({ "chatRetentionDays": null, "name": " Acme " }))).unwrap();
        assert_eq!((p.chat_retention_days, p.name.as_deref()), (Some(None), Some("Acme")));
        for bad in [json!(0), json!(3651), json!("365"), json!(1.5), json!(true)] {
            let err = WorkspacePatch::try_from(&obj(json!({ "chatRetentionDays": bad }))).unwrap_err();
            assert_eq!(err.body()["details"]["field"], json!("chatRetentionDays"), "{bad}");
        }
        assert!(WorkspacePatch::try_from(&obj(json!({}))).is_err());
        assert!(WorkspacePatch::try_from(&obj(json!({ "name": "a\u{202e}b" }))).is_err());
    }

    #[test]
    fn retention_cutoff_is_days_before_now() {
        assert_eq!(retention_cutoff(NOW, 1), NOW - DAY_MS);
        assert_eq!(retention_cutoff(NOW, 3650), NOW - 3650 * DAY_MS);
    }

    #[test]
    fn erasure_takes_a_label_and_keeps_only_its_hash() {
        assert_eq!(erasure_label(&obj(json!({ "embedUser": "viewer 1" }))).unwrap(), "viewer 1");
        for bad in [json!({}), json!({ "embedUser": "" }), json!({ "embedUser": "a\nb" }), json!({ "embedUser": 5 })] {
            assert_eq!(erasure_label(&obj(bad)).unwrap_err().status(), 400);
        }
        let details = erasure_details("viewer 1", 2);
        assert_eq!(details["deletedChats"], json!(2));
        assert!(!details.to_string().contains("viewer"));
    }

    #[test]
    fn the_fingerprint_is_of_the_bytes() {
        let mut a = Fingerprint::default();
        a.update(b"ab");
        a.update(b"c");
        let mut b = Fingerprint::default();
        b.update(b"abc");
        assert_eq!(a.finish(), b.finish());
    }
}
