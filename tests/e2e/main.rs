//! Black-box end-to-end suite: drives the real local runtime (workerd via `wrangler dev`, local
//! D1, KV and Durable Objects) over HTTP, with the LLM replaced by a scriptable stand-in.
//! Run through `tests/e2e.sh` (part of `make test`), which starts both and sets the URLs.

mod admin;
mod api_keys;
mod chat;
mod chats;
mod dashboards;
mod data_plane;
mod degraded;
mod dev_config;
mod hardening;
mod idempotency;
mod key_lifecycle;
mod knowledge;
mod lifecycle;
mod limiter_storage;
mod openai_compat;
mod platform;
mod providers;
mod rate_limit;
mod readme_examples;
mod streaming;
mod support;
mod tools;
mod usage;
