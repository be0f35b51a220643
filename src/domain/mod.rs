//! The pure core of the service: rules, formats and calculations.
//!
//! Nothing in here touches `worker` types or JavaScript, so every module compiles and is
//! unit-tested natively (`cargo test --lib`). The Worker layer (`crate::http`,
//! `crate::storage`, `crate::rate_limiter`) does the I/O and calls into this.

pub mod agent;
pub mod base62;
pub mod chat;
pub mod config;
pub mod cursor;
pub mod data_plane;
pub mod embed_token;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod insight;
pub mod knowledge;
pub mod lifecycle;
pub mod llm;
pub mod openai_api;
pub mod placement;
#[cfg(test)]
mod properties;
pub mod providers;
pub mod rate_limit;
pub mod request_id;
pub mod scope;
pub mod settings;
pub mod sse;
pub mod stream;
pub mod time;
pub mod timing;
pub mod token;
pub mod tools;
pub mod usage;
pub mod validate;
pub mod wire;
