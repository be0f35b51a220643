//! Where a workspace's data lives: its placement (chosen once, at creation), the data plane it
//! is on (D1 before its move, its own Durable Object after), and the locator that API keys and
//! embed tokens carry so a request finds the workspace's object without asking D1.

use serde_json::{json, Value};

use super::error::ApiError;

/// Cloudflare's location hints for a Durable Object (where it is created).
pub const LOCATION_HINTS: [&str; 9] = ["wnam", "enam", "sam", "weur", "eeur", "apac", "oc", "afr", "me"];

/// Where a workspace's object is created. It cannot change after creation: an object does not
/// move, and a jurisdiction is part of its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Near the workspace's first request.
    Auto,
    /// Near one of [`LOCATION_HINTS`].
    Hint(&'static str),
    /// Stored and processed only in the EU.
    Eu,
}

/// What the Durable Object namespace is asked for when a stub is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StubOptions {
    /// `namespace.jurisdiction(j)` before `idFromName`.
    pub jurisdiction: Option<&'static str>,
    /// `{locationHint}` of `namespace.get(id, options)`.
    pub location_hint: Option<&'static str>,
}

impl Placement {
    /// The request's `placement` field: absent, `"auto"`, a location hint, or
    /// `{"jurisdiction": "eu"}`.
    pub fn parse(value: Option<&Value>) -> Result<Self, ApiError> {
        const RULE: &str = "must be \"auto\", a location hint (wnam, enam, sam, weur, eeur, apac, oc, afr, me) or {\"jurisdiction\": \"eu\"}";
        match value {
            None | Some(Value::Null) => Ok(Self::Auto),
            Some(Value::String(s)) => {
                Self::from_stored(s).filter(|p| *p != Self::Eu).ok_or_else(|| ApiError::invalid("placement", RULE))
            }
            Some(Value::Object(o)) if o.len() == 1 && o.get("jurisdiction") == Some(&json!("eu")) => Ok(Self::Eu),
            Some(_) => Err(ApiError::invalid("placement", RULE)),
        }
    }

    /// The registry's column value.
    pub fn stored(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Hint(h) => h,
            Self::Eu => "jurisdiction:eu",
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "jurisdiction:eu" => Some(Self::Eu),
            _ => LOCATION_HINTS.iter().find(|h| **h == s).map(|h| Self::Hint(h)),
        }
    }

    /// As the API shows it (the same shape it was given in).
    pub fn to_json(self) -> Value {
        match self {
            Self::Eu => json!({ "jurisdiction": "eu" }),
            other => json!(other.stored()),
        }
    }

    pub fn stub_options(self) -> StubOptions {
        match self {
            Self::Auto => StubOptions { jurisdiction: None, location_hint: None },
            Self::Hint(h) => StubOptions { jurisdiction: None, location_hint: Some(h) },
            Self::Eu => StubOptions { jurisdiction: Some("eu"), location_hint: None },
        }
    }

    /// The one letter of a [`Locator`]: the jurisdiction is part of an object's id, so a
    /// credential must know it; a hint only matters when the object is created.
    fn letter(self) -> char {
        match self {
            Self::Eu => 'e',
            _ => 'g',
        }
    }
}

/// The data plane a workspace is on (the registry's `data_plane` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// Its rows are still in the shared D1 (created before the split, not moved yet).
    D1,
    /// Being copied to its object: its requests wait (503 with `Retry-After`).
    Moving,
    /// In its own Durable Object.
    Object,
}

impl Plane {
    pub fn stored(self) -> &'static str {
        match self {
            Self::D1 => "d1",
            Self::Moving => "moving",
            Self::Object => "object",
        }
    }

    pub fn from_stored(s: &str) -> Option<Self> {
        [Self::D1, Self::Moving, Self::Object].into_iter().find(|p| p.stored() == s)
    }
}

/// Seconds a request of a workspace being moved is told to wait: a typical workspace moves in
/// a few seconds (see the README's measurements).
pub const MOVING_RETRY_AFTER_SECONDS: u64 = 5;

/// How a request addresses a workspace's object without D1: the workspace id and whether its
/// object is in the EU jurisdiction. Written `<g|e><22 characters of the id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    pub workspace_id: String,
    pub eu: bool,
}

pub const LOCATOR_LEN: usize = 23;
const WORKSPACE_PREFIX: &str = "ws_";

impl Locator {
    pub fn new(workspace_id: &str, placement: Placement) -> Option<Self> {
        let body = workspace_id.strip_prefix(WORKSPACE_PREFIX)?;
        (body.len() == LOCATOR_LEN - 1 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self { workspace_id: workspace_id.to_owned(), eu: placement == Placement::Eu })
    }

    pub fn encode(&self) -> String {
        let letter = if self.eu { Placement::Eu.letter() } else { Placement::Auto.letter() };
        format!("{letter}{}", self.workspace_id.trim_start_matches(WORKSPACE_PREFIX))
    }

    pub fn decode(s: &str) -> Option<Self> {
        let (letter, body) = s.split_at_checked(1)?;
        let eu = match letter {
            "e" => true,
            "g" => false,
            _ => return None,
        };
        (body.len() == LOCATOR_LEN - 1 && body.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self { workspace_id: format!("{WORKSPACE_PREFIX}{body}"), eu })
    }

    pub fn stub_options(&self) -> StubOptions {
        StubOptions { jurisdiction: self.eu.then_some("eu"), location_hint: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_parses_the_three_shapes_and_refuses_the_rest() {
        assert_eq!(Placement::parse(None).ok(), Some(Placement::Auto));
        assert_eq!(Placement::parse(Some(&json!("auto"))).ok(), Some(Placement::Auto));
        for hint in LOCATION_HINTS {
            assert_eq!(Placement::parse(Some(&json!(hint))).ok(), Some(Placement::Hint(hint)));
        }
        assert_eq!(Placement::parse(Some(&json!({"jurisdiction": "eu"}))).ok(), Some(Placement::Eu));
        for bad in [
            json!("WEUR"),
            json!("mars"),
            json!("jurisdiction:eu"),
            json!({"jurisdiction": "us"}),
            json!({"jurisdiction": "eu", "x": 1}),
            json!(3),
            json!([]),
        ] {
            let err = Placement::parse(Some(&bad)).err();
            assert!(matches!(&err, Some(ApiError::InvalidField { field, .. }) if field == "placement"), "{bad}");
        }
    }

    #[test]
    fn what_is_passed_to_the_namespace() {
        assert_eq!(Placement::Auto.stub_options(), StubOptions { jurisdiction: None, location_hint: None });
        assert_eq!(
            Placement::Hint("weur").stub_options(),
            StubOptions { jurisdiction: None, location_hint: Some("weur") }
        );
        assert_eq!(Placement::Eu.stub_options(), StubOptions { jurisdiction: Some("eu"), location_hint: None });
    }

    #[test]
    fn placement_round_trips_through_storage_and_json() {
        for p in [Placement::Auto, Placement::Hint("apac"), Placement::Eu] {
            assert_eq!(Placement::from_stored(p.stored()), Some(p));
            assert_eq!(Placement::parse(Some(&p.to_json())).ok(), Some(p));
        }
        assert_eq!(Placement::from_stored("nowhere"), None);
    }

    #[test]
    fn a_locator_round_trips_and_keeps_the_jurisdiction() {
        let id = "ws_0123456789abcdefghijkl";
        for placement in [Placement::Auto, Placement::Hint("oc"), Placement::Eu] {
            let Some(loc) = Locator::new(id, placement) else { panic!("locator of {id}") };
            let s = loc.encode();
            assert_eq!(s.len(), LOCATOR_LEN);
            assert_eq!(Locator::decode(&s), Some(loc.clone()));
            assert_eq!(loc.stub_options().jurisdiction, (placement == Placement::Eu).then_some("eu"));
        }
        for bad in ["", "x0123456789abcdefghijkl", "g0123", "g0123456789abcdefghij-l", "é0123456789abcdefghijk"] {
            assert_eq!(Locator::decode(bad), None, "{bad}");
        }
        assert_eq!(Locator::new("chat_0123456789abcdefghijkl", Placement::Auto), None);
    }

    #[test]
    fn planes_round_trip() {
        for p in [Plane::D1, Plane::Moving, Plane::Object] {
            assert_eq!(Plane::from_stored(p.stored()), Some(p));
        }
        assert_eq!(Plane::from_stored("elsewhere"), None);
    }
}
