//! Which agents an API key may talk to. A key without a scope reaches every agent and the
//! default assistant; a scoped key reaches only the agents it lists, never the default
//! assistant, so a key handed to one dashboard cannot wander off to the others.

use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};

pub const NOT_ALLOWED: &str = "Agent not allowed for this key";
pub const MAX_AGENTS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    #[default]
    All,
    /// Agent ids, without duplicates, in the order the admin gave them. Empty only when every
    /// agent it listed has since been deleted: such a key reaches nothing.
    Only(Vec<String>),
}

impl Scope {
    /// From the stored column (`NULL` or a JSON array of ids). Anything unreadable fails
    /// closed: better a refused key than one that suddenly reaches every agent.
    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => Self::All,
            Some(s) => Self::Only(serde_json::from_str::<Vec<String>>(s).unwrap_or_default()),
        }
    }

    /// The column value: `None` for all agents.
    pub fn to_stored(&self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Only(ids) => Some(json!(ids).to_string()),
        }
    }

    /// `allowedAgentIds` as the API shows it: `null` or the list.
    pub fn to_json(&self) -> Value {
        match self {
            Self::All => Value::Null,
            Self::Only(ids) => json!(ids),
        }
    }

    /// The agents of a scoped key; `None` for a key that reaches all of them.
    pub fn agents(&self) -> Option<&[String]> {
        match self {
            Self::All => None,
            Self::Only(ids) => Some(ids),
        }
    }

    /// Whether a turn with this agent (`None`: the default assistant) may run.
    pub fn check(&self, agent_id: Option<&str>) -> ApiResult<()> {
        let ids = match self {
            Self::All => return Ok(()),
            Self::Only(ids) => ids,
        };
        if ids.is_empty() {
            return Err(ApiError::Forbidden(
                NOT_ALLOWED,
                Some(json!("every agent this key was allowed to use has been deleted; an admin can choose new ones by editing the key")),
            ));
        }
        match agent_id {
            Some(id) if ids.iter().any(|a| a == id) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(NOT_ALLOWED, None)),
            None => Err(ApiError::Forbidden(
                NOT_ALLOWED,
                Some(json!("this key is limited to some agents, and this request (or the chat it continues) is for the default assistant: send one of the key's agents as agentId")),
            )),
        }
    }

    /// Parses `allowedAgentIds`: `null` (all agents) or 1 to 50 agent ids. Whether the ids are
    /// this workspace's agents is for storage to say ([`unknown_agents`]).
    pub fn parse(value: &Value) -> ApiResult<Self> {
        let rule = || {
            ApiError::invalid(
                "allowedAgentIds",
                format!("must be null (all agents) or a list of 1 to {MAX_AGENTS} agent ids"),
            )
        };
        let list = match value {
            Value::Null => return Ok(Self::All),
            Value::Array(list) if (1..=MAX_AGENTS).contains(&list.len()) => list,
            _ => return Err(rule()),
        };
        // Ids are checked against the workspace's agents by storage, which names every unknown
        // one at once, malformed or not; only their length is bounded here.
        let mut ids: Vec<String> = Vec::with_capacity(list.len());
        for v in list {
            let Some(id) = v.as_str().filter(|id| (1..=MAX_ID_CHARS).contains(&id.chars().count())) else {
                return Err(rule());
            };
            if !ids.iter().any(|known| known == id) {
                ids.push(id.to_owned());
            }
        }
        Ok(Self::Only(ids))
    }
}

/// 400 naming the ids that are not agents of the workspace.
pub fn unknown_agents(ids: &[String]) -> ApiError {
    ApiError::bad_request(
        "Unknown agent ids",
        Some(json!({ "field": "allowedAgentIds", "rule": "must name agents of this workspace", "unknown": ids })),
    )
}

/// Longer strings are no id of ours.
const MAX_ID_CHARS: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "agent_aaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "agent_bbbbbbbbbbbbbbbbbbbbbb";

    fn status(r: ApiResult<()>) -> u16 {
        r.err().map_or(200, |e| e.status())
    }

    #[test]
    fn unscoped_keys_reach_everything_scoped_keys_only_their_agents() {
        assert_eq!(status(Scope::All.check(None)), 200);
        assert_eq!(status(Scope::All.check(Some(A))), 200);
        let scope = Scope::Only(vec![A.into()]);
        assert_eq!(status(scope.check(Some(A))), 200);
        assert_eq!(status(scope.check(Some(B))), 403);
        // No default assistant for a scoped key.
        assert_eq!(status(scope.check(None)), 403);
        let err = scope.check(Some(B)).unwrap_err();
        assert_eq!(err.body()["error"], NOT_ALLOWED);
        // Everything it listed was deleted: refused, and told why.
        let empty = Scope::Only(Vec::new());
        let err = empty.check(Some(A)).unwrap_err();
        assert_eq!(err.status(), 403);
        assert!(err.body()["details"].as_str().unwrap().contains("deleted"));
    }

    #[test]
    fn stored_form_round_trips_and_fails_closed() {
        let scope = Scope::Only(vec![A.into(), B.into()]);
        assert_eq!(Scope::from_stored(scope.to_stored().as_deref()), scope);
        assert_eq!(Scope::from_stored(None), Scope::All);
        assert_eq!(Scope::from_stored(Some("not json")), Scope::Only(Vec::new()));
        assert_eq!(Scope::All.to_json(), Value::Null);
    }

    #[test]
    fn parse_rules() {
        assert_eq!(Scope::parse(&Value::Null).unwrap(), Scope::All);
        assert_eq!(Scope::parse(&json!([A, B, A])).unwrap(), Scope::Only(vec![A.into(), B.into()]));
        for bad in [
            json!([]),
            json!("agent"),
            json!([1]),
            json!({}),
            json!(vec![A; 51]),
            json!([""]),
            json!(["x".repeat(101)]),
        ] {
            let err = Scope::parse(&bad).unwrap_err();
            assert_eq!(err.body()["details"]["field"], "allowedAgentIds", "{bad}");
        }
        // Any other string is an id for storage to look up (and name if unknown).
        assert_eq!(Scope::parse(&json!(["' OR 1=1 --"])).unwrap(), Scope::Only(vec!["' OR 1=1 --".into()]));
        let err = unknown_agents(&["agent_x".into()]);
        assert_eq!((err.status(), err.body()["details"]["unknown"].clone()), (400, json!(["agent_x"])));
    }
}
