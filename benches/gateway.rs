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
//!       fallback path.
//!
//! Load is open-loop at a constant rate (wrk2-style): a short closed-loop pass finds the
//! throughput, then requests are scheduled at 75% of it and latency is measured from each
//! request's scheduled time, so a stall is charged to every request it delays (no coordinated
//! omission). Latencies go into an HDR histogram. Each request's service time (from its send)
//! and `Server-Timing` phases are kept too, for the phase percentiles and the tail breakdown.
//!
//! Started by `scripts/bench.sh`, which brings up the local stack and sets the environment.
//! `BENCH_REQUESTS` (default 400) sets the requests per scenario and concurrency;
//! `BENCH_SCENARIOS` (e.g. `de`) runs only the scenarios with those letters.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

const CONCURRENCY: [usize; 3] = [1, 8, 32];
/// Concurrencies of the long-chat scenario (e) and of the `wrangler dev` one (w).
const LONG_CHAT_CONCURRENCY: [usize; 2] = [1, 8];
const WRANGLER_DEV_CONCURRENCY: [usize; 2] = [1, 8];
/// Concurrencies of the ledger comparison (l).
const LEDGER_CONCURRENCY: [usize; 2] = [1, 8];
/// Runs per side of each workload of (l), in the order on, off, off, on, on, off, …; each
/// takes `BENCH_REQUESTS / LEDGER_ROUNDS` requests (at least one per connection), so a side
/// takes as many as a scenario.
const LEDGER_ROUNDS: usize = 8;
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
/// The phases of the `Server-Timing` header of `POST /api/chat`, in the order of a turn.
const PHASES: [&str; 4] = ["auth-read", "rate-limit", "llm", "persist"];
/// Share of the slowest requests (by service time) the tail breakdown looks at.
const TAIL: f64 = 0.05;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make bench`"))
}

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

fn parse_server_timing(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .filter_map(|metric| {
            let mut parts = metric.split(';');
            let name = parts.next()?.trim().to_owned();
            let dur = parts.find_map(|p| p.trim().strip_prefix("dur="))?.parse::<f64>().ok()?;
            Some((name, dur))
        })
        .collect()
}

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
            if let Some(msg) = b.get_mut("message") {
                *msg = json!(format!("{} #{n}", msg.as_str().unwrap_or("bench")));
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

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

/// Closed loop for a moment (at most `calibration_cap` requests per connection): how many
/// requests per second this target sustains.
fn calibrate(t: &Target, conns: usize) -> f64 {
    let window = Duration::from_millis(1500);
    let start = Instant::now();
    let done: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let t = t.clone();
                s.spawn(move || {
                    let a = agent();
                    let mut n = 0;
                    while start.elapsed() < window && n < t.calibration_cap {
                        send(&a, &t, c + n * conns, n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    done as f64 / start.elapsed().as_secs_f64()
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

/// Open loop: `total` requests at `rate` per second over `conns` connections.
fn run(t: &Target, conns: usize, total: usize, rate: f64) -> Run {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let results: Vec<(Histogram<u64>, Vec<Sample>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let t = t.clone();
                s.spawn(move || {
                    let a = agent();
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
                    let mut samples = Vec::new();
                    let mut i = c;
                    while i < total {
                        let scheduled = start + interval * i as u32;
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let sent = Instant::now();
                        let Reply { status, timing, llm } = send(&a, &t, i, i);
                        let done = Instant::now();
                        let latency_us = done.saturating_duration_since(scheduled).as_micros() as u64;
                        let _ = hist.record(latency_us.max(1));
                        samples.push(Sample {
                            latency_us,
                            service_us: done.saturating_duration_since(sent).as_micros() as u64,
                            ok: (200..300).contains(&status),
                            timing,
                            llm,
                        });
                        i += conns;
                    }
                    (hist, samples)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let mut samples = Vec::with_capacity(total);
    for (h, s) in results {
        let _ = hist.add(h);
        samples.extend(s);
    }
    let errors = samples.iter().filter(|s| !s.ok).count();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Run { rate, seconds, rps: total as f64 / seconds, p50: ms(0.5), p95: ms(0.95), p99: ms(0.99), errors, samples }
}

/// Runs of one target at one rate taken as one: their requests in one histogram.
fn merge(runs: Vec<Run>) -> Run {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let (rate, seconds) = (runs.first().map_or(0.0, |r| r.rate), runs.iter().map(|r| r.seconds).sum::<f64>());
    let samples: Vec<Sample> = runs.into_iter().flat_map(|r| r.samples).collect();
    for s in &samples {
        let _ = hist.record(s.latency_us.max(1));
    }
    let errors = samples.iter().filter(|s| !s.ok).count();
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let rps = samples.len() as f64 / seconds.max(f64::MIN_POSITIVE);
    Run { rate, seconds, rps, p50: ms(0.5), p95: ms(0.95), p99: ms(0.99), errors, samples }
}

#[derive(Clone, Copy, Default)]
struct Pcts {
    p50: f64,
    p95: f64,
    p99: f64,
}

impl Pcts {
    /// Nearest-rank percentiles.
    fn of(mut v: Vec<f64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Self { p50: at(0.5), p95: at(0.95), p99: at(0.99) })
    }

    fn json(&self) -> Value {
        json!({ "p50": self.p50, "p95": self.p95, "p99": self.p99 })
    }

    fn cell(&self) -> String {
        format!("{} / {} / {}", num(self.p50), num(self.p95), num(self.p99))
    }
}

/// Whole numbers without a decimal, anything else with one.
fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
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
    let phases = names.iter().filter_map(|n| Some((n.clone(), Pcts::of(values(n, &ok))?))).collect();
    let service = Pcts::of(ok.iter().map(|s| s.service_us as f64 / 1000.0).collect()).unwrap_or_default();
    let queue = Pcts::of(ok.iter().map(|s| s.latency_us.saturating_sub(s.service_us) as f64 / 1000.0).collect())
        .unwrap_or_default();

    let mut by_service = ok.clone();
    by_service.sort_by_key(|s| std::cmp::Reverse(s.service_us));
    let slow = &by_service[..((by_service.len() as f64 * TAIL).ceil() as usize).min(by_service.len())];
    let mut tail: Vec<(String, f64)> = Pcts::of(slow.iter().map(|s| s.service_us as f64 / 1000.0).collect())
        .map(|p| ("service".into(), p.p50))
        .into_iter()
        .collect();
    if has_phases {
        for n in PHASES.iter().map(|p| p.to_string()).chain(["outside".to_string()]) {
            if let Some(p) = Pcts::of(values(&n, slow)) {
                tail.push((n, p.p50));
            }
        }
    }
    Analysis { phases, service, queue, tail: (slow.len(), tail) }
}

fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Value {
    let mut req = agent().request(method, url);
    if let Some(token) = token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => r.into_json().unwrap_or(Value::Null),
        Err(e) => panic!("{method} {url}: {e}"),
    }
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

/// A workspace on the Worker at `base` with one API key per name (no rate limit to speak of).
fn api_keys<const N: usize>(base: &str, op: &str, names: [&str; N]) -> [String; N] {
    workspace(base, op, names).1
}

/// [`api_keys`], with the token of the workspace's admin.
fn workspace<const N: usize>(base: &str, op: &str, names: [&str; N]) -> (String, [String; N]) {
    let ws = call("POST", &format!("{base}/api/admin/workspaces"), Some(op), Some(json!({ "name": "bench" })));
    let ws_id = ws["id"].as_str().unwrap_or_default();
    let admin = call(
        "POST",
        &format!("{base}/api/admin/workspaces/{ws_id}/admins"),
        Some(op),
        Some(json!({ "name": "Bench", "email": "bench@example.com" })),
    );
    let admin_token = admin["token"].as_str().unwrap_or_default().to_owned();
    let keys = names.map(|name| {
        let k = call(
            "POST",
            &format!("{base}/api/settings/api-keys"),
            Some(&admin_token),
            Some(json!({ "name": name, "rateLimitPerMinute": 100_000 })),
        );
        k["key"].as_str().unwrap_or_default().to_owned()
    });
    (admin_token, keys)
}

struct Row {
    name: &'static str,
    conns: usize,
    run: Run,
    over: Option<f64>,
    analysis: Analysis,
}

/// One workload of (l) at one concurrency, with the usage ledger on and off.
struct LedgerPair {
    on: Row,
    off: Row,
    /// The latency p50 of each run with the ledger on minus that of its partner run (the
    /// round's run) with it off, ms: how far apart the two sides land from round to round.
    round_diffs: Vec<f64>,
}

/// Requests the usage ledger of the workspace of `admin` has counted today.
fn ledger_requests(base: &str, admin: &str) -> i64 {
    call("GET", &format!("{base}/api/settings/usage"), Some(admin), None)["totals"]["requests"].as_i64().unwrap_or(0)
}

/// Scenario (l): the workloads of (c) and (d) against `on` (the usage ledger on) and `off`
/// (`USAGE_LEDGER=off`), each in a workspace of its own created here, so the two databases
/// hold the same but for the ledger's rows.
fn ledger_comparison(on: &str, off: &str, op: &str, requests: usize) -> Vec<LedgerPair> {
    let names = ["bench-ledger-new", "bench-ledger-continue"];
    let (on_admin, [on_new, on_cont]) = workspace(on, op, names);
    let (off_admin, [off_new, off_cont]) = workspace(off, op, names);
    let mut pairs = Vec::new();
    for conns in LEDGER_CONCURRENCY {
        let per_round = requests.div_ceil(LEDGER_ROUNDS).max(conns);
        eprintln!("preparing {conns} chats with 20 earlier turns on each of the two Workers ...");
        let prepare = |base: &str, key: &str| -> Vec<String> {
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..conns).map(|_| s.spawn(|| chat_with_history(base, key, 20))).collect();
                hs.into_iter().filter_map(|h| h.join().ok()).collect()
            })
        };
        let (on_chats, off_chats) = (prepare(on, &on_cont), prepare(off, &off_cont));
        // The comparison is only meaningful if the one Worker counts and the other does not.
        let counted = (ledger_requests(on, &on_admin), ledger_requests(off, &off_admin));
        assert!(
            counted.0 > 0 && counted.1 == 0,
            "the usage ledger should count on {on} and not on {off}: counted {counted:?} requests"
        );
        let target = |base: &str, key: &str, bodies: Vec<Option<Value>>| Target {
            method: "POST",
            url: format!("{base}/api/chat"),
            token: Some(key.to_owned()),
            headers: Vec::new(),
            bodies,
            calibration_cap: usize::MAX,
        };
        let new_chat = || vec![Some(json!({ "message": "What are the top deals in our pipeline?" }))];
        let continuing = |chats: &[String]| {
            chats.iter().map(|id| Some(json!({ "message": "And by region?", "chatId": id }))).collect()
        };
        let workloads = [
            (
                "l) POST /api/chat (new chat), ledger on",
                "l) POST /api/chat (new chat), ledger off",
                target(on, &on_new, new_chat()),
                target(off, &off_new, new_chat()),
            ),
            (
                "l) POST /api/chat (20 turns), ledger on",
                "l) POST /api/chat (20 turns), ledger off",
                target(on, &on_cont, continuing(&on_chats)),
                target(off, &off_cont, continuing(&off_chats)),
            ),
        ];
        for (on_name, off_name, on_target, off_target) in workloads {
            let _ = calibrate(&on_target, conns.min(4));
            let _ = calibrate(&off_target, conns.min(4));
            // One rate for both sides: 75% of the mean of what each sustains (the mean rather
            // than the lower one: a stall during one short pass would slow the whole scenario).
            let rate = ((calibrate(&on_target, conns) + calibrate(&off_target, conns)) / 2.0 * 0.75).max(1.0);
            eprintln!("{on_name} / off @ {conns}: {rate:.0} req/s scheduled, {LEDGER_ROUNDS} rounds each");
            let (mut on_runs, mut off_runs) = (Vec::new(), Vec::new());
            for round in 0..LEDGER_ROUNDS {
                let on_first = round % 2 == 0;
                for ledger in [on_first, !on_first] {
                    if ledger {
                        on_runs.push(run(&on_target, conns, per_round, rate));
                    } else {
                        off_runs.push(run(&off_target, conns, per_round, rate));
                    }
                }
            }
            let round_diffs = on_runs.iter().zip(&off_runs).map(|(a, b)| a.p50 - b.p50).collect();
            let row = |name: &'static str, runs: Vec<Run>| {
                let run = merge(runs);
                let analysis = analyse(&run.samples);
                Row { name, conns, run, over: None, analysis }
            };
            pairs.push(LedgerPair { on: row(on_name, on_runs), off: row(off_name, off_runs), round_diffs });
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
    let (admin, [key]) = workspace(base, op, ["bench-tools"]);
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
            .map(|(agent_id, letter, _)| Target {
                method: "POST",
                url: format!("{base}/api/chat"),
                token: Some(key.clone()),
                headers: Vec::new(),
                bodies: tags(*letter)
                    .map(|tag| Some(json!({ "message": format!("{tag} {TOOL_STEP_QUESTION}"), "agentId": agent_id })))
                    .collect(),
                calibration_cap: usize::MAX,
            })
            .collect();
        // Warm up (the isolate and the statements of both sides) before the first concurrency only.
        if conns == TOOL_STEP_CONCURRENCY[0] {
            for t in &targets {
                let _ = calibrate(t, conns.min(4));
            }
        }
        // One rate for both sides, from what the slower (the tool step, with two model calls)
        // sustains, so that neither runs at its capacity.
        let capacity: Vec<f64> = targets.iter().map(|t| calibrate(t, conns)).collect();
        let rate = (capacity.iter().copied().fold(f64::INFINITY, f64::min) * TOOL_STEP_LOAD).max(1.0);
        // The script again: every connection's turns start with the tool call, whatever the
        // closed-loop passes left behind.
        script_all();
        eprintln!(
            "t) agent turns without / with one tool step @ {conns}: closed loop {:.0} / {:.0} req/s; {rate:.0} req/s \
             scheduled, {TOOL_STEP_ROUNDS} rounds each",
            capacity[0], capacity[1]
        );
        let mut runs: Vec<Vec<Run>> = (0..targets.len()).map(|_| Vec::new()).collect();
        for round in 0..TOOL_STEP_ROUNDS {
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                runs[i].push(run(&targets[i], conns, per_round, rate));
            }
        }
        let round_diffs = runs[1].iter().zip(&runs[0]).map(|(s, n)| s.p50 - n.p50).collect();
        let sides = runs
            .into_iter()
            .zip(TOOL_STEP_SIDES)
            .map(|(runs, name)| {
                let run = merge(runs);
                let analysis = analyse(&run.samples);
                Row { name, conns, run, over: None, analysis }
            })
            .collect();
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

/// Scenario (o): in a workspace of its own, an agent on `default` and one on `flaky` (whose
/// every request the stand-in answers 503 at once) falling back to `default` with the same
/// model, asked the same question, and the stand-in called directly with the body the first
/// one sends it; see the module's comment.
fn fallback_comparison(base: &str, stub: &str, op: &str, requests: usize) -> Vec<FallbackSet> {
    let (admin, [key]) = workspace(base, op, ["bench-fallback"]);
    let make_agent = |name: &str, routing: Value| -> String {
        let mut body = json!({ "name": name, "instructions": FALLBACK_INSTRUCTIONS, "model": FALLBACK_MODEL });
        for (k, v) in routing.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let resp = agent()
            .post(&format!("{base}/api/settings/agents"))
            .set("Authorization", &format!("Bearer {admin}"))
            .send_json(body);
        match resp {
            Ok(r) => {
                let a: Value = r.into_json().unwrap_or(Value::Null);
                a["id"].as_str().unwrap_or_else(|| panic!("creating agent {name}: {a}")).to_owned()
            }
            Err(ureq::Error::Status(code, r)) => panic!(
                "creating agent {name}: {code} {} (the bench Worker's LLM_PROVIDERS, set in scripts/bench.sh, \
                 should define `{FALLBACK_PROVIDER}`)",
                r.into_string().unwrap_or_default()
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

    // One turn of each side, checked: the run measures what it says only if the direct side
    // is answered by `default` in one request and the other goes to `flaky` (503) and then to
    // `default`. The direct side's request to the stand-in is kept: the stand-in side sends it.
    let mut upstream_body = Value::Null;
    for (side, agent_id) in [&direct, &fallback].into_iter().enumerate() {
        let mark = format!("bench-o-check-{side}");
        let body = json!({ "message": message(side, &format!("{mark} ")), "agentId": agent_id });
        let t = Target {
            method: "POST",
            url: format!("{base}/api/chat"),
            token: Some(key.clone()),
            headers: Vec::new(),
            bodies: vec![Some(body)],
            calibration_cap: usize::MAX,
        };
        let reply = send(&agent(), &t, 0, 0);
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
    let upstream_bytes = upstream_body.to_string().len();

    let mut sets = Vec::new();
    for conns in FALLBACK_CONCURRENCY {
        let per_round = requests.div_ceil(FALLBACK_ROUNDS).max(conns);
        let chat = |side: usize, agent_id: &str| Target {
            method: "POST",
            url: format!("{base}/api/chat"),
            token: Some(key.clone()),
            headers: Vec::new(),
            bodies: vec![Some(json!({ "message": message(side, ""), "agentId": agent_id }))],
            calibration_cap: usize::MAX,
        };
        let targets = [
            chat(0, &direct),
            chat(1, &fallback),
            Target {
                method: "POST",
                url: format!("{stub}/v1/chat/completions"),
                token: None,
                headers: Vec::new(),
                bodies: vec![Some(upstream_body.clone())],
                calibration_cap: usize::MAX,
            },
        ];
        if conns == FALLBACK_CONCURRENCY[0] {
            for t in &targets {
                let _ = calibrate(t, conns.min(4));
            }
        }
        // One rate for all three, from what the slower chat side (the fallback, two model
        // calls) sustains, as in (t).
        let capacity: Vec<f64> = targets.iter().map(|t| calibrate(t, conns)).collect();
        let rate = (capacity[0].min(capacity[1]) * FALLBACK_LOAD).max(1.0);
        eprintln!(
            "o) agent turns direct / after a failed primary / stand-in @ {conns}: closed loop {:.0} / {:.0} / {:.0} \
             req/s; {rate:.0} req/s scheduled, {FALLBACK_ROUNDS} rounds each",
            capacity[0], capacity[1], capacity[2]
        );
        let mut runs: Vec<Vec<Run>> = (0..targets.len()).map(|_| Vec::new()).collect();
        for round in 0..FALLBACK_ROUNDS {
            let mut order: Vec<usize> = (0..targets.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                runs[i].push(run(&targets[i], conns, per_round, rate));
            }
        }
        let round_diffs = runs[1].iter().zip(&runs[0]).map(|(f, d)| f.p50 - d.p50).collect();
        let sides: Vec<Row> = runs
            .into_iter()
            .zip(FALLBACK_SIDES)
            .map(|(runs, name)| {
                let run = merge(runs);
                let analysis = analyse(&run.samples);
                Row { name, conns, run, over: None, analysis }
            })
            .collect();
        // Not timed: every response of each side must have taken the path it stands for.
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
        sets.push(FallbackSet { sides, capacity, round_diffs, checked, upstream_bytes });
    }
    sets
}

fn main() {
    let base = env("ATTIVE_BASE_URL");
    let stub = env("LLM_STUB_URL");
    let op = env("ATTIVE_ADMIN_TOKEN");
    let portkey = std::env::var("PORTKEY_URL").ok().filter(|u| !u.is_empty());
    let portkey_version = std::env::var("PORTKEY_VERSION").unwrap_or_default();
    let requests: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    // BENCH_SCENARIOS=de runs only (d) and (e), say; all by default.
    let only = std::env::var("BENCH_SCENARIOS").ok().filter(|s| !s.is_empty());
    let wanted =
        |name: &str| only.as_ref().is_none_or(|letters| name.chars().next().is_some_and(|c| letters.contains(c)));

    let [key_new, key_cont, key_long, key_list] =
        api_keys(&base, &op, ["bench-new", "bench-continue", "bench-long", "bench-list"]);
    let wrangler_dev = std::env::var("ATTIVE_WRANGLER_DEV_URL").ok().filter(|u| !u.is_empty());
    let key_dev = wrangler_dev.as_ref().map(|url| {
        let [key] = api_keys(url, &op, ["bench-new"]);
        key
    });

    let no_ledger = std::env::var("ATTIVE_NO_LEDGER_URL").ok().filter(|u| !u.is_empty());

    let direct_body = json!({ "model": "bench", "messages": [{ "role": "system", "content": "You are terse." }, { "role": "user", "content": "What are the top deals in our pipeline?" }] });
    let started = Instant::now();
    let mut ledger = match &no_ledger {
        Some(off) if wanted("l") => ledger_comparison(&base, off, &op, requests),
        _ => Vec::new(),
    };
    // (t) next: a workspace of its own, so it finds no more than its own chats and deals.
    let mut tool_steps = if wanted("t") { tool_step_comparison(&base, &stub, &op, requests) } else { Vec::new() };
    // (o) too: its two agents and the stand-in's script for them in a workspace of its own.
    let mut fallbacks = if wanted("o") { fallback_comparison(&base, &stub, &op, requests) } else { Vec::new() };
    let mut rows: Vec<Row> = Vec::new();
    for conns in CONCURRENCY {
        let chats: Vec<String> = if wanted("d") {
            eprintln!("preparing {conns} chats with 20 earlier turns ...");
            std::thread::scope(|s| {
                let hs: Vec<_> = (0..conns).map(|_| s.spawn(|| chat_with_history(&base, &key_cont, 20))).collect();
                hs.into_iter().filter_map(|h| h.join().ok()).collect()
            })
        } else {
            Vec::new()
        };
        let long: Vec<String> = if wanted("e") && LONG_CHAT_CONCURRENCY.contains(&conns) {
            let per_conn = (requests.div_ceil(conns) + 2 * LONG_CHAT_CALIBRATION).div_ceil(LONG_CHAT_REQUESTS);
            let t = Instant::now();
            eprintln!("preparing {} long chats ({conns} connections × {per_conn}) ...", conns * per_conn);
            let ids = long_chats(&base, &stub, &key_long, &format!("[bench long chat c{conns}]"), conns * per_conn);
            eprintln!("  ready in {:.0} s", t.elapsed().as_secs_f64());
            ids
        } else {
            Vec::new()
        };
        let continue_body = |id: &String| Some(json!({ "message": "And by region?", "chatId": id }));
        let mut targets = vec![(
            "a) LLM stand-in direct",
            Target {
                method: "POST",
                url: format!("{stub}/v1/chat/completions"),
                token: None,
                headers: Vec::new(),
                bodies: vec![Some(direct_body.clone())],
                calibration_cap: usize::MAX,
            },
        )];
        if let Some(pk) = &portkey {
            targets.push((
                "p) Portkey gateway → stand-in",
                Target {
                    method: "POST",
                    url: format!("{pk}/v1/chat/completions"),
                    token: None,
                    headers: vec![
                        ("x-portkey-provider", "openai".into()),
                        ("x-portkey-custom-host", format!("{stub}/v1")),
                    ],
                    bodies: vec![Some(direct_body.clone())],
                    calibration_cap: usize::MAX,
                },
            ));
        }
        targets.extend([
            (
                "b) GET /api/health",
                Target {
                    method: "GET",
                    url: format!("{base}/api/health"),
                    token: None,
                    headers: Vec::new(),
                    bodies: vec![None],
                    calibration_cap: usize::MAX,
                },
            ),
            (
                "f) GET /api/chats (no LLM, no D1 write)",
                Target {
                    method: "GET",
                    url: format!("{base}/api/chats?limit=5"),
                    token: Some(key_list.clone()),
                    headers: Vec::new(),
                    bodies: vec![None],
                    calibration_cap: usize::MAX,
                },
            ),
            (
                "c) POST /api/chat (new chat)",
                Target {
                    method: "POST",
                    url: format!("{base}/api/chat"),
                    token: Some(key_new.clone()),
                    headers: Vec::new(),
                    bodies: vec![Some(json!({ "message": "What are the top deals in our pipeline?" }))],
                    calibration_cap: usize::MAX,
                },
            ),
            (
                "d) POST /api/chat (20 turns)",
                Target {
                    method: "POST",
                    url: format!("{base}/api/chat"),
                    token: Some(key_cont.clone()),
                    headers: Vec::new(),
                    bodies: chats.iter().map(continue_body).collect(),
                    calibration_cap: usize::MAX,
                },
            ),
        ]);
        if !long.is_empty() {
            targets.push((
                "e) POST /api/chat (long chat)",
                Target {
                    method: "POST",
                    url: format!("{base}/api/chat"),
                    token: Some(key_long.clone()),
                    headers: Vec::new(),
                    bodies: long.iter().map(continue_body).collect(),
                    calibration_cap: LONG_CHAT_CALIBRATION,
                },
            ));
        }
        if let (Some(url), Some(key)) = (&wrangler_dev, &key_dev) {
            if WRANGLER_DEV_CONCURRENCY.contains(&conns) {
                targets.push((
                    "w) POST /api/chat (new chat), wrangler dev",
                    Target {
                        method: "POST",
                        url: format!("{url}/api/chat"),
                        token: Some(key.clone()),
                        headers: Vec::new(),
                        bodies: vec![Some(json!({ "message": "What are the top deals in our pipeline?" }))],
                        calibration_cap: usize::MAX,
                    },
                ));
            }
        }
        let mut direct_p50 = 0.0;
        for (name, target) in targets.into_iter().filter(|(name, _)| wanted(name)) {
            // Warm up the isolate, the connections and the caches of this scenario.
            let _ = calibrate(&target, conns.min(4));
            let rate = (calibrate(&target, conns) * 0.75).max(1.0);
            eprintln!("{name} @ {conns}: {rate:.0} req/s scheduled");
            let r = run(&target, conns, requests, rate);
            if name.starts_with("a)") {
                direct_p50 = r.p50;
            }
            let over = (!name.starts_with("a)") && !name.starts_with("b)") && !name.starts_with("f)"))
                .then_some(r.p50 - direct_p50);
            let analysis = analyse(&r.samples);
            rows.push(Row { name, conns, run: r, over, analysis });
        }
    }
    // (l) ran first, but its rows come last in the tables, each pair with its own (a) as the base.
    for pair in &mut ledger {
        let direct = rows.iter().find(|r| r.name.starts_with("a)") && r.conns == pair.on.conns).map(|r| r.run.p50);
        pair.on.over = direct.map(|d| pair.on.run.p50 - d);
        pair.off.over = direct.map(|d| pair.off.run.p50 - d);
    }
    for set in &mut tool_steps {
        let direct = rows.iter().find(|r| r.name.starts_with("a)") && r.conns == set.sides[0].conns).map(|r| r.run.p50);
        for side in &mut set.sides {
            side.over = direct.map(|d| side.run.p50 - d);
        }
    }
    for set in &mut fallbacks {
        let direct = rows.iter().find(|r| r.name.starts_with("a)") && r.conns == set.sides[0].conns).map(|r| r.run.p50);
        for side in set.sides.iter_mut().take(2) {
            side.over = direct.map(|d| side.run.p50 - d);
        }
    }
    let all: Vec<&Row> = rows
        .iter()
        .chain(ledger.iter().flat_map(|p| [&p.on, &p.off]))
        .chain(tool_steps.iter().flat_map(|t| t.sides.iter()))
        .chain(fallbacks.iter().flat_map(|f| f.sides.iter()))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();

    println!("\n| scenario | conc | req/s | p50 ms | p95 ms | p99 ms | errors | p50 over (a) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for Row { name, conns, run: r, over, .. } in all.iter().copied() {
        let over = over.map_or("".to_owned(), |o| format!("{o:+.1}"));
        println!(
            "| {name} | {conns} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {over} |",
            r.rps, r.p50, r.p95, r.p99, r.errors
        );
    }

    println!("\nServer-Timing of POST /api/chat, p50 / p95 / p99 (ms; `outside` = service time minus the timed");
    println!("phases: Worker CPU, local runtime, loopback; `d1`/`do` = round trips per request, p50):\n");
    println!("| scenario | conc | auth-read | rate-limit | llm | persist | outside | service | d1 | do |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for Row { name, conns, analysis: a, .. } in
        all.iter().copied().filter(|r| r.analysis.phases.iter().any(|(n, _)| n == "llm"))
    {
        let get = |k: &str| a.phases.iter().find(|(n, _)| n == k).map(|(_, p)| *p).unwrap_or_default();
        println!(
            "| {name} | {conns} | {} | {} | {} | {} | {} | {} | {} | {} |",
            get("auth-read").cell(),
            get("rate-limit").cell(),
            get("llm").cell(),
            get("persist").cell(),
            get("outside").cell(),
            a.service.cell(),
            num(get("d1").p50),
            num(get("do").p50),
        );
    }

    println!("\nTail breakdown (ms): service time = from send to response; queueing = latency minus service");
    println!("time (waiting behind earlier requests of the connection); then the medians, over the slowest");
    println!("{:.0}% of requests by service time, of the service time and of each phase:\n", TAIL * 100.0);
    println!("| scenario | conc | service p50 / p95 / p99 | queueing p50 / p95 / p99 | slowest: n | service | auth-read | rate-limit | llm | persist | outside |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
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

    // Overheads over (a), on two bases: the latency p50 of the main table, and the service-time
    // p50, which leaves out what each scenario waited behind its own earlier requests (at the
    // thousands of requests per second of (a), the load generator's own scheduling adds some).
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
    if !comparison.is_empty() {
        println!(
            "\nOverhead over the stand-in called directly (a), ms: Portkey {portkey_version} (p) vs ours (c), and"
        );
        println!("ours under plain `wrangler dev` (w) where measured:\n");
        println!("| conc | basis | direct (a) | Portkey (p) | Portkey over | ours (c) | ours over | ours / Portkey | (w) over | (w) / Portkey |");
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        let times = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.1}×"));
        let plus = |v: &Value| v.as_f64().map_or(String::new(), |o| format!("{o:+.1}"));
        for c in &comparison {
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

    let ledger_report: Vec<Value> = ledger
        .iter()
        .map(|LedgerPair { on, off, round_diffs }| {
            let side = |r: &Row| {
                let phase = |k: &str| r.analysis.phases.iter().find(|(n, _)| n == k).map(|(_, p)| p.json());
                json!({
                    "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99, "errors": r.run.errors,
                    "serviceP50Ms": r.analysis.service.p50, "persistMs": phase("persist"),
                    "persistMeanMs": mean_metric(&r.run.samples, "persist"), "d1RoundTrips": phase("d1"),
                })
            };
            let diff = on.run.p50 - off.run.p50;
            let rounds = Pcts::of(round_diffs.clone()).unwrap_or_default();
            let (lo, hi) =
                round_diffs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| (lo.min(d), hi.max(d)));
            json!({
                "workload": on.name.trim_start_matches("l) ").trim_end_matches(", ledger on"),
                "concurrency": on.conns, "scheduledRate": on.run.rate, "on": side(on), "off": side(off),
                "p50DiffMs": diff, "p50DiffPct": 100.0 * diff / off.run.p50, "roundP50DiffsMs": round_diffs,
                "roundP50Diff": { "medianMs": rounds.p50, "lowestMs": lo, "highestMs": hi,
                    "onSlower": round_diffs.iter().filter(|d| **d > 0.0).count() },
            })
        })
        .collect();
    if !ledger_report.is_empty() {
        println!("\nUsage ledger on vs off (l): the workloads of (c) and (d) against the Worker with the ledger on");
        println!("and against one with USAGE_LEDGER=off, {LEDGER_ROUNDS} runs a side alternated (on, off, off, on, …)");
        println!("at one scheduled rate; latency ms; Δ = on − off; Δ per round = the p50 differences of the");
        println!("rounds' pairs of runs: median (lowest … highest), and in how many rounds the ledger side was");
        println!("the slower (how far apart the two sides land by chance); persist and d1 (round trips) from");
        println!("Server-Timing, whose phases are whole milliseconds (hence the mean):\n");
        println!("| scenario | conc | p50 / p95 on | p50 / p95 off | Δ p50 | Δ p50 % | Δ p50 per round | on slower | service p50 on / off | persist p50 on / off | persist mean on / off | d1 on / off |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &ledger_report {
            let f = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"));
            let (on, off) = (&l["on"], &l["off"]);
            let round = |k: &str| l["roundP50Diff"][k].as_f64().unwrap_or_default();
            println!(
                "| {} | {} | {} / {} | {} / {} | {:+.1} | {:+.1}% | {:+.1} ({:+.1} … {:+.1}) | {} of {} | {} / {} | {} / {} | {} / {} | {} / {} |",
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
            );
        }
    }

    // (t): each side, then the differences (tool step − no tools). The phases' means add up to
    // the service time's mean: the step's Δ splits into the second model call (llm), the tool
    // (validation, D1 statement, rendering: in outside) and storing its trace (persist).
    let tool_step_report: Vec<Value> = tool_steps
        .iter()
        .map(|ToolStepSet { sides, capacity, round_diffs }| {
            let phase = |r: &Row, k: &str| r.analysis.phases.iter().find(|(n, _)| n == k).map(|(_, p)| *p);
            let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
            let outside_mean = |r: &Row| mean(r.run.samples.iter().filter(|s| s.ok).filter_map(outside_ms).collect());
            let service_mean =
                |r: &Row| mean(r.run.samples.iter().filter(|s| s.ok).map(|s| s.service_us as f64 / 1000.0).collect());
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
                })
            };
            let (plain, step) = (&sides[0], &sides[1]);
            let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
            let rounds = Pcts::of(round_diffs.clone()).unwrap_or_default();
            let (lo, hi) =
                round_diffs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| (lo.min(d), hi.max(d)));
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
                "roundP50Diff": { "medianMs": rounds.p50, "lowestMs": lo, "highestMs": hi,
                    "stepSlower": round_diffs.iter().filter(|d| **d > 0.0).count() },
            })
        })
        .collect();
    if !tool_step_report.is_empty() {
        let f = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"));
        let d = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:+.1}"));
        let cell = |v: &Value| format!("{} / {} / {}", f(&v["p50"]), f(&v["p95"]), f(&v["p99"]));
        println!(
            "\nOne tool step (t): new chats with an agent in a workspace of {TOOL_STEP_DEALS} deals, without tools and"
        );
        println!("with one query_records step, {TOOL_STEP_ROUNDS} runs a side alternated at one scheduled rate (req/s: closed");
        println!("loop, then as run); ms, p50 / p95 / p99 for latency, service time and queueing; llm, persist");
        println!("(whole ms: mean in brackets), outside (service time minus the timed phases, mean in");
        println!("brackets: here also the tool's validation, D1 statement and rendering) and d1 (round trips");
        println!("the Worker counts) from Server-Timing, p50:\n");
        println!("| scenario | conc | req/s | latency | service | queueing | llm | persist | outside | d1 | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &tool_step_report {
            for s in [&t["noTools"], &t["oneToolStep"]] {
                println!(
                    "| {} | {} | {:.0} / {:.0} | {} / {} / {} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} | {} |",
                    s["scenario"].as_str().unwrap_or_default(),
                    t["concurrency"],
                    s["closedLoopRps"].as_f64().unwrap_or_default(),
                    s["rps"].as_f64().unwrap_or_default(),
                    f(&s["p50Ms"]),
                    f(&s["p95Ms"]),
                    f(&s["p99Ms"]),
                    cell(&s["serviceMs"]),
                    cell(&s["queueingMs"]),
                    f(&s["llmMs"]["p50"]),
                    f(&s["llmMeanMs"]),
                    f(&s["persistMs"]["p50"]),
                    f(&s["persistMeanMs"]),
                    f(&s["outsideMs"]["p50"]),
                    f(&s["outsideMeanMs"]),
                    f(&s["d1RoundTrips"]["p50"]),
                    s["errors"],
                );
            }
        }
        println!("\nAdded cost of one tool step, ms (Δ = with the step − without tools): latency p50, its share,");
        println!("and per round (the p50 differences of the rounds' pairs of runs: median, lowest … highest, in");
        println!("how many rounds the step side was the slower); latency p95; service time p50 and mean, the");
        println!("mean's split into llm (the second model call), persist and outside (the tool itself); and");
        println!("what the step takes off the closed-loop throughput:\n");
        println!("| conc | req/s | Δ p50 | Δ p50 % | Δ p50 per round | step slower | Δ p95 | Δ service p50 | Δ service mean | Δ llm | Δ persist | Δ outside | Δ closed-loop req/s |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for t in &tool_step_report {
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

    // (o): each side, then what the failed primary costs (fallback − direct) against one
    // stand-in round trip measured at the same concurrency and rate.
    let fallback_report: Vec<Value> = fallbacks
        .iter()
        .map(|FallbackSet { sides, capacity, round_diffs, checked, upstream_bytes }| {
            let phase = |r: &Row, k: &str| r.analysis.phases.iter().find(|(n, _)| n == k).map(|(_, p)| p.json());
            let side = |i: usize| {
                let r = &sides[i];
                let [provider, model, attempts] = fallback_expected(i);
                json!({
                    "scenario": r.name, "requests": r.run.samples.len(), "errors": r.run.errors,
                    "closedLoopRps": capacity[i], "rps": r.run.rps,
                    "p50Ms": r.run.p50, "p95Ms": r.run.p95, "p99Ms": r.run.p99,
                    "serviceMs": r.analysis.service.json(), "queueingMs": r.analysis.queue.json(),
                    "llmMs": phase(r, "llm"), "llmMeanMs": mean_metric(&r.run.samples, "llm"),
                    "headersChecked": { "responses": checked[i].0, "asExpected": checked[i].1,
                        "expected": { "provider": provider, "model": model, "attempts": attempts } },
                })
            };
            let (direct, failed, stand_in) = (&sides[0], &sides[1], &sides[2]);
            let sub = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a - b);
            let cost = failed.run.p50 - direct.run.p50;
            let limit = stand_in.run.p50 + FALLBACK_GOAL_MARGIN_MS;
            let rounds = Pcts::of(round_diffs.clone()).unwrap_or_default();
            let (lo, hi) =
                round_diffs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &d| (lo.min(d), hi.max(d)));
            json!({
                "concurrency": direct.conns, "scheduledRate": direct.run.rate, "standInBodyBytes": upstream_bytes,
                "direct": side(0), "afterFailedPrimary": side(1), "standInRoundTrip": side(2),
                "failedPrimaryCost": {
                    "p50Ms": cost, "p50Pct": 100.0 * cost / direct.run.p50, "p95Ms": failed.run.p95 - direct.run.p95,
                    "serviceP50Ms": failed.analysis.service.p50 - direct.analysis.service.p50,
                    "llmMeanMs": sub(mean_metric(&failed.run.samples, "llm"), mean_metric(&direct.run.samples, "llm")),
                },
                "roundP50DiffsMs": round_diffs,
                "roundP50Diff": { "medianMs": rounds.p50, "lowestMs": lo, "highestMs": hi,
                    "fallbackSlower": round_diffs.iter().filter(|d| **d > 0.0).count() },
                "goal": { "standInP50Ms": stand_in.run.p50, "marginMs": FALLBACK_GOAL_MARGIN_MS, "limitMs": limit,
                    "met": cost < limit },
            })
        })
        .collect();
    if !fallback_report.is_empty() {
        let f = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:.1}"));
        let d = |v: &Value| v.as_f64().map_or("–".to_owned(), |x| format!("{x:+.1}"));
        let cell = |v: &Value| format!("{} / {} / {}", f(&v["p50"]), f(&v["p95"]), f(&v["p99"]));
        println!("\nA failed primary before a healthy fallback (o): new chats with an agent on `default`, answered");
        println!("directly, and with one on `{FALLBACK_PROVIDER}` (the stand-in answers it 503 at once, every time) falling back");
        println!("to `default` with the same model; and one stand-in round trip: the stand-in called directly with");
        println!(
            "the body the Worker sends it ({} bytes). {FALLBACK_ROUNDS} runs a side alternated at one scheduled rate",
            fallback_report[0]["standInBodyBytes"]
        );
        println!("(req/s: closed loop, then as run); ms, p50 / p95 / p99; llm from Server-Timing, p50 (mean);");
        println!("headers: responses with the X-LLM-Provider / Model / Attempts the side must have, of all:\n");
        println!("| scenario | conc | req/s | latency | service | llm | headers | errors |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
        for o in &fallback_report {
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
                    cell(&s["serviceMs"]),
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
        println!("| conc | req/s | Δ p50 | Δ p50 % | Δ p50 per round | fallback slower | Δ p95 | Δ service p50 | Δ llm mean | stand-in p50 / p95 | goal: Δ p50 < | goal |");
        println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
        for o in &fallback_report {
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

    let raw: u64 = std::env::var("BENCH_WASM_RAW").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let gz: u64 = std::env::var("BENCH_WASM_GZIP").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    println!("\nDeployable wasm: {} KiB raw, {} KiB gzip", raw / 1024, gz / 1024);
    println!("Measured in {elapsed:.0} s, {requests} requests per scenario and concurrency");

    let report: Vec<Value> = all
        .iter()
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
        .collect();
    let out = json!({
        "requestsPerScenario": requests, "seconds": elapsed, "results": report,
        "portkey": { "version": portkey_version, "overhead": comparison },
        "longChat": { "turns": LONG_CHAT_TURNS, "chars": LONG_TEXT_CHARS, "requestsPerChat": LONG_CHAT_REQUESTS },
        "wasmBytes": { "raw": raw, "gzip": gz },
        "usageLedger": { "concurrency": LEDGER_CONCURRENCY, "rounds": LEDGER_ROUNDS, "comparison": ledger_report },
        "toolStep": {
            "concurrency": TOOL_STEP_CONCURRENCY, "rounds": TOOL_STEP_ROUNDS, "deals": TOOL_STEP_DEALS,
            "load": TOOL_STEP_LOAD,
            "comparison": tool_step_report,
        },
        "fallback": {
            "concurrency": FALLBACK_CONCURRENCY, "rounds": FALLBACK_ROUNDS, "load": FALLBACK_LOAD,
            "provider": FALLBACK_PROVIDER, "model": FALLBACK_MODEL, "goalMarginMs": FALLBACK_GOAL_MARGIN_MS,
            "comparison": fallback_report,
        },
    });
    if let Ok(path) = std::env::var("BENCH_OUTPUT") {
        if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap_or_default()) {
            eprintln!("could not write {path}: {e}");
        } else {
            println!("JSON: {path}");
        }
    }
}
