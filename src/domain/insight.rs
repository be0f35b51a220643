//! Insights: a saved question (an agent and a prompt) answered ahead of time and served from
//! storage. The rules here are pure: what a create or an edit may say, when the next
//! generation is due (and how a failure backs off), what status a reader sees, the `ETag` and
//! the `Cache-Control` of a read.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::error::{ApiError, ApiResult};
use super::time::{to_iso, Millis};
use super::validate::{self, Object, Text};

pub const NAME: Text = Text::name(1, 100);
pub const PROMPT: Text = Text::new(1, 4_000);
pub const MIN_REFRESH_SECONDS: i64 = 300;
pub const MAX_REFRESH_SECONDS: i64 = 604_800;
pub const DEFAULT_REFRESH_SECONDS: i64 = 3_600;
/// Insights per workspace: each costs a model call per refresh, whoever reads it.
pub const MAX_PER_WORKSPACE: i64 = 200;
/// The first retry after a failed generation; each further failure doubles it, up to the
/// insight's own refresh interval.
pub const FIRST_RETRY_MS: Millis = 60_000;
/// How long past its due time an answer still reads as `fresh`: the scheduled job runs once a
/// minute and a generation takes up to a minute more.
pub const DUE_GRACE_MS: Millis = 150_000;
pub const NOT_FOUND: ApiError = ApiError::NotFound("Insight not found", None);

/// A new insight as the admin asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewInsight {
    pub name: String,
    pub prompt: String,
    pub agent_id: Option<String>,
    pub refresh_seconds: i64,
}

impl TryFrom<&Object> for NewInsight {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self {
            name: validate::required_text(obj, "name", NAME)?.trim().to_owned(),
            prompt: validate::required_text(obj, "prompt", PROMPT)?,
            agent_id: agent_id(obj)?.flatten(),
            refresh_seconds: refresh(obj)?.unwrap_or(DEFAULT_REFRESH_SECONDS),
        })
    }
}

/// An edit: only the fields it sets; `agentId: null` moves the insight to the default
/// assistant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InsightPatch {
    pub name: Option<String>,
    pub prompt: Option<String>,
    pub agent_id: Option<Option<String>>,
    pub refresh_seconds: Option<i64>,
}

impl TryFrom<&Object> for InsightPatch {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let patch = Self {
            name: validate::optional_text(obj, "name", NAME)?.map(|n| n.trim().to_owned()),
            prompt: validate::optional_text(obj, "prompt", PROMPT)?,
            agent_id: agent_id(obj)?,
            refresh_seconds: refresh(obj)?,
        };
        if patch == Self::default() {
            return Err(ApiError::bad_request(
                "Nothing to change",
                Some(json!("send at least one of name, prompt, agentId, refreshSeconds")),
            ));
        }
        Ok(patch)
    }
}

impl InsightPatch {
    /// Whether the stored answer no longer answers the question (a new prompt or agent): it
    /// is then regenerated at once.
    pub fn changes_question(&self, prompt: &str, agent_id: Option<&str>) -> bool {
        self.prompt.as_deref().is_some_and(|p| p != prompt)
            || self.agent_id.as_ref().is_some_and(|a| a.as_deref() != agent_id)
    }
}

fn agent_id(obj: &Object) -> ApiResult<Option<Option<String>>> {
    match obj.get("agentId") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 100 => Ok(Some(Some(s.clone()))),
        Some(_) => Err(ApiError::invalid("agentId", "must be an agent id or null")),
    }
}

fn refresh(obj: &Object) -> ApiResult<Option<i64>> {
    validate::optional_int(obj, "refreshSeconds", MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS)
}

/// `pending`: never answered yet. `stale`: the answer shown is not the current one (the last
/// generation failed, the question changed, or it is well past its refresh). `fresh`:
/// otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pending,
    Fresh,
    Stale,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Fresh => "fresh",
            Self::Stale => "stale",
        }
    }
}

/// What a reader sees of an insight's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub has_answer: bool,
    pub failed: bool,
    pub outdated: bool,
    pub next_refresh_at: Millis,
}

pub fn status(s: &State, now: Millis) -> Status {
    if !s.has_answer {
        Status::Pending
    } else if s.failed || s.outdated || now > s.next_refresh_at.saturating_add(DUE_GRACE_MS) {
        Status::Stale
    } else {
        Status::Fresh
    }
}

/// When a successful generation at `now` is next due.
pub fn next_after_success(now: Millis, refresh_seconds: i64) -> Millis {
    now.saturating_add(refresh_seconds.saturating_mul(1_000))
}

/// When to retry after the `failures`-th failure in a row (1 for the first): 1, 2, 4 …
/// minutes, never later than the insight's own interval.
pub fn next_after_failure(now: Millis, failures: i64, refresh_seconds: i64) -> Millis {
    let doublings = u32::try_from(failures.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let backoff = FIRST_RETRY_MS.saturating_mul(1_i64 << doublings);
    now.saturating_add(backoff.min(refresh_seconds.saturating_mul(1_000)))
}

/// The `ETag` of an answer: it changes exactly when the answer (its text or its sources)
/// changes, so a reader revalidating an unchanged answer gets 304 even after a regeneration.
pub fn etag(answer: Option<&str>, sources: &str) -> String {
    let mut h = Sha256::new();
    h.update(answer.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(sources.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether `If-None-Match` names the current `ETag` (a list, `*`, or weak forms included).
pub fn not_modified(if_none_match: Option<&str>, current: &str) -> bool {
    let Some(header) = if_none_match else { return false };
    let bare = current.trim_start_matches("W/");
    header.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == bare)
}

/// `Cache-Control` of a read: private (it was obtained with a credential), and good until the
/// next refresh is due.
pub fn cache_control(next_refresh_at: Millis, now: Millis) -> String {
    let seconds = (next_refresh_at.saturating_sub(now) / 1_000).max(0);
    format!("private, max-age={seconds}")
}

/// An insight as storage holds it, and as both views render it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Insight {
    pub id: String,
    pub name: String,
    pub prompt: String,
    pub agent_id: Option<String>,
    pub refresh_seconds: i64,
    pub answer: Option<String>,
    /// The sources as JSON (an array), as the chat stores them.
    pub sources: Option<String>,
    pub etag: Option<String>,
    pub model: Option<String>,
    pub generated_at: Option<Millis>,
    pub next_refresh_at: Millis,
    pub failures: i64,
    pub outdated: bool,
    pub last_error_code: Option<String>,
    pub last_error_at: Option<Millis>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl Insight {
    pub fn state(&self) -> State {
        State {
            has_answer: self.answer.is_some(),
            failed: self.last_error_code.is_some(),
            outdated: self.outdated,
            next_refresh_at: self.next_refresh_at,
        }
    }

    pub fn current_etag(&self) -> String {
        self.etag.clone().unwrap_or_else(|| etag(self.answer.as_deref(), self.sources.as_deref().unwrap_or("[]")))
    }

    /// What `GET /api/insights/{id}` answers: the answer and its freshness, not the question.
    pub fn read_json(&self, now: Millis) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "status": status(&self.state(), now).as_str(),
            "answer": self.answer,
            "sources": self.sources.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()).unwrap_or_else(|| json!([])),
            "generatedAt": self.generated_at.map(to_iso),
            "nextRefreshAt": to_iso(self.next_refresh_at),
            "model": self.model,
            "lastError": self.last_error_code.as_ref().map(|code| json!({ "code": code, "at": self.last_error_at.map(to_iso) })),
        })
    }

    /// What the settings routes answer: the read view plus the question and its cost.
    pub fn settings_json(&self, now: Millis) -> Value {
        let mut v = self.read_json(now);
        if let Some(obj) = v.as_object_mut() {
            obj.insert("prompt".into(), json!(self.prompt));
            obj.insert("agentId".into(), json!(self.agent_id));
            obj.insert("refreshSeconds".into(), json!(self.refresh_seconds));
            obj.insert(
                "usage".into(),
                match (self.prompt_tokens, self.completion_tokens) {
                    (Some(p), Some(c)) => json!({ "promptTokens": p, "completionTokens": c }),
                    _ => Value::Null,
                },
            );
            obj.insert("createdAt".into(), json!(to_iso(self.created_at)));
            obj.insert("updatedAt".into(), json!(to_iso(self.updated_at)));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Object {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn creates_with_defaults_and_bounds() {
        let i = NewInsight::try_from(&obj(json!({ "name": " Risk ", "prompt": "What is at risk?" }))).unwrap();
        assert_eq!(i.name, "Risk");
        assert_eq!(i.agent_id, None);
        assert_eq!(i.refresh_seconds, 3_600);
        for bad in [
            json!({ "prompt": "p" }),
            json!({ "name": "n" }),
            json!({ "name": "", "prompt": "p" }),
            json!({ "name": "n", "prompt": "x".repeat(4_001) }),
            json!({ "name": "n", "prompt": "p", "refreshSeconds": 299 }),
            json!({ "name": "n", "prompt": "p", "refreshSeconds": 604_801 }),
            json!({ "name": "n", "prompt": "p", "agentId": 5 }),
            json!({ "name": "a\u{202e}b", "prompt": "p" }),
        ] {
            assert_eq!(NewInsight::try_from(&obj(bad.clone())).unwrap_err().status(), 400, "{bad}");
        }
        let edge = NewInsight::try_from(&obj(
            json!({ "name": "n".repeat(100), "prompt": "p".repeat(4_000), "refreshSeconds": 300, "agentId": "agent_x" }),
        ))
        .unwrap();
        assert_eq!(edge.agent_id.as_deref(), Some("agent_x"));
    }

    #[test]
    fn patches_say_what_they_change() {
        assert_eq!(InsightPatch::try_from(&obj(json!({}))).unwrap_err().status(), 400);
        let p = InsightPatch::try_from(&obj(json!({ "agentId": null }))).unwrap();
        assert_eq!(p.agent_id, Some(None));
        assert!(p.changes_question("q", Some("agent_a")));
        assert!(!p.changes_question("q", None));
        let p = InsightPatch::try_from(&obj(json!({ "prompt": "q", "name": "n" }))).unwrap();
        assert!(!p.changes_question("q", None));
        assert!(p.changes_question("other", None));
    }

    #[test]
    fn status_follows_the_answer_and_its_age() {
        let mut s = State { has_answer: false, next_refresh_at: 1_000, ..State::default() };
        assert_eq!(status(&s, 0), Status::Pending);
        s.failed = true;
        assert_eq!(status(&s, 0), Status::Pending, "no answer yet, even after a failure");
        s.has_answer = true;
        assert_eq!(status(&s, 0), Status::Stale);
        s.failed = false;
        assert_eq!(status(&s, 0), Status::Fresh);
        assert_eq!(status(&s, 1_000 + DUE_GRACE_MS), Status::Fresh);
        assert_eq!(status(&s, 1_001 + DUE_GRACE_MS), Status::Stale);
        s.outdated = true;
        assert_eq!(status(&s, 0), Status::Stale);
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_interval() {
        let minutes: Vec<i64> = (1..=8).map(|n| next_after_failure(0, n, 3_600) / 60_000).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(next_after_failure(0, 1, 300), 60_000);
        assert_eq!(next_after_failure(0, 4, 300), 300_000);
        assert_eq!(next_after_failure(10, 1_000_000, 604_800), 10 + 604_800_000);
        assert_eq!(next_after_success(5, 300), 300_005);
    }

    #[test]
    fn etag_changes_exactly_with_the_answer() {
        let a = etag(Some("x"), "[]");
        assert_eq!(a, etag(Some("x"), "[]"));
        assert_ne!(a, etag(Some("y"), "[]"));
        assert_ne!(a, etag(Some("x"), "[{\"id\":\"rec_1\"}]"));
        assert_ne!(etag(Some("ab"), "c"), etag(Some("a"), "bc"));
        assert!(a.starts_with('"') && a.ends_with('"') && a.len() == 26);
        assert!(not_modified(Some(&a), &a));
        assert!(not_modified(Some(&format!("W/{a}")), &a));
        assert!(not_modified(Some(&format!("\"zz\", {a}")), &a));
        assert!(not_modified(Some("*"), &a));
        assert!(!not_modified(Some("\"zz\""), &a));
        assert!(!not_modified(None, &a));
    }

    #[test]
    fn cache_lasts_until_the_next_refresh() {
        assert_eq!(cache_control(61_500, 0), "private, max-age=61");
        assert_eq!(cache_control(0, 5_000), "private, max-age=0");
    }

    #[test]
    fn views_show_what_each_reader_needs() {
        let i = Insight {
            id: "ins_1".into(),
            name: "Risk".into(),
            prompt: "q".into(),
            answer: Some("A [S1]".into()),
            sources: Some("[{\"id\":\"rec_1\"}]".into()),
            generated_at: Some(0),
            next_refresh_at: 3_600_000,
            prompt_tokens: Some(3),
            completion_tokens: Some(4),
            ..Insight::default()
        };
        let read = i.read_json(0);
        assert_eq!(read["status"], "fresh");
        assert_eq!(read["sources"][0]["id"], "rec_1");
        assert_eq!(read["lastError"], Value::Null);
        assert!(read.get("prompt").is_none());
        let settings = i.settings_json(0);
        assert_eq!(settings["prompt"], "q");
        assert_eq!(settings["usage"]["completionTokens"], 4);
        let failed = Insight { last_error_code: Some("upstream_error".into()), last_error_at: Some(0), ..i };
        assert_eq!(failed.read_json(0)["lastError"]["code"], "upstream_error");
        assert_eq!(failed.read_json(0)["status"], "stale");
    }
}
