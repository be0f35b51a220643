//! The environment `scripts/bench.sh` sets for the benches.

use std::str::FromStr;

/// A variable the bench cannot run without; `hint` says where it comes from.
pub fn required(name: &str, hint: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {hint}"))
}

/// A variable that may be missing; set but empty counts as missing.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A number (or anything parsed from text), `default` when missing or not one.
pub fn parsed<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `BENCH_REQUESTS`: requests per scenario (or target, or series) and concurrency.
pub fn requests(default: usize) -> usize {
    parsed("BENCH_REQUESTS", default)
}

/// The local stack under test: the Worker, the LLM stand-in it calls, and the operator token
/// that creates the bench's workspaces.
#[derive(Clone)]
pub struct Stack {
    /// `ATTIVE_BASE_URL`: the Worker.
    pub base: String,
    /// `LLM_STUB_URL`: the stand-in (`tests/llm_stub.py`), without `/v1`.
    pub stub: String,
    /// `ATTIVE_ADMIN_TOKEN`: the operator's token.
    pub op: String,
}

impl Stack {
    pub fn from_env(hint: &str) -> Self {
        Self {
            base: required("ATTIVE_BASE_URL", hint),
            stub: required("LLM_STUB_URL", hint),
            op: required("ATTIVE_ADMIN_TOKEN", hint),
        }
    }

    /// The same stack with another Worker in front of the same stand-in (every Worker of a run
    /// has the same operator token).
    pub fn with_base(&self, base: &str) -> Self {
        Self { base: base.to_owned(), ..self.clone() }
    }
}

/// `ATTIVE_D1_PLANE_URL`: the Worker under test started a second time with
/// `NEW_WORKSPACE_DATA_PLANE=d1`, so that the workspaces it creates keep their data in the
/// shared D1 database, as before each workspace had a database of its own (the "D1 plane");
/// `None` when not set.
pub fn d1_plane_url() -> Option<String> {
    optional("ATTIVE_D1_PLANE_URL")
}

/// The model name `scripts/bench_litellm.sh` configures the LiteLLM proxy with (in front of the
/// stand-in).
pub const LITELLM_MODEL: &str = "stub";

/// A gateway in front of the same stand-in, measured as a peer.
pub struct Peer {
    pub url: String,
    /// The bearer token it wants, if any.
    pub key: Option<String>,
    pub version: String,
}

impl Peer {
    /// The LiteLLM proxy: `LITELLM_URL`, `LITELLM_MASTER_KEY`, `LITELLM_VERSION` (printed by
    /// `scripts/bench_litellm.sh`); `None` without `LITELLM_URL`.
    pub fn litellm() -> Option<Self> {
        Some(Self {
            url: optional("LITELLM_URL")?,
            key: optional("LITELLM_MASTER_KEY"),
            version: optional("LITELLM_VERSION").unwrap_or_default(),
        })
    }

    /// The open-source Portkey gateway: `PORTKEY_URL`, `PORTKEY_VERSION`; `None` without
    /// `PORTKEY_URL`.
    pub fn portkey() -> Option<Self> {
        Some(Self {
            url: optional("PORTKEY_URL")?,
            key: None,
            version: optional("PORTKEY_VERSION").unwrap_or_default(),
        })
    }
}
