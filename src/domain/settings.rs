//! Inputs of the operator and settings routes, checked once at the edge so handlers only hold
//! valid values.

use super::error::{ApiError, ApiResult};
use super::knowledge::AgentKnowledge;
use super::time::{self, Millis};
use super::validate::{self, Object, Text};

pub const NAME: Text = Text::new(1, 100);
pub const INSTRUCTIONS: Text = Text::new(1, 20_000);
pub const MODEL: Text = Text::new(1, 200);
pub const EMAIL: Text = Text::new(3, 254);
pub const RATE_LIMIT_MAX: i64 = 100_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorkspace {
    pub name: String,
}

impl TryFrom<&Object> for NewWorkspace {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self { name: validate::required_text(obj, "name", NAME)?.trim().to_owned() })
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
}

impl NewApiKey {
    /// `now` decides whether `expiresAt` is in the future.
    pub fn parse(obj: &Object, now: Millis) -> ApiResult<Self> {
        let name = validate::required_text(obj, "name", NAME)?.trim().to_owned();
        let expires_at = match obj.get("expiresAt") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => match time::parse_iso(s) {
                Some(t) if t > now => Some(t),
                Some(_) => return Err(ApiError::invalid("expiresAt", "must be in the future")),
                None => return Err(expires_rule()),
            },
            Some(_) => return Err(expires_rule()),
        };
        let rate_limit_per_minute = validate::optional_int(obj, "rateLimitPerMinute", 1, RATE_LIMIT_MAX)?;
        Ok(Self { name, expires_at, rate_limit_per_minute })
    }
}

fn expires_rule() -> ApiError {
    ApiError::invalid("expiresAt", "must be an ISO 8601 time with offset, e.g. 2030-01-01T00:00:00Z")
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    pub name: String,
    pub instructions: String,
    pub model: Option<String>,
    /// Which workspace records it answers from (default: all of them).
    pub knowledge: AgentKnowledge,
}

impl TryFrom<&Object> for NewAgent {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        Ok(Self {
            name: validate::required_text(obj, "name", NAME)?.trim().to_owned(),
            instructions: validate::required_text(obj, "instructions", INSTRUCTIONS)?,
            model: model(obj)?.flatten(),
            knowledge: knowledge(obj)?.unwrap_or_default(),
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
    pub knowledge: Option<AgentKnowledge>,
}

impl TryFrom<&Object> for AgentPatch {
    type Error = ApiError;
    fn try_from(obj: &Object) -> ApiResult<Self> {
        let patch = Self {
            name: validate::optional_text(obj, "name", NAME)?.map(|n| n.trim().to_owned()),
            instructions: validate::optional_text(obj, "instructions", INSTRUCTIONS)?,
            model: model(obj)?,
            knowledge: if validate::has(obj, "knowledge") { Some(knowledge(obj)?.unwrap_or_default()) } else { None },
        };
        if patch == Self::default() {
            return Err(ApiError::invalid("body", "must set at least one of name, instructions, model, knowledge"));
        }
        Ok(patch)
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
