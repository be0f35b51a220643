//! `make bench`: the gateway's overhead against an instant LLM, measured side by side in one
//! run (these machines are noisy, so only numbers from the same run are compared).
//!
//! Scenarios, each at concurrency 1, 8 and 32:
//!   (a) the LLM stand-in called directly — the floor;
//!   (p) the open-source Portkey gateway in front of the same stand-in — a peer's overhead;
//!   (b) `GET /api/health` — the Worker plus one trivial D1 query;
//!   (f) `GET /api/chats` — key lookup and rate limiter side by side, then one D1 read: the
//!       storage of the chat path without the LLM call and without the turn's write;
//!   (c) `POST /api/chat` starting new chats;
//!   (d) `POST /api/chat` continuing chats (each connection its own, starting with 20 earlier
//!       turns);
//!   (e) `POST /api/chat` continuing long chats, at concurrency 1 and 8 only (preparing them is
//!       the slow part): each starts with 60 earlier turns of 10,000 characters a side, 120
//!       messages, 1.2 MB; the turns of the run are as short as those of (d), so (e) and (d)
//!       differ in what the history read finds and not otherwise;
//!   (w) (c) again, at concurrency 1 and 8, against the same Worker under plain `wrangler dev`
//!       (as `make dev` runs it), whose DevTools inspector the Worker of the other scenarios
//!       runs without (see `scripts/bench_worker.mjs`);
//!   (l) the usage ledger's cost: the workloads of (c) and (d), at concurrency 1 and 8, against
//!       the Worker of the other scenarios (ledger on) and against a second one that differs
//!       only in `USAGE_LEDGER=off`, alternately (see [`LEDGER_ROUNDS`]) and at one scheduled
//!       rate for both, so that a drift of the machine falls on both sides alike. It runs
//!       first, while the two Workers' databases hold the same: only what (l) itself stores;
//!   (s) each workspace in its own database ("split"), before and after: the workloads of (c),
//!       (d) and (e) and a chat with retrieval (new chats asking [`QUESTION`] in a workspace of
//!       [`SPLIT_RECORDS`] records written with its words), at concurrency 1 and 8, against a
//!       second Worker started with `NEW_WORKSPACE_DATA_PLANE=d1`, whose workspaces keep their
//!       data in the shared D1 database as before the split ("before", `ATTIVE_D1_PLANE_URL`),
//!       and against the Worker of the other scenarios, whose workspaces each have a database
//!       of their own ("after"), alternately and at one scheduled rate as in (l) (see
//!       [`SPLIT_ROUNDS`]); each side in workspaces of its own created here. The long chats of
//!       (e) are prepared as there, as many a side as keep each within [`LONG_CHAT_REQUESTS`]
//!       (27 a side at 400 requests, all 54 ready in about 30 s here, so not fewer), and each
//!       run continues where the side's previous one stopped. Each side's p50/p95, the
//!       difference, and the mean `d1`, `ws` and `do` round trips of `Server-Timing` per
//!       request. Every answered turn is checked (not timed): `d1` 0 on the "after" side (its
//!       keys carry their workspace, so nothing of a turn touches D1) and above 0 on the
//!       "before" side, so the run measured both layouts. Skipped with a note when
//!       `ATTIVE_D1_PLANE_URL` is not set; it runs right after (l);
//!   (t) the cost of one tool step, at concurrency 1 and 8: new chats with an agent in a
//!       workspace of [`TOOL_STEP_DEALS`] deals, asked the same question two ways, alternately
//!       (see [`TOOL_STEP_ROUNDS`]) and at one scheduled rate (see [`TOOL_STEP_LOAD`]): an
//!       agent without tools, answering at once; an agent with `query_records`, which the
//!       stand-in calls once (the top 5 open deals by amount) before answering, so the turn
//!       makes a second model call with the tool's result. The stand-in is scripted per
//!       connection, so each connection's turns get the tool call and the answer in order;
//!   (o) the cost of one failed primary before a healthy fallback, at concurrency 1 and 8: new
//!       chats in a workspace of their own with two agents of the same model, asked the same
//!       question, alternately (see [`FALLBACK_ROUNDS`]) and at one scheduled rate (see
//!       [`FALLBACK_LOAD`]): one on the provider `default`, answered directly; one on
//!       [`FALLBACK_PROVIDER`] (the stand-in's `/flaky/v1`, an extra provider of the bench
//!       Worker's `LLM_PROVIDERS`), which the stand-in answers 503 at once every time, with
//!       `default` as its fallback. A third side, in the same rounds, is one stand-in round
//!       trip: the stand-in called directly with the body the Worker sends it. The goal is a
//!       p50 difference below that round trip's p50 plus [`FALLBACK_GOAL_MARGIN_MS`]. Every
//!       response is checked (not timed): 200 with `X-LLM-Provider: default` and
//!       `X-LLM-Attempts` 1 on the direct side and 2 on the other, so the run measured the
//!       fallback path;
//!   (v) the OpenAI Chat Completions API we serve beside our own, at concurrency 1 and 8: the
//!       default assistant asked the same question through `POST /api/chat` (a new chat) and
//!       through our `POST /v1/chat/completions` (`model` [`COMPLETIONS_MODEL`], the question as
//!       one user message), beside the LiteLLM proxy's and the Portkey gateway's own
//!       `/v1/chat/completions` (not streamed) and the stand-in called directly, all in front of
//!       the same stand-in, alternately (see [`COMPLETIONS_ROUNDS`]) and at one scheduled rate
//!       (see [`COMPLETIONS_LOAD`]). Each side's time added over the stand-in of the same rounds,
//!       and ours as a multiple of LiteLLM's (the goal: at most [`COMPLETIONS_GOAL`]). A peer
//!       whose address is not set is left out with a note; a 404 from our route when it is
//!       first called (the route not there yet) skips (v) with a note instead of failing.
//!
//! Load is open-loop at a constant rate (wrk2-style): a short closed-loop pass finds the
//! throughput, then requests are scheduled at 75% of it and latency is measured from each
//! request's scheduled time, so a stall is charged to every request it delays (no coordinated
//! omission). Latencies go into an HDR histogram. Each request's service time (from its send)
//! and `Server-Timing` phases are kept too, for the phase percentiles and the tail breakdown.
//!
//! Started by `scripts/bench.sh`, which brings up the local stack and sets the environment.
//! `BENCH_REQUESTS` (default 400) sets the requests per scenario and concurrency;
//! `BENCH_SCENARIOS` (e.g. `de`) runs only the scenarios with those letters; `im` the dashboards'
//! (insight reads with an embed token, plain and 304, beside a chat read; minting). The peers
//! are optional: `PORTKEY_URL` (and `PORTKEY_VERSION`) for (p) and (v), `LITELLM_URL` (and
//! `LITELLM_MASTER_KEY`, `LITELLM_VERSION`, as `scripts/bench_litellm.sh` prints them) for (v);
//! so are the second Workers: `ATTIVE_NO_LEDGER_URL` for (l), `ATTIVE_D1_PLANE_URL` for (s),
//! `ATTIVE_WRANGLER_DEV_URL` for (w).

use std::time::Instant;

use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::env::{self, Peer, Stack, LITELLM_MODEL};
use support::http::{
    agent, call, parse_server_timing, try_call, unpooled_agent, workspace, CallError, REQUEST_TIMEOUT, SETUP_TIMEOUT,
};
use support::load::{alternate, closed_loop_rate, open_loop, scheduled_rate, warm_then_rate, LOAD};
use support::records::{fill, QUESTION};
use support::report::{fixed, num, print_head, signed, write_json_file};
use support::stats::{mean, range, Pcts};

const CONCURRENCY: [usize; 3] = [1, 8, 32];
/// Concurrencies of the long-chat scenario (e) and of the `wrangler dev` one (w).
const LONG_CHAT_CONCURRENCY: [usize; 2] = [1, 8];
const WRANGLER_DEV_CONCURRENCY: [usize; 2] = [1, 8];
/// Concurrencies of the ledger comparison (l).
const LEDGER_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each workload of (l), in the order on, off, off, on, on, off, …; each
/// takes `BENCH_REQUESTS / LEDGER_ROUNDS` requests (see [`per_round`]), so a side takes about
/// as many as a scenario.
const LEDGER_ROUNDS: usize = 8;
/// Concurrencies of the comparison of the two data planes (s).
const SPLIT_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each workload of (s), alternated as in (l): own database, D1 plane, D1
/// plane, own database, …
const SPLIT_ROUNDS: usize = 8;
/// The workloads of (s), each side's name in [`Pair`] order: after (own database), before (D1
/// plane).
const SPLIT_WORKLOADS: [[&str; 2]; 4] = [
    ["s) POST /api/chat (new chat), own database", "s) POST /api/chat (new chat), D1 plane"],
    ["s) POST /api/chat (20 turns), own database", "s) POST /api/chat (20 turns), D1 plane"],
    ["s) POST /api/chat (long chat), own database", "s) POST /api/chat (long chat), D1 plane"],
    ["s) POST /api/chat (retrieval), own database", "s) POST /api/chat (retrieval), D1 plane"],
];
/// Why (s) did not run: its second Worker's address is missing.
const SPLIT_SKIPPED: &str = "ATTIVE_D1_PLANE_URL is not set (scripts/bench.sh starts that Worker)";
/// Records in the workspace of (s)'s chats with retrieval: those of `benches/knowledge.rs`,
/// whose bodies are written with the words of [`QUESTION`].
const SPLIT_RECORDS: usize = 1000;
/// Concurrencies of the tool-step comparison (t).
const TOOL_STEP_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each concurrency of (t), in the order of (l): without tools, with the
/// step, with the step, without, …; each takes `BENCH_REQUESTS / TOOL_STEP_ROUNDS` requests
/// (at least one per connection), so a side takes as many as a scenario.
const TOOL_STEP_ROUNDS: usize = 8;
/// The scheduled rate of (t), as a share of what the slower side (the tool step) sustains in
/// its closed-loop pass. Lower than the 75% of the other scenarios: at 75%, on a busy machine,
/// the tool-step side ran past its capacity at concurrency 1 (the short pass had overestimated
/// it), and its latency then measured a growing backlog rather than the step.
const TOOL_STEP_LOAD: f64 = 0.6;
/// Deals in the workspace of (t): its retrieval and the tool's statement read these.
const TOOL_STEP_DEALS: usize = 1000;
/// The sides of (t): the base of the differences, then the tool step.
const TOOL_STEP_SIDES: [&str; 2] = ["t) agent turn, no tools", "t) agent turn, one tool step"];
const TOOL_STEP_QUESTION: &str = "What are the top 5 open deals by amount?";
const TOOL_STEP_INSTRUCTIONS: &str = "You analyse the sales pipeline. Answer briefly and name the deals.";
/// The stand-in's answer on both sides, so both turns store and return the same text.
const TOOL_STEP_REPLY: &str = "The five largest open deals, largest first, are the ones listed in the sources.";
/// Concurrencies of the fallback comparison (o).
const FALLBACK_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each concurrency of (o), alternated as in (t): each takes
/// `BENCH_REQUESTS / FALLBACK_ROUNDS` requests (at least one per connection).
const FALLBACK_ROUNDS: usize = 8;
/// The scheduled rate of (o), as a share of what the slower chat side (the fallback, with two
/// model calls) sustains in its closed-loop pass; as in (t), for the same reason.
const FALLBACK_LOAD: f64 = 0.6;
/// The extra provider of the bench Worker (`LLM_PROVIDERS` in `scripts/bench.sh`): the openai
/// wire at the stand-in's `/flaky/v1`, which (o) scripts to answer 503 at once, every time.
const FALLBACK_PROVIDER: &str = "flaky";
const FALLBACK_PATH: &str = "/flaky/v1/chat/completions";
/// The model of both agents of (o) and of the fallback target.
const FALLBACK_MODEL: &str = "bench-model";
const FALLBACK_INSTRUCTIONS: &str = "You answer questions about the sales pipeline briefly.";
const FALLBACK_QUESTION: &str = "What are the top deals in our pipeline?";
/// The sides of (o): the base of the differences, the fallback, and one stand-in round trip.
const FALLBACK_SIDES: [&str; 3] =
    ["o) agent turn, answered directly", "o) agent turn, failed primary + fallback", "o) stand-in round trip"];
/// The goal of (o): a failed primary costs less than one stand-in round trip plus this, p50.
const FALLBACK_GOAL_MARGIN_MS: f64 = 2.0;
/// Earlier turns of each long chat; both sides of each are [`LONG_TEXT_CHARS`] long.
const LONG_CHAT_TURNS: usize = 60;
const LONG_TEXT_CHARS: usize = 10_000;
/// Requests one long chat takes at most during (e). Each adds two short messages, and the
/// Worker never reads more than a chat's newest 200 messages (`HISTORY_LIMIT`): after 40
/// requests the long ones would start to drop out of reach and (e) would measure a short chat.
/// Each connection therefore rotates over chats of its own.
const LONG_CHAT_REQUESTS: usize = 40;
/// Requests per connection in each closed-loop pass (there are two before each run) of (e).
const LONG_CHAT_CALIBRATION: usize = 10;
/// Concurrencies of the Chat Completions comparison (v).
const COMPLETIONS_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each concurrency of (v), alternated as in (t): each takes
/// `BENCH_REQUESTS / COMPLETIONS_ROUNDS` requests (at least one per connection).
const COMPLETIONS_ROUNDS: usize = 8;
/// The scheduled rate of (v), as a share of what its slowest side sustains in its closed-loop
/// pass; as in (t), for the same reason.
const COMPLETIONS_LOAD: f64 = 0.6;
/// The model of our `/v1/chat/completions` that names the workspace's default assistant.
const COMPLETIONS_MODEL: &str = "attive-default";
/// The goal of (v): the time ours adds over the stand-in, p50, at most this multiple of what
/// LiteLLM adds.
const COMPLETIONS_GOAL: f64 = 0.75;
/// The sides of (v), the base of the added times first; in [`COMPLETIONS_KEYS`] order.
const COMPLETIONS_SIDES: [&str; 5] = [
    "v) LLM stand-in direct",
    "v) POST /api/chat (new chat)",
    "v) POST /v1/chat/completions (ours)",
    "v) LiteLLM proxy /v1/chat/completions",
    "v) Portkey gateway /v1/chat/completions",
];
/// The sides of (v) in its JSON, and their indexes.
const COMPLETIONS_KEYS: [&str; 5] = ["standIn", "apiChat", "ours", "litellm", "portkey"];
/// Indexes of (v)'s sides in [`COMPLETIONS_SIDES`].
const V_STAND_IN: usize = 0;
const V_API_CHAT: usize = 1;
const V_OURS: usize = 2;
const V_LITELLM: usize = 3;
const V_PORTKEY: usize = 4;
/// The question of the new chats of (c), (l), (w) and (v), and of the stand-in's direct body.
const CHAT_QUESTION: &str = "What are the top deals in our pipeline?";
/// Where the environment comes from, for a bench started without it.
const ENV_HINT: &str = "run `make bench`";
/// The phases of the `Server-Timing` header of `POST /api/chat`, in the order of a turn.
const PHASES: [&str; 4] = ["auth-read", "rate-limit", "llm", "persist"];
/// Share of the slowest requests (by service time) the tail breakdown looks at.
const TAIL: f64 = 0.05;

#[derive(Clone)]
struct Target {
    method: &'static str,
    url: String,
    token: Option<String>,
    headers: Vec<(&'static str, String)>,
    /// Request bodies. Request `i` of the run uses `bodies[i % len]`; request `i` goes over
    /// connection `i % conns`, so with `len` a multiple of the concurrency every body (a chat
    /// to continue) belongs to one connection only.
    bodies: Vec<Option<Value>>,
    /// Requests per connection in each closed-loop pass at most (the long chats can take only
    /// so many); otherwise as many as fit in the pass.
    calibration_cap: usize,
    /// Whether the last of a body's `messages` is numbered like a `message` (see [`send`]).
    number_messages: bool,
}

impl Target {
    fn new(method: &'static str, url: String, token: Option<&str>, bodies: Vec<Option<Value>>) -> Self {
        Self {
            method,
            url,
            token: token.map(str::to_owned),
            headers: Vec::new(),
            bodies,
            calibration_cap: usize::MAX,
            number_messages: false,
        }
    }

    fn get(url: String, token: Option<&str>) -> Self {
        Self::new("GET", url, token, vec![None])
    }

    fn post(url: String, token: Option<&str>, body: Value) -> Self {
        Self::new("POST", url, token, vec![Some(body)])
    }

    /// A POST whose request `i` sends `bodies[i % len]`.
    fn post_each(url: String, token: Option<&str>, bodies: Vec<Value>) -> Self {
        Self::new("POST", url, token, bodies.into_iter().map(Some).collect())
    }

    fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers = headers;
        self
    }

    fn with_calibration_cap(mut self, cap: usize) -> Self {
        self.calibration_cap = cap;
        self
    }

    fn numbering_messages(mut self) -> Self {
        self.number_messages = true;
        self
    }

    /// The same target with its bodies rotated so that a run's request 0 sends body `first`
    /// (modulo their number). With `first` a multiple of the concurrency and as many bodies as
    /// a multiple of it, every body still belongs to one connection only.
    fn starting_at(&self, first: usize) -> Self {
        let mut t = self.clone();
        let len = t.bodies.len().max(1);
        t.bodies.rotate_left(first % len);
        t
    }
}

/// One request as the load generator saw it.
struct Sample {
    /// From its scheduled time (µs): what a caller sending at that rate waits.
    latency_us: u64,
    /// From its send (µs): the server's answer time, without waiting behind earlier requests.
    service_us: u64,
    ok: bool,
    /// `Server-Timing` metrics (`dur` values), in header order.
    timing: Vec<(String, f64)>,
    /// The answer's `X-LLM-Provider`, `X-LLM-Model` and `X-LLM-Attempts`, each when present.
    llm: [Option<String>; 3],
}

/// The headers that name the target that answered a chat, in [`Sample::llm`] order.
const LLM_HEADERS: [&str; 3] = ["x-llm-provider", "x-llm-model", "x-llm-attempts"];

/// What [`send`] keeps of one response.
struct Reply {
    status: u16,
    timing: Vec<(String, f64)>,
    llm: [Option<String>; 3],
}

/// Request `index` of a run of `t`. A body's `message` (or, where the target says so, the
/// content of the last of its `messages`) ends in ` #n`, so that no two requests of a run ask
/// quite the same.
fn send(agent: &ureq::Agent, t: &Target, index: usize, n: usize) -> Reply {
    let mut req = agent.request(t.method, &t.url);
    if let Some(token) = &t.token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    for (name, value) in &t.headers {
        req = req.set(name, value);
    }
    let body = t.bodies.get(index % t.bodies.len().max(1)).cloned().flatten();
    let result = match body {
        Some(mut b) => {
            let numbered = |text: &Value| json!(format!("{} #{n}", text.as_str().unwrap_or("bench")));
            if let Some(msg) = b.get_mut("message") {
                *msg = numbered(msg);
            } else if t.number_messages {
                if let Some(last) = b.get_mut("messages").and_then(Value::as_array_mut).and_then(|m| m.last_mut()) {
                    last["content"] = numbered(&last["content"]);
                }
            }
            req.set("Content-Type", "application/json").send_string(&b.to_string())
        }
        None => req.call(),
    };
    match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => {
            let status = r.status();
            let timing = r.header("server-timing").map(parse_server_timing).unwrap_or_default();
            let llm = LLM_HEADERS.map(|h| r.header(h).map(str::to_owned));
            let _ = r.into_string();
            Reply { status, timing, llm }
        }
        Err(_) => Reply { status: 0, timing: Vec::new(), llm: [None, None, None] },
    }
}

/// Closed loop for a moment (at most `calibration_cap` requests per connection): how many
/// requests per second this target sustains.
fn calibrate(t: &Target, conns: usize) -> f64 {
    closed_loop_rate(conns, t.calibration_cap, REQUEST_TIMEOUT, |a, c, n| {
        send(a, t, c + n * conns, n);
    })
}

struct Run {
    rate: f64,
    /// From the first request's scheduled time to the last answer.
    seconds: f64,
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: usize,
    samples: Vec<Sample>,
}

impl Run {
    /// The requests of a run (or of runs taken as one) at `rate` that took `seconds`.
    fn of(rate: f64, seconds: f64, samples: Vec<Sample>) -> Self {
        let latency = Pcts::of_us(samples.iter().map(|s| s.latency_us));
        let errors = samples.iter().filter(|s| !s.ok).count();
        let rps = samples.len() as f64 / seconds.max(f64::MIN_POSITIVE);
        Run { rate, seconds, rps, p50: latency.p50, p95: latency.p95, p99: latency.p99, errors, samples }
    }

    fn latency(&self) -> Pcts {
        Pcts { p50: self.p50, p95: self.p95, p99: self.p99 }
    }
}

/// Open loop: `total` requests at `rate` per second over `conns` connections.
fn run(t: &Target, conns: usize, total: usize, rate: f64) -> Run {
    let (samples, seconds) = open_loop(conns, total, rate, REQUEST_TIMEOUT, |a, i, scheduled| {
        let sent = Instant::now();
        let Reply { status, timing, llm } = send(a, t, i, i);
        let done = Instant::now();
        Sample {
            latency_us: done.saturating_duration_since(scheduled).as_micros() as u64,
            service_us: done.saturating_duration_since(sent).as_micros() as u64,
            // A 304 is a conditional read that worked.
            ok: (200..300).contains(&status) || status == 304,
            timing,
            llm,
        }
    });
    Run::of(rate, seconds, samples)
}

/// Runs of one target at one rate taken as one: their requests in one histogram.
fn merge(runs: Vec<Run>) -> Run {
    let (rate, seconds) = (runs.first().map_or(0.0, |r| r.rate), runs.iter().map(|r| r.seconds).sum::<f64>());
    let samples: Vec<Sample> = runs.into_iter().flat_map(|r| r.samples).collect();
    Run::of(rate, seconds, samples)
}

fn metric(timing: &[(String, f64)], name: &str) -> Option<f64> {
    timing.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
}

/// The mean of one `Server-Timing` metric over the successful requests that carry it: the
/// phases come in whole milliseconds, so a shift of a fraction of one shows in the mean only.
fn mean_metric(samples: &[Sample], name: &str) -> Option<f64> {
    let v: Vec<f64> = samples.iter().filter(|s| s.ok).filter_map(|s| metric(&s.timing, name)).collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Service time outside the phases the Worker timed: its own CPU, the local runtime's proxy,
/// the loopback and the client. Auth-read and rate-limit run side by side, so the longer
/// of the two counts.
fn outside_ms(s: &Sample) -> Option<f64> {
    let [read, limit, llm, persist] = PHASES.map(|p| metric(&s.timing, p));
    let timed = read?.max(limit?) + llm? + persist?;
    Some(s.service_us as f64 / 1000.0 - timed)
}

/// Everything derived from one run's samples: per-phase percentiles, service time, queueing,
/// and what the slowest requests spent their time on.
struct Analysis {
    /// Each `Server-Timing` metric, then `outside` (see [`outside_ms`]).
    phases: Vec<(String, Pcts)>,
    service: Pcts,
    /// Waiting behind earlier requests of the same connection (latency minus service time).
    queue: Pcts,
    /// The slowest [`TAIL`] of requests by service time: how many, and the median of each
    /// phase (and of `outside` and the service time) among them.
    tail: (usize, Vec<(String, f64)>),
}

fn analyse(samples: &[Sample]) -> Analysis {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok).collect();
    let mut names: Vec<String> = Vec::new();
    for s in &ok {
        for (n, _) in &s.timing {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let values = |name: &str, of: &[&Sample]| -> Vec<f64> {
        of.iter()
            .filter_map(|s| if name == "outside" { outside_ms(s) } else { metric(&s.timing, name) })
            .collect::<Vec<_>>()
    };
    let has_phases = ok.iter().any(|s| outside_ms(s).is_some());
    if has_phases {
        names.push("outside".into());
    }
    let phases = names.iter().filter_map(|n| Some((n.clone(), Pcts::nearest_rank(values(n, &ok))?))).collect();
    let service = Pcts::nearest_rank(ok.iter().map(|s| s.service_us as f64 / 1000.0).collect()).unwrap_or_default();
    let queue =
        Pcts::nearest_rank(ok.iter().map(|s| s.latency_us.saturating_sub(s.service_us) as f64 / 1000.0).collect())
            .unwrap_or_default();

    let mut by_service = ok.clone();
    by_service.sort_by_key(|s| std::cmp::Reverse(s.service_us));
    let slow = &by_service[..((by_service.len() as f64 * TAIL).ceil() as usize).min(by_service.len())];
    let mut tail: Vec<(String, f64)> = Pcts::nearest_rank(slow.iter().map(|s| s.service_us as f64 / 1000.0).collect())
        .map(|p| ("service".into(), p.p50))
        .into_iter()
        .collect();
    if has_phases {
        for n in PHASES.iter().map(|p| p.to_string()).chain(["outside".to_string()]) {
            if let Some(p) = Pcts::nearest_rank(values(&n, slow)) {
                tail.push((n, p.p50));
            }
        }
    }
    Analysis { phases, service, queue, tail: (slow.len(), tail) }
}

/// A chat with `turns` earlier messages (turns / 2 exchanges).
fn chat_with_history(base: &str, key: &str, turns: usize) -> String {
    let first = call("POST", &format!("{base}/api/chat"), Some(key), Some(json!({ "message": "history 0" })));
    let id = first["chatId"].as_str().unwrap_or_default().to_owned();
    for i in 1..turns / 2 {
        call(
            "POST",
            &format!("{base}/api/chat"),
            Some(key),
            Some(json!({ "message": format!("history {i}"), "chatId": id })),
        );
    }
    id
}

/// `conns` chats of 20 earlier turns, made side by side.
fn prepare_chats(base: &str, key: &str, conns: usize) -> Vec<String> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..conns).map(|_| s.spawn(|| chat_with_history(base, key, 20))).collect();
        hs.into_iter().filter_map(|h| h.join().ok()).collect()
    })
}

/// `count` chats of [`LONG_CHAT_TURNS`] turns, both sides [`LONG_TEXT_CHARS`] long: the
/// stand-in is told to answer requests carrying `tag` (which every user message of these
/// chats starts with) with that much text, and told to stop once the chats are ready, so the
/// turns of the run get the usual short answer.
fn long_chats(base: &str, stub: &str, key: &str, tag: &str, count: usize) -> Vec<String> {
    let scenario = |steps: Value| {
        call("POST", &format!("{stub}/_stub/scenario"), None, Some(json!({ "tag": tag, "steps": steps })))
    };
    scenario(json!([{ "reply": "r".repeat(LONG_TEXT_CHARS) }]));
    let message = |i: usize| {
        let head = format!("{tag} turn {i} ");
        head.clone() + &"u".repeat(LONG_TEXT_CHARS - head.len())
    };
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut chats: Vec<(usize, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..count.min(4))
            .map(|_| {
                s.spawn(|| {
                    let mut made = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= count {
                            return made;
                        }
                        let url = format!("{base}/api/chat");
                        let first = call("POST", &url, Some(key), Some(json!({ "message": message(0) })));
                        let id = first["chatId"].as_str().unwrap_or_default().to_owned();
                        for i in 1..LONG_CHAT_TURNS {
                            call("POST", &url, Some(key), Some(json!({ "message": message(i), "chatId": id })));
                        }
                        made.push((n, id));
                    }
                })
            })
            .collect();
        workers.into_iter().filter_map(|h| h.join().ok()).flatten().collect()
    });
    scenario(json!([{}]));
    chats.sort();
    let chats: Vec<String> = chats.into_iter().map(|(_, id)| id).collect();
    // Check one: the run is only meaningful if the chats really are this long.
    let one = call("GET", &format!("{base}/api/chats/{}", chats[0]), Some(key), None);
    let messages = one["messages"].as_array().cloned().unwrap_or_default();
    let long =
        messages.iter().filter(|m| m["content"].as_str().map_or(0, |c| c.chars().count()) >= LONG_TEXT_CHARS).count();
    assert_eq!(
        (messages.len(), long),
        (2 * LONG_CHAT_TURNS, 2 * LONG_CHAT_TURNS),
        "a long chat should hold {} messages of {LONG_TEXT_CHARS} characters",
        2 * LONG_CHAT_TURNS
    );
    chats
}

/// The origin the bench's embed tokens are minted for (and its requests claim to come from).
const BENCH_ORIGIN: &str = "https://bench.example.com";

/// What (i) and (m) read and mint with.
struct Dashboards {
    key: String,
    chat_id: String,
    insight_id: String,
    etag: String,
    token: String,
}

/// A workspace of its own: a chat of 8 messages (what a dashboard's chat read would fetch) and
/// an insight generated once, its ETag, and an embed token for it (an hour, the longest).
fn dashboards_fixture(base: &str, op: &str) -> Dashboards {
    let support::http::Workspace { admin, keys: [key], .. } = workspace(base, op, "bench", ["bench-dashboards"]);
    let chat_id = chat_with_history(base, &key, 8);
    let insight = call(
        "POST",
        &format!("{base}/api/settings/insights"),
        Some(&admin),
        Some(json!({ "name": "Pipeline risk", "prompt": "What are the top deals in our pipeline?" })),
    );
    let insight_id = insight["id"].as_str().unwrap_or_default().to_owned();
    let refreshed =
        call("POST", &format!("{base}/api/settings/insights/{insight_id}/refresh"), Some(&admin), Some(json!({})));
    assert_eq!(refreshed["status"], "fresh", "the bench's insight was not generated: {refreshed}");
    let minted = call(
        "POST",
        &format!("{base}/api/embed-tokens"),
        Some(&key),
        Some(json!({ "origins": [BENCH_ORIGIN], "insightIds": [insight_id], "ttlSeconds": 3600, "chat": true })),
    );
    let token = minted["token"].as_str().unwrap_or_default().to_owned();
    let read = agent(REQUEST_TIMEOUT)
        .get(&format!("{base}/api/insights/{insight_id}"))
        .set("Authorization", &format!("Bearer {token}"))
        .set("Origin", BENCH_ORIGIN)
        .call();
    let etag = match read {
        Ok(r) => r.header("etag").unwrap_or_default().to_owned(),
        Err(e) => panic!("reading the bench's insight: {e}"),
    };
    assert!(!etag.is_empty(), "the insight read has no ETag");
    Dashboards { key, chat_id, insight_id, etag, token }
}

/// (i) an insight read with an embed token, plain and conditional (304), beside a chat read
/// with the key; (m) minting a token.
fn dashboard_targets(base: &str, d: &Dashboards) -> Vec<(&'static str, Target)> {
    let insight = || format!("{base}/api/insights/{}", d.insight_id);
    let origin = ("Origin", BENCH_ORIGIN.to_owned());
    vec![
        (
            "i) GET /api/chats/{id} (key, 8 messages)",
            Target::get(format!("{base}/api/chats/{}", d.chat_id), Some(&d.key)),
        ),
        (
            "i) GET /api/insights/{id} (embed token)",
            Target::get(insight(), Some(&d.token)).with_headers(vec![origin.clone()]),
        ),
        (
            "i) GET /api/insights/{id} (embed token, If-None-Match: 304)",
            Target::get(insight(), Some(&d.token)).with_headers(vec![origin, ("If-None-Match", d.etag.clone())]),
        ),
        (
            "m) POST /api/embed-tokens",
            Target::post(
                format!("{base}/api/embed-tokens"),
                Some(&d.key),
                json!({ "origins": [BENCH_ORIGIN], "insightIds": [d.insight_id] }),
            ),
        ),
    ]
}

/// One scenario at one concurrency, as the tables show it.
struct Row {
    name: &'static str,
    conns: usize,
    run: Run,
    /// Its latency p50 minus that of the stand-in called directly, where that is its base.
    over: Option<f64>,
    analysis: Analysis,
}

impl Row {
    fn new(name: &'static str, conns: usize, run: Run) -> Self {
        let analysis = analyse(&run.samples);
        Row { name, conns, run, over: None, analysis }
    }
}

/// The runs of sides that took turns (see [`alternate`]), each side's taken as one, named.
fn rows_of(runs: Vec<Vec<Run>>, names: impl IntoIterator<Item = &'static str>, conns: usize) -> Vec<Row> {
    runs.into_iter().zip(names).map(|(runs, name)| Row::new(name, conns, merge(runs))).collect()
}

/// The p50 differences of the rounds' pairs of runs (`a` − `b`, ms).
fn round_diffs(a: &[Run], b: &[Run]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a.p50 - b.p50).collect()
}

/// How the rounds' p50 differences spread: their median, lowest and highest, and in how many
/// the first side was the slower (as `slower`).
fn round_summary(diffs: &[f64], slower: &str) -> Value {
    let rounds = Pcts::nearest_rank(diffs.to_vec()).unwrap_or_default();
    let (lo, hi) = range(diffs);
    json!({ "medianMs": rounds.p50, "lowestMs": lo, "highestMs": hi,
            slower: diffs.iter().filter(|d| **d > 0.0).count() })
}

/// What each of the sides that take turns sustains in a closed-loop pass, requests per second;
/// with `warm_up` (before the first concurrency), after a warm-up pass of each.
fn capacities(targets: &[&Target], conns: usize, warm_up: bool) -> Vec<f64> {
    if warm_up {
        for t in targets {
            let _ = calibrate(t, conns.min(4));
        }
    }
    targets.iter().map(|t| calibrate(t, conns)).collect()
}

/// The lowest of some numbers.
fn lowest(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One workload at one concurrency against two Workers that differ in one setting, the two
/// taking turns at one rate: (l) and (s).
struct Pair {
    /// The side the differences are of: (l) the usage ledger on; (s) after the split, each
    /// workspace in its own database.
    a: Row,
    /// Its base: (l) the usage ledger off; (s) before the split, the D1 plane.
    b: Row,
    /// The latency p50 of each run of `a` minus that of its partner run (the round's run) of
    /// `b`, ms: how far apart the two sides land from round to round.
    round_diffs: Vec<f64>,
}

/// Requests in each of `rounds` runs that take `requests` in all at concurrency `conns`, rounded
/// down to a multiple of the concurrency (one per connection at least), so that every
/// connection of a run sends as many and each run starts on the bodies of connection 0 (see
/// [`Target::starting_at`]).
fn per_round(requests: usize, rounds: usize, conns: usize) -> usize {
    (requests / rounds / conns).max(1) * conns
}

/// A workload against two Workers: the sides `names` and `targets` (in [`Pair`] order) at
/// concurrency `conns`, alternately (a, b, b, a, a, b, …; see [`alternate`]) in `rounds` runs
/// a side that take `requests` in all, at one scheduled rate for both, so that a drift of the
/// machine falls on both sides alike. Each run of a side starts on the target's bodies where
/// its previous run stopped, so that a workload of chats that each take only so many requests
/// (the long ones of (e)) spreads its requests over all of them.
fn two_workers(names: [&'static str; 2], targets: [Target; 2], conns: usize, requests: usize, rounds: usize) -> Pair {
    let per_round = per_round(requests, rounds, conns);
    let _ = calibrate(&targets[0], conns.min(4));
    let _ = calibrate(&targets[1], conns.min(4));
    // One rate for both sides: 75% of the mean of what each sustains (the mean rather than the
    // lower one: a stall during one short pass would slow the whole scenario).
    let rate = scheduled_rate((calibrate(&targets[0], conns) + calibrate(&targets[1], conns)) / 2.0, LOAD);
    eprintln!("{} / {} @ {conns}: {rate:.0} req/s scheduled, {rounds} rounds each", names[0], names[1]);
    let mut started = [0; 2];
    let runs = alternate(2, rounds, |i| {
        let from = started[i];
        started[i] += per_round;
        run(&targets[i].starting_at(from), conns, per_round, rate)
    });
    let round_diffs = round_diffs(&runs[0], &runs[1]);
    let Ok([a, b]) = <[Row; 2]>::try_from(rows_of(runs, names, conns)) else { unreachable!("two sides") };
    Pair { a, b, round_diffs }
}

/// A new chat's body: [`CHAT_QUESTION`].
fn new_chat() -> Value {
    json!({ "message": CHAT_QUESTION })
}

/// Bodies that continue `chats`, one each.
fn continuing(chats: &[String]) -> Vec<Value> {
    chats.iter().map(|id| json!({ "message": "And by region?", "chatId": id })).collect()
}

/// `POST /api/chat` on the Worker at `base` with `key`, request `i` sending `bodies[i % len]`.
fn chat_target(base: &str, key: &str, bodies: Vec<Value>) -> Target {
    Target::post_each(format!("{base}/api/chat"), Some(key), bodies)
}

/// Requests the usage ledger of the workspace of `admin` has counted today.
fn ledger_requests(base: &str, admin: &str) -> i64 {
    call("GET", &format!("{base}/api/settings/usage"), Some(admin), None)["totals"]["requests"].as_i64().unwrap_or(0)
}

/// Scenario (l): the workloads of (c) and (d) against `on` (the usage ledger on) and `off`
/// (`USAGE_LEDGER=off`), each in a workspace of its own created here, so the two databases
/// hold the same but for the ledger's rows.
fn ledger_comparison(on: &str, off: &str, op: &str, requests: usize) -> Vec<Pair> {
    let names = ["bench-ledger-new", "bench-ledger-continue"];
    let on_ws = workspace(on, op, "bench", names);
    let off_ws = workspace(off, op, "bench", names);
    let ([on_new, on_cont], [off_new, off_cont]) = (&on_ws.keys, &off_ws.keys);
    let mut pairs = Vec::new();
    for conns in LEDGER_CONCURRENCY {
        eprintln!("preparing {conns} chats with 20 earlier turns on each of the two Workers ...");
        let (on_chats, off_chats) = (prepare_chats(on, on_cont, conns), prepare_chats(off, off_cont, conns));
        // The comparison is only meaningful if the one Worker counts and the other does not.
        let counted = (ledger_requests(on, &on_ws.admin), ledger_requests(off, &off_ws.admin));
        assert!(
            counted.0 > 0 && counted.1 == 0,
            "the usage ledger should count on {on} and not on {off}: counted {counted:?} requests"
        );
        let workloads = [
            (
                ["l) POST /api/chat (new chat), ledger on", "l) POST /api/chat (new chat), ledger off"],
                [chat_target(on, on_new, vec![new_chat()]), chat_target(off, off_new, vec![new_chat()])],
            ),
            (
                ["l) POST /api/chat (20 turns), ledger on", "l) POST /api/chat (20 turns), ledger off"],
                [chat_target(on, on_cont, continuing(&on_chats)), chat_target(off, off_cont, continuing(&off_chats))],
            ),
        ];
        pairs.extend(workloads.map(|(names, targets)| two_workers(names, targets, conns, requests, LEDGER_ROUNDS)));
    }
    pairs
}

/// Long chats each connection of a run continues, so that none takes more than
/// [`LONG_CHAT_REQUESTS`]: for `per_conn` requests of the run and the two closed-loop passes
/// before it.
fn long_chats_per_conn(per_conn: usize) -> usize {
    (per_conn + 2 * LONG_CHAT_CALIBRATION).div_ceil(LONG_CHAT_REQUESTS)
}

/// The workspace of (s)'s chats with retrieval on the Worker at `base`, filled with
/// [`SPLIT_RECORDS`] records; its key. One turn is checked first (not timed): the run measures
/// retrieval only if the question finds sources.
fn split_knowledge_key(base: &str, op: &str) -> String {
    let support::http::Workspace { admin, keys: [key], .. } = workspace(base, op, "bench", ["bench-split-retrieval"]);
    fill(&unpooled_agent(SETUP_TIMEOUT), base, &admin, 3, "s", SPLIT_RECORDS);
    let r = call("POST", &format!("{base}/api/chat"), Some(&key), Some(json!({ "message": QUESTION })));
    let sources = r["sources"].as_array().map_or(0, Vec::len);
    assert!(sources > 0, "s) a turn asking {QUESTION:?} in {SPLIT_RECORDS} records should find sources: {r}");
    key
}

/// (s)'s check after the runs of one workload, not timed: every answered turn on the "after"
/// side (own database) made no D1 round trip, and every one on the "before" side (D1 plane)
/// made some, so that the run measured both layouts; and each side answered some.
fn split_checked(pair: &Pair) {
    for (side, own) in [(&pair.a, true), (&pair.b, false)] {
        let answered: Vec<&Sample> = side.run.samples.iter().filter(|s| s.ok).collect();
        assert!(!answered.is_empty(), "{} @ {}: no answered turn", side.name, side.conns);
        let wrong = answered.iter().find(|s| metric(&s.timing, "d1").is_none_or(|d1| (d1 == 0.0) != own));
        assert!(
            wrong.is_none(),
            "{} @ {}: every answered turn should have d1 {}; one had Server-Timing {:?}",
            side.name,
            side.conns,
            if own { "0" } else { "above 0" },
            wrong.map(|s| &s.timing)
        );
    }
}

/// Scenario (s): the workloads of (c), (d), (e) and a chat with retrieval against `after` (the
/// Worker under test: each workspace in its own database) and `before` (the D1 plane), each
/// side in workspaces of its own created here; see the module's comment.
fn split_comparison(after: &str, before: &str, stub: &str, op: &str, requests: usize) -> Vec<Pair> {
    let sides = [after, before];
    let names = ["bench-split-new", "bench-split-continue", "bench-split-long"];
    let keys = sides.map(|base| workspace(base, op, "bench", names).keys);
    eprintln!("s) importing {SPLIT_RECORDS} records on each of the two Workers ...");
    let retrieval = sides.map(|base| split_knowledge_key(base, op));
    let mut pairs = Vec::new();
    for conns in SPLIT_CONCURRENCY {
        let per_conn = long_chats_per_conn(per_round(requests, SPLIT_ROUNDS, conns) * SPLIT_ROUNDS / conns);
        let t = Instant::now();
        eprintln!(
            "s) preparing {conns} chats with 20 earlier turns and {} long chats on each of the two Workers ...",
            conns * per_conn
        );
        let chats = [0, 1].map(|i| prepare_chats(sides[i], &keys[i][1], conns));
        let long = [0, 1].map(|i| {
            long_chats(sides[i], stub, &keys[i][2], &format!("[bench split long c{conns} {i}]"), conns * per_conn)
        });
        eprintln!("  ready in {:.0} s", t.elapsed().as_secs_f64());
        let targets = [
            [0, 1].map(|i| chat_target(sides[i], &keys[i][0], vec![new_chat()])),
            [0, 1].map(|i| chat_target(sides[i], &keys[i][1], continuing(&chats[i]))),
            [0, 1].map(|i| {
                chat_target(sides[i], &keys[i][2], continuing(&long[i])).with_calibration_cap(LONG_CHAT_CALIBRATION)
            }),
            [0, 1].map(|i| chat_target(sides[i], &retrieval[i], vec![json!({ "message": QUESTION })])),
        ];
        for (names, targets) in SPLIT_WORKLOADS.into_iter().zip(targets) {
            let pair = two_workers(names, targets, conns, requests, SPLIT_ROUNDS);
            split_checked(&pair);
            pairs.push(pair);
        }
    }
    pairs
}

/// One concurrency of (t): the runs of each side in [`TOOL_STEP_SIDES`] order.
struct ToolStepSet {
    sides: Vec<Row>,
    /// What each side sustained in its closed-loop pass, requests per second.
    capacity: Vec<f64>,
    /// Per round, the latency p50 of the tool-step run minus that of the round's run without
    /// tools, ms: how far apart the sides land from round to round.
    round_diffs: Vec<f64>,
}

/// Deal `i` of the workspace of (t): distinct amounts, a third of them won, the rest open.
fn tool_step_deal(i: usize) -> Value {
    let status = if i.is_multiple_of(3) { "won" } else { "open" };
    let stage = if status == "won" { "Closed Won" } else { ["Discovery", "Proposal", "Negotiation"][i % 3] };
    let owner = ["Dana", "Lee", "Kim"][i % 3];
    json!({
        "kind": "deal", "externalId": format!("bench-deal-{i:04}"), "title": format!("Account {i} expansion"),
        "amount": ((i * 7919) % 1000) * 1000 + i, "currency": "USD", "stage": stage, "status": status,
        "owner": owner,
    })
}

/// The stand-in's script for the requests of one side of (t) carrying `tag`: the tool-step side
/// gets the tool call and then the answer, over and over (each connection has tags of its own,
/// so its turns take the two steps in order); the other gets the answer every time.
fn script_tool_step(stub: &str, tag: &str, tool_step: bool) {
    let answer = json!({ "reply": TOOL_STEP_REPLY });
    let steps = if tool_step {
        let arguments =
            json!({ "kind": "deal", "filters": { "status": "open" }, "sortBy": "amount", "order": "desc", "limit": 5 });
        json!([{ "tool_calls": [{ "name": "query_records", "arguments": arguments }] }, answer])
    } else {
        json!([answer])
    };
    call("POST", &format!("{stub}/_stub/scenario"), None, Some(json!({ "tag": tag, "steps": steps, "cycle": true })));
}

/// Scenario (t): in a workspace of its own with [`TOOL_STEP_DEALS`] deals, an agent without
/// tools and one with `query_records`, asked the same question; see the module's comment.
fn tool_step_comparison(base: &str, stub: &str, op: &str, requests: usize) -> Vec<ToolStepSet> {
    let support::http::Workspace { admin, keys: [key], .. } = workspace(base, op, "bench", ["bench-tools"]);
    eprintln!("t) importing {TOOL_STEP_DEALS} deals ...");
    let deals: Vec<Value> = (0..TOOL_STEP_DEALS).map(tool_step_deal).collect();
    for batch in deals.chunks(500) {
        let r = call(
            "PUT",
            &format!("{base}/api/settings/knowledge/records"),
            Some(&admin),
            Some(json!({ "records": batch })),
        );
        let written = r["results"].as_array().map_or(0, |r| r.iter().filter(|x| x["status"] == "created").count());
        assert_eq!(written, batch.len(), "every deal should be created: {r}");
    }
    let agent = |name: &str, tools: Value| -> String {
        let body = json!({ "name": name, "instructions": TOOL_STEP_INSTRUCTIONS, "tools": tools });
        let a = call("POST", &format!("{base}/api/settings/agents"), Some(&admin), Some(body));
        a["id"].as_str().unwrap_or_else(|| panic!("creating agent {name}: {a}")).to_owned()
    };
    let plain = agent("bench-no-tools", json!([]));
    let analyst = agent("bench-query-records", json!(["query_records"]));
    // Sides: (agent, letter of its tags, whether the stand-in calls the tool).
    let sides = [(&plain, 'n', false), (&analyst, 's', true)];

    // One turn of each side, checked: the run measures what it says only if the tool-step side
    // really makes one call returning 5 deals and answers, and the other makes none.
    for (agent_id, letter, tool_step) in sides {
        let tag = format!("[bench t check {letter}]");
        script_tool_step(stub, &tag, tool_step);
        let body = json!({ "message": format!("{tag} {TOOL_STEP_QUESTION}"), "agentId": agent_id });
        let r = call("POST", &format!("{base}/api/chat"), Some(&key), Some(body));
        assert_eq!(r["response"], TOOL_STEP_REPLY, "the answer of a checked turn: {r}");
        let chat_id = r["chatId"].as_str().unwrap_or_default();
        let chat = call("GET", &format!("{base}/api/chats/{chat_id}"), Some(&key), None);
        let calls = chat["messages"][1]["toolCalls"].clone();
        let expected = if tool_step { json!([{ "name": "query_records", "resultCount": 5 }]) } else { json!([]) };
        let seen: Vec<Value> = calls
            .as_array()
            .map(|a| a.iter().map(|c| json!({ "name": c["name"], "resultCount": c["resultCount"] })).collect())
            .unwrap_or_default();
        assert_eq!(json!(seen), expected, "the tool calls of a checked turn ({letter}): {chat}");
    }

    let mut sets = Vec::new();
    for conns in TOOL_STEP_CONCURRENCY {
        let per_round = requests.div_ceil(TOOL_STEP_ROUNDS).max(conns);
        // Each connection's tags of its own (request i goes over connection i % conns and uses
        // body i % conns), fresh for each concurrency.
        let tags = |letter: char| (0..conns).map(move |c| format!("[bench t{conns} {letter} w{c}]"));
        let script_all = || {
            for (_, letter, tool_step) in sides {
                tags(letter).for_each(|tag| script_tool_step(stub, &tag, tool_step));
            }
        };
        script_all();
        let targets: Vec<Target> = sides
            .iter()
            .map(|(agent_id, letter, _)| {
                let bodies = tags(*letter)
                    .map(|tag| json!({ "message": format!("{tag} {TOOL_STEP_QUESTION}"), "agentId": agent_id }))
                    .collect();
                Target::post_each(format!("{base}/api/chat"), Some(&key), bodies)
            })
            .collect();
        // Warmed up (the isolate and the statements of both sides) before the first concurrency
        // only. One rate for both sides, from what the slower (the tool step, with two model
        // calls) sustains, so that neither runs at its capacity.
        let capacity = capacities(&targets.iter().collect::<Vec<_>>(), conns, conns == TOOL_STEP_CONCURRENCY[0]);
        let rate = scheduled_rate(lowest(&capacity), TOOL_STEP_LOAD);
        // The script again: every connection's turns start with the tool call, whatever the
        // closed-loop passes left behind.
        script_all();
        eprintln!(
            "t) agent turns without / with one tool step @ {conns}: closed loop {:.0} / {:.0} req/s; {rate:.0} req/s \
             scheduled, {TOOL_STEP_ROUNDS} rounds each",
            capacity[0], capacity[1]
        );
        let runs = alternate(targets.len(), TOOL_STEP_ROUNDS, |i| run(&targets[i], conns, per_round, rate));
        let round_diffs = round_diffs(&runs[1], &runs[0]);
        let sides = rows_of(runs, TOOL_STEP_SIDES, conns);
        sets.push(ToolStepSet { sides, capacity, round_diffs });
    }
    sets
}

/// One concurrency of (o): the runs of each side in [`FALLBACK_SIDES`] order.
struct FallbackSet {
    sides: Vec<Row>,
    /// What each side sustained in its closed-loop pass, requests per second.
    capacity: Vec<f64>,
    /// Per round, the latency p50 of the fallback run minus that of the round's direct run, ms.
    round_diffs: Vec<f64>,
    /// Per side: its responses, and how many of them answered as that side must (see
    /// [`fallback_expected`]).
    checked: Vec<(usize, usize)>,
    /// The size of the stand-in side's request body: that of the direct side's request to it.
    upstream_bytes: usize,
}

/// What every response of side `i` of (o) must say: 200 with these `X-LLM-Provider`,
/// `X-LLM-Model` and `X-LLM-Attempts` (the stand-in called directly: 200 without them).
fn fallback_expected(side: usize) -> [Option<String>; 3] {
    match side {
        0 => [Some("default".into()), Some(FALLBACK_MODEL.into()), Some("1".into())],
        1 => [Some("default".into()), Some(FALLBACK_MODEL.into()), Some("2".into())],
        _ => [None, None, None],
    }
}

/// The stand-in's requests whose body contains `tag` (letters, digits and dashes only).
fn stub_requests(stub: &str, tag: &str) -> Vec<Value> {
    call("GET", &format!("{stub}/_stub/requests?tag={tag}"), None, None).as_array().cloned().unwrap_or_default()
}

/// (o)'s check before its runs: one turn of each side (agent ids `agents`, messages from
/// `message`). The run measures what it says only if the direct side is answered by `default`
/// in one request and the other goes to `flaky` (503) and then to `default`. Returns the direct
/// side's request to the stand-in, which the stand-in side sends.
fn fallback_checked_turns(
    base: &str,
    stub: &str,
    key: &str,
    agents: [&str; 2],
    message: impl Fn(usize, &str) -> String,
) -> Value {
    let mut upstream_body = Value::Null;
    for (side, agent_id) in agents.into_iter().enumerate() {
        let mark = format!("bench-o-check-{side}");
        let body = json!({ "message": message(side, &format!("{mark} ")), "agentId": agent_id });
        let t = Target::post(format!("{base}/api/chat"), Some(key), body);
        let reply = send(&agent(REQUEST_TIMEOUT), &t, 0, 0);
        assert_eq!(
            (reply.status, reply.llm.clone()),
            (200, fallback_expected(side)),
            "o) a checked turn of side {side}: status and X-LLM-Provider/Model/Attempts"
        );
        let seen = stub_requests(stub, &mark);
        let paths: Vec<&str> = seen.iter().map(|r| r["path"].as_str().unwrap_or_default()).collect();
        let expected: &[&str] =
            if side == 0 { &["/v1/chat/completions"] } else { &[FALLBACK_PATH, "/v1/chat/completions"] };
        assert_eq!(paths, expected, "o) what the stand-in saw of a checked turn of side {side}");
        if side == 0 {
            upstream_body = seen[0]["body"].clone();
        }
    }
    // The stand-in side: that body, with the user message of a turn of the run (which adds ` #n`).
    if let Some(user) =
        upstream_body["messages"].as_array_mut().and_then(|m| m.iter_mut().rev().find(|m| m["role"] == "user"))
    {
        user["content"] = json!(format!("{} #0", message(0, "")));
    }
    assert!(upstream_body["messages"].is_array(), "o) the direct side's request to the stand-in: {upstream_body}");
    upstream_body
}

/// (o)'s check after the runs of one concurrency, not timed: every response of each side must
/// have taken the path it stands for. Per side: its responses, and how many answered so.
fn fallback_checked_responses(sides: &[Row], conns: usize, upstream_bytes: usize) -> Vec<(usize, usize)> {
    let checked: Vec<(usize, usize)> = sides
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let want = fallback_expected(i);
            (r.run.samples.len(), r.run.samples.iter().filter(|s| s.ok && s.llm == want).count())
        })
        .collect();
    eprintln!(
        "o) @ {conns}: X-LLM-Attempts 1 from default on {} of {} direct answers, X-LLM-Attempts 2 from default on \
         {} of {} answers after a failed primary, {} of {} stand-in round trips answered ({upstream_bytes} bytes each)",
        checked[0].1, checked[0].0, checked[1].1, checked[1].0, checked[2].1, checked[2].0
    );
    for (i, (side, &(total, good))) in sides.iter().zip(&checked).enumerate() {
        let wrong = side.run.samples.iter().find(|s| !(s.ok && s.llm == fallback_expected(i)));
        assert_eq!(
            good,
            total,
            "o) {} @ {conns}: every response should be 200 with X-LLM-Provider/Model/Attempts {:?}; one was {:?}",
            side.name,
            fallback_expected(i),
            wrong.map(|s| (s.ok, &s.llm)),
        );
    }
    checked
}

/// Scenario (o): in a workspace of its own, an agent on `default` and one on `flaky` (whose
/// every request the stand-in answers 503 at once) falling back to `default` with the same
/// model, asked the same question, and the stand-in called directly with the body the first
/// one sends it; see the module's comment.
fn fallback_comparison(base: &str, stub: &str, op: &str, requests: usize) -> Vec<FallbackSet> {
    let support::http::Workspace { admin, keys: [key], .. } = workspace(base, op, "bench", ["bench-fallback"]);
    let make_agent = |name: &str, routing: Value| -> String {
        let mut body = json!({ "name": name, "instructions": FALLBACK_INSTRUCTIONS, "model": FALLBACK_MODEL });
        for (k, v) in routing.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let url = format!("{base}/api/settings/agents");
        match try_call(&unpooled_agent(SETUP_TIMEOUT), "POST", &url, Some(&admin), Some(&body)) {
            Ok(a) => a["id"].as_str().unwrap_or_else(|| panic!("creating agent {name}: {a}")).to_owned(),
            Err(CallError::Status(code, text)) => panic!(
                "creating agent {name}: {code} {text} (the bench Worker's LLM_PROVIDERS, set in scripts/bench.sh, \
                 should define `{FALLBACK_PROVIDER}`)"
            ),
            Err(e) => panic!("creating agent {name}: {e}"),
        }
    };
    let direct = make_agent("bench-direct", json!({ "provider": "default" }));
    let fallback = make_agent(
        "bench-fallback",
        json!({ "provider": FALLBACK_PROVIDER, "fallbacks": [{ "provider": "default", "model": FALLBACK_MODEL }] }),
    );
    // Both sides' messages carry a tag of the same length; the stand-in answers every request
    // of the fallback side's tag that comes to the `flaky` path 503 at once, for good.
    let tags = ["[bench o a]", "[bench o b]"];
    let scenario = json!({ "tag": tags[1], "path": FALLBACK_PATH, "steps": [{ "status": 503 }], "cycle": true });
    call("POST", &format!("{stub}/_stub/scenario"), None, Some(scenario));
    let message = |side: usize, extra: &str| format!("{} {extra}{FALLBACK_QUESTION}", tags[side]);

    let upstream_body = fallback_checked_turns(base, stub, &key, [&direct, &fallback], message);
    let upstream_bytes = upstream_body.to_string().len();

    let mut sets = Vec::new();
    for conns in FALLBACK_CONCURRENCY {
        let per_round = requests.div_ceil(FALLBACK_ROUNDS).max(conns);
        let chat = |side: usize, agent_id: &str| {
            let body = json!({ "message": message(side, ""), "agentId": agent_id });
            Target::post(format!("{base}/api/chat"), Some(&key), body)
        };
        let targets = [
            chat(0, &direct),
            chat(1, &fallback),
            Target::post(format!("{stub}/v1/chat/completions"), None, upstream_body.clone()),
        ];
        // One rate for all three, from what the slower chat side (the fallback, two model
        // calls) sustains, as in (t).
        let capacity = capacities(&targets.iter().collect::<Vec<_>>(), conns, conns == FALLBACK_CONCURRENCY[0]);
        let rate = scheduled_rate(capacity[0].min(capacity[1]), FALLBACK_LOAD);
        eprintln!(
            "o) agent turns direct / after a failed primary / stand-in @ {conns}: closed loop {:.0} / {:.0} / {:.0} \
             req/s; {rate:.0} req/s scheduled, {FALLBACK_ROUNDS} rounds each",
            capacity[0], capacity[1], capacity[2]
        );
        let runs = alternate(targets.len(), FALLBACK_ROUNDS, |i| run(&targets[i], conns, per_round, rate));
        let round_diffs = round_diffs(&runs[1], &runs[0]);
        let sides = rows_of(runs, FALLBACK_SIDES, conns);
        let checked = fallback_checked_responses(&sides, conns, upstream_bytes);
        sets.push(FallbackSet { sides, capacity, round_diffs, checked, upstream_bytes });
    }
    sets
}

/// One concurrency of (v): the sides measured, each with its index in [`COMPLETIONS_SIDES`].
struct CompletionsSet {
    sides: Vec<(usize, Row)>,
    /// What each side sustained in its closed-loop pass, requests per second.
    capacity: Vec<f64>,
}

/// What (v) came to.
struct Completions {
    /// Why it did not run: the body of our route's 404 when first called.
    skipped: Option<String>,
    /// The sides left out, and why.
    notes: Vec<String>,
    sets: Vec<CompletionsSet>,
}

/// The answer to one request of `t` (its first body as it is), not timed.
fn fetch_json(t: &Target) -> Result<Value, CallError> {
    let mut req = agent(REQUEST_TIMEOUT).request(t.method, &t.url);
    if let Some(token) = &t.token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    for (name, value) in &t.headers {
        req = req.set(name, value);
    }
    let resp = match t.bodies.first().cloned().flatten() {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    match resp {
        Ok(r) => Ok(r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => Err(CallError::Status(code, r.into_string().unwrap_or_default())),
        Err(e) => Err(CallError::Transport(e.to_string())),
    }
}

/// Ends the bench unless `answer` is an OpenAI `chat.completion` with text.
fn check_completion(side: &str, answer: &Value) {
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap_or_default();
    assert!(
        answer["object"] == "chat.completion" && !text.is_empty(),
        "{side}: the answer should be a chat.completion with text: {answer}"
    );
}

/// Whether a 404's body is OpenAI's `model_not_found`: the route is there, the model is not.
fn is_model_not_found(body: &str) -> bool {
    serde_json::from_str::<Value>(body).is_ok_and(|v| v["error"]["code"] == "model_not_found")
}

/// The Portkey gateway's `/v1/chat/completions`, sending `body` on to the stand-in.
fn portkey_target(peer: &Peer, stub: &str, body: &Value) -> Target {
    Target::post(format!("{}/v1/chat/completions", peer.url), None, body.clone())
        .with_headers(vec![("x-portkey-provider", "openai".into()), ("x-portkey-custom-host", format!("{stub}/v1"))])
}

/// Scenario (v): in a workspace of its own, the default assistant through `POST /api/chat` and
/// through our `POST /v1/chat/completions`, the LiteLLM proxy and the Portkey gateway where
/// their addresses are set, and the stand-in called directly with the body of (a) (the peers
/// get the same); see the module's comment.
fn completions_comparison(cfg: &Config, direct_body: &Value) -> Completions {
    let Stack { base, stub, op } = &cfg.stack;
    let [key] = workspace(base, op, "bench", ["bench-completions"]).keys;
    let ours = Target::post(
        format!("{base}/v1/chat/completions"),
        Some(&key),
        json!({ "model": COMPLETIONS_MODEL, "messages": [{ "role": "user", "content": CHAT_QUESTION }] }),
    )
    .numbering_messages();
    // Called once first, not timed. A 404 other than OpenAI's `model_not_found` (which would
    // mean the route is there) says this Worker has no such route (yet).
    match fetch_json(&ours) {
        Ok(answer) => check_completion(COMPLETIONS_SIDES[V_OURS], &answer),
        Err(CallError::Status(404, body)) if !is_model_not_found(&body) => {
            eprintln!("v) POST /v1/chat/completions answered 404 ({}): (v) is skipped", body.trim());
            return Completions { skipped: Some(body), notes: Vec::new(), sets: Vec::new() };
        }
        Err(e) => panic!("v) POST {base}/v1/chat/completions (model {COMPLETIONS_MODEL}): {e}"),
    }
    let mut sides: Vec<(usize, Target)> = vec![
        (V_STAND_IN, Target::post(format!("{stub}/v1/chat/completions"), None, direct_body.clone())),
        (V_API_CHAT, Target::post(format!("{base}/api/chat"), Some(&key), json!({ "message": CHAT_QUESTION }))),
        (V_OURS, ours),
    ];
    let mut notes = Vec::new();
    match &cfg.litellm {
        Some(peer) => {
            let mut body = direct_body.clone();
            body["model"] = json!(LITELLM_MODEL);
            let url = format!("{}/v1/chat/completions", peer.url);
            sides.push((V_LITELLM, Target::post(url, peer.key.as_deref(), body)));
        }
        None => notes
            .push("LITELLM_URL is not set: the LiteLLM proxy is left out (scripts/bench_litellm.sh starts it)".into()),
    }
    match &cfg.portkey {
        Some(peer) => sides.push((V_PORTKEY, portkey_target(peer, stub, direct_body))),
        None => notes.push("PORTKEY_URL is not set: the Portkey gateway is left out".into()),
    }
    for note in &notes {
        eprintln!("v) {note}");
    }
    // The peers too answer what they should, checked once, not timed.
    for (i, t) in sides.iter().filter(|(i, _)| [V_LITELLM, V_PORTKEY].contains(i)) {
        let answer = fetch_json(t).unwrap_or_else(|e| panic!("{}: POST {}: {e}", COMPLETIONS_SIDES[*i], t.url));
        check_completion(COMPLETIONS_SIDES[*i], &answer);
    }

    let targets: Vec<&Target> = sides.iter().map(|(_, t)| t).collect();
    let mut sets = Vec::new();
    for conns in COMPLETIONS_CONCURRENCY {
        let per_round = cfg.requests.div_ceil(COMPLETIONS_ROUNDS).max(conns);
        // One rate for all, from what the slowest side sustains, as in (t).
        let capacity = capacities(&targets, conns, conns == COMPLETIONS_CONCURRENCY[0]);
        let rate = scheduled_rate(lowest(&capacity), COMPLETIONS_LOAD);
        let closed: Vec<String> = capacity.iter().map(|c| format!("{c:.0}")).collect();
        eprintln!(
            "v) {} sides @ {conns}: closed loop {} req/s; {rate:.0} req/s scheduled, {COMPLETIONS_ROUNDS} rounds each",
            sides.len(),
            closed.join(" / ")
        );
        let runs = alternate(targets.len(), COMPLETIONS_ROUNDS, |i| run(targets[i], conns, per_round, rate));
        let mut rows = rows_of(runs, sides.iter().map(|(i, _)| COMPLETIONS_SIDES[*i]), conns);
        // The base of the added time: the stand-in called directly in the same rounds.
        let floor = rows[0].run.p50;
        for r in rows.iter_mut().skip(1) {
            r.over = Some(r.run.p50 - floor);
        }
        sets.push(CompletionsSet { sides: sides.iter().map(|(i, _)| *i).zip(rows).collect(), capacity });
    }
    Completions { skipped: None, notes, sets }
}

/// The environment of a run (see the module's comment).
struct Config {
    stack: Stack,
    portkey: Option<Peer>,
    litellm: Option<Peer>,
    /// The same Worker under plain `wrangler dev`, for (w).
    wrangler_dev: Option<String>,
    /// The same Worker with `USAGE_LEDGER=off`, for (l).
    no_ledger: Option<String>,
    /// The same Worker with `NEW_WORKSPACE_DATA_PLANE=d1`, for (s).
    d1_plane: Option<String>,
    requests: usize,
    /// `BENCH_SCENARIOS`: the letters of the scenarios to run (`de` runs only (d) and (e),
    /// say); all without it.
    only: Option<String>,
}

impl Config {
    fn from_env() -> Self {
        Self {
            stack: Stack::from_env(ENV_HINT),
            portkey: Peer::portkey(),
            litellm: Peer::litellm(),
            wrangler_dev: env::optional("ATTIVE_WRANGLER_DEV_URL"),
            no_ledger: env::optional("ATTIVE_NO_LEDGER_URL"),
            d1_plane: env::d1_plane_url(),
            requests: env::requests(400),
            only: env::optional("BENCH_SCENARIOS"),
        }
    }

    /// Whether the scenario named `name` (its letter first) runs.
    fn wanted(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|letters| name.chars().next().is_some_and(|c| letters.contains(c)))
    }

    fn portkey_version(&self) -> &str {
        self.portkey.as_ref().map_or("", |p| &p.version)
    }

    fn litellm_version(&self) -> &str {
        self.litellm.as_ref().map_or("", |p| &p.version)
    }
}

/// The API keys of the scenarios measured at every concurrency, all in one workspace, and
/// that of (w) on the `wrangler dev` Worker.
struct Keys {
    new: String,
    cont: String,
    long: String,
    list: String,
    dev: Option<String>,
}

impl Keys {
    fn create(cfg: &Config) -> Self {
        let Stack { base, op, .. } = &cfg.stack;
        let names = ["bench-new", "bench-continue", "bench-long", "bench-list"];
        let [new, cont, long, list] = workspace(base, op, "bench", names).keys;
        let dev = cfg.wrangler_dev.as_ref().map(|url| {
            let [key] = workspace(url, op, "bench", ["bench-new"]).keys;
            key
        });
        Keys { new, cont, long, list, dev }
    }
}

/// What (a), (p) and the peers of (v) send the stand-in.
fn direct_body() -> Value {
    json!({ "model": "bench", "messages": [
        { "role": "system", "content": "You are terse." }, { "role": "user", "content": CHAT_QUESTION },
    ] })
}

/// The scenarios measured one after the other at concurrency `conns`, with what they need made
/// here: the chats (d) and (e) continue.
fn main_targets(
    cfg: &Config,
    keys: &Keys,
    conns: usize,
    dashboards: Option<&Dashboards>,
) -> Vec<(&'static str, Target)> {
    let Stack { base, stub, .. } = &cfg.stack;
    let chats: Vec<String> = if cfg.wanted("d") {
        eprintln!("preparing {conns} chats with 20 earlier turns ...");
        prepare_chats(base, &keys.cont, conns)
    } else {
        Vec::new()
    };
    let long: Vec<String> = if cfg.wanted("e") && LONG_CHAT_CONCURRENCY.contains(&conns) {
        let per_conn = long_chats_per_conn(cfg.requests.div_ceil(conns));
        let t = Instant::now();
        eprintln!("preparing {} long chats ({conns} connections × {per_conn}) ...", conns * per_conn);
        let ids = long_chats(base, stub, &keys.long, &format!("[bench long chat c{conns}]"), conns * per_conn);
        eprintln!("  ready in {:.0} s", t.elapsed().as_secs_f64());
        ids
    } else {
        Vec::new()
    };
    let chat = format!("{base}/api/chat");

    let direct_body = direct_body();
    let mut targets = vec![(
        "a) LLM stand-in direct",
        Target::post(format!("{stub}/v1/chat/completions"), None, direct_body.clone()),
    )];
    if let Some(peer) = &cfg.portkey {
        targets.push(("p) Portkey gateway → stand-in", portkey_target(peer, stub, &direct_body)));
    }
    targets.extend([
        ("b) GET /api/health", Target::get(format!("{base}/api/health"), None)),
        ("f) GET /api/chats (no LLM, no D1 write)", Target::get(format!("{base}/api/chats?limit=5"), Some(&keys.list))),
        ("c) POST /api/chat (new chat)", Target::post(chat.clone(), Some(&keys.new), new_chat())),
        ("d) POST /api/chat (20 turns)", Target::post_each(chat.clone(), Some(&keys.cont), continuing(&chats))),
    ]);
    if let Some(d) = dashboards {
        targets.extend(dashboard_targets(base, d));
    }
    if !long.is_empty() {
        let target = Target::post_each(chat, Some(&keys.long), continuing(&long));
        targets.push(("e) POST /api/chat (long chat)", target.with_calibration_cap(LONG_CHAT_CALIBRATION)));
    }
    if let (Some(url), Some(key)) = (&cfg.wrangler_dev, &keys.dev) {
        if WRANGLER_DEV_CONCURRENCY.contains(&conns) {
            let target = Target::post(format!("{url}/api/chat"), Some(key), new_chat());
            targets.push(("w) POST /api/chat (new chat), wrangler dev", target));
        }
    }
    targets
}

/// The scenarios whose latency is not compared with that of the stand-in (a).
const WITHOUT_LLM: [&str; 5] = ["a)", "b)", "f)", "i)", "m)"];

/// The run at one concurrency: each wanted scenario in turn, warmed up, at 75% of what its
/// closed-loop pass sustained.
fn measure_at(cfg: &Config, conns: usize, targets: Vec<(&'static str, Target)>) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut direct_p50 = 0.0;
    for (name, target) in targets.into_iter().filter(|(name, _)| cfg.wanted(name)) {
        // Warm up the isolate, the connections and the caches of this scenario.
        let rate = warm_then_rate(conns, |c| calibrate(&target, c));
        eprintln!("{name} @ {conns}: {rate:.0} req/s scheduled");
        let mut row = Row::new(name, conns, run(&target, conns, cfg.requests, rate));
        if name.starts_with("a)") {
            direct_p50 = row.run.p50;
        }
        row.over = (!WITHOUT_LLM.iter().any(|p| name.starts_with(p))).then_some(row.run.p50 - direct_p50);
        rows.push(row);
    }
    rows
}

/// Everything a run measured.
struct Measured {
    /// The scenarios measured at every concurrency (see [`CONCURRENCY`]).
    rows: Vec<Row>,
    ledger: Vec<Pair>,
    /// (s): why it did not run, when wanted without the D1 plane's Worker.
    split_skipped: Option<&'static str>,
    split: Vec<Pair>,
    tool_steps: Vec<ToolStepSet>,
    fallbacks: Vec<FallbackSet>,
    /// (v), when wanted.
    completions: Option<Completions>,
    seconds: f64,
}

impl Measured {
    /// The scenarios in their order: those of (l) first, then (s), (t), (o), the others and (v).
    fn run(cfg: &Config, keys: &Keys) -> Self {
        let Stack { base, stub, op } = &cfg.stack;
        let started = Instant::now();
        // (l) first, while the two Workers' databases hold the same.
        let ledger = match &cfg.no_ledger {
            Some(off) if cfg.wanted("l") => ledger_comparison(base, off, op, cfg.requests),
            _ => Vec::new(),
        };
        // (s) next, while the Worker under test holds little more than the D1 plane's Worker.
        let (split, split_skipped) = match &cfg.d1_plane {
            Some(before) if cfg.wanted("s") => (split_comparison(base, before, stub, op, cfg.requests), None),
            None if cfg.wanted("s") => {
                eprintln!("s) {SPLIT_SKIPPED}: (s) is skipped");
                (Vec::new(), Some(SPLIT_SKIPPED))
            }
            _ => (Vec::new(), None),
        };
        // (t) next: a workspace of its own, so it finds no more than its own chats and deals.
        let tool_steps = if cfg.wanted("t") { tool_step_comparison(base, stub, op, cfg.requests) } else { Vec::new() };
        // (o) too: its two agents and the stand-in's script for them in a workspace of its own.
        let fallbacks = if cfg.wanted("o") { fallback_comparison(base, stub, op, cfg.requests) } else { Vec::new() };
        // (i) and (m): a workspace with a chat and an insight, read and minted for.
        let dashboards = (cfg.wanted("i") || cfg.wanted("m")).then(|| dashboards_fixture(base, op));
        let mut rows: Vec<Row> = Vec::new();
        for conns in CONCURRENCY {
            let targets = main_targets(cfg, keys, conns, dashboards.as_ref());
            rows.extend(measure_at(cfg, conns, targets));
        }
        // (v) last, in a workspace of its own, so the others find the database as before it.
        let completions = cfg.wanted("v").then(|| completions_comparison(cfg, &direct_body()));
        let mut measured =
            Measured { rows, ledger, split_skipped, split, tool_steps, fallbacks, completions, seconds: 0.0 };
        measured.compare_with_direct();
        measured.seconds = started.elapsed().as_secs_f64();
        measured
    }

    /// (l), (s), (t) and (o) ran first, but their rows come last in the tables, each with the
    /// (a) of its concurrency as the base of `over` (for (o), its chat sides only).
    fn compare_with_direct(&mut self) {
        let rows = &self.rows;
        let direct =
            |conns: usize| rows.iter().find(|r| r.name.starts_with("a)") && r.conns == conns).map(|r| r.run.p50);
        let sides = self.ledger.iter_mut().chain(self.split.iter_mut()).flat_map(|p| [&mut p.a, &mut p.b]);
        let sides = sides.chain(self.tool_steps.iter_mut().flat_map(|t| t.sides.iter_mut()));
        let sides = sides.chain(self.fallbacks.iter_mut().flat_map(|f| f.sides.iter_mut().take(2)));
        for side in sides {
            side.over = direct(side.conns).map(|d| side.run.p50 - d);
        }
    }

    /// Every row, in the order of the tables.
    fn all(&self) -> Vec<&Row> {
        let completions =
            self.completions.iter().flat_map(|c| c.sets.iter().flat_map(|s| s.sides.iter().map(|(_, r)| r)));
        self.rows
            .iter()
            .chain(self.ledger.iter().chain(&self.split).flat_map(|p| [&p.a, &p.b]))
            .chain(self.tool_steps.iter().flat_map(|t| t.sides.iter()))
            .chain(self.fallbacks.iter().flat_map(|f| f.sides.iter()))
            .chain(completions)
            .collect()
    }
}

/// The percentiles of `Server-Timing` metric `name` of a row, if its answers carried it.
fn phase(r: &Row, name: &str) -> Option<Pcts> {
    r.analysis.phases.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
}

/// `p50 / p95 / p99` of a JSON percentile object, one decimal each (`–` where missing).
fn triple(v: &Value) -> String {
    format!("{} / {} / {}", fixed(&v["p50"]), fixed(&v["p95"]), fixed(&v["p99"]))
}

/// The main table: every row's latency and its p50 over (a).
fn print_overview(all: &[&Row]) {
    println!();
    print_head("scenario | conc | req/s | p50 ms | p95 ms | p99 ms | errors | p50 over (a)", "lrrrrrrr");
    for Row { name, conns, run: r, over, .. } in all.iter().copied() {
        let over = over.map_or("".to_owned(), |o| format!("{o:+.1}"));
        println!(
            "| {name} | {conns} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {over} |",
            r.rps, r.p50, r.p95, r.p99, r.errors
        );
    }
}

/// The phases of the rows whose answers carried an `llm` phase (chat turns).
fn print_server_timing(all: &[&Row]) {
    println!("\nServer-Timing of POST /api/chat, p50 / p95 / p99 (ms; `outside` = service time minus the timed");
    println!("phases: Worker CPU, local runtime, loopback; `d1`/`ws`/`do` = round trips per request to D1, to");
    println!("the workspace's own database and to the rate limiter's object, p50):\n");
    print_head(
        "scenario | conc | auth-read | rate-limit | llm | persist | outside | service | d1 | ws | do",
        "lrrrrrrrrrr",
    );
    for r in all.iter().copied().filter(|r| phase(r, "llm").is_some()) {
        let get = |k: &str| phase(r, k).unwrap_or_default();
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            r.conns,
            get("auth-read").cell(),
            get("rate-limit").cell(),
            get("llm").cell(),
            get("persist").cell(),
            get("outside").cell(),
            r.analysis.service.cell(),
            num(get("d1").p50),
            num(get("ws").p50),
            num(get("do").p50),
        );
    }
}

/// Service time and queueing of every row, and what its slowest requests spent their time on.
fn print_tail(all: &[&Row]) {
    println!("\nTail breakdown (ms): service time = from send to response; queueing = latency minus service");
    println!("time (waiting behind earlier requests of the connection); then the medians, over the slowest");
    println!("{:.0}% of requests by service time, of the service time and of each phase:\n", TAIL * 100.0);
    print_head("scenario | conc | service p50 / p95 / p99 | queueing p50 / p95 / p99 | slowest: n | service | auth-read | rate-limit | llm | persist | outside", "lrrrrrrrrrr");
    for Row { name, conns, analysis: a, .. } in all.iter().copied() {
        let (n, tail) = &a.tail;
        let get = |k: &str| tail.iter().find(|(m, _)| m == k).map_or(String::new(), |(_, v)| num(*v));
        println!(
            "| {name} | {conns} | {} | {} | {n} | {} | {} | {} | {} | {} | {} |",
            a.service.cell(),
            a.queue.cell(),
            get("service"),
            get("auth-read"),
            get("rate-limit"),
            get("llm"),
            get("persist"),
            get("outside"),
        );
    }
}

/// Overheads over (a), on two bases: the latency p50 of the main table, and the service-time
/// p50, which leaves out what each scenario waited behind its own earlier requests (at the
/// thousands of requests per second of (a), the load generator's own scheduling adds some).
fn portkey_comparison(rows: &[Row]) -> Vec<Value> {
    let find = |prefix: &str, conns: usize| rows.iter().find(|r| r.name.starts_with(prefix) && r.conns == conns);
    let latency: fn(&Row) -> f64 = |r| r.run.p50;
    let service: fn(&Row) -> f64 = |r| r.analysis.service.p50;
    let mut comparison = Vec::new();
    for conns in CONCURRENCY {
        for (basis, of) in [("latency p50", latency), ("service p50", service)] {
            let [a, p, c, w] = ["a)", "p)", "c)", "w)"].map(|prefix| find(prefix, conns).map(of));
            if let (Some(a), Some(p), Some(c)) = (a, p, c) {
                let (pk_over, our_over, dev_over) = (p - a, c - a, w.map(|w| w - a));
                // A ratio only means something while Portkey adds measurable time: below half a
                // millisecond its overhead is within the noise of the floor (a).
                let ratio = |over: f64| (pk_over >= 0.5).then(|| over / pk_over);
                comparison.push(json!({
                    "concurrency": conns, "basis": basis, "directMs": a, "portkeyMs": p, "portkeyOverMs": pk_over,
                    "oursMs": c, "oursOverMs": our_over, "ratio": ratio(our_over),
                    "wranglerDevMs": w, "wranglerDevOverMs": dev_over, "wranglerDevRatio": dev_over.and_then(ratio),
                }));
            }
        }
    }
    comparison
}

fn print_portkey(comparison: &[Value], portkey_version: &str) {
    if comparison.is_empty() {
        return;
    }
    println!("\nOverhead over the stand-in called directly (a), ms: Portkey {portkey_version} (p) vs ours (c), and");
    println!("ours under plain `wrangler dev` (w) where measured:\n");
    print_head("conc | basis | direct (a) | Portkey (p) | Portkey over | ours (c) | ours over | ours / Portkey | (w) over | (w) / Portkey", "rlrrrrrrrr");
    let times = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.1}×"));
    let plus = |v: &Value| v.as_f64().map_or(String::new(), |o| format!("{o:+.1}"));
    for c in comparison {
        let ms = |k: &str| c[k].as_f64().unwrap_or_default();
        println!(
            "| {} | {} | {:.1} | {:.1} | {:+.1} | {:.1} | {:+.1} | {} | {} | {} |",
            c["concurrency"],
            c["basis"].as_str().unwrap_or_default(),
            ms("directMs"),
            ms("portkeyMs"),
            ms("portkeyOverMs"),
            ms("oursMs"),
            ms("oursOverMs"),
            times(&c["ratio"]),
            plus(&c["wranglerDevOverMs"]),
            if c["wranglerDevOverMs"].is_null() { String::new() } else { times(&c["wranglerDevRatio"]) },
        );
    }
}

/// (l): each workload and concurrency, its two sides and how far apart they land.
fn ledger_report(ledger: &[Pair]) -> Vec<Value> {
    ledger.iter().map(|p| pair_report(p, ", ledger on", ["on", "off"], "onSlower")).collect()
}

/// One side of a [`Pair`] in its JSON report; the `Server-Timing` round trips per request
/// both as percentiles and as means (they are small whole numbers).
fn pair_side(r: &Row) -> Value {
    let trips = |name: &str| phase(r, name).map(|p| p.json());
    json!({
        "scenario": r.name, "requests": r.run.samples.len(), "errors": r.run.errors, "rps": r.run.rps,
        "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99,
        "serviceP50Ms": r.analysis.service.p50, "persistMs": phase(r, "persist").map(|p| p.json()),
        "persistMeanMs": mean_metric(&r.run.samples, "persist"),
        "d1RoundTrips": trips("d1"), "wsRoundTrips": trips("ws"), "doCalls": trips("do"),
        "roundTripsMean": { "d1": mean_metric(&r.run.samples, "d1"), "ws": mean_metric(&r.run.samples, "ws"),
                            "do": mean_metric(&r.run.samples, "do") },
    })
}

/// A [`Pair`] in its JSON report: the workload (the first side's name without its letter and
/// `suffix`), the sides under `keys`, and how far apart they land (first − second), with how
/// many rounds the first was the slower under `slower`.
fn pair_report(pair: &Pair, suffix: &str, keys: [&str; 2], slower: &str) -> Value {
    let Pair { a, b, round_diffs } = pair;
    let diff = a.run.p50 - b.run.p50;
    let workload = a.name.split_once(") ").map_or(a.name, |(_, rest)| rest).trim_end_matches(suffix);
    let mut report = json!({
        "workload": workload, "concurrency": a.conns, "scheduledRate": a.run.rate,
        "p50DiffMs": diff, "p50DiffPct": 100.0 * diff / b.run.p50, "p95DiffMs": a.run.p95 - b.run.p95,
        "roundP50DiffsMs": round_diffs, "roundP50Diff": round_summary(round_diffs, slower),
    });
    report[keys[0]] = pair_side(a);
    report[keys[1]] = pair_side(b);
    report
}

fn print_ledger(report: &[Value]) {
    if report.is_empty() {
        return;
    }
    println!("\nUsage ledger on vs off (l): the workloads of (c) and (d) against the Worker with the ledger on");
    println!("and against one with USAGE_LEDGER=off, {LEDGER_ROUNDS} runs a side alternated (on, off, off, on, …)");
    println!("at one scheduled rate; latency ms; Δ = on − off; Δ per round = the p50 differences of the");
    println!("rounds' pairs of runs: median (lowest … highest), and in how many rounds the ledger side was");
    println!("the slower (how far apart the two sides land by chance); persist, d1 and ws (round trips to D1");
    println!("and to the workspace's own database, p50) from Server-Timing, whose phases are whole");
    println!("milliseconds (hence the mean):\n");
    print_head("scenario | conc | p50 / p95 on | p50 / p95 off | Δ p50 | Δ p50 % | Δ p50 per round | on slower | service p50 on / off | persist p50 on / off | persist mean on / off | d1 on / off | ws on / off", "lrrrrrrrrrrrr");
    for l in report {
        let f = fixed;
        let (on, off) = (&l["on"], &l["off"]);
        let round = |k: &str| l["roundP50Diff"][k].as_f64().unwrap_or_default();
        println!(
            "| {} | {} | {} / {} | {} / {} | {:+.1} | {:+.1}% | {:+.1} ({:+.1} … {:+.1}) | {} of {} | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            l["workload"].as_str().unwrap_or_default(),
            l["concurrency"],
            f(&on["p50Ms"]),
            f(&on["p95Ms"]),
            f(&off["p50Ms"]),
            f(&off["p95Ms"]),
            l["p50DiffMs"].as_f64().unwrap_or_default(),
            l["p50DiffPct"].as_f64().unwrap_or_default(),
            round("medianMs"),
            round("lowestMs"),
            round("highestMs"),
            l["roundP50Diff"]["onSlower"],
            LEDGER_ROUNDS,
            f(&on["serviceP50Ms"]),
            f(&off["serviceP50Ms"]),
            f(&on["persistMs"]["p50"]),
            f(&off["persistMs"]["p50"]),
            f(&on["persistMeanMs"]),
            f(&off["persistMeanMs"]),
            f(&on["d1RoundTrips"]["p50"]),
            f(&off["d1RoundTrips"]["p50"]),
            f(&on["wsRoundTrips"]["p50"]),
            f(&off["wsRoundTrips"]["p50"]),
        );
    }
}

/// (s): each workload and concurrency, its two sides and how far apart they land (after −
/// before).
fn split_report(split: &[Pair]) -> Vec<Value> {
    split.iter().map(|p| pair_report(p, ", own database", ["after", "before"], "afterSlower")).collect()
}

fn print_split(report: &[Value], skipped: Option<&str>) {
    if let Some(why) = skipped {
        println!("\ns) skipped: {why}");
        return;
    }
    if report.is_empty() {
        return;
    }
    println!("\nEach workspace in its own database (s): before = a Worker with NEW_WORKSPACE_DATA_PLANE=d1 (the");
    println!("workspaces' data in the shared D1 database, as before the split), after = the Worker under test");
    println!("(each workspace in a database of its own); the workloads of (c), (d) and (e), and new chats with");
    println!("retrieval in {SPLIT_RECORDS} records; {SPLIT_ROUNDS} runs a side alternated at one scheduled rate; latency ms;");
    println!("Δ = after − before; Δ per round as in (l); round trips per request from Server-Timing, mean:");
    println!("d1 (D1), ws (the workspace's own database), do (the rate limiter's object):\n");
    print_head("scenario | conc | req/s | before p50 / p95 | after p50 / p95 | Δ p50 | Δ p50 % | Δ p95 | Δ p50 per round | after slower | d1 / ws / do before | d1 / ws / do after | errors before / after", "lrrrrrrrrrrrr");
    let trips = |side: &Value| {
        let m = &side["roundTripsMean"];
        format!("{} / {} / {}", fixed(&m["d1"]), fixed(&m["ws"]), fixed(&m["do"]))
    };
    for l in report {
        let (f, d) = (fixed, signed);
        let (before, after, round) = (&l["before"], &l["after"], &l["roundP50Diff"]);
        println!(
            "| {} | {} | {:.0} | {} / {} | {} / {} | {} | {}% | {} | {} ({} … {}) | {} of {SPLIT_ROUNDS} | {} | {} | {} / {} |",
            l["workload"].as_str().unwrap_or_default(),
            l["concurrency"],
            l["scheduledRate"].as_f64().unwrap_or_default(),
            f(&before["p50Ms"]),
            f(&before["p95Ms"]),
            f(&after["p50Ms"]),
            f(&after["p95Ms"]),
            d(&l["p50DiffMs"]),
            d(&l["p50DiffPct"]),
            d(&l["p95DiffMs"]),
            d(&round["medianMs"]),
            d(&round["lowestMs"]),
            d(&round["highestMs"]),
            round["afterSlower"],
            trips(before),
            trips(after),
            before["errors"],
            after["errors"],
        );
    }
}

/// (t): each side, then the differences (tool step − no tools). The phases' means add up to
/// the service time's mean: the step's Δ splits into the second model call (llm), the tool
/// (validation, statement, rendering: in outside) and storing its trace (persist).
fn tool_step_report(tool_steps: &[ToolStepSet]) -> Vec<Value> {
    tool_steps
        .iter()
        .map(|ToolStepSet { sides, capacity, round_diffs }| {
            let ok_ms = |r: &Row, of: fn(&Sample) -> Option<f64>| -> Vec<f64> {
                r.run.samples.iter().filter(|s| s.ok).filter_map(of).collect()
            };
            let outside_mean = |r: &Row| mean(&ok_ms(r, outside_ms));
            let service_mean = |r: &Row| mean(&ok_ms(r, |s| Some(s.service_us as f64 / 1000.0)));
            let side = |r: &Row, capacity: f64| {
                json!({
                    "scenario": r.name, "requests": r.run.samples.len(), "errors": r.run.errors,
                    "closedLoopRps": capacity, "rps": r.run.rps,
                    "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99,
                    "serviceMs": r.analysis.service.json(), "serviceMeanMs": service_mean(r),
                    "queueingMs": r.analysis.queue.json(),
                    "llmMs": phase(r, "llm").map(|p| p.json()), "llmMeanMs": mean_metric(&r.run.samples, "llm"),
                    "persistMs": phase(r, "persist").map(|p| p.json()),
                    "persistMeanMs": mean_metric(&r.run.samples, "persist"),
                    "outsideMs": phase(r, "outside").map(|p| p.json()), "outsideMeanMs": outside_mean(r),
                    "d1RoundTrips": phase(r, "d1").map(|p| p.json()),
                    "wsRoundTrips": phase(r, "ws").map(|p| p.json()),
                })
            };
            let (plain, step) = (&sides[0], &sides[1]);
            let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
            json!({
                "concurrency": plain.conns, "scheduledRate": plain.run.rate,
                "noTools": side(plain, capacity[0]), "oneToolStep": side(step, capacity[1]),
                "stepCost": {
                    "p50Ms": step.run.p50 - plain.run.p50,
                    "p50Pct": 100.0 * (step.run.p50 - plain.run.p50) / plain.run.p50,
                    "p95Ms": step.run.p95 - plain.run.p95, "p99Ms": step.run.p99 - plain.run.p99,
                    "serviceP50Ms": step.analysis.service.p50 - plain.analysis.service.p50,
                    "serviceMeanMs": sub(service_mean(step), service_mean(plain)),
                    "llmMeanMs": sub(mean_metric(&step.run.samples, "llm"), mean_metric(&plain.run.samples, "llm")),
                    "persistMeanMs":
                        sub(mean_metric(&step.run.samples, "persist"), mean_metric(&plain.run.samples, "persist")),
                    "outsideMeanMs": sub(outside_mean(step), outside_mean(plain)),
                    "closedLoopRpsPct": 100.0 * (capacity[1] - capacity[0]) / capacity[0],
                },
                "roundP50DiffsMs": round_diffs,
                "roundP50Diff": round_summary(round_diffs, "stepSlower"),
            })
        })
        .collect()
}

fn print_tool_step(report: &[Value]) {
    if report.is_empty() {
        return;
    }
    let (f, d) = (fixed, signed);
    println!(
        "\nOne tool step (t): new chats with an agent in a workspace of {TOOL_STEP_DEALS} deals, without tools and"
    );
    println!(
        "with one query_records step, {TOOL_STEP_ROUNDS} runs a side alternated at one scheduled rate (req/s: closed"
    );
    println!("loop, then as run); ms, p50 / p95 / p99 for latency, service time and queueing; llm, persist");
    println!("(whole ms: mean in brackets), outside (service time minus the timed phases, mean in");
    println!("brackets: here also the tool's validation, statement and rendering), d1 and ws (round trips");
    println!("to D1 and to the workspace's own database) from Server-Timing, p50:\n");
    print_head(
        "scenario | conc | req/s | latency | service | queueing | llm | persist | outside | d1 | ws | errors",
        "lrrrrrrrrrrr",
    );
    for t in report {
        for s in [&t["noTools"], &t["oneToolStep"]] {
            println!(
                "| {} | {} | {:.0} / {:.0} | {} / {} / {} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} | {} | {} |",
                s["scenario"].as_str().unwrap_or_default(),
                t["concurrency"],
                s["closedLoopRps"].as_f64().unwrap_or_default(),
                s["rps"].as_f64().unwrap_or_default(),
                f(&s["p50Ms"]),
                f(&s["p95Ms"]),
                f(&s["p99Ms"]),
                triple(&s["serviceMs"]),
                triple(&s["queueingMs"]),
                f(&s["llmMs"]["p50"]),
                f(&s["llmMeanMs"]),
                f(&s["persistMs"]["p50"]),
                f(&s["persistMeanMs"]),
                f(&s["outsideMs"]["p50"]),
                f(&s["outsideMeanMs"]),
                f(&s["d1RoundTrips"]["p50"]),
                f(&s["wsRoundTrips"]["p50"]),
                s["errors"],
            );
        }
    }
    println!("\nAdded cost of one tool step, ms (Δ = with the step − without tools): latency p50, its share,");
    println!("and per round (the p50 differences of the rounds' pairs of runs: median, lowest … highest, in");
    println!("how many rounds the step side was the slower); latency p95; service time p50 and mean, the");
    println!("mean's split into llm (the second model call), persist and outside (the tool itself); and");
    println!("what the step takes off the closed-loop throughput:\n");
    print_head("conc | req/s | Δ p50 | Δ p50 % | Δ p50 per round | step slower | Δ p95 | Δ service p50 | Δ service mean | Δ llm | Δ persist | Δ outside | Δ closed-loop req/s", "rrrrrrrrrrrrr");
    for t in report {
        let (c, round) = (&t["stepCost"], &t["roundP50Diff"]);
        println!(
            "| {} | {:.0} | {} | {}% | {} ({} … {}) | {} of {TOOL_STEP_ROUNDS} | {} | {} | {} | {} | {} | {} | {}% |",
            t["concurrency"],
            t["scheduledRate"].as_f64().unwrap_or_default(),
            d(&c["p50Ms"]),
            d(&c["p50Pct"]),
            d(&round["medianMs"]),
            d(&round["lowestMs"]),
            d(&round["highestMs"]),
            round["stepSlower"],
            d(&c["p95Ms"]),
            d(&c["serviceP50Ms"]),
            d(&c["serviceMeanMs"]),
            d(&c["llmMeanMs"]),
            d(&c["persistMeanMs"]),
            d(&c["outsideMeanMs"]),
            d(&c["closedLoopRpsPct"]),
        );
    }
}

/// (o): each side, then what the failed primary costs (fallback − direct) against one
/// stand-in round trip measured at the same concurrency and rate.
fn fallback_report(fallbacks: &[FallbackSet]) -> Vec<Value> {
    fallbacks
        .iter()
        .map(|FallbackSet { sides, capacity, round_diffs, checked, upstream_bytes }| {
            let side = |i: usize| {
                let r = &sides[i];
                let [provider, model, attempts] = fallback_expected(i);
                json!({
                    "scenario": r.name, "requests": r.run.samples.len(), "errors": r.run.errors,
                    "closedLoopRps": capacity[i], "rps": r.run.rps,
                    "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99,
                    "serviceMs": r.analysis.service.json(), "queueingMs": r.analysis.queue.json(),
                    "llmMs": phase(r, "llm").map(|p| p.json()), "llmMeanMs": mean_metric(&r.run.samples, "llm"),
                    "headersChecked": { "responses": checked[i].0, "asExpected": checked[i].1,
                        "expected": { "provider": provider, "model": model, "attempts": attempts } },
                })
            };
            let (direct, failed, stand_in) = (&sides[0], &sides[1], &sides[2]);
            let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
            let cost = failed.run.p50 - direct.run.p50;
            let limit = stand_in.run.p50 + FALLBACK_GOAL_MARGIN_MS;
            json!({
                "concurrency": direct.conns, "scheduledRate": direct.run.rate, "standInBodyBytes": upstream_bytes,
                "direct": side(0), "afterFailedPrimary": side(1), "standInRoundTrip": side(2),
                "failedPrimaryCost": {
                    "p50Ms": cost, "p50Pct": 100.0 * cost / direct.run.p50, "p95Ms": failed.run.p95 - direct.run.p95,
                    "serviceP50Ms": failed.analysis.service.p50 - direct.analysis.service.p50,
                    "llmMeanMs": sub(mean_metric(&failed.run.samples, "llm"), mean_metric(&direct.run.samples, "llm")),
                },
                "roundP50DiffsMs": round_diffs,
                "roundP50Diff": round_summary(round_diffs, "fallbackSlower"),
                "goal": { "standInP50Ms": stand_in.run.p50, "marginMs": FALLBACK_GOAL_MARGIN_MS, "limitMs": limit,
                    "met": cost < limit },
            })
        })
        .collect()
}

fn print_fallback(report: &[Value]) {
    if report.is_empty() {
        return;
    }
    let (f, d) = (fixed, signed);
    println!("\nA failed primary before a healthy fallback (o): new chats with an agent on `default`, answered");
    println!("directly, and with one on `{FALLBACK_PROVIDER}` (the stand-in answers it 503 at once, every time) falling back");
    println!("to `default` with the same model; and one stand-in round trip: the stand-in called directly with");
    println!(
        "the body the Worker sends it ({} bytes). {FALLBACK_ROUNDS} runs a side alternated at one scheduled rate",
        report[0]["standInBodyBytes"]
    );
    println!("(req/s: closed loop, then as run); ms, p50 / p95 / p99; llm from Server-Timing, p50 (mean);");
    println!("headers: responses with the X-LLM-Provider / Model / Attempts the side must have, of all:\n");
    print_head("scenario | conc | req/s | latency | service | llm | headers | errors", "lrrrrrrr");
    for o in report {
        for s in [&o["direct"], &o["afterFailedPrimary"], &o["standInRoundTrip"]] {
            let h = &s["headersChecked"];
            let expected = &h["expected"];
            let headers = if expected["attempts"].is_null() {
                format!("{} of {} (200)", h["asExpected"], h["responses"])
            } else {
                format!(
                    "{} of {} ({}, attempts {})",
                    h["asExpected"],
                    h["responses"],
                    expected["provider"].as_str().unwrap_or_default(),
                    expected["attempts"].as_str().unwrap_or_default()
                )
            };
            println!(
                "| {} | {} | {:.0} / {:.0} | {} / {} / {} | {} | {} ({}) | {headers} | {} |",
                s["scenario"].as_str().unwrap_or_default(),
                o["concurrency"],
                s["closedLoopRps"].as_f64().unwrap_or_default(),
                s["rps"].as_f64().unwrap_or_default(),
                f(&s["p50Ms"]),
                f(&s["p95Ms"]),
                f(&s["p99Ms"]),
                triple(&s["serviceMs"]),
                f(&s["llmMs"]["p50"]),
                f(&s["llmMeanMs"]),
                s["errors"],
            );
        }
    }
    println!("\nCost of the failed primary, ms (Δ = after a failed primary − direct): latency p50, its share,");
    println!("per round (median, lowest … highest, in how many rounds the fallback side was the slower), p95;");
    println!("service time p50; the llm phase's mean; and the goal: Δ p50 < the stand-in round trip's latency");
    println!("p50 (measured in the same rounds) + {FALLBACK_GOAL_MARGIN_MS} ms:\n");
    print_head("conc | req/s | Δ p50 | Δ p50 % | Δ p50 per round | fallback slower | Δ p95 | Δ service p50 | Δ llm mean | stand-in p50 / p95 | goal: Δ p50 < | goal", "rrrrrrrrrrrl");
    for o in report {
        let (c, round, goal) = (&o["failedPrimaryCost"], &o["roundP50Diff"], &o["goal"]);
        println!(
            "| {} | {:.0} | {} | {}% | {} ({} … {}) | {} of {FALLBACK_ROUNDS} | {} | {} | {} | {} / {} | {} | {} |",
            o["concurrency"],
            o["scheduledRate"].as_f64().unwrap_or_default(),
            d(&c["p50Ms"]),
            d(&c["p50Pct"]),
            d(&round["medianMs"]),
            d(&round["lowestMs"]),
            d(&round["highestMs"]),
            round["fallbackSlower"],
            d(&c["p95Ms"]),
            d(&c["serviceP50Ms"]),
            d(&c["llmMeanMs"]),
            f(&o["standInRoundTrip"]["p50Ms"]),
            f(&o["standInRoundTrip"]["p95Ms"]),
            f(&goal["limitMs"]),
            if goal["met"].as_bool().unwrap_or(false) { "met" } else { "not met" },
        );
    }
}

/// (v): per concurrency, each side (`null` for one left out), its time added over the
/// stand-in side of the same rounds, and ours as a multiple of LiteLLM's.
fn completions_report(completions: &Completions) -> Vec<Value> {
    completions
        .sets
        .iter()
        .map(|CompletionsSet { sides, capacity }| {
            let floor = &sides[0].1;
            let added_p50 =
                |index: usize| sides.iter().find(|(i, _)| *i == index).map(|(_, r)| r.run.p50 - floor.run.p50);
            let litellm = added_p50(V_LITELLM);
            // A ratio only means something while LiteLLM adds measurable time (as for Portkey in
            // the overhead table: below half a millisecond it is within the noise of the floor).
            let ratio = |added: f64| litellm.filter(|l| *l >= 0.5).map(|l| added / l);
            let mut by_key: serde_json::Map<String, Value> =
                COMPLETIONS_KEYS.iter().map(|k| (k.to_string(), Value::Null)).collect();
            for ((i, r), capacity) in sides.iter().zip(capacity) {
                let based = *i != V_STAND_IN;
                let added = r.run.p50 - floor.run.p50;
                by_key.insert(
                    COMPLETIONS_KEYS[*i].to_owned(),
                    json!({
                        "scenario": r.name, "requests": r.run.samples.len(), "errors": r.run.errors,
                        "closedLoopRps": capacity, "rps": r.run.rps,
                        "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99,
                        "serviceMs": r.analysis.service.json(), "queueingMs": r.analysis.queue.json(),
                        "addedMs": based.then(|| r.run.latency().minus(&floor.run.latency()).json()),
                        "addedServiceP50Ms": based.then_some(r.analysis.service.p50 - floor.analysis.service.p50),
                        "addedOverLitellm": if based { ratio(added) } else { None },
                    }),
                );
            }
            let ours = added_p50(V_OURS);
            let ours_ratio = ours.and_then(ratio);
            json!({
                "concurrency": floor.conns, "scheduledRate": floor.run.rate, "sides": by_key,
                "oursOverLitellm": {
                    "oursAddedP50Ms": ours, "litellmAddedP50Ms": litellm, "ratio": ours_ratio,
                    "goal": COMPLETIONS_GOAL, "met": ours_ratio.map(|r| r <= COMPLETIONS_GOAL),
                },
            })
        })
        .collect()
}

fn print_completions(completions: &Completions, report: &[Value], cfg: &Config) {
    if completions.skipped.is_some() {
        println!("\nv) skipped: /v1/chat/completions not available");
        return;
    }
    if report.is_empty() {
        return;
    }
    println!("\nThe OpenAI Chat Completions API (v): the default assistant asked the same question as a new chat");
    println!(
        "(POST /api/chat) and through our POST /v1/chat/completions (model {COMPLETIONS_MODEL}, the question as one"
    );
    let present = |key: &str| report.iter().any(|v| !v["sides"][key].is_null());
    let peers: Vec<String> =
        [("litellm", "LiteLLM", cfg.litellm_version()), ("portkey", "Portkey", cfg.portkey_version())]
            .into_iter()
            .filter(|(key, ..)| present(key))
            .map(|(_, name, version)| format!("{name} {version}").trim_end().to_owned())
            .collect();
    println!("user message) and the stand-in called directly, all in front of the same stand-in;");
    if !peers.is_empty() {
        println!("beside them the /v1/chat/completions (not streamed) of {};", peers.join(" and "));
    }
    println!(
        "{COMPLETIONS_ROUNDS} runs a side alternated at one scheduled rate (req/s: closed loop, then as run); ms,"
    );
    println!("p50 / p95 / p99; added = each percentile minus the same one of the stand-in side (service: its");
    println!("p50); × LiteLLM = added p50 / LiteLLM's added p50:\n");
    for note in &completions.notes {
        println!("v) {note}");
    }
    if !completions.notes.is_empty() {
        println!();
    }
    print_head("scenario | conc | req/s | latency | service | added | added service | × LiteLLM | errors", "lrrrrrrrr");
    for v in report {
        for s in COMPLETIONS_KEYS.iter().map(|k| &v["sides"][k]).filter(|s| !s.is_null()) {
            let added = if s["addedMs"].is_null() {
                String::new()
            } else {
                let a = &s["addedMs"];
                format!("{} / {} / {}", signed(&a["p50"]), signed(&a["p95"]), signed(&a["p99"]))
            };
            let times = s["addedOverLitellm"].as_f64().map_or(String::new(), |r| format!("{r:.2}×"));
            println!(
                "| {} | {} | {:.0} / {:.0} | {} / {} / {} | {} | {added} | {} | {times} | {} |",
                s["scenario"].as_str().unwrap_or_default(),
                v["concurrency"],
                s["closedLoopRps"].as_f64().unwrap_or_default(),
                s["rps"].as_f64().unwrap_or_default(),
                fixed(&s["p50Ms"]),
                fixed(&s["p95Ms"]),
                fixed(&s["p99Ms"]),
                triple(&s["serviceMs"]),
                if s["addedServiceP50Ms"].is_null() { String::new() } else { signed(&s["addedServiceP50Ms"]) },
                s["errors"],
            );
        }
    }
    print_ours_over_litellm(report);
}

/// The line of (v)'s goal: the time ours adds as a multiple of what LiteLLM adds, at each
/// concurrency.
fn print_ours_over_litellm(report: &[Value]) {
    let ours = "Ours (POST /v1/chat/completions) over LiteLLM";
    if v_litellm_missing(report) {
        println!("\n{ours}: not measured (LITELLM_URL is not set).");
        return;
    }
    let at = |v: &Value| format!("c={}", v["concurrency"]);
    let parts: Vec<String> = report
        .iter()
        .map(|v| {
            let o = &v["oursOverLitellm"];
            let ratio = o["ratio"].as_f64().map_or("n/a".to_owned(), |r| format!("{r:.2}×"));
            let (a, b) = (signed(&o["oursAddedP50Ms"]), signed(&o["litellmAddedP50Ms"]));
            format!("{ratio} at {} ({a} vs {b} ms)", at(v))
        })
        .collect();
    let verdicts: Vec<String> = report
        .iter()
        .map(|v| {
            let verdict = match v["oursOverLitellm"]["met"].as_bool() {
                Some(true) => "met",
                Some(false) => "not met",
                None => "n/a",
            };
            format!("{verdict} at {}", at(v))
        })
        .collect();
    println!(
        "\n{ours}, time added over the stand-in, latency p50: {}; goal ≤ {COMPLETIONS_GOAL}×: {}.",
        parts.join(", "),
        verdicts.join(", ")
    );
}

/// Whether (v) ran without LiteLLM.
fn v_litellm_missing(report: &[Value]) -> bool {
    report.iter().all(|v| v["sides"]["litellm"].is_null())
}

/// (v)'s part of the JSON results.
fn completions_json(cfg: &Config, completions: Option<&Completions>, report: Vec<Value>) -> Value {
    let skipped = completions
        .and_then(|c| c.skipped.as_ref())
        .map(|body| json!({ "reason": "/v1/chat/completions not available", "status": 404, "body": body }));
    json!({
        "concurrency": COMPLETIONS_CONCURRENCY, "rounds": COMPLETIONS_ROUNDS, "load": COMPLETIONS_LOAD,
        "model": COMPLETIONS_MODEL, "goalRatio": COMPLETIONS_GOAL,
        "litellmVersion": cfg.litellm_version(), "portkeyVersion": cfg.portkey_version(),
        "measured": !report.is_empty(), "skipped": skipped,
        "notes": completions.map_or(&[][..], |c| &c.notes[..]),
        "comparison": report,
    })
}

/// Every row as the JSON results list them.
fn results_json(all: &[&Row], requests: usize) -> Vec<Value> {
    all.iter()
        .copied()
        .map(|Row { name, conns, run: r, over, analysis: a }| {
            json!({
                "scenario": name, "concurrency": conns, "requests": requests, "scheduledRate": r.rate,
                "rps": r.rps, "p50Ms": r.p50, "p95Ms": r.p95, "p99Ms": r.p99, "errors": r.errors, "overP50Ms": over,
                "serviceMs": a.service.json(), "queueingMs": a.queue.json(),
                "serverTimingMs": a.phases.iter().map(|(k, p)| (k.clone(), p.json())).collect::<serde_json::Map<_, _>>(),
                "slowest": {
                    "share": TAIL, "requests": a.tail.0,
                    "medianMs": a.tail.1.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                },
            })
        })
        .collect()
}

/// The tables, then the JSON results (to `BENCH_OUTPUT`).
fn report(cfg: &Config, m: &Measured) {
    let all = m.all();
    print_overview(&all);
    print_server_timing(&all);
    print_tail(&all);
    let comparison = portkey_comparison(&m.rows);
    print_portkey(&comparison, cfg.portkey_version());
    let ledger = ledger_report(&m.ledger);
    print_ledger(&ledger);
    let split = split_report(&m.split);
    print_split(&split, m.split_skipped);
    let tool_step = tool_step_report(&m.tool_steps);
    print_tool_step(&tool_step);
    let fallback = fallback_report(&m.fallbacks);
    print_fallback(&fallback);
    let completions = m.completions.as_ref().map(completions_report).unwrap_or_default();
    if let Some(c) = &m.completions {
        print_completions(c, &completions, cfg);
    }

    let raw: u64 = env::parsed("BENCH_WASM_RAW", 0);
    let gz: u64 = env::parsed("BENCH_WASM_GZIP", 0);
    println!("\nDeployable wasm: {} KiB raw, {} KiB gzip", raw / 1024, gz / 1024);
    println!("Measured in {:.0} s, {} requests per scenario and concurrency", m.seconds, cfg.requests);

    let out = json!({
        "requestsPerScenario": cfg.requests, "seconds": m.seconds, "results": results_json(&all, cfg.requests),
        "portkey": { "version": cfg.portkey_version(), "overhead": comparison },
        "longChat": { "turns": LONG_CHAT_TURNS, "chars": LONG_TEXT_CHARS, "requestsPerChat": LONG_CHAT_REQUESTS },
        "wasmBytes": { "raw": raw, "gzip": gz },
        "usageLedger": { "concurrency": LEDGER_CONCURRENCY, "rounds": LEDGER_ROUNDS, "comparison": ledger },
        "split": {
            "concurrency": SPLIT_CONCURRENCY, "rounds": SPLIT_ROUNDS, "records": SPLIT_RECORDS,
            "measured": !split.is_empty(), "skipped": m.split_skipped,
            "comparison": split,
        },
        "toolStep": {
            "concurrency": TOOL_STEP_CONCURRENCY, "rounds": TOOL_STEP_ROUNDS, "deals": TOOL_STEP_DEALS,
            "load": TOOL_STEP_LOAD,
            "comparison": tool_step,
        },
        "fallback": {
            "concurrency": FALLBACK_CONCURRENCY, "rounds": FALLBACK_ROUNDS, "load": FALLBACK_LOAD,
            "provider": FALLBACK_PROVIDER, "model": FALLBACK_MODEL, "goalMarginMs": FALLBACK_GOAL_MARGIN_MS,
            "comparison": fallback,
        },
        "chatCompletions": completions_json(cfg, m.completions.as_ref(), completions),
    });
    if let Some(path) = env::optional("BENCH_OUTPUT") {
        write_json_file(&path, &out);
    }
}

fn main() {
    let cfg = Config::from_env();
    let keys = Keys::create(&cfg);
    let measured = Measured::run(&cfg, &keys);
    report(&cfg, &measured);
}
