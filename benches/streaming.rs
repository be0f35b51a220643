//! Streaming answers (`POST /api/chat` with `"stream": true`) against the LLM stand-in, side by
//! side in one run (these machines are noisy, so only numbers from the same run are compared).
//!
//! The stand-in is scripted to stream [`CHUNKS`] pieces of `"tok "` with no pause between them,
//! so what is measured is the path, not a model:
//!   (a) the stand-in called directly (`{stub}/v1/chat/completions`) — the floor;
//!   (c) the LiteLLM proxy in front of the same stand-in — a streaming peer's overhead (started
//!       by `scripts/bench_litellm.sh`; skipped when `LITELLM_URL` is not set);
//!   (b) `POST /api/chat` through the Worker, whose workspaces each keep their data in a
//!       database of their own;
//!   (e) the same through a second Worker started with `NEW_WORKSPACE_DATA_PLANE=d1`, whose
//!       workspaces keep theirs in the shared D1 database as before the split (the "D1 plane",
//!       `ATTIVE_D1_PLANE_URL`; skipped when that is not set).
//!
//! For each, at concurrency 1 and 8: time to first content (the first `data:` chunk with text
//! for (a) and (c); the first `event: delta` for (b) and (e)) and time to the end (`data:
//! [DONE]`; `event: done`, which we send only once the turn is stored), p50/p95/p99. Load is
//! open-loop at a constant rate, as in `benches/gateway.rs`: a short closed-loop pass finds the
//! throughput, requests are scheduled at 75% of it, and times are taken from each request's
//! scheduled time (no coordinated omission) into HDR histograms. The targets take turns in
//! [`ROUNDS`] rounds, one target at a time. Then the time (b), (e) and (c) add over (a), and
//! the ratio of ours to LiteLLM's for the first content (the goal: ≤ 0.75); and the time to
//! first delta of ours on both planes beside LiteLLM's, with ours over LiteLLM's at p95 (the
//! goal at concurrency [`GOAL_CONCURRENCY`]: ≤ 1, ours no slower in the tail on either plane).
//!
//!   (d) Concurrent open streams: 50, 100, 200, … streams opened at once through the Worker,
//!       each paced by the stand-in ([`PACED_CHUNKS`] pieces [`PACED_DELAY_MS`] ms apart) so they
//!       overlap; each level counts the streams that ended with `done` and every kind of
//!       failure, and the highest level with none is reported. Levels stop at the first one
//!       with errors.
//!
//! Environment: `ATTIVE_BASE_URL`, `ATTIVE_ADMIN_TOKEN`, `LLM_STUB_URL` (as for
//! `benches/gateway.rs`); `LITELLM_URL`, `LITELLM_MASTER_KEY`, `LITELLM_VERSION` (printed by
//! `scripts/bench_litellm.sh`); `ATTIVE_D1_PLANE_URL` for (e); `BENCH_REQUESTS` (default 200)
//! requests per target and concurrency; `BENCH_OPEN_STREAMS` (default `50,100,200,400`) the
//! levels of (d), which runs on the Worker under test only. Prints markdown tables and writes
//! the same as JSON to `bench/results/streaming-<UTC time>.json`.
//!
//! Run by hand against a local stack started as `scripts/bench.sh` starts it (its own state
//! directory): `eval "$(scripts/bench_litellm.sh "$LLM_STUB_URL" <state dir>)"`, export the
//! variables above, `cargo bench --bench streaming`, then `kill "$LITELLM_PID"`.

use std::io::{BufRead, BufReader};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::env::{self, Peer, Stack, LITELLM_MODEL};
use support::http::{agent, call, workspace, REQUEST_TIMEOUT};
use support::load::{closed_loop_rate, open_loop, warm_then_rate};
use support::report::{print_head, write_json};
use support::stats::Pcts;

const CONCURRENCY: [usize; 2] = [1, 8];
/// Pieces of the scripted answer of (a)–(c).
const CHUNKS: usize = 50;
const CHUNK_TEXT: &str = "tok ";
/// The stand-in applies a scenario to every request whose body contains its tag; neither tag
/// contains the other.
const FAST_TAG: &str = "[bench-stream-fast]";
const PACED_TAG: &str = "[bench-stream-paced]";
/// Each stream of (d) lasts about PACED_CHUNKS × PACED_DELAY_MS (9.5 s): longer than the local
/// Worker takes to start the streams of the largest level (400 took 1.5–5 s here), so that every
/// stream of a level is open at the same time.
const PACED_CHUNKS: usize = 20;
const PACED_DELAY_MS: u64 = 500;
const DEFAULT_LEVELS: [usize; 4] = [50, 100, 200, 400];
/// Rounds each target's streams of (a)–(c) and (e) are split into (see [`measure`]).
const ROUNDS: usize = 4;
/// The concurrency of the goal for the time to first delta: ours at p95 no slower than
/// LiteLLM's, on both planes.
const GOAL_CONCURRENCY: usize = 8;

const ENV_HINT: &str = "see the header of benches/streaming.rs";

/// Which event syntax a target streams.
#[derive(Clone, Copy, PartialEq)]
enum Proto {
    /// OpenAI's `data: {chunk}` … `data: [DONE]` (the stand-in, LiteLLM).
    OpenAi,
    /// Ours: `event: start|delta|done|error` + `data:`.
    Attive,
}

#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    token: Option<String>,
    body: Value,
    proto: Proto,
    /// The text a complete stream carries.
    expect_chars: usize,
}

/// One stream as the client saw it.
struct Streamed {
    first: Option<Instant>,
    end: Option<Instant>,
    /// Why the stream does not count as complete; `None` when it does.
    error: Option<String>,
}

/// Sends one streaming request and reads it to its end, noting when the first text and the
/// terminal event arrived.
fn stream_once(agent: &ureq::Agent, t: &Target) -> Streamed {
    let mut req = agent.post(&t.url).set("Content-Type", "application/json").set("Accept", "text/event-stream");
    if let Some(token) = &t.token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    let resp = match req.send_string(&t.body.to_string()) {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            // The start of the body says who refused: our JSON error, or the local runtime.
            let body: String = r.into_string().unwrap_or_default().chars().take(60).collect();
            return Streamed { first: None, end: None, error: Some(format!("http {code}: {}", body.trim())) };
        }
        Err(e) => return Streamed { first: None, end: None, error: Some(format!("transport: {}", e.kind())) },
    };
    let mut reader = BufReader::with_capacity(16 * 1024, resp.into_reader());
    let (mut first, mut end, mut error) = (None, None, None);
    let mut chars = 0;
    let mut event = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                error.get_or_insert_with(|| format!("read: {}", e.kind()));
                break;
            }
        }
        if end.is_some() {
            continue; // read to the end of the body, so the connection can be reused
        }
        let now = Instant::now();
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = line.strip_prefix("event: ") {
            event = name.to_owned();
            continue;
        }
        let Some(data) = line.strip_prefix("data: ") else { continue };
        match t.proto {
            Proto::OpenAi if data == "[DONE]" => end = Some(now),
            Proto::OpenAi => match serde_json::from_str::<Value>(data) {
                Ok(chunk) if chunk.get("error").is_some() => {
                    error = Some("in-band error".into());
                    end = Some(now);
                }
                Ok(chunk) => {
                    let text = chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default();
                    if !text.is_empty() {
                        first.get_or_insert(now);
                        chars += text.len();
                    }
                }
                Err(_) => error = Some("malformed chunk".into()),
            },
            Proto::Attive => match event.as_str() {
                "delta" => {
                    first.get_or_insert(now);
                    let text: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    chars += text["text"].as_str().map_or(0, str::len);
                }
                "done" => end = Some(now),
                "error" => {
                    let code: Value = serde_json::from_str(data).unwrap_or(Value::Null);
                    error = Some(format!("error event: {}", code["details"]["code"].as_str().unwrap_or("?")));
                    end = Some(now);
                }
                _ => {}
            },
        }
    }
    if error.is_none() {
        if end.is_none() {
            error = Some("ended without its terminal event".into());
        } else if chars != t.expect_chars {
            error = Some(format!("{chars} characters of text, not {}", t.expect_chars));
        }
    }
    Streamed { first, end, error }
}

/// Closed loop for a moment: how many streams per second this target completes.
fn calibrate(t: &Target, conns: usize) -> f64 {
    closed_loop_rate(conns, usize::MAX, REQUEST_TIMEOUT, |a, _, _| {
        stream_once(a, t);
    })
}

/// One stream of an open-loop run, in µs.
struct Sample {
    /// From its scheduled time: what a caller sending at that rate waits.
    first_us: u64,
    end_us: u64,
    /// From its send: without waiting behind earlier streams of the same connection.
    service_first_us: u64,
    service_end_us: u64,
    error: Option<String>,
}

struct Row {
    name: &'static str,
    conns: usize,
    rate: f64,
    rps: f64,
    first: Pcts,
    end: Pcts,
    service_first: Pcts,
    service_end: Pcts,
    errors: usize,
    /// The first few failures, for the log.
    failures: Vec<String>,
}

/// Open loop: `total` streams at `rate` per second over `conns` connections; the samples and
/// the seconds they took.
fn run(t: &Target, conns: usize, total: usize, rate: f64) -> (Vec<Sample>, f64) {
    open_loop(conns, total, rate, REQUEST_TIMEOUT, |a, _, scheduled| {
        let sent = Instant::now();
        let r = stream_once(a, t);
        let done = Instant::now();
        let us =
            |from: Instant, to: Option<Instant>| to.unwrap_or(done).saturating_duration_since(from).as_micros() as u64;
        Sample {
            first_us: us(scheduled, r.first),
            end_us: us(scheduled, r.end),
            service_first_us: us(sent, r.first),
            service_end_us: us(sent, r.end),
            error: r.error,
        }
    })
}

fn row(t: &Target, conns: usize, rate: f64, samples: &[Sample], seconds: f64) -> Row {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let failures: Vec<String> = samples.iter().filter_map(|s| s.error.clone()).take(5).collect();
    Row {
        name: t.name,
        conns,
        rate,
        rps: samples.len() as f64 / seconds,
        first: Pcts::of_us(ok.iter().map(|s| s.first_us)),
        end: Pcts::of_us(ok.iter().map(|s| s.end_us)),
        service_first: Pcts::of_us(ok.iter().map(|s| s.service_first_us)),
        service_end: Pcts::of_us(ok.iter().map(|s| s.service_end_us)),
        errors: samples.len() - ok.len(),
        failures,
    }
}

/// One level of (d).
struct Level {
    streams: usize,
    done: usize,
    /// Failure → how many streams ended that way.
    errors: Vec<(String, usize)>,
    /// Most streams between their first delta and their end at one instant.
    peak_open: usize,
    first: Pcts,
    end: Pcts,
    seconds: f64,
}

/// `n` paced streams through the Worker, all sent at the same instant.
fn open_streams(t: &Target, n: usize) -> Level {
    let barrier = Barrier::new(n);
    let started = Instant::now();
    let results: Vec<(Instant, Streamed)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    // A connection of its own per stream: the level is about open streams.
                    let a = agent(Duration::from_secs(120));
                    barrier.wait();
                    let sent = Instant::now();
                    (sent, stream_once(&a, t))
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut errors: Vec<(String, usize)> = Vec::new();
    for (_, r) in &results {
        if let Some(e) = &r.error {
            match errors.iter_mut().find(|(k, _)| k == e) {
                Some((_, c)) => *c += 1,
                None => errors.push((e.clone(), 1)),
            }
        }
    }
    let lost = n - results.len(); // a thread that panicked
    if lost > 0 {
        errors.push(("client thread failed".into(), lost));
    }
    let ok: Vec<&(Instant, Streamed)> = results.iter().filter(|(_, r)| r.error.is_none()).collect();
    // Sweep over (first delta, end) of the complete streams: +1 at a start, −1 at an end.
    let mut edges: Vec<(Instant, i64)> = Vec::new();
    for (_, r) in &ok {
        if let (Some(f), Some(e)) = (r.first, r.end) {
            edges.push((f, 1));
            edges.push((e, -1));
        }
    }
    edges.sort_by_key(|&(at, delta)| (at, delta));
    let (mut open, mut peak) = (0i64, 0i64);
    for (_, d) in edges {
        open += d;
        peak = peak.max(open);
    }
    let since = |sent: Instant, at: Option<Instant>| at.map(|a| a.saturating_duration_since(sent).as_micros() as u64);
    Level {
        streams: n,
        done: ok.len(),
        errors,
        peak_open: peak as usize,
        first: Pcts::of_us(ok.iter().filter_map(|(sent, r)| since(*sent, r.first))),
        end: Pcts::of_us(ok.iter().filter_map(|(sent, r)| since(*sent, r.end))),
        seconds,
    }
}

/// The targets of (a)–(c) and (e), in the order they take turns, and the paced one of (d).
/// `d1_plane`: the D1 plane's Worker and a key of a workspace there, for (e).
fn targets(stack: &Stack, litellm: Option<&Peer>, key: &str, d1_plane: Option<(&str, &str)>) -> (Vec<Target>, Target) {
    let Stack { base, stub, .. } = stack;
    // (a) and (c) get the body the Worker sends the provider (usage asked for too), so the
    // stand-in does the same work for all three.
    let question = format!("{FAST_TAG} Stream fifty tokens, please.");
    let openai_body = |model: &str| {
        json!({
            "model": model, "stream": true, "stream_options": { "include_usage": true },
            "messages": [{ "role": "system", "content": "You are terse." }, { "role": "user", "content": question }],
        })
    };
    let mut targets = vec![Target {
        name: "a) stand-in direct",
        url: format!("{stub}/v1/chat/completions"),
        token: None,
        body: openai_body("stub-model"),
        proto: Proto::OpenAi,
        expect_chars: CHUNKS * CHUNK_TEXT.len(),
    }];
    if let Some(peer) = litellm {
        targets.push(Target {
            name: "c) LiteLLM proxy → stand-in",
            url: format!("{}/v1/chat/completions", peer.url),
            token: peer.key.clone(),
            body: openai_body(LITELLM_MODEL),
            proto: Proto::OpenAi,
            expect_chars: CHUNKS * CHUNK_TEXT.len(),
        });
    } else {
        eprintln!("LITELLM_URL is not set: (c) is skipped (start it with scripts/bench_litellm.sh)");
    }
    let ours = |name: &'static str, base: &str, key: &str| Target {
        name,
        url: format!("{base}/api/chat"),
        token: Some(key.to_owned()),
        body: json!({ "message": question, "stream": true }),
        proto: Proto::Attive,
        expect_chars: CHUNKS * CHUNK_TEXT.len(),
    };
    targets.push(ours("b) POST /api/chat stream, own database", base, key));
    match d1_plane {
        Some((url, d1_key)) => targets.push(ours("e) POST /api/chat stream, D1 plane", url, d1_key)),
        None => eprintln!("ATTIVE_D1_PLANE_URL is not set: (e) is skipped (scripts/bench.sh starts that Worker)"),
    }
    let paced = Target {
        name: "d) open streams",
        url: format!("{base}/api/chat"),
        token: Some(key.to_owned()),
        body: json!({ "message": format!("{PACED_TAG} Stream slowly."), "stream": true }),
        proto: Proto::Attive,
        expect_chars: PACED_CHUNKS * CHUNK_TEXT.len(),
    };
    (targets, paced)
}

/// (a)–(c) and (e) at each concurrency: a row per target and concurrency.
fn measure(targets: &[Target], requests: usize) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for conns in CONCURRENCY {
        let rates: Vec<f64> = targets
            .iter()
            .map(|t| {
                let rate = warm_then_rate(conns, |c| calibrate(t, c));
                eprintln!("{} @ {conns}: {rate:.0} streams/s scheduled", t.name);
                rate
            })
            .collect();
        // The targets take turns in short rounds, so that a slow spell of this shared machine
        // falls on all of them rather than on whichever ran at the time; each runs alone, so
        // none competes with another for the cores.
        let mut runs: Vec<(Vec<Sample>, f64)> = targets.iter().map(|_| (Vec::new(), 0.0)).collect();
        for round in 0..ROUNDS {
            let n = requests / ROUNDS + usize::from(round < requests % ROUNDS);
            for ((t, rate), (samples, seconds)) in targets.iter().zip(&rates).zip(&mut runs) {
                let (s, took) = run(t, conns, n, *rate);
                samples.extend(s);
                *seconds += took;
            }
        }
        for ((t, rate), (samples, seconds)) in targets.iter().zip(&rates).zip(&runs) {
            let r = row(t, conns, *rate, samples, *seconds);
            for f in &r.failures {
                eprintln!("  {} @ {conns} failure: {f}", t.name);
            }
            rows.push(r);
        }
    }
    rows
}

/// (d): the levels in turn, up to the first with errors.
fn open_levels(paced: &Target, levels: &[usize]) -> Vec<Level> {
    let mut open: Vec<Level> = Vec::new();
    for &n in levels {
        eprintln!("d) {n} streams at once ...");
        let level = open_streams(paced, n);
        let failed = level.done < level.streams;
        open.push(level);
        if failed {
            break; // the next level would only fail more
        }
    }
    open
}

fn print_rows(rows: &[Row]) {
    println!("\nStreams of {CHUNKS} chunks, open-loop at 75% of the closed-loop throughput; ms from each");
    println!("stream's scheduled time (service = from its send), p50 / p95 / p99:\n");
    print_head(
        "target | conc | streams/s | first content | end | service: first content | service: end | errors",
        "lrrrrrrr",
    );
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            r.name,
            r.conns,
            r.rps,
            r.first.cell_fixed(),
            r.end.cell_fixed(),
            r.service_first.cell_fixed(),
            r.service_end.cell_fixed(),
            r.errors
        );
    }
}

/// The time (b), (e) and (c) add over (a), and the ratio of (b)'s to (c)'s, per concurrency and
/// basis.
fn added_over_direct(rows: &[Row]) -> Vec<Value> {
    let find = |prefix: &str, conns: usize| rows.iter().find(|r| r.name.starts_with(prefix) && r.conns == conns);
    // Two bases: from the scheduled time (what a caller at that rate waits, queueing included,
    // as `benches/gateway.rs` reports) and from the send (the path alone, which a slow spell of
    // this shared machine disturbs less).
    let mut added = Vec::new();
    for conns in CONCURRENCY {
        let (Some(a), Some(b)) = (find("a)", conns), find("b)", conns)) else { continue };
        let (c, e) = (find("c)", conns), find("e)", conns));
        for (basis, first, end) in [
            ("schedule", (|r: &Row| r.first) as fn(&Row) -> Pcts, (|r: &Row| r.end) as fn(&Row) -> Pcts),
            ("send", |r: &Row| r.service_first, |r: &Row| r.service_end),
        ] {
            let ours_first = first(b).minus(&first(a));
            let ours_end = end(b).minus(&end(a));
            let peer_first = c.map(|c| first(c).minus(&first(a)));
            let peer_end = c.map(|c| end(c).minus(&end(a)));
            let d1_first = e.map(|e| first(e).minus(&first(a)));
            let d1_end = e.map(|e| end(e).minus(&end(a)));
            // A ratio only means something while LiteLLM adds time at all.
            let ratio = |ours: f64, peer: Option<f64>| peer.filter(|p| *p > 0.0).map(|p| ours / p);
            added.push(json!({
                "concurrency": conns, "from": basis,
                "oursFirstContentMs": ours_first.json(), "oursEndMs": ours_end.json(),
                "d1PlaneFirstContentMs": d1_first.map(|p| p.json()), "d1PlaneEndMs": d1_end.map(|p| p.json()),
                "litellmFirstContentMs": peer_first.map(|p| p.json()), "litellmEndMs": peer_end.map(|p| p.json()),
                "ratioFirstContentP50": ratio(ours_first.p50, peer_first.map(|p| p.p50)),
                "ratioFirstContentP95": ratio(ours_first.p95, peer_first.map(|p| p.p95)),
                "ratioEndP50": ratio(ours_end.p50, peer_end.map(|p| p.p50)),
            }));
        }
    }
    added
}

fn print_added(added: &[Value], litellm_version: &str) {
    println!("\nTime added over the stand-in called directly (a), ms, p50 / p95 / p99 (each percentile minus");
    println!("the same percentile of (a)), from the scheduled time and from the send; ours = own database (b),");
    println!("D1 plane = (e); the ratio is ours / LiteLLM {litellm_version} (goal for first content ≤ 0.75):\n");
    print_head("conc | from | ours: first delta | ours: done | D1 plane: first delta | D1 plane: done | LiteLLM: first content | LiteLLM: [DONE] | ratio first p50 | ratio first p95 | ratio end p50", "rlrrrrrrrrr");
    let cell = |v: &Value| {
        if v.is_null() {
            "n/a".to_owned()
        } else {
            let f = |k: &str| v[k].as_f64().unwrap_or_default();
            format!("{:+.1} / {:+.1} / {:+.1}", f("p50"), f("p95"), f("p99"))
        }
    };
    let times = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.2}"));
    for a in added {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a["concurrency"],
            a["from"].as_str().unwrap_or_default(),
            cell(&a["oursFirstContentMs"]),
            cell(&a["oursEndMs"]),
            cell(&a["d1PlaneFirstContentMs"]),
            cell(&a["d1PlaneEndMs"]),
            cell(&a["litellmFirstContentMs"]),
            cell(&a["litellmEndMs"]),
            times(&a["ratioFirstContentP50"]),
            times(&a["ratioFirstContentP95"]),
            times(&a["ratioEndP50"]),
        );
    }
}

/// Time to first delta of ours on each plane beside LiteLLM's time to first content, from the
/// scheduled time, per concurrency; and ours over LiteLLM's at p95 (`null` where either side
/// was not measured).
fn first_delta_by_plane(rows: &[Row]) -> Vec<Value> {
    let find = |prefix: &str, conns: usize| rows.iter().find(|r| r.name.starts_with(prefix) && r.conns == conns);
    CONCURRENCY
        .iter()
        .map(|&conns| {
            let [own, d1, litellm] = ["b)", "e)", "c)"].map(|p| find(p, conns).map(|r| r.first));
            let over = |ours: Option<Pcts>| ours.zip(litellm).filter(|(_, l)| l.p95 > 0.0).map(|(o, l)| o.p95 / l.p95);
            json!({
                "concurrency": conns,
                "ownDatabase": own.map(|p| p.json()), "d1Plane": d1.map(|p| p.json()), "litellm": litellm.map(|p| p.json()),
                "p95OverLitellm": { "ownDatabase": over(own), "d1Plane": over(d1) },
            })
        })
        .collect()
}

fn print_first_delta(by_plane: &[Value], litellm_version: &str) {
    println!("\nTime to first delta by plane, ms from the scheduled time, p50 / p95: ours with each workspace in");
    println!("its own database (b) and on the D1 plane (e), beside LiteLLM {litellm_version}'s first content (c);");
    println!("p95 / LiteLLM's p95 (goal at c={GOAL_CONCURRENCY}: ≤ 1):\n");
    print_head(
        "conc | ours, own database | ours, D1 plane | LiteLLM | own database / LiteLLM p95 | D1 plane / LiteLLM p95",
        "rrrrrr",
    );
    let cell = |v: &Value| {
        if v.is_null() {
            "n/a".to_owned()
        } else {
            format!("{:.1} / {:.1}", v["p50"].as_f64().unwrap_or_default(), v["p95"].as_f64().unwrap_or_default())
        }
    };
    let times = |v: &Value| v.as_f64().map_or("n/a".to_owned(), |r| format!("{r:.2}×"));
    for f in by_plane {
        let over = &f["p95OverLitellm"];
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            f["concurrency"],
            cell(&f["ownDatabase"]),
            cell(&f["d1Plane"]),
            cell(&f["litellm"]),
            times(&over["ownDatabase"]),
            times(&over["d1Plane"]),
        );
    }
    let Some(at) = by_plane.iter().find(|f| f["concurrency"] == GOAL_CONCURRENCY) else { return };
    let verdict = |key: &str, name: &str| {
        let p95 = |side: &str| at[side]["p95"].as_f64().map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        match at["p95OverLitellm"][key].as_f64() {
            Some(r) => format!(
                "{name} {r:.2}× ({} vs {} ms, {})",
                p95(key),
                p95("litellm"),
                if r <= 1.0 { "met" } else { "not met" }
            ),
            None => format!("{name} not measured"),
        }
    };
    println!(
        "\nAt c={GOAL_CONCURRENCY}, time to first delta p95, ours / LiteLLM (goal ≤ 1): {}; {}.",
        verdict("ownDatabase", "own database"),
        verdict("d1Plane", "D1 plane")
    );
}

/// (d)'s table and verdict; the highest level without errors.
fn print_open(open: &[Level], levels: &[usize]) -> Option<usize> {
    println!(
        "\nd) Streams open at once through one local Worker, each {PACED_CHUNKS} chunks {PACED_DELAY_MS} ms apart"
    );
    println!("(ms from its send, p50 / p95 / p99; peak = most streams between first delta and done at one instant):\n");
    print_head("streams | done | errors | peak open | first delta | done | level took s", "rrlrrrr");
    for l in open {
        let errors = if l.errors.is_empty() {
            "0".to_owned()
        } else {
            l.errors.iter().map(|(e, n)| format!("{n}× {e}")).collect::<Vec<_>>().join("; ")
        };
        println!(
            "| {} | {} | {errors} | {} | {} | {} | {:.1} |",
            l.streams,
            l.done,
            l.peak_open,
            l.first.cell_fixed(),
            l.end.cell_fixed(),
            l.seconds
        );
    }
    let held = open.iter().take_while(|l| l.done == l.streams).last().map(|l| l.streams);
    match held {
        Some(n) => println!("\nHighest level with no errors: {n} concurrent streams (levels tried: {levels:?})"),
        None => println!("\nNo level completed without errors (levels tried: {levels:?})"),
    }
    held
}

fn main() {
    let stack = Stack::from_env(ENV_HINT);
    let litellm = Peer::litellm();
    let litellm_version = litellm.as_ref().map(|p| p.version.clone()).unwrap_or_default();
    let requests = env::requests(200);
    let levels: Vec<usize> = env::optional("BENCH_OPEN_STREAMS")
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| DEFAULT_LEVELS.to_vec());

    let scenario = |tag: &str, step: Value| {
        call("POST", &format!("{}/_stub/scenario", stack.stub), None, Some(json!({ "tag": tag, "steps": [step] })));
    };
    scenario(FAST_TAG, json!({ "chunks": vec![CHUNK_TEXT; CHUNKS], "chunk_delay_ms": 0 }));
    scenario(PACED_TAG, json!({ "chunks": vec![CHUNK_TEXT; PACED_CHUNKS], "chunk_delay_ms": PACED_DELAY_MS }));
    let [key] = workspace(&stack.base, &stack.op, "bench-streaming", ["bench-streaming"]).keys;
    let d1_plane = env::d1_plane_url()
        .map(|url| (workspace(&url, &stack.op, "bench-streaming", ["bench-streaming"]).keys[0].clone(), url));
    let d1_plane = d1_plane.as_ref().map(|(key, url)| (url.as_str(), key.as_str()));
    let (targets, paced) = targets(&stack, litellm.as_ref(), &key, d1_plane);

    let started = Instant::now();
    let rows = measure(&targets, requests);
    let open = open_levels(&paced, &levels);
    let elapsed = started.elapsed().as_secs_f64();

    print_rows(&rows);
    let added = added_over_direct(&rows);
    print_added(&added, &litellm_version);
    let by_plane = first_delta_by_plane(&rows);
    print_first_delta(&by_plane, &litellm_version);
    let held = print_open(&open, &levels);
    println!("Measured in {elapsed:.0} s, {requests} streams per target and concurrency");

    let out = json!({
        "requestsPerTarget": requests, "seconds": elapsed, "chunks": CHUNKS, "chunkText": CHUNK_TEXT,
        "litellm": { "version": litellm_version, "measured": litellm.is_some() },
        "d1Plane": { "measured": d1_plane.is_some() },
        "results": rows.iter().map(|r| json!({
            "target": r.name, "concurrency": r.conns, "scheduledRate": r.rate, "rps": r.rps, "errors": r.errors,
            "firstContentMs": r.first.json(), "endMs": r.end.json(),
            "serviceFirstContentMs": r.service_first.json(), "serviceEndMs": r.service_end.json(),
            "failures": r.failures,
        })).collect::<Vec<_>>(),
        "addedOverDirect": added,
        "firstDeltaByPlane": { "goalConcurrency": GOAL_CONCURRENCY, "goalP95OverLitellm": 1.0, "byConcurrency": by_plane },
        "openStreams": {
            "chunks": PACED_CHUNKS, "chunkDelayMs": PACED_DELAY_MS, "highestWithoutErrors": held,
            "levels": open.iter().map(|l| json!({
                "streams": l.streams, "done": l.done, "peakOpen": l.peak_open, "seconds": l.seconds,
                "errors": l.errors.iter().map(|(e, n)| json!({ "error": e, "count": n })).collect::<Vec<_>>(),
                "firstDeltaMs": l.first.json(), "doneMs": l.end.json(),
            })).collect::<Vec<_>>(),
        },
    });
    write_json("streaming", &out);
}
