//! A workspace's backup and restore under volume: how fast `POST /api/admin/workspaces/{id}/import`
//! writes and `GET /api/admin/workspaces/{id}/export` reads a workspace of [`DEFAULT_RECORDS`]
//! records and [`DEFAULT_MESSAGES`] messages, and how much memory the Worker's process takes
//! meanwhile.
//!
//! The workspace is made up as an export (the same CRM-like records as `benches/knowledge.rs`,
//! chats of [`MESSAGES_PER_CHAT`] messages of a few hundred characters), in two parts so each
//! kind gets its own throughput: the records alone into one fresh workspace, the chats and
//! their messages alone into another. Each import is then exported back (operator backup),
//! read to its end line, and its counts checked against what was imported.
//!
//! Memory: the resident set of the Worker's `workerd` process (found under
//! `ATTIVE_WORKER_PID`, the process `scripts/bench.sh` started it with), sampled every 50 ms
//! during each step; its peak against the level just before. Locally that process also runs
//! the local D1 and Durable Objects (SQLite and its page cache), so the figure is an upper
//! bound of the Worker's own.
//!
//! Environment: `ATTIVE_BASE_URL`, `ATTIVE_ADMIN_TOKEN`, `ATTIVE_WORKER_PID` (optional: no
//! memory figures without it); `BENCH_RECORDS` (default 50,000) and `BENCH_MESSAGES` (default
//! 100,000) size the workspace. Prints a markdown table and writes the same as JSON to
//! `bench/results/lifecycle-<UTC time>.json`.

use std::io::{BufRead, BufReader};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::env;
use support::http::{call, unpooled_agent};
use support::records::{record, Rng};
use support::report::{print_head, write_json};

const DEFAULT_RECORDS: usize = 50_000;
const DEFAULT_MESSAGES: usize = 100_000;
const MESSAGES_PER_CHAT: usize = 20;
const ENV_HINT: &str = "see the header of benches/lifecycle.rs";
const T0: &str = "2026-11-01T09:00:00.000Z";

/// An ISO time `i` seconds after [`T0`].
fn at(i: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339(T0).map(|t| t.timestamp_millis()).unwrap_or_default();
    let ms = base + (i as i64) * 1000;
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| T0.to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn header() -> String {
    json!({ "type": "export", "version": 1, "workspaceId": "ws_bench", "exportedAt": at(0) }).to_string() + "\n"
}

fn end(counts: &Value) -> String {
    json!({ "type": "end", "counts": counts }).to_string() + "\n"
}

/// An export of `n` records only.
fn records_export(n: usize) -> String {
    let mut rng = Rng(7);
    let mut out = header();
    for i in 0..n {
        let mut line = record(&mut rng, "bench", i);
        line["type"] = json!("record");
        line["id"] = json!(format!("rec_bench{i:08}"));
        line["createdAt"] = json!(at(i));
        line["updatedAt"] = json!(at(i));
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out + &end(&json!({ "record": n }))
}

/// An export of `n` messages in chats of [`MESSAGES_PER_CHAT`], each chat before its messages.
fn chats_export(n: usize) -> (String, usize) {
    let mut rng = Rng(8);
    let mut out = header();
    let chats = n.div_ceil(MESSAGES_PER_CHAT);
    let mut written = 0;
    for c in 0..chats {
        let chat = format!("chat_bench{c:08}");
        let last = (c + 1) * MESSAGES_PER_CHAT;
        out.push_str(
            &json!({ "type": "chat", "id": chat, "title": format!("Onboarding question {c}"), "createdAt": at(c * MESSAGES_PER_CHAT),
                     "updatedAt": at(last) })
            .to_string(),
        );
        out.push('\n');
        for m in 0..MESSAGES_PER_CHAT.min(n - written) {
            let role = if m % 2 == 0 { "user" } else { "assistant" };
            let words = record(&mut rng, "m", m)["body"].as_str().unwrap_or("Hello").to_owned();
            let mut line = json!({
                "type": "message", "id": format!("msg_bench{written:09}"), "chatId": chat, "seq": m + 1, "role": role,
                "content": words, "createdAt": at(c * MESSAGES_PER_CHAT + m), "status": "complete", "usageEstimated": false,
            });
            if role == "assistant" {
                line["model"] = json!("gpt-4o-mini");
                line["promptTokens"] = json!(900 + m);
                line["completionTokens"] = json!(120);
                line["provider"] = json!("default");
                line["attempts"] = json!(1);
            }
            out.push_str(&line.to_string());
            out.push('\n');
            written += 1;
        }
    }
    (out + &end(&json!({ "chat": chats, "message": written })), chats)
}

/// The resident set of `pid` and its descendants named `workerd`, in KiB.
fn workerd_rss_kib(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let procs: Vec<(u32, u32, String, u64)> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field =
                |name: &str| status.lines().find(|l| l.starts_with(name)).map(|l| l[name.len()..].trim().to_owned());
            let ppid = field("PPid:")?.parse().ok()?;
            let rss = field("VmRSS:").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0);
            Some((pid, ppid, field("Name:")?, rss))
        })
        .collect();
    let mut family = vec![root];
    let mut i = 0;
    while let Some(&p) = family.get(i) {
        family.extend(procs.iter().filter(|(_, ppid, _, _)| *ppid == p).map(|(pid, ..)| *pid));
        i += 1;
    }
    procs.iter().filter(|(pid, _, name, _)| family.contains(pid) && name.starts_with("workerd")).map(|p| p.3).sum()
}

/// Runs `step` while sampling the Worker's memory: (its result, seconds, KiB before, peak KiB).
fn measured<T>(pid: Option<u32>, step: impl FnOnce() -> T) -> (T, f64, u64, u64) {
    let before = pid.map_or(0, workerd_rss_kib);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = pid.map(|pid| {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(workerd_rss_kib(pid));
                thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    });
    let started = Instant::now();
    let out = step();
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler.and_then(|s| s.join().ok()).unwrap_or(0).max(before);
    (out, seconds, before, peak)
}

/// One timed step.
struct Step {
    name: String,
    rows: usize,
    bytes: usize,
    seconds: f64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
}

impl Step {
    fn json(&self) -> Value {
        json!({ "step": self.name, "rows": self.rows, "bytes": self.bytes, "seconds": self.seconds,
                "rowsPerSecond": self.rows as f64 / self.seconds, "workerdRssBeforeKiB": self.rss_before_kib,
                "workerdRssPeakKiB": self.rss_peak_kib })
    }
}

/// Imports `body` into a fresh workspace, then exports it back; checks both counts.
fn round_trip(base: &str, op: &str, pid: Option<u32>, label: &str, kind: &str, body: &str) -> [Step; 2] {
    let created = call("POST", &format!("{base}/api/admin/workspaces"), Some(op), Some(json!({ "name": label })));
    let id = created["id"].as_str().unwrap_or_else(|| panic!("a workspace: {created}")).to_owned();
    let slow = unpooled_agent(Duration::from_secs(1800));
    eprintln!("importing {label} ({} MB) ...", body.len() / 1_000_000);
    let (answer, seconds, before, peak) = measured(pid, || {
        slow.post(&format!("{base}/api/admin/workspaces/{id}/import"))
            .set("Authorization", &format!("Bearer {op}"))
            .set("Content-Type", "application/x-ndjson")
            .send_string(body)
            .map_err(|e| e.to_string())
            .and_then(|r| r.into_json::<Value>().map_err(|e| e.to_string()))
    });
    let answer = answer.unwrap_or_else(|e| panic!("import of {label}: {e}"));
    let rows = answer["counts"][kind].as_u64().unwrap_or(0) as usize;
    let import = Step {
        name: format!("import {label}"),
        rows,
        bytes: body.len(),
        seconds,
        rss_before_kib: before,
        rss_peak_kib: peak,
    };
    eprintln!("exporting {label} back ...");
    let (read, seconds, before, peak) = measured(pid, || {
        let resp = slow
            .get(&format!("{base}/api/admin/workspaces/{id}/export"))
            .set("Authorization", &format!("Bearer {op}"))
            .call()
            .unwrap_or_else(|e| panic!("export of {label}: {e}"));
        let (mut bytes, mut last) = (0, String::new());
        for line in BufReader::new(resp.into_reader()).lines() {
            let line = line.unwrap_or_else(|e| panic!("export of {label} broke off: {e}"));
            bytes += line.len() + 1;
            last = line;
        }
        (bytes, last)
    });
    let (bytes, last) = read;
    let end: Value = serde_json::from_str(&last).unwrap_or(Value::Null);
    assert_eq!(end["type"], "end", "the export of {label} ends with its end line");
    assert_eq!(end["counts"], answer["counts"], "{label}: the export holds what was imported");
    let export =
        Step { name: format!("export {label}"), rows, bytes, seconds, rss_before_kib: before, rss_peak_kib: peak };
    let _ =
        slow.delete(&format!("{base}/api/admin/workspaces/{id}")).set("Authorization", &format!("Bearer {op}")).call();
    [import, export]
}

fn main() {
    let base = env::required("ATTIVE_BASE_URL", ENV_HINT);
    let op = env::required("ATTIVE_ADMIN_TOKEN", ENV_HINT);
    let pid: Option<u32> = env::optional("ATTIVE_WORKER_PID").and_then(|p| p.parse().ok());
    let records: usize = env::parsed("BENCH_RECORDS", DEFAULT_RECORDS);
    let messages: usize = env::parsed("BENCH_MESSAGES", DEFAULT_MESSAGES);

    let records_body = records_export(records);
    let (chats_body, chats) = chats_export(messages);
    let mut steps = Vec::new();
    steps.extend(round_trip(&base, &op, pid, &format!("{records} records"), "record", &records_body));
    steps.extend(round_trip(&base, &op, pid, &format!("{chats} chats, {messages} messages"), "message", &chats_body));

    println!("\nBackup and restore (operator routes), one at a time:\n");
    print_head("step | rows | MB | seconds | rows/s | workerd RSS before → peak (MiB)", "lrrrrl");
    for s in &steps {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.0} | {} → {} |",
            s.name,
            s.rows,
            s.bytes as f64 / 1e6,
            s.seconds,
            s.rows as f64 / s.seconds,
            s.rss_before_kib / 1024,
            s.rss_peak_kib / 1024
        );
    }
    if pid.is_none() {
        println!("\n(ATTIVE_WORKER_PID not set: no memory figures.)");
    }
    let out = json!({ "records": records, "messages": messages, "chats": chats,
                      "steps": steps.iter().map(Step::json).collect::<Vec<_>>() });
    write_json("lifecycle", &out);
}
