//! Inputs of the operator and settings routes, checked once at the edge so handlers only hold
//! valid values.

use super::error::{ApiError, ApiResult};
use super::knowledge::AgentKnowledge;
use super::placement::Placement;
use super::providers::{self, Target};
use super::scope::Scope;
use super::time::{self, to_iso, Millis};
use super::tools::Tool;
use super::validate::{self, Object, Text};

pub const NAME: Text = Text::name(1, 100);
pub const INSTRUCTIONS: Text = Text::new(1, 20_000);
pub const MODEL: Text = Text::new(1, 200);
pub const EMAIL: Text = Text::new(3, 254);
pub const RATE_LIMIT_MAX: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkspace {
    pub name: String,
    pub placement: Placement,
}

impl TryFrom<&Object> for NewWorkspace {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self {
            name: validate::required_text(obj, "name", NAME)?.trim().to_owned(),
            placement: Placement::parse(obj.get("placement"))?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdmin {
    pub name: String,
    pub email: String,
}

impl TryFrom<&Object> for NewAdmin {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let name = validate::required_text(obj, "name", NAME)?.trim().to_owned();
        let email = validate::required_text(obj, "email", EMAIL)?.trim().to_lowercase();
        let valid = match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
                    && !email.chars().any(char::is_whitespace)
            }
            None => false,
        };
        if !valid {
            return Err(ApiError::invalid("email", "must be an email address such as ada@example.com"));
        }
        Ok(Self { name, email })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub expires_at: Option<Millis>,
    pub rate_limit_per_minute: Option<i64>,
    pub scope: Scope,
}

impl NewApiKey {
    /// `now` decides whether `expiresAt` is in the future.
    pub fn parse(obj: &Object, now: Millis) -> ApiResult<Self> {
        let name = validate::required_text(obj, "name", NAME)?.trim().to_owned();
        let expires_at = expires_at(obj, now)?;
        let rate_limit_per_minute = validate::optional_int(obj, "rateLimitPerMinute", 1, RATE_LIMIT_MAX)?;
        let scope = obj.get("allowedAgentIds").map(Scope::parse).transpose()?.unwrap_or_default();
        Ok(Self { name, expires_at, rate_limit_per_minute, scope })
    }
}

/// `expiresAt`: absent or `null` → never; otherwise a time in the future.
fn expires_at(obj: &Object, now: Millis) -> ApiResult<Option<Millis>> {
    match obj.get("expiresAt") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => match time::parse_iso(s) {
            Some(t) if t > now => Ok(Some(t)),
            Some(_) => Err(ApiError::invalid("expiresAt", "must be in the future")),
            None => Err(expires_rule()),
        },
        Some(_) => Err(expires_rule()),
    }
}

/// What an admin can change about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySettings {
    pub name: String,
    pub rate_limit_per_minute: Option<i64>,
    pub expires_at: Option<Millis>,
    pub scope: Scope,
}

/// `PATCH /api/settings/api-keys/{id}`: each field is `None` when not given; inner `None` is an
/// explicit `null` (the default limit, no expiry, all agents).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    pub rate_limit_per_minute: Option<Option<i64>>,
    pub expires_at: Option<Option<Millis>>,
    pub scope: Option<Scope>,
}

impl KeyPatch {
    pub fn parse(obj: &Object, now: Millis) -> ApiResult<Self> {
        let given = |field: &str| validate::has(obj, field);
        let patch = Self {
            name: if given("name") {
                Some(validate::required_text(obj, "name", NAME)?.trim().to_owned())
            } else {
                None
            },
            rate_limit_per_minute: if given("rateLimitPerMinute") {
                Some(validate::optional_int(obj, "rateLimitPerMinute", 1, RATE_LIMIT_MAX)?)
            } else {
                None
            },
            expires_at: if given("expiresAt") { Some(expires_at(obj, now)?) } else { None },
            scope: obj.get("allowedAgentIds").map(Scope::parse).transpose()?,
        };
        if patch == Self::default() {
            return Err(ApiError::invalid(
                "body",
                "must set at least one of name, rateLimitPerMinute, expiresAt, allowedAgentIds",
            ));
        }
        Ok(patch)
    }

    /// The key's settings after the patch, and what changed, as the audit log keeps it:
    /// `{"<field>": {"from": old, "to": new}}`, only for fields whose value changed.
    pub fn apply(&self, old: &KeySettings) -> (KeySettings, serde_json::Value) {
        let new = KeySettings {
            name: self.name.clone().unwrap_or_else(|| old.name.clone()),
            rate_limit_per_minute: self.rate_limit_per_minute.unwrap_or(old.rate_limit_per_minute),
            expires_at: self.expires_at.unwrap_or(old.expires_at),
            scope: self.scope.clone().unwrap_or_else(|| old.scope.clone()),
        };
        let iso = |t: Option<Millis>| t.map(to_iso);
        let mut changes = serde_json::Map::new();
        let mut note = |field: &str, from: serde_json::Value, to: serde_json::Value| {
            if from != to {
                changes.insert(field.into(), serde_json::json!({ "from": from, "to": to }));
            }
        };
        note("name", old.name.clone().into(), new.name.clone().into());
        note("rateLimitPerMinute", old.rate_limit_per_minute.into(), new.rate_limit_per_minute.into());
        note("expiresAt", iso(old.expires_at).into(), iso(new.expires_at).into());
        note("allowedAgentIds", old.scope.to_json(), new.scope.to_json());
        (new, serde_json::Value::Object(changes))
    }
}

/// Whether `patch` may be applied to a key that expires at `expires_at` and was `rolled` (has
/// a successor), at `now`. A rolled key keeps the end its roll gave it, at most: moving it
/// later (or to never) would bring it back beside its successor. An expired key stays expired:
/// nothing about it can change, except the name of a rolled one (it stays in the list, linked
/// to its successor).
///
/// # Errors
/// 409 `API key already rolled` or `API key expired`.
pub fn check_key_edit(patch: &KeyPatch, expires_at: Option<Millis>, rolled: bool, now: Millis) -> ApiResult<()> {
    let later = |new: Option<Millis>| match (new, expires_at) {
        (None, _) => true,
        (Some(new), Some(end)) => new > end,
        (Some(_), None) => false,
    };
    if rolled && patch.expires_at.is_some_and(later) {
        return Err(ApiError::Conflict(
            "API key already rolled",
            serde_json::json!({ "expiresAt": expires_at.map(to_iso), "rule": "a rolled key's expiresAt can only move earlier" }),
        ));
    }
    let name_only = KeyPatch { name: None, ..patch.clone() } == KeyPatch::default();
    if expires_at.is_some_and(|t| t <= now) && !(rolled && name_only) {
        let rule = if rolled {
            "only the name of an expired rolled key can change"
        } else {
            "an expired key cannot be edited"
        };
        return Err(ApiError::Conflict(
            "API key expired",
            serde_json::json!({ "expiresAt": expires_at.map(to_iso), "rule": rule }),
        ));
    }
    Ok(())
}

/// A roll's grace period: how long the old key keeps working next to the new one.
pub const GRACE_DEFAULT_SECONDS: i64 = 86_400;
pub const GRACE_MAX_SECONDS: i64 = 604_800;

/// `gracePeriodSeconds` of a roll (the body may be empty).
pub fn grace_seconds(obj: &Object) -> ApiResult<i64> {
    Ok(validate::optional_int(obj, "gracePeriodSeconds", 0, GRACE_MAX_SECONDS)?.unwrap_or(GRACE_DEFAULT_SECONDS))
}

/// When the old key of a roll stops working: at the end of the grace period, or at its own
/// expiry if that comes first.
pub fn rolled_expiry(own: Option<Millis>, now: Millis, grace_seconds: i64) -> Millis {
    let end = now.saturating_add(grace_seconds.saturating_mul(1000));
    own.map_or(end, |t| t.min(end))
}

fn expires_rule() -> ApiError {
    ApiError::invalid("expiresAt", "must be an ISO 8601 time with offset, e.g. 2030-01-01T00:00:00Z")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub name: String,
    pub instructions: String,
    pub model: Option<String>,
    /// Its provider (`None`: `default`) and fallbacks; the handler checks that they exist.
    pub provider: Option<String>,
    pub fallbacks: Vec<Target>,
    /// Which workspace records it answers from (default: all of them).
    pub knowledge: AgentKnowledge,
    /// The tools it may call over those records (default: none).
    pub tools: Vec<Tool>,
}

impl TryFrom<&Object> for NewAgent {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self {
            name: validate::required_text(obj, "name", NAME)?.trim().to_owned(),
            instructions: validate::required_text(obj, "instructions", INSTRUCTIONS)?,
            model: model(obj)?.flatten(),
            provider: providers::parse_agent_provider(obj.get("provider"))?.flatten(),
            fallbacks: providers::parse_agent_fallbacks(obj.get("fallbacks"))?.unwrap_or_default(),
            knowledge: knowledge(obj)?.unwrap_or_default(),
            tools: tools(obj)?.unwrap_or_default(),
        })
    }
}

/// A partial update; `model: null` resets the agent to the service's default model,
/// `knowledge: null` to the default knowledge (enabled, every kind).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub instructions: Option<String>,
    pub model: Option<Option<String>>,
    /// `Some(None)`: back to `default`.
    pub provider: Option<Option<String>>,
    pub fallbacks: Option<Vec<Target>>,
    pub knowledge: Option<AgentKnowledge>,
    pub tools: Option<Vec<Tool>>,
}

impl TryFrom<&Object> for AgentPatch {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let patch = Self {
            name: validate::optional_text(obj, "name", NAME)?.map(|n| n.trim().to_owned()),
            instructions: validate::optional_text(obj, "instructions", INSTRUCTIONS)?,
            model: model(obj)?,
            provider: providers::parse_agent_provider(obj.get("provider"))?,
            fallbacks: providers::parse_agent_fallbacks(obj.get("fallbacks"))?,
            knowledge: if validate::has(obj, "knowledge") { Some(knowledge(obj)?.unwrap_or_default()) } else { None },
            tools: if validate::has(obj, "tools") { Some(tools(obj)?.unwrap_or_default()) } else { None },
        };
        if patch == Self::default() {
            return Err(ApiError::invalid(
                "body",
                "must set at least one of name, instructions, model, provider, fallbacks, knowledge, tools",
            ));
        }
        Ok(patch)
    }
}

/// What an agent's settings were, for [`AgentPatch::changes`].
pub struct AgentSettings<'a> {
    pub name: &'a str,
    pub instructions: &'a str,
    pub model: Option<&'a str>,
    pub provider: Option<&'a str>,
    pub fallbacks: &'a [Target],
    pub knowledge: &'a AgentKnowledge,
    pub tools: &'a [Tool],
}

impl AgentPatch {
    /// What the patch changes, as the audit log keeps it: `{"<field>": {"from", "to"}}` for the
    /// fields whose value changes. Instructions (up to 20,000 characters) are summarised by
    /// their length, not copied into the log.
    pub fn changes(&self, old: &AgentSettings<'_>) -> serde_json::Value {
        use serde_json::json;
        let mut changes = serde_json::Map::new();
        let mut note = |field: &str, from: serde_json::Value, to: serde_json::Value| {
            if from != to {
                changes.insert(field.into(), json!({ "from": from, "to": to }));
            }
        };
        if let Some(name) = &self.name {
            note("name", json!(old.name), json!(name));
        }
        if let Some(instructions) = &self.instructions {
            if instructions != old.instructions {
                note(
                    "instructions",
                    json!({ "chars": old.instructions.chars().count() }),
                    json!({ "chars": instructions.chars().count() }),
                );
            }
        }
        if let Some(model) = &self.model {
            note("model", json!(old.model), json!(model));
        }
        if let Some(provider) = &self.provider {
            let name = |p: Option<&str>| json!(p.unwrap_or(super::providers::DEFAULT_PROVIDER));
            note("provider", name(old.provider), name(provider.as_deref()));
        }
        if let Some(fallbacks) = &self.fallbacks {
            note("fallbacks", json!(old.fallbacks), json!(fallbacks));
        }
        if let Some(knowledge) = &self.knowledge {
            note("knowledge", old.knowledge.to_json(), knowledge.to_json());
        }
        if let Some(tools) = &self.tools {
            note("tools", super::tools::tools_json(old.tools), super::tools::tools_json(tools));
        }
        serde_json::Value::Object(changes)
    }
}

/// `tools`: absent or `null` → `None` (none).
fn tools(obj: &Object) -> ApiResult<Option<Vec<Tool>>> {
    match obj.get("tools") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => super::tools::parse_agent_tools(v).map(Some),
    }
}

/// `knowledge`: absent or `null` → `None` (the default applies).
fn knowledge(obj: &Object) -> ApiResult<Option<AgentKnowledge>> {
    match obj.get("knowledge") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => AgentKnowledge::parse(v).map(Some),
    }
}

/// `None`: not given; `Some(None)`: explicitly null; `Some(Some(m))`: a model name.
fn model(obj: &Object) -> ApiResult<Option<Option<String>>> {
    if !validate::has(obj, "model") {
        return Ok(None);
    }
    let model = validate::optional_text(obj, "model", MODEL)?;
    if let Some(m) = &model {
        if m.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ApiError::invalid("model", "must be a model name without spaces"));
        }
    }
    Ok(Some(model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn obj(v: Value) -> Object {
        v.as_object().cloned().unwrap()
    }

    fn field_of(err: ApiError) -> String {
        err.body()["details"]["field"].as_str().unwrap().to_owned()
    }

    #[test]
    fn rolled_and_expired_keys_cannot_be_brought_back() {
        let now = 1_800_000_000_000;
        let patch = |v: Value| KeyPatch::parse(&obj(v), now).unwrap();
        let error = |r: ApiResult<()>| r.unwrap_err().body()["error"].as_str().unwrap().to_owned();
        let end = Some(now + 60_000);
        // Rolled, in its grace period: never later, earlier is fine, so are other fields.
        for later in [json!({"expiresAt": null}), json!({"expiresAt": "2030-01-01T00:00:00Z"})] {
            assert_eq!(error(check_key_edit(&patch(later), end, true, now)), "API key already rolled");
        }
        assert!(check_key_edit(&patch(json!({"expiresAt": "2027-01-15T08:00:30Z"})), end, true, now).is_ok());
        assert!(check_key_edit(&patch(json!({"name": "n", "rateLimitPerMinute": 5})), end, true, now).is_ok());
        // Rolled and over (grace 0): only the name.
        let over = Some(now);
        assert!(check_key_edit(&patch(json!({"name": "renamed"})), over, true, now).is_ok());
        assert_eq!(
            error(check_key_edit(&patch(json!({"expiresAt": null})), over, true, now)),
            "API key already rolled"
        );
        assert_eq!(error(check_key_edit(&patch(json!({"rateLimitPerMinute": 5})), over, true, now)), "API key expired");
        // Expired on its own: nothing at all.
        for any in [json!({"name": "n"}), json!({"expiresAt": null}), json!({"allowedAgentIds": null})] {
            assert_eq!(error(check_key_edit(&patch(any), Some(now - 1), false, now)), "API key expired");
        }
        // A live key that was never rolled: anything.
        assert!(check_key_edit(&patch(json!({"expiresAt": null})), end, false, now).is_ok());
        assert!(check_key_edit(&patch(json!({"expiresAt": null})), None, false, now).is_ok());
    }

    #[test]
    fn api_key_rules() {
        let now = 1_800_000_000_000;
        let ok = NewApiKey::parse(
            &obj(json!({"name":" Prod ","expiresAt":"2030-01-01T00:00:00Z","rateLimitPerMinute":10})),
            now,
        )
        .unwrap();
        assert_eq!(ok.name, "Prod");
        assert_eq!(ok.rate_limit_per_minute, Some(10));
        assert!(ok.expires_at.is_some());
        let cases = [
            (json!({}), "name"),
            (json!({"name": ""}), "name"),
            (json!({"name": "x".repeat(101)}), "name"),
            (json!({"name": 7}), "name"),
            (json!({"name": "a", "expiresAt": "2001-01-01T00:00:00Z"}), "expiresAt"),
            (json!({"name": "a", "expiresAt": "soon"}), "expiresAt"),
            (json!({"name": "a", "expiresAt": 5}), "expiresAt"),
            (json!({"name": "a", "rateLimitPerMinute": 0}), "rateLimitPerMinute"),
            (json!({"name": "a", "rateLimitPerMinute": 100_001}), "rateLimitPerMinute"),
            (json!({"name": "a", "rateLimitPerMinute": "5"}), "rateLimitPerMinute"),
        ];
        for (body, field) in cases {
            assert_eq!(field_of(NewApiKey::parse(&obj(body.clone()), now).unwrap_err()), field, "{body}");
        }
    }

    #[test]
    fn key_patch_rules_and_changes() {
        let now = 1_800_000_000_000;
        let a = "agent_aaaaaaaaaaaaaaaaaaaaaa";
        assert_eq!(field_of(KeyPatch::parse(&obj(json!({})), now).unwrap_err()), "body");
        assert_eq!(field_of(KeyPatch::parse(&obj(json!({"name": null})), now).unwrap_err()), "name");
        assert_eq!(
            field_of(KeyPatch::parse(&obj(json!({"rateLimitPerMinute": 0})), now).unwrap_err()),
            "rateLimitPerMinute"
        );
        assert_eq!(
            field_of(KeyPatch::parse(&obj(json!({"expiresAt": "2001-01-01T00:00:00Z"})), now).unwrap_err()),
            "expiresAt"
        );
        assert_eq!(
            field_of(KeyPatch::parse(&obj(json!({"allowedAgentIds": []})), now).unwrap_err()),
            "allowedAgentIds"
        );
        let reset =
            KeyPatch::parse(&obj(json!({"rateLimitPerMinute": null, "expiresAt": null, "allowedAgentIds": null})), now)
                .unwrap();
        assert_eq!(reset.rate_limit_per_minute, Some(None));
        assert_eq!(reset.expires_at, Some(None));
        assert_eq!(reset.scope, Some(Scope::All));
        assert_eq!(reset.name, None);

        let old =
            KeySettings { name: "Prod".into(), rate_limit_per_minute: Some(100), expires_at: None, scope: Scope::All };
        let patch =
            KeyPatch::parse(&obj(json!({"name": "Prod", "rateLimitPerMinute": 5, "allowedAgentIds": [a]})), now)
                .unwrap();
        let (new, changes) = patch.apply(&old);
        assert_eq!(new.rate_limit_per_minute, Some(5));
        assert_eq!(new.scope, Scope::Only(vec![a.into()]));
        assert_eq!(
            changes,
            json!({"rateLimitPerMinute": {"from": 100, "to": 5}, "allowedAgentIds": {"from": null, "to": [a]}})
        );
    }

    #[test]
    fn roll_grace_rules() {
        assert_eq!(grace_seconds(&obj(json!({}))).unwrap(), 86_400);
        assert_eq!(grace_seconds(&obj(json!({"gracePeriodSeconds": 0}))).unwrap(), 0);
        assert_eq!(grace_seconds(&obj(json!({"gracePeriodSeconds": 604_800}))).unwrap(), 604_800);
        for bad in [json!(-1), json!(604_801), json!("60"), json!(1.5)] {
            assert_eq!(
                field_of(grace_seconds(&obj(json!({"gracePeriodSeconds": bad}))).unwrap_err()),
                "gracePeriodSeconds"
            );
        }
        let now = 1_000_000;
        assert_eq!(rolled_expiry(None, now, 60), now + 60_000);
        // An earlier expiry of its own stays.
        assert_eq!(rolled_expiry(Some(now + 5_000), now, 60), now + 5_000);
        assert_eq!(rolled_expiry(Some(now + 500_000), now, 60), now + 60_000);
    }

    #[test]
    fn agent_changes_name_only_what_moves() {
        let knowledge = AgentKnowledge::default();
        let old = AgentSettings {
            name: "Risk",
            instructions: "Be brief.",
            model: None,
            provider: None,
            fallbacks: &[],
            knowledge: &knowledge,
            tools: &[],
        };
        let patch = AgentPatch::try_from(&obj(
            json!({"name": "Risk", "instructions": "Be very brief.", "tools": ["query_records"], "model": null}),
        ))
        .unwrap();
        assert_eq!(
            patch.changes(&old),
            json!({
                "instructions": {"from": {"chars": 9}, "to": {"chars": 14}},
                "tools": {"from": [], "to": ["query_records"]},
            })
        );
    }

    #[test]
    fn admin_email_rules() {
        assert!(NewAdmin::try_from(&obj(json!({"name":"Ada","email":"Ada@Example.com"}))).is_ok());
        for email in ["ada", "ada@", "@example.com", "ada@example", "a b@example.com", "a@b@c.com"] {
            let err = NewAdmin::try_from(&obj(json!({"name":"Ada","email":email}))).unwrap_err();
            assert_eq!(field_of(err), "email", "{email}");
        }
    }

    #[test]
    fn agent_rules_and_patch() {
        let agent = NewAgent::try_from(&obj(json!({"name":"Risk","instructions":"Be brief."}))).unwrap();
        assert_eq!(agent.model, None);
        let long = "x".repeat(20_001);
        assert_eq!(
            field_of(NewAgent::try_from(&obj(json!({"name":"R","instructions":long}))).unwrap_err()),
            "instructions"
        );
        assert_eq!(
            field_of(NewAgent::try_from(&obj(json!({"name":"R","instructions":"i","model":"gpt 4"}))).unwrap_err()),
            "model"
        );
        assert_eq!(field_of(AgentPatch::try_from(&obj(json!({}))).unwrap_err()), "body");
        let reset = AgentPatch::try_from(&obj(json!({"model": null}))).unwrap();
        assert_eq!(reset.model, Some(None));
    }
}
