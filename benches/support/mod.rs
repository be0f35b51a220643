//! What the load generators of `make bench` share: `benches/gateway.rs`, `benches/streaming.rs`
//! and `benches/knowledge.rs`. Each bench is a crate of its own, so each includes this module
//! with `#[path = "support/mod.rs"] mod support;` (a `benches/support.rs` would be taken for a
//! bench of its own).
//!
//!   - [`env`]: the environment `scripts/bench.sh` sets: the local stack, the peers, knobs;
//!   - [`http`]: HTTP agents, setup calls that must succeed, workspaces with their keys;
//!   - [`load`]: the closed-loop pass that finds a target's throughput and the open-loop run at a
//!     constant rate (wrk2-style: latency from each request's scheduled time, so a stall is
//!     charged to every request it delays);
//!   - [`records`]: CRM-like knowledge records from a fixed seed, and their import;
//!   - [`stats`]: percentiles (HDR histograms, or nearest rank), means, ranges;
//!   - [`report`]: number formats, markdown table heads, the JSON results under `bench/results/`.

// No bench uses all of it.
#![allow(dead_code)]

pub mod env;
pub mod http;
pub mod load;
pub mod records;
pub mod report;
pub mod stats;
