//! Service configuration from Worker vars and secrets, with the defaults the README documents.
//! Read through a lookup function so the rules are tested without a runtime.

use super::error::ApiError;
use super::placement::Plane;
use super::providers::{Providers, DEFAULT_PROVIDER};

pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub const DEFAULT_STREAM_MAX_MS: u64 = 600_000;
pub const DEFAULT_KNOWLEDGE_TOP_K: u32 = 8;
pub const DEFAULT_KNOWLEDGE_MAX_RECORDS: u64 = 100_000;
pub const DEFAULT_CONTEXT_TOKEN_BUDGET: usize = 16_000;
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 60;
pub const DEFAULT_INSIGHTS_PER_TICK: u32 = 10;
pub const DEFAULT_INSTRUCTIONS: &str = "You are Attive's assistant for go-to-market teams. \
Answer clearly and concisely, say when you are unsure, and never invent figures.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The default assistant's model, on the `default` provider.
    pub llm_model: String,
    /// Every provider (`default` always), and the service's own fallbacks.
    pub providers: Providers,
    /// JSON mode: the whole LLM call. Streaming: the wait for the first byte, then each gap.
    pub llm_timeout_ms: u64,
    /// Streaming: the whole answer.
    pub llm_stream_max_ms: u64,
    pub context_token_budget: usize,
    pub default_instructions: String,
    pub rate_limit_per_minute: u32,
    /// Records a chat turn retrieves and gives the model.
    pub knowledge_top_k: u32,
    /// Records a workspace may hold.
    pub knowledge_max_records: u64,
    /// Whether requests are counted in the usage ledger (`USAGE_LEDGER=off` switches it off,
    /// e.g. to measure what it costs).
    pub usage_ledger: bool,
    /// Model calls per agent turn with tools (the last one may not call tools).
    pub agent_max_steps: u32,
    /// Insights the scheduled job regenerates per run (once a minute) at most.
    pub insights_per_tick: u32,
}

/// `NEW_WORKSPACE_DATA_PLANE`: where new workspaces keep their data, their own object (the
/// default) or D1 as before the split (`d1`, to deploy the split before moving anyone). Read on its own by the operator route that creates workspaces,
/// which must work whatever else is misconfigured.
///
/// # Errors
/// `NotConfigured` for anything but `object` (the default) and `d1`.
pub fn new_workspace_plane(value: Option<&str>) -> Result<Plane, ApiError> {
    match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("object") => Ok(Plane::Object),
        Some("d1") => Ok(Plane::D1),
        Some(_) => Err(ApiError::NotConfigured("NEW_WORKSPACE_DATA_PLANE")),
    }
}

impl Config {
    /// # Errors
    /// `NotConfigured` naming the variable when a value is present but unusable, so a typo in
    /// `wrangler.toml` is reported instead of silently replaced by a default.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let text = |name: &str| get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let number = |name: &'static str, default: u64, max: u64| -> Result<u64, ApiError> {
            match text(name) {
                None => Ok(default),
                Some(v) => v.parse::<u64>().ok().filter(|n| (1..=max).contains(n)).ok_or(ApiError::NotConfigured(name)),
            }
        };
        // Today's endpoint, the `default` provider unless LLM_PROVIDERS defines it.
        let legacy = match text("LLM_BASE_URL") {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                Ok((url.trim_end_matches('/').to_owned(), text("LLM_API_KEY")))
            }
            _ => Err(ApiError::NotConfigured("LLM_BASE_URL")),
        };
        Ok(Self {
            providers: Providers::from_lookup(&text, legacy)?,
            llm_model: text("LLM_MODEL").unwrap_or_else(|| DEFAULT_MODEL.into()),
            llm_timeout_ms: number("LLM_TIMEOUT_MS", DEFAULT_TIMEOUT_MS, 600_000)?,
            llm_stream_max_ms: number("LLM_STREAM_MAX_MS", DEFAULT_STREAM_MAX_MS, 3_600_000)?,
            context_token_budget: usize::try_from(number(
                "CONTEXT_TOKEN_BUDGET",
                DEFAULT_CONTEXT_TOKEN_BUDGET as u64,
                10_000_000,
            )?)
            .unwrap_or(DEFAULT_CONTEXT_TOKEN_BUDGET),
            default_instructions: text("DEFAULT_INSTRUCTIONS").unwrap_or_else(|| DEFAULT_INSTRUCTIONS.into()),
            rate_limit_per_minute: u32::try_from(number(
                "RATE_LIMIT_PER_MINUTE",
                u64::from(DEFAULT_RATE_LIMIT_PER_MINUTE),
                100_000,
            )?)
            .unwrap_or(DEFAULT_RATE_LIMIT_PER_MINUTE),
            knowledge_top_k: u32::try_from(number("KNOWLEDGE_TOP_K", u64::from(DEFAULT_KNOWLEDGE_TOP_K), 50)?)
                .unwrap_or(DEFAULT_KNOWLEDGE_TOP_K),
            knowledge_max_records: number("KNOWLEDGE_MAX_RECORDS", DEFAULT_KNOWLEDGE_MAX_RECORDS, 10_000_000)?,
            agent_max_steps: u32::try_from(number("AGENT_MAX_STEPS", u64::from(super::agent::DEFAULT_MAX_STEPS), 10)?)
                .unwrap_or(super::agent::DEFAULT_MAX_STEPS),
            insights_per_tick: u32::try_from(number("INSIGHTS_PER_TICK", u64::from(DEFAULT_INSIGHTS_PER_TICK), 100)?)
                .unwrap_or(DEFAULT_INSIGHTS_PER_TICK),
            usage_ledger: match text("USAGE_LEDGER").map(|v| v.to_ascii_lowercase()).as_deref() {
                None | Some("on") => true,
                Some("off") => false,
                Some(_) => return Err(ApiError::NotConfigured("USAGE_LEDGER")),
            },
        })
    }

    /// The default provider (it always exists).
    pub fn default_provider(&self) -> Option<&super::providers::Provider> {
        self.providers.get(DEFAULT_PROVIDER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_data_plane_of_new_workspaces_defaults_to_their_own_object() {
        assert_eq!(new_workspace_plane(None), Ok(Plane::Object));
        assert_eq!(new_workspace_plane(Some(" D1 ")), Ok(Plane::D1));
        assert_eq!(new_workspace_plane(Some("object")), Ok(Plane::Object));
        assert_eq!(new_workspace_plane(Some("kv")), Err(ApiError::NotConfigured("NEW_WORKSPACE_DATA_PLANE")));
    }

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ApiError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[("LLM_BASE_URL", "http://127.0.0.1:9/v1/")]).unwrap();
        assert_eq!(c.default_provider().unwrap().base_url, "http://127.0.0.1:9/v1");
        assert_eq!(c.llm_model, DEFAULT_MODEL);
        assert_eq!(c.default_provider().unwrap().api_key, None);
        assert_eq!(c.llm_timeout_ms, 60_000);
        assert_eq!(c.llm_stream_max_ms, 600_000);
        assert_eq!((c.knowledge_top_k, c.knowledge_max_records), (8, 100_000));
        assert_eq!(c.rate_limit_per_minute, 60);
        assert_eq!(c.default_instructions, DEFAULT_INSTRUCTIONS);
        assert!(c.usage_ledger);
        assert_eq!(c.agent_max_steps, 4);
        assert_eq!(c.insights_per_tick, 10);
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x/v1"), ("INSIGHTS_PER_TICK", "0")]),
            Err(ApiError::NotConfigured("INSIGHTS_PER_TICK"))
        );
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x/v1"), ("INSIGHTS_PER_TICK", "3")]).unwrap().insights_per_tick,
            3
        );
    }

    #[test]
    fn overrides_and_blank_values() {
        let c = config(&[
            ("LLM_BASE_URL", "https://api.openai.com/v1"),
            ("LLM_API_KEY", "  "),
            ("LLM_TIMEOUT_MS", "3000"),
            ("RATE_LIMIT_PER_MINUTE", "5"),
            ("DEFAULT_INSTRUCTIONS", "Be terse."),
        ])
        .unwrap();
        assert_eq!(c.default_provider().unwrap().api_key, None);
        assert_eq!(c.llm_timeout_ms, 3000);
        assert_eq!(c.rate_limit_per_minute, 5);
        assert_eq!(c.default_instructions, "Be terse.");
    }

    #[test]
    fn unusable_values_are_named() {
        assert_eq!(config(&[]).unwrap_err(), ApiError::NotConfigured("LLM_BASE_URL"));
        assert_eq!(config(&[("LLM_BASE_URL", "ftp://x")]).unwrap_err(), ApiError::NotConfigured("LLM_BASE_URL"));
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x"), ("LLM_TIMEOUT_MS", "soon")]).unwrap_err(),
            ApiError::NotConfigured("LLM_TIMEOUT_MS")
        );
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x"), ("RATE_LIMIT_PER_MINUTE", "0")]).unwrap_err(),
            ApiError::NotConfigured("RATE_LIMIT_PER_MINUTE")
        );
        assert!(!config(&[("LLM_BASE_URL", "http://x"), ("USAGE_LEDGER", "OFF")]).unwrap().usage_ledger);
        assert_eq!(config(&[("LLM_BASE_URL", "http://x"), ("AGENT_MAX_STEPS", "2")]).unwrap().agent_max_steps, 2);
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x"), ("AGENT_MAX_STEPS", "11")]).unwrap_err(),
            ApiError::NotConfigured("AGENT_MAX_STEPS")
        );
        assert_eq!(
            config(&[("LLM_BASE_URL", "http://x"), ("USAGE_LEDGER", "no")]).unwrap_err(),
            ApiError::NotConfigured("USAGE_LEDGER")
        );
    }
}
