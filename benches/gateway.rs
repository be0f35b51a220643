//! `make bench`: the gateway's overhead against an instant LLM, measured side by side in one
//! run (these machines are noisy, so only numbers from the same run are compared).
//!
//! Scenarios, each at concurrency 1, 8 and 32:
//!   (a) the LLM stand-in called directly — the floor;
//!   (b) `GET /api/health` — the Worker plus one trivial D1 query;
//!   (c) `POST /api/chat` starting new chats;
//!   (d) `POST /api/chat` continuing chats (each connection its own chat, starting with 20
//!       earlier turns).
//!
//! Load is open-loop at a constant rate (wrk2-style): a short closed-loop pass finds the
//! throughput, then requests are scheduled at 75% of it and latency is measured from each
//! request's scheduled time, so a stall is charged to every request it delays (no coordinated
//! omission). Latencies go into an HDR histogram.
//!
//! Started by `scripts/bench.sh`, which brings up the local stack and sets the environment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

const CONCURRENCY: [usize; 3] = [1, 8, 32];

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make bench`"))
}

#[derive(Clone)]
struct Target {
    method: &'static str,
    url: String,
    token: Option<String>,
    /// Request bodies, one per connection (continuing chats need their own chat id).
    bodies: Vec<Option<Value>>,
}

struct Outcome {
    status: u16,
    server_timing: Option<String>,
}

fn send(agent: &ureq::Agent, t: &Target, conn: usize, n: usize) -> Outcome {
    let mut req = agent.request(t.method, &t.url);
    if let Some(token) = &t.token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    let body = t.bodies.get(conn % t.bodies.len().max(1)).cloned().flatten();
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
            let server_timing = r.header("server-timing").map(str::to_owned);
            let _ = r.into_string();
            Outcome { status, server_timing }
        }
        Err(_) => Outcome { status: 0, server_timing: None },
    }
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build()
}

/// Closed loop for a moment: how many requests per second this target sustains.
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
                    while start.elapsed() < window {
                        send(&a, &t, c, n);
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

#[derive(Debug)]
struct Run {
    rate: f64,
    rps: f64,
    p50: f64,
    p95: f64,
    p99: f64,
    errors: usize,
    timings: Vec<String>,
}

/// Open loop: `total` requests at `rate` per second over `conns` connections.
fn run(t: &Target, conns: usize, total: usize, rate: f64) -> Run {
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let results: Vec<(Histogram<u64>, usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let t = t.clone();
                s.spawn(move || {
                    let a = agent();
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
                    let (mut errors, mut timings) = (0, Vec::new());
                    let mut i = c;
                    while i < total {
                        let scheduled = start + interval * i as u32;
                        if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let out = send(&a, &t, c, i);
                        let micros = Instant::now().saturating_duration_since(scheduled).as_micros() as u64;
                        let _ = hist.record(micros.max(1));
                        if !(200..300).contains(&out.status) {
                            errors += 1;
                        }
                        timings.extend(out.server_timing);
                        i += conns;
                    }
                    (hist, errors, timings)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
    let (mut errors, mut timings) = (0, Vec::new());
    for (h, e, t) in results {
        let _ = hist.add(h);
        errors += e;
        timings.extend(t);
    }
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Run { rate, rps: total as f64 / elapsed, p50: ms(0.5), p95: ms(0.95), p99: ms(0.99), errors, timings }
}

/// Median of each `Server-Timing` metric (`dur` values) over the responses.
fn phase_medians(timings: &[String]) -> Vec<(String, f64)> {
    let mut values: HashMap<String, Vec<f64>> = HashMap::new();
    for header in timings {
        for metric in header.split(',') {
            let name = metric.split(';').next().unwrap_or("").trim().to_owned();
            if let Some(dur) = metric.split(';').find_map(|p| p.trim().strip_prefix("dur=")) {
                if let Ok(v) = dur.parse::<f64>() {
                    values.entry(name).or_default().push(v);
                }
            }
        }
    }
    let mut out: Vec<(String, f64)> = values
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_by(|a, b| a.total_cmp(b));
            (k, v.get(v.len() / 2).copied().unwrap_or(0.0))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> Value {
    let req = agent().request(method, url).set("Authorization", &format!("Bearer {token}"));
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
    let first = call("POST", &format!("{base}/api/chat"), key, Some(json!({ "message": "history 0" })));
    let id = first["chatId"].as_str().unwrap_or_default().to_owned();
    for i in 1..turns / 2 {
        call(
            "POST",
            &format!("{base}/api/chat"),
            key,
            Some(json!({ "message": format!("history {i}"), "chatId": id })),
        );
    }
    id
}

fn main() {
    let base = env("ATTIVE_BASE_URL");
    let stub = env("LLM_STUB_URL");
    let op = env("ATTIVE_ADMIN_TOKEN");
    let requests: usize = std::env::var("BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);

    let ws = call("POST", &format!("{base}/api/admin/workspaces"), &op, Some(json!({ "name": "bench" })));
    let ws_id = ws["id"].as_str().unwrap_or_default();
    let admin = call(
        "POST",
        &format!("{base}/api/admin/workspaces/{ws_id}/admins"),
        &op,
        Some(json!({ "name": "Bench", "email": "bench@example.com" })),
    );
    let admin_token = admin["token"].as_str().unwrap_or_default().to_owned();
    let key = |name: &str| {
        let k = call(
            "POST",
            &format!("{base}/api/settings/api-keys"),
            &admin_token,
            Some(json!({ "name": name, "rateLimitPerMinute": 100_000 })),
        );
        k["key"].as_str().unwrap_or_default().to_owned()
    };
    let (key_new, key_cont) = (key("bench-new"), key("bench-continue"));

    let direct_body = json!({ "model": "bench", "messages": [{ "role": "system", "content": "You are terse." }, { "role": "user", "content": "What are the top deals in our pipeline?" }] });
    let mut rows = Vec::new();
    let mut report = Vec::new();
    for conns in CONCURRENCY {
        eprintln!("preparing {conns} chats with 20 earlier turns ...");
        let chats: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..conns).map(|_| s.spawn(|| chat_with_history(&base, &key_cont, 20))).collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let targets = [
            (
                "a) LLM stand-in direct",
                Target {
                    method: "POST",
                    url: format!("{stub}/v1/chat/completions"),
                    token: None,
                    bodies: vec![Some(direct_body.clone())],
                },
            ),
            (
                "b) GET /api/health",
                Target { method: "GET", url: format!("{base}/api/health"), token: None, bodies: vec![None] },
            ),
            (
                "c) POST /api/chat (new chat)",
                Target {
                    method: "POST",
                    url: format!("{base}/api/chat"),
                    token: Some(key_new.clone()),
                    bodies: vec![Some(json!({ "message": "What are the top deals in our pipeline?" }))],
                },
            ),
            (
                "d) POST /api/chat (20 turns)",
                Target {
                    method: "POST",
                    url: format!("{base}/api/chat"),
                    token: Some(key_cont.clone()),
                    bodies: chats.iter().map(|id| Some(json!({ "message": "And by region?", "chatId": id }))).collect(),
                },
            ),
        ];
        let mut direct_p50 = 0.0;
        for (name, target) in targets {
            // Warm up the isolate, the connections and the caches of this scenario.
            let _ = calibrate(&target, conns.min(4));
            let rate = (calibrate(&target, conns) * 0.75).max(1.0);
            eprintln!("{name} @ {conns}: {rate:.0} req/s scheduled");
            let r = run(&target, conns, requests, rate);
            if name.starts_with("a)") {
                direct_p50 = r.p50;
            }
            let phases = phase_medians(&r.timings);
            let overhead =
                if name.starts_with("c)") || name.starts_with("d)") { Some(r.p50 - direct_p50) } else { None };
            rows.push((name, conns, r.rps, r.p50, r.p95, r.p99, r.errors, overhead, phases.clone()));
            report.push(json!({
                "scenario": name, "concurrency": conns, "requests": requests, "scheduledRate": r.rate,
                "rps": r.rps, "p50Ms": r.p50, "p95Ms": r.p95, "p99Ms": r.p99, "errors": r.errors,
                "overP50Ms": overhead, "serverTimingMedians": phases.iter().map(|(k, v)| json!({ "metric": k, "median": v })).collect::<Vec<_>>(),
            }));
        }
    }

    println!("\n| scenario | conc | req/s | p50 ms | p95 ms | p99 ms | errors | p50 over (a) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, conns, rps, p50, p95, p99, errors, overhead, _) in &rows {
        let over = overhead.map_or("".to_owned(), |o| format!("{o:+.1}"));
        println!("| {name} | {conns} | {rps:.0} | {p50:.1} | {p95:.1} | {p99:.1} | {errors} | {over} |");
    }
    println!("\nServer-Timing medians of POST /api/chat (ms; d1/do are counts per request):\n");
    println!("| scenario | conc | auth-read | rate-limit | llm | persist | d1 | do |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, conns, .., phases) in rows.iter().filter(|r| !r.8.is_empty()) {
        let get = |k: &str| phases.iter().find(|(n, _)| n == k).map_or(0.0, |(_, v)| *v);
        println!(
            "| {name} | {conns} | {} | {} | {} | {} | {} | {} |",
            get("auth-read"),
            get("rate-limit"),
            get("llm"),
            get("persist"),
            get("d1"),
            get("do")
        );
    }
    let raw: u64 = std::env::var("BENCH_WASM_RAW").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let gz: u64 = std::env::var("BENCH_WASM_GZIP").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    println!("\nDeployable wasm: {} KiB raw, {} KiB gzip", raw / 1024, gz / 1024);

    let out = json!({ "requestsPerScenario": requests, "results": report, "wasmBytes": { "raw": raw, "gzip": gz } });
    if let Ok(path) = std::env::var("BENCH_OUTPUT") {
        if let Err(e) = std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap_or_default()) {
            eprintln!("could not write {path}: {e}");
        } else {
            println!("JSON: {path}");
        }
    }
}
