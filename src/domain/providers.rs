//! LLM providers and the order a turn tries them in: the `LLM_PROVIDERS` and `LLM_FALLBACKS`
//! configuration, an agent's own `provider` and `fallbacks`, and the fallback rules. Pure, so
//! every rule is tested without a runtime.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::ApiError;
use super::wire::FailureKind;
pub use super::wire::Wire;

/// The provider that always exists: today's `LLM_BASE_URL` + `LLM_API_KEY` unless
/// `LLM_PROVIDERS` defines it.
pub const DEFAULT_PROVIDER: &str = "default";
/// Anthropic requires `max_tokens` on every request; this is ours when a provider sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;
pub const MAX_MAX_TOKENS: u32 = 200_000;
/// Fallbacks an agent, or the service, may list.
pub const MAX_FALLBACKS: usize = 3;
/// Targets one turn tries at most (the agent's own, its fallbacks, the service's).
pub const MAX_TARGETS: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub name: String,
    pub wire: Wire,
    /// Without a trailing slash.
    pub base_url: String,
    /// The key itself, read from the secret `apiKeySecret` names (`None`: sent without one,
    /// e.g. a local server).
    pub api_key: Option<String>,
    pub max_tokens: u32,
}

/// One provider and model a turn may be answered by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub provider: String,
    pub model: String,
}

/// The providers of the deployment and its own fallbacks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Providers {
    by_name: BTreeMap<String, Provider>,
    pub fallbacks: Vec<Target>,
}

impl Providers {
    pub fn get(&self, name: &str) -> Option<&Provider> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Reads `LLM_PROVIDERS` and `LLM_FALLBACKS` (and the secrets the providers name) through
    /// `get`; `legacy` is today's `default` (`LLM_BASE_URL`, `LLM_API_KEY`), used unless
    /// `LLM_PROVIDERS` defines `default` itself.
    ///
    /// # Errors
    /// `Misconfigured` naming the variable that cannot be used; `NotConfigured("LLM_BASE_URL")`
    /// when no `default` can be made.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
        legacy: Result<(String, Option<String>), ApiError>,
    ) -> Result<Self, ApiError> {
        let mut by_name = BTreeMap::new();
        if let Some(raw) = get("LLM_PROVIDERS") {
            let bad = || ApiError::Misconfigured("LLM_PROVIDERS");
            let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&raw) else { return Err(bad()) };
            for (name, spec) in map {
                let provider = parse_provider(&name, &spec, get).ok_or_else(bad)?;
                by_name.insert(name, provider);
            }
        }
        if !by_name.contains_key(DEFAULT_PROVIDER) {
            let (base_url, api_key) = legacy?;
            let provider = Provider {
                name: DEFAULT_PROVIDER.into(),
                wire: Wire::OpenAi,
                base_url,
                api_key,
                max_tokens: DEFAULT_MAX_TOKENS,
            };
            by_name.insert(DEFAULT_PROVIDER.into(), provider);
        }
        let mut providers = Self { by_name, fallbacks: Vec::new() };
        if let Some(raw) = get("LLM_FALLBACKS") {
            let parsed = serde_json::from_str::<Value>(&raw).ok();
            providers.fallbacks =
                parsed.and_then(|v| providers.targets(&v)).ok_or(ApiError::Misconfigured("LLM_FALLBACKS"))?;
        }
        Ok(providers)
    }

    /// `[{"provider", "model"}]` of known providers, at most [`MAX_FALLBACKS`]; `None` for
    /// anything else.
    pub fn targets(&self, value: &Value) -> Option<Vec<Target>> {
        let items = value.as_array().filter(|a| a.len() <= MAX_FALLBACKS)?;
        items
            .iter()
            .map(|item| {
                let object = item.as_object()?;
                let provider = object.get("provider")?.as_str().filter(|p| self.by_name.contains_key(*p))?;
                let model = object.get("model")?.as_str().map(str::trim).filter(|m| (1..=200).contains(&m.len()))?;
                let known = object.keys().all(|k| k == "provider" || k == "model");
                known.then(|| Target { provider: provider.to_owned(), model: model.to_owned() })
            })
            .collect()
    }

    /// The targets of a turn in order: the agent's own, its fallbacks, then the service's,
    /// each once, at most [`MAX_TARGETS`].
    pub fn chain(&self, primary: Target, agent_fallbacks: &[Target]) -> Vec<Target> {
        let mut chain: Vec<Target> = Vec::with_capacity(MAX_TARGETS);
        for target in
            std::iter::once(primary).chain(agent_fallbacks.iter().cloned()).chain(self.fallbacks.iter().cloned())
        {
            if chain.len() < MAX_TARGETS && !chain.contains(&target) {
                chain.push(target);
            }
        }
        chain
    }
}

fn is_provider_name(name: &str) -> bool {
    (1..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn parse_provider(name: &str, spec: &Value, get: &impl Fn(&str) -> Option<String>) -> Option<Provider> {
    let spec = spec.as_object()?;
    let known = ["wire", "baseUrl", "apiKeySecret", "maxTokens"];
    if !is_provider_name(name) || !spec.keys().all(|k| known.contains(&k.as_str())) {
        return None;
    }
    let wire = Wire::parse(spec.get("wire")?.as_str()?)?;
    let base_url = spec.get("baseUrl")?.as_str()?.trim();
    if !(base_url.starts_with("https://") || base_url.starts_with("http://")) || base_url.contains(char::is_whitespace)
    {
        return None;
    }
    let api_key = match spec.get("apiKeySecret") {
        None | Some(Value::Null) => None,
        Some(Value::String(secret)) if !secret.trim().is_empty() => get(secret.trim()),
        Some(_) => return None,
    };
    let max_tokens = match spec.get("maxTokens") {
        None | Some(Value::Null) => DEFAULT_MAX_TOKENS,
        Some(v) => u32::try_from(v.as_u64()?).ok().filter(|n| (1..=MAX_MAX_TOKENS).contains(n))?,
    };
    Some(Provider {
        name: name.to_owned(),
        wire,
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        max_tokens,
    })
}

/// An agent's `provider` as given (`None`: absent; `Some(None)`: `null`, the default).
///
/// # Errors
/// 400 naming `provider` for anything but a provider name or `null`.
pub fn parse_agent_provider(value: Option<&Value>) -> Result<Option<Option<String>>, ApiError> {
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(name)) if is_provider_name(name) => Ok(Some(Some(name.clone()))),
        Some(_) => Err(ApiError::invalid("provider", PROVIDER_RULE)),
    }
}

/// An agent's `fallbacks` as given (`None`: absent; `null` reads as none).
///
/// # Errors
/// 400 naming `fallbacks` for anything but 0–3 `{"provider", "model"}`.
pub fn parse_agent_fallbacks(value: Option<&Value>) -> Result<Option<Vec<Target>>, ApiError> {
    let rule = || ApiError::invalid("fallbacks", FALLBACKS_RULE);
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Vec::new())),
        Some(Value::Array(items)) if items.len() <= MAX_FALLBACKS => items
            .iter()
            .map(|item| {
                let object = item.as_object().filter(|o| o.keys().all(|k| k == "provider" || k == "model"))?;
                let provider = object.get("provider")?.as_str().filter(|p| is_provider_name(p))?;
                let model = object.get("model")?.as_str().filter(|m| {
                    (1..=200).contains(&m.chars().count()) && !m.chars().any(|c| c.is_whitespace() || c.is_control())
                })?;
                Some(Target { provider: provider.to_owned(), model: model.to_owned() })
            })
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(rule),
        Some(_) => Err(rule()),
    }
}

const PROVIDER_RULE: &str = "must be the name of a configured provider, or null for default";
const FALLBACKS_RULE: &str = "must be a list of 0 to 3 {\"provider\", \"model\"} of configured providers";

impl Providers {
    /// Whether an agent's provider and fallbacks name providers this deployment has.
    ///
    /// # Errors
    /// 400 naming the field, and listing the providers there are.
    pub fn check_agent(&self, provider: Option<&str>, fallbacks: &[Target]) -> Result<(), ApiError> {
        let known = || self.names().collect::<Vec<_>>().join(", ");
        if provider.is_some_and(|p| self.get(p).is_none()) {
            return Err(ApiError::invalid("provider", format!("{PROVIDER_RULE} ({})", known())));
        }
        if fallbacks.iter().any(|t| self.get(&t.provider).is_none()) {
            return Err(ApiError::invalid("fallbacks", format!("{FALLBACKS_RULE} ({})", known())));
        }
        Ok(())
    }
}

/// Fallbacks as stored (JSON); anything unreadable reads as none.
pub fn fallbacks_from_stored(stored: Option<&str>) -> Vec<Target> {
    stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
}

/// Whether a failed target hands the turn to the next one. A failure about this provider (it
/// is down, slow, out of capacity, refuses our key, lacks the model) falls back; a request the
/// provider calls wrong (any other 4xx) would be wrong everywhere, so it does not.
pub fn falls_back(failure: &Failure) -> bool {
    match failure.status {
        None => true,
        Some(status) => matches!(status, 401 | 403 | 404 | 408 | 429) || status >= 500,
    }
}

/// One failed target of a turn, as the caller may see it: never the provider's message or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: Target,
    /// The provider's HTTP status; `None` when it never answered (connection, deadline) or
    /// failed inside a 2xx stream.
    pub status: Option<u16>,
    pub kind: FailureKind,
    /// Seconds its `Retry-After` asked for, if any.
    pub retry_after: Option<u64>,
    /// What is logged (a short description, never the body).
    pub detail: String,
}

impl Failure {
    pub fn attempt_json(&self) -> Value {
        json!({ "provider": self.target.provider, "model": self.target.model, "status": self.status, "kind": self.kind.as_str() })
    }
}

/// The error of a turn whose targets failed (each one, or one in a way no other could help
/// with): 504 when the last failure was a deadline, 429 with the smallest `Retry-After` when
/// every target answered 429, else 502; `details.attempts` lists them. A turn with a single
/// target (no fallbacks configured) answers as before fallbacks existed: 504 without details,
/// 502 with a short description, and 429 as above.
pub fn exhausted(failures: &[Failure], single: bool) -> ApiError {
    let attempts: Vec<Value> = failures.iter().map(Failure::attempt_json).collect();
    let details = json!({ "attempts": attempts });
    let all_429 = !failures.is_empty() && failures.iter().all(|f| f.status == Some(429));
    let timed_out = failures.last().is_some_and(|f| f.kind == FailureKind::Timeout && f.status.is_none());
    if all_429 {
        let retry_after = Some(failures.iter().filter_map(|f| f.retry_after).min().unwrap_or(1));
        return ApiError::UpstreamExhausted { status: 429, error: "Upstream rate limited", details, retry_after };
    }
    match (timed_out, single) {
        (true, true) => ApiError::UpstreamTimeout,
        (true, false) => {
            ApiError::UpstreamExhausted { status: 504, error: "Upstream timeout", details, retry_after: None }
        }
        (false, true) => ApiError::Upstream(failures.last().map_or_else(String::new, |f| f.detail.clone())),
        (false, false) => {
            ApiError::UpstreamExhausted { status: 502, error: "Upstream error", details, retry_after: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        move |k: &str| map.get(k).cloned()
    }

    fn legacy() -> Result<(String, Option<String>), ApiError> {
        Ok(("http://127.0.0.1:9/v1".into(), Some("sk-legacy".into())))
    }

    fn target(p: &str, m: &str) -> Target {
        Target { provider: p.into(), model: m.into() }
    }

    #[test]
    fn without_configuration_default_is_todays_endpoint() {
        let p = Providers::from_lookup(&lookup(&[]), legacy()).unwrap();
        let d = p.get(DEFAULT_PROVIDER).unwrap();
        assert_eq!(
            (d.wire, d.base_url.as_str(), d.api_key.as_deref()),
            (Wire::OpenAi, "http://127.0.0.1:9/v1", Some("sk-legacy"))
        );
        assert_eq!(p.names().collect::<Vec<_>>(), ["default"]);
        assert!(p.fallbacks.is_empty());
        // No default at all: today's error.
        let missing = Providers::from_lookup(&lookup(&[]), Err(ApiError::NotConfigured("LLM_BASE_URL")));
        assert_eq!(missing.unwrap_err(), ApiError::NotConfigured("LLM_BASE_URL"));
    }

    #[test]
    fn providers_read_their_keys_from_the_secrets_they_name() {
        let get = lookup(&[
            (
                "LLM_PROVIDERS",
                r#"{"claude": {"wire": "anthropic", "baseUrl": "https://api.anthropic.com/v1/", "apiKeySecret": "ANTHROPIC_API_KEY", "maxTokens": 1024},
                    "default": {"wire": "openai", "baseUrl": "http://127.0.0.1:8/v1"}}"#,
            ),
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("LLM_FALLBACKS", r#"[{"provider": "claude", "model": "claude-x"}]"#),
        ]);
        let p = Providers::from_lookup(&get, Err(ApiError::NotConfigured("LLM_BASE_URL"))).unwrap();
        let c = p.get("claude").unwrap();
        assert_eq!(
            (c.wire, c.base_url.as_str(), c.api_key.as_deref(), c.max_tokens),
            (Wire::Anthropic, "https://api.anthropic.com/v1", Some("sk-ant-secret"), 1024)
        );
        assert_eq!(p.get("default").unwrap().api_key, None);
        assert_eq!(p.fallbacks, [target("claude", "claude-x")]);
    }

    #[test]
    fn unusable_configuration_names_the_variable() {
        for providers in [
            "not json",
            "[]",
            r#"{"Bad Name": {"wire": "openai", "baseUrl": "https://x"}}"#,
            r#"{"p": {"wire": "gemini", "baseUrl": "https://x"}}"#,
            r#"{"p": {"wire": "openai", "baseUrl": "ftp://x"}}"#,
            r#"{"p": {"wire": "openai"}}"#,
            r#"{"p": {"wire": "openai", "baseUrl": "https://x", "maxTokens": 0}}"#,
            r#"{"p": {"wire": "openai", "baseUrl": "https://x", "maxTokens": 200001}}"#,
            r#"{"p": {"wire": "openai", "baseUrl": "https://x", "apiKey": "sk-inline"}}"#,
        ] {
            let err = Providers::from_lookup(&lookup(&[("LLM_PROVIDERS", providers)]), legacy()).unwrap_err();
            assert_eq!(err, ApiError::Misconfigured("LLM_PROVIDERS"), "{providers}");
        }
        for fallbacks in [
            "x",
            r#"{"provider": "default", "model": "m"}"#,
            r#"[{"provider": "nope", "model": "m"}]"#,
            r#"[{"provider": "default"}]"#,
            r#"[{"provider": "default", "model": "a"}, {"provider": "default", "model": "b"}, {"provider": "default", "model": "c"}, {"provider": "default", "model": "d"}]"#,
        ] {
            let err = Providers::from_lookup(&lookup(&[("LLM_FALLBACKS", fallbacks)]), legacy()).unwrap_err();
            assert_eq!(err, ApiError::Misconfigured("LLM_FALLBACKS"), "{fallbacks}");
        }
    }

    #[test]
    fn the_chain_is_the_agents_then_the_services_each_once_at_most_four() {
        let get = lookup(&[(
            "LLM_FALLBACKS",
            r#"[{"provider": "default", "model": "g1"}, {"provider": "default", "model": "a"}]"#,
        )]);
        let p = Providers::from_lookup(&get, legacy()).unwrap();
        let chain = p.chain(target("default", "a"), &[target("default", "b"), target("default", "a")]);
        assert_eq!(chain, [target("default", "a"), target("default", "b"), target("default", "g1")]);
        let many: Vec<Target> = (0..3).map(|i| target("default", &format!("f{i}"))).collect();
        assert_eq!(p.chain(target("default", "a"), &many).len(), MAX_TARGETS);
    }

    fn failure(status: Option<u16>, kind: FailureKind, retry_after: Option<u64>) -> Failure {
        Failure { target: target("default", "m"), status, kind, retry_after, detail: String::new() }
    }

    #[test]
    fn what_falls_back_and_what_does_not() {
        for status in [401, 403, 404, 408, 429, 500, 502, 503, 529] {
            assert!(falls_back(&failure(Some(status), FailureKind::from_status(status), None)), "{status}");
        }
        for status in [400, 402, 409, 413, 422] {
            assert!(!falls_back(&failure(Some(status), FailureKind::from_status(status), None)), "{status}");
        }
        assert!(falls_back(&failure(None, FailureKind::Connection, None)));
        assert!(falls_back(&failure(None, FailureKind::Timeout, None)));
        assert!(falls_back(&failure(None, FailureKind::Overloaded, None)));
    }

    #[test]
    fn an_exhausted_chain_says_why() {
        let timeout = exhausted(
            &[failure(Some(503), FailureKind::Server, None), failure(None, FailureKind::Timeout, None)],
            false,
        );
        assert_eq!(timeout.status(), 504);
        assert_eq!(timeout.body()["error"], "Upstream timeout");
        let limited = exhausted(
            &[
                failure(Some(429), FailureKind::RateLimited, Some(7)),
                failure(Some(429), FailureKind::RateLimited, Some(3)),
            ],
            false,
        );
        assert_eq!(limited.status(), 429);
        assert_eq!(limited.body()["error"], "Upstream rate limited");
        assert_eq!(limited.headers(), [("Retry-After", "3".to_owned())]);
        let mixed = exhausted(
            &[failure(Some(429), FailureKind::RateLimited, Some(3)), failure(Some(500), FailureKind::Server, None)],
            false,
        );
        assert_eq!(mixed.status(), 502);
        let body = mixed.body();
        assert_eq!(body["error"], "Upstream error");
        assert_eq!(
            body["details"]["attempts"][1],
            json!({"provider": "default", "model": "m", "status": 500, "kind": "server"})
        );
        // One target, as before fallbacks: the same errors and details as ever.
        assert_eq!(exhausted(&[failure(None, FailureKind::Timeout, None)], true), ApiError::UpstreamTimeout);
        let mut one = failure(Some(503), FailureKind::Server, None);
        one.detail = "LLM provider answered HTTP 503".into();
        assert_eq!(exhausted(&[one], true), ApiError::Upstream("LLM provider answered HTTP 503".into()));
        assert_eq!(exhausted(&[failure(Some(429), FailureKind::RateLimited, None)], true).status(), 429);
    }
}
