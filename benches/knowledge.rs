//! Workspace knowledge under volume: importing records, a chat turn's retrieval in a large
//! workspace, and whether one tenant's volume slows another's searches. All numbers of one run
//! are compared with each other only (these machines are noisy).
//!
//! Three workspaces on the Worker: A holds 100 records, B is filled with [`DEFAULT_RECORDS`]
//! (`BENCH_RECORDS`) records written with the same words, E holds none. The records are made
//! up but shaped like a CRM's: deals (amount, stage, owner, close date) and customer feedback
//! and notes, with bodies of a few hundred characters, all generated from a fixed seed.
//!
//!   (a) Import throughput: the first 10 `PUT /api/settings/knowledge/records` of 500 records
//!       each into the empty workspace B (records/s, ms per request); then the rest of B's
//!       import, timed as the setup of (b) and (c), with its first and last requests compared
//!       (what an upsert costs as the workspace grows).
//!   (b) Chat with retrieval: `POST /api/chat` (JSON) asking [`QUESTION`] of B (full) and of E
//!       (empty), alternating request by request so both see the same machine; latency p50/p95
//!       and the `auth-read` phase of `Server-Timing` (the one D1 batch that retrieval runs in),
//!       and what B adds over E.
//!   (c) Noisy neighbour: A's `GET /api/settings/knowledge/search?q=<the question>` before B
//!       is filled, with B full, and after B's records are deleted (10 batches through
//!       `POST /api/settings/knowledge/records/delete`, timed, then the whole workspace through
//!       `DELETE /api/admin/workspaces/{id}`); what B full adds over B deleted (target ≤ 3 ms),
//!       and over B not filled yet.
//!
//! Load is open-loop at a constant rate, as in `benches/gateway.rs`: a short closed-loop pass
//! finds the throughput, requests are scheduled at 75% of it, and latency is taken from each
//! request's scheduled time (no coordinated omission) into HDR histograms.
//!
//! Environment: `ATTIVE_BASE_URL`, `ATTIVE_ADMIN_TOKEN`, `LLM_STUB_URL` (as for
//! `benches/gateway.rs`); `BENCH_REQUESTS` (default 200) requests per measured series;
//! `BENCH_RECORDS` (default 50,000, a multiple of 500) the records of B. Prints markdown tables
//! and writes the same as JSON to `bench/results/knowledge-<UTC time>.json`.
//!
//! Run by hand against a local stack started as `scripts/bench.sh` starts it, on a state
//! directory of its own (a fresh one: a workspace an interrupted run left full would weigh on
//! (c)): `cargo bench --bench knowledge`, about a minute here. `BENCH_RECORDS=10000` and
//! `BENCH_REQUESTS=40` make a quick run.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/mod.rs"]
mod support;

use support::env::{self, Stack};
use support::http::{call_on, parse_server_timing, unpooled_agent, workspace, Workspace, REQUEST_TIMEOUT};
use support::load::{closed_loop_rate, open_loop, warm_then_rate};
use support::report::{print_head, write_json};
use support::stats::{mean, Pcts};

const DEFAULT_RECORDS: usize = 50_000;
const BATCH: usize = 500;
/// Requests of (a), and batches deleted one by one before B's workspace goes.
const IMPORT_REQUESTS: usize = 10;
const DELETE_REQUESTS: usize = 10;
const SMALL_WORKSPACE: usize = 100;
/// The chat message of (b) and the search of (c): its words (summarize, recent, customer,
/// feedback, onboarding) are common in every workspace's records, as in a real one.
const QUESTION: &str = "Summarize recent customer feedback about onboarding";
/// What B full may add to A's search p50 and p95 over B deleted.
const NEIGHBOUR_BUDGET_MS: f64 = 3.0;

const ENV_HINT: &str = "see the header of benches/knowledge.rs";

/// splitmix64: the same records on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const COMPANIES: [&str; 16] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Wonka",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Massive",
    "Aperture",
    "Oscorp",
    "Gringotts",
];
const SUFFIXES: [&str; 8] = ["Corp", "Labs", "Group", "Systems", "Health", "Logistics", "Foods", "Bank"];
const AREAS: [&str; 12] = [
    "onboarding",
    "billing",
    "reporting",
    "the Salesforce integration",
    "permissions",
    "the mobile app",
    "search",
    "CSV exports",
    "notifications",
    "the API",
    "SSO",
    "the dashboard",
];
const ROLES: [&str; 8] =
    ["VP of Sales", "RevOps lead", "CFO", "customer success manager", "CTO", "admin", "champion", "procurement lead"];
const OWNERS: [&str; 8] =
    ["Sarah Chen", "Miguel Diaz", "Priya Patel", "Tom Becker", "Aiko Tanaka", "Lena Novak", "Omar Haddad", "Ruth Cole"];
const STAGES: [(&str, &str); 6] = [
    ("Prospecting", "open"),
    ("Discovery", "open"),
    ("Proposal", "open"),
    ("Negotiation", "open"),
    ("Closed Won", "won"),
    ("Closed Lost", "lost"),
];
const SENTENCES: [&str; 12] = [
    "The {role} at {account} said {area} took two weeks longer than planned.",
    "Customer feedback on {area}: setup was confusing and the docs skipped the permissions step.",
    "Recent calls with {account} mention {area} as the main blocker for the rollout to the wider team.",
    "They asked for better {area} documentation and a guided checklist during onboarding.",
    "Support tickets about {area} dropped after the last release, according to the {role}.",
    "{account} is happy with {area} but wants audit exports before the renewal conversation.",
    "The {role} praised how quickly their admins finished onboarding once {area} was configured.",
    "Feedback from the pilot: {area} is fast, although reporting on adoption is still manual.",
    "{account} compared us with a competitor on {area} and pricing; the {role} leans our way.",
    "Onboarding of the second business unit is scheduled after {area} is signed off by security.",
    "Churn risk is low; the {role} expects seat expansion if {area} improves this quarter.",
    "Next step: a workshop with the {role} on {area} and a review of the customer success plan.",
];

/// One CRM-like record: 60% customer feedback, 30% deals, 10% notes.
fn record(rng: &mut Rng, prefix: &str, i: usize) -> Value {
    let account = format!("{} {}", rng.pick(&COMPANIES), rng.pick(&SUFFIXES));
    let area = rng.pick(&AREAS);
    let mut body = String::new();
    // A few hundred characters, as a note or a feedback form would hold.
    while body.len() < 300 + rng.below(250) {
        let s = rng.pick(&SENTENCES).replace("{account}", &account).replace("{area}", rng.pick(&AREAS));
        body.push_str(&s.replace("{role}", rng.pick(&ROLES)));
        body.push(' ');
    }
    let body = body.trim_end().to_owned();
    let updated =
        format!("2026-{:02}-{:02}T{:02}:{:02}:00Z", 1 + rng.below(10), 1 + rng.below(28), rng.below(24), rng.below(60));
    let owner = rng.pick(&OWNERS);
    match rng.below(10) {
        0..=5 => json!({
            "kind": "feedback", "externalId": format!("{prefix}-fb-{i:06}"),
            "title": format!("{account}: feedback on {area}"), "body": body,
            "source": "survey", "accountName": account, "owner": owner, "sourceUpdatedAt": updated,
            "properties": { "nps": rng.below(11), "segment": if rng.below(3) == 0 { "enterprise" } else { "mid-market" } },
        }),
        6..=8 => {
            let (stage, status) = STAGES[rng.below(STAGES.len())];
            json!({
                "kind": "deal", "externalId": format!("{prefix}-deal-{i:06}"),
                "title": format!("{account} — {} seats", 10 * (1 + rng.below(50))), "body": body,
                "url": format!("https://crm.example.com/deals/{prefix}-{i}"), "source": "crm",
                "accountName": account, "amount": 1000 * (5 + rng.below(200)), "currency": "USD",
                "stage": stage, "status": status, "owner": owner,
                "closeDate": format!("2026-{:02}-{:02}", 1 + rng.below(12), 1 + rng.below(28)),
                "sourceUpdatedAt": updated,
            })
        }
        _ => json!({
            "kind": "note", "externalId": format!("{prefix}-note-{i:06}"),
            "title": format!("Call notes: {account}"), "body": body,
            "source": "crm", "accountName": account, "owner": owner, "sourceUpdatedAt": updated,
        }),
    }
}

fn records(rng: &mut Rng, prefix: &str, from: usize, count: usize) -> Vec<Value> {
    (from..from + count).map(|i| record(rng, prefix, i)).collect()
}

/// One write of up to 500 records; its time (ms). Every record must be written.
fn put(agent: &ureq::Agent, base: &str, admin: &str, batch: Vec<Value>) -> f64 {
    let n = batch.len();
    let t = Instant::now();
    let answer = call_on(
        agent,
        "PUT",
        &format!("{base}/api/settings/knowledge/records"),
        Some(admin),
        Some(&json!({ "records": batch })),
    );
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    // `unchanged` only when a retry resent records that had been written (see `try_call`).
    let written = answer["results"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|x| x["status"] == "created" || x["status"] == "unchanged").count());
    assert_eq!(written, n, "every record of a fresh import is created: {answer}");
    ms
}

/// A request of a measured series.
#[derive(Clone)]
struct Req {
    method: &'static str,
    url: String,
    token: String,
    body: Option<Value>,
}

struct Sample {
    /// Which of the series' requests (they alternate).
    target: usize,
    /// From its scheduled time (µs).
    latency_us: u64,
    ok: bool,
    /// `auth-read` of `Server-Timing` (ms), where there is one.
    auth_read: Option<f64>,
    /// Sources a chat answer came with.
    sources: Option<usize>,
}

fn send(agent: &ureq::Agent, r: &Req) -> (bool, Option<f64>, Option<usize>) {
    let req = agent.request(r.method, &r.url).set("Authorization", &format!("Bearer {}", r.token));
    let result = match &r.body {
        Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
        None => req.call(),
    };
    match result {
        Ok(resp) => {
            let auth_read = resp
                .header("server-timing")
                .and_then(|h| parse_server_timing(h).into_iter().find(|(name, _)| name == "auth-read"))
                .map(|(_, dur)| dur);
            let body: Value = resp.into_json().unwrap_or(Value::Null);
            (true, auth_read, body["sources"].as_array().map(Vec::len))
        }
        Err(ureq::Error::Status(_, resp)) => {
            let _ = resp.into_string();
            (false, None, None)
        }
        Err(_) => (false, None, None),
    }
}

/// Closed loop for a moment, one connection: requests per second over the alternating series.
fn calibrate(reqs: &[Req]) -> f64 {
    closed_loop_rate(1, usize::MAX, REQUEST_TIMEOUT, |a, _, n| {
        send(a, &reqs[n % reqs.len()]);
    })
}

/// Open loop on one connection: `per_target` requests of each of `reqs`, alternating, at 75%
/// of the closed-loop throughput.
fn measure(reqs: &[Req], per_target: usize) -> Vec<Sample> {
    let rate = warm_then_rate(1, |_| calibrate(reqs));
    let (samples, _) = open_loop(1, per_target * reqs.len(), rate, Duration::from_secs(60), |a, i, scheduled| {
        let target = i % reqs.len();
        let (ok, auth_read, sources) = send(a, &reqs[target]);
        let latency_us = scheduled.elapsed().as_micros() as u64;
        Sample { target, latency_us, ok, auth_read, sources }
    });
    samples
}

/// What one series of a run came to.
struct Series {
    latency: Pcts,
    auth_read: Pcts,
    sources_p50: f64,
    errors: usize,
    requests: usize,
}

fn series(samples: &[Sample], target: usize) -> Series {
    let mine: Vec<&Sample> = samples.iter().filter(|s| s.target == target).collect();
    let ok: Vec<&&Sample> = mine.iter().filter(|s| s.ok).collect();
    let auth: Vec<f64> = ok.iter().filter_map(|s| s.auth_read).collect();
    let mut sources: Vec<usize> = ok.iter().filter_map(|s| s.sources).collect();
    sources.sort_unstable();
    Series {
        latency: Pcts::of_us(ok.iter().map(|s| s.latency_us)),
        auth_read: Pcts::of_ms(&auth),
        sources_p50: sources.get(sources.len() / 2).map_or(0.0, |&n| n as f64),
        errors: mine.len() - ok.len(),
        requests: mine.len(),
    }
}

fn series_json(s: &Series) -> Value {
    json!({ "requests": s.requests, "errors": s.errors, "latencyMs": s.latency.json(),
            "authReadMs": s.auth_read.json(), "sourcesP50": s.sources_p50 })
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

/// Records per second of writes of [`BATCH`] records that took `ms` each.
fn records_per_second(ms: &[f64]) -> f64 {
    (ms.len() * BATCH) as f64 / (ms.iter().sum::<f64>() / 1000.0)
}

/// A workspace named `name` with an API key of the same name.
fn workspace_named(stack: &Stack, name: &str) -> Workspace<1> {
    workspace(&stack.base, &stack.op, name, [name])
}

/// B's import: each request's time (ms) and the seconds of the whole.
struct Import {
    put_ms: Vec<f64>,
    seconds: f64,
}

impl Import {
    fn first(&self) -> &[f64] {
        &self.put_ms[..IMPORT_REQUESTS]
    }

    fn last(&self) -> &[f64] {
        &self.put_ms[self.put_ms.len() - IMPORT_REQUESTS..]
    }
}

/// (a) and the setup of (b) and (c): `big` records into B in requests of [`BATCH`], one at a
/// time, then checked.
fn import(slow: &ureq::Agent, base: &str, b: &Workspace<1>, big: usize) -> Import {
    eprintln!("a) + setup: importing {big} records into B in requests of {BATCH} ...");
    let mut rng = Rng(2);
    let import_started = Instant::now();
    let mut put_ms: Vec<f64> = Vec::new();
    for r in 0..big / BATCH {
        put_ms.push(put(slow, base, &b.admin, records(&mut rng, "b", r * BATCH, BATCH)));
        if (r + 1) % 10 == 0 {
            eprintln!(
                "  {} records in {:.0} s (last request {:.0} ms)",
                (r + 1) * BATCH,
                import_started.elapsed().as_secs_f64(),
                put_ms[r]
            );
        }
    }
    let seconds = import_started.elapsed().as_secs_f64();
    let quick = unpooled_agent(REQUEST_TIMEOUT);
    let stats = call_on(&quick, "GET", &format!("{base}/api/settings/knowledge/stats"), Some(&b.admin), None);
    assert_eq!(stats["total"].as_u64(), Some(big as u64), "B holds every record: {stats}");
    Import { put_ms, seconds }
}

/// B's deletion: each delete request's time (ms), then the workspace's with what was left.
struct Deletion {
    delete_ms: Vec<f64>,
    workspace_ms: f64,
    left: usize,
}

/// [`DELETE_REQUESTS`] batches of B's records deleted one by one, then workspace B.
fn delete_b(slow: &ureq::Agent, stack: &Stack, b: &Workspace<1>, big: usize) -> Deletion {
    let Stack { base, op, .. } = stack;
    eprintln!("deleting B's records ...");
    let mut delete_ms = Vec::new();
    let mut rng = Rng(2); // the same records again: their kinds and external ids
    for r in 0..DELETE_REQUESTS {
        let keys: Vec<Value> = records(&mut rng, "b", r * BATCH, BATCH)
            .iter()
            .map(|rec| json!({ "kind": rec["kind"], "externalId": rec["externalId"] }))
            .collect();
        let t = Instant::now();
        let answer = call_on(
            slow,
            "POST",
            &format!("{base}/api/settings/knowledge/records/delete"),
            Some(&b.admin),
            Some(&json!({ "records": keys })),
        );
        delete_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let deleted = answer["results"].as_array().map_or(0, |r| r.iter().filter(|x| x["status"] == "deleted").count());
        assert_eq!(deleted, BATCH, "every key of the batch is deleted: {answer}");
    }
    let t = Instant::now();
    let req =
        slow.delete(&format!("{base}/api/admin/workspaces/{}", b.id)).set("Authorization", &format!("Bearer {op}"));
    let status = req.call().map(|r| r.status()).unwrap_or_else(|e| panic!("DELETE workspace B: {e}"));
    assert_eq!(status, 204, "workspace B deleted");
    Deletion { delete_ms, workspace_ms: t.elapsed().as_secs_f64() * 1000.0, left: big - DELETE_REQUESTS * BATCH }
}

fn print_import(big: usize, import: &Import) {
    println!("\n(a) Import: PUT /api/settings/knowledge/records, {BATCH} records per request, one at a time:\n");
    print_head("requests | workspace held before | records/s | ms per request: mean | p50 | max", "lrrrrr");
    let import_row = |label: &str, held: usize, ms: &[f64]| {
        println!(
            "| {label} | {held} | {:.0} | {:.0} | {:.0} | {:.0} |",
            records_per_second(ms),
            mean(ms).unwrap_or_default(),
            Pcts::of_ms(ms).p50,
            max(ms)
        );
    };
    import_row(&format!("(a) first {IMPORT_REQUESTS}"), 0, import.first());
    import_row(&format!("last {IMPORT_REQUESTS} of B's import"), big - IMPORT_REQUESTS * BATCH, import.last());
    import_row(&format!("all {} of B's import", import.put_ms.len()), 0, &import.put_ms);
    println!(
        "\nSetup: B's {big} records imported in {:.1} s ({:.0} records/s).",
        import.seconds,
        big as f64 / import.seconds
    );
}

fn print_chat(big: usize, chat_b: &Series, chat_e: &Series) {
    println!("\n(b) POST /api/chat (JSON) \"{QUESTION}\", concurrency 1, B and E alternating; ms:\n");
    print_head(
        "workspace | records | requests | p50 | p95 | auth-read p50 | auth-read p95 | sources p50 | errors",
        "lrrrrrrrr",
    );
    for (name, held, s) in [("B", big, chat_b), ("E (empty)", 0, chat_e)] {
        println!(
            "| {name} | {held} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {} |",
            s.requests, s.latency.p50, s.latency.p95, s.auth_read.p50, s.auth_read.p95, s.sources_p50, s.errors
        );
    }
    println!(
        "| B − E | | | {:+.1} | {:+.1} | {:+.0} | {:+.0} | | |",
        chat_b.latency.p50 - chat_e.latency.p50,
        chat_b.latency.p95 - chat_e.latency.p95,
        chat_b.auth_read.p50 - chat_e.auth_read.p50,
        chat_b.auth_read.p95 - chat_e.auth_read.p95
    );
}

/// (c)'s table and verdicts; what B full adds at p50 and p95 over B deleted and over B not
/// filled yet.
fn print_neighbour(big: usize, [before, full, after]: [&Series; 3], deletion: &Deletion) -> ([f64; 2], [f64; 2]) {
    println!("\n(c) A's GET /api/settings/knowledge/search (A holds {SMALL_WORKSPACE} records), concurrency 1; ms:\n");
    print_head("B | requests | p50 | p95 | p99 | errors", "lrrrrr");
    for (name, s) in
        [("not filled yet".to_owned(), before), (format!("full ({big} records)"), full), ("deleted".to_owned(), after)]
    {
        println!(
            "| {name} | {} | {:.1} | {:.1} | {:.1} | {} |",
            s.requests, s.latency.p50, s.latency.p95, s.latency.p99, s.errors
        );
    }
    let (d50, d95) = (full.latency.p50 - after.latency.p50, full.latency.p95 - after.latency.p95);
    let verdict = |d: f64| if d <= NEIGHBOUR_BUDGET_MS { "within" } else { "over" };
    println!(
        "\nB full adds {d50:+.1} ms at p50 ({} the {NEIGHBOUR_BUDGET_MS} ms target) and {d95:+.1} ms at p95 ({}) over B deleted.",
        verdict(d50),
        verdict(d95)
    );
    // B deleted is not quite B never filled: the full-text index keeps what deleted rows left
    // in it until its segments are merged. So the same against A before B was filled, too.
    let (b50, b95) = (full.latency.p50 - before.latency.p50, full.latency.p95 - before.latency.p95);
    println!(
        "Against B not filled yet: {b50:+.1} ms at p50 ({}) and {b95:+.1} ms at p95 ({}).",
        verdict(b50),
        verdict(b95)
    );
    let Deletion { delete_ms, workspace_ms, left } = deletion;
    println!(
        "Deleting B: {DELETE_REQUESTS} × POST …/records/delete of {BATCH} keys, ms per request mean {:.0} / max {:.0} \
         ({:.0} records/s); then DELETE /api/admin/workspaces/{{id}} with {left} records left: {workspace_ms:.0} ms.",
        mean(delete_ms).unwrap_or_default(),
        max(delete_ms),
        records_per_second(delete_ms)
    );
    ([d50, d95], [b50, b95])
}

fn main() {
    let stack = Stack::from_env(ENV_HINT); // the stand-in is the Worker's provider: must be up for (b)
    let base = &stack.base;
    let requests = env::requests(200);
    let big: usize = env::parsed("BENCH_RECORDS", DEFAULT_RECORDS);
    let big = big.div_ceil(BATCH).max(IMPORT_REQUESTS + DELETE_REQUESTS) * BATCH;
    let started = Instant::now();
    // Setup calls of a 50,000-record workspace can take long; they are timed, not limited.
    let slow = unpooled_agent(Duration::from_secs(600));

    let a = workspace_named(&stack, "bench-knowledge-a");
    let b = workspace_named(&stack, "bench-knowledge-b");
    let e = workspace_named(&stack, "bench-knowledge-empty");
    put(&slow, base, &a.admin, records(&mut Rng(1), "a", 0, SMALL_WORKSPACE));

    let search_a = [Req {
        method: "GET",
        url: format!("{base}/api/settings/knowledge/search?q={}", QUESTION.replace(' ', "+")),
        token: a.admin.clone(),
        body: None,
    }];
    eprintln!("c) A's search, B not filled yet ...");
    let c_before = series(&measure(&search_a, requests), 0);

    let import = import(&slow, base, &b, big);

    eprintln!("b) chat, B ({big} records) and E (none) alternating ...");
    let chat = |key: &str| Req {
        method: "POST",
        url: format!("{base}/api/chat"),
        token: key.to_owned(),
        body: Some(json!({ "message": QUESTION })),
    };
    let chat_samples = measure(&[chat(&b.keys[0]), chat(&e.keys[0])], requests);
    let (chat_b, chat_e) = (series(&chat_samples, 0), series(&chat_samples, 1));

    eprintln!("c) A's search with B full ...");
    let c_full = series(&measure(&search_a, requests), 0);

    let deletion = delete_b(&slow, &stack, &b, big);

    eprintln!("c) A's search with B deleted ...");
    let c_after = series(&measure(&search_a, requests), 0);
    // A and E go too, so that a later run on the same state starts from the same database.
    for ws in [&a, &e] {
        let _ = slow
            .delete(&format!("{base}/api/admin/workspaces/{}", ws.id))
            .set("Authorization", &format!("Bearer {}", stack.op))
            .call();
    }
    let elapsed = started.elapsed().as_secs_f64();

    print_import(big, &import);
    print_chat(big, &chat_b, &chat_e);
    let ([d50, d95], [b50, b95]) = print_neighbour(big, [&c_before, &c_full, &c_after], &deletion);
    println!("Measured in {elapsed:.0} s, {requests} requests per series");

    let (first, last) = (import.first(), import.last());
    let out = json!({
        "requestsPerSeries": requests, "seconds": elapsed, "batch": BATCH, "question": QUESTION,
        "import": {
            "first": { "requests": IMPORT_REQUESTS, "recordsPerSecond": records_per_second(first), "msPerRequest": first },
            "last": { "requests": IMPORT_REQUESTS, "heldBefore": big - IMPORT_REQUESTS * BATCH,
                      "recordsPerSecond": records_per_second(last), "msPerRequest": last },
            "all": { "records": big, "seconds": import.seconds, "msPerRequest": import.put_ms },
        },
        "chat": { "full": { "records": big, "series": series_json(&chat_b) }, "empty": series_json(&chat_e),
                  "addedMs": { "p50": chat_b.latency.p50 - chat_e.latency.p50, "p95": chat_b.latency.p95 - chat_e.latency.p95 },
                  "addedAuthReadMs": { "p50": chat_b.auth_read.p50 - chat_e.auth_read.p50,
                                       "p95": chat_b.auth_read.p95 - chat_e.auth_read.p95 } },
        "noisyNeighbour": {
            "smallRecords": SMALL_WORKSPACE, "bigRecords": big,
            "before": series_json(&c_before), "full": series_json(&c_full), "deleted": series_json(&c_after),
            "addedMs": { "p50": d50, "p95": d95 }, "addedOverNotFilledMs": { "p50": b50, "p95": b95 },
            "budgetMs": NEIGHBOUR_BUDGET_MS,
            "delete": { "requests": DELETE_REQUESTS, "msPerRequest": deletion.delete_ms,
                        "workspaceDeleteMs": deletion.workspace_ms, "recordsLeftForWorkspaceDelete": deletion.left },
        },
    });
    write_json("knowledge", &out);
}
