//! Knowledge records for the benches: made up but shaped like a CRM's (deals with amount,
//! stage, owner and close date; customer feedback; notes), with bodies of a few hundred
//! characters written with the words of [`QUESTION`], all generated from a fixed seed; and
//! their import.

use std::time::Instant;

use serde_json::{json, Value};

use super::http::call_on;

/// Records per `PUT /api/settings/knowledge/records`: the most one request takes.
pub const BATCH: usize = 500;
/// A broad question about the records: its words (summarize, recent, customer, feedback,
/// onboarding) are common in every workspace's records, as in a real one, so a chat turn
/// asking it retrieves a full set of sources.
pub const QUESTION: &str = "Summarize recent customer feedback about onboarding";

/// splitmix64: the same records on every run, without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
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
pub fn record(rng: &mut Rng, prefix: &str, i: usize) -> Value {
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

/// Records `from` to `from + count` of a workspace whose external ids start with `prefix`.
pub fn records(rng: &mut Rng, prefix: &str, from: usize, count: usize) -> Vec<Value> {
    (from..from + count).map(|i| record(rng, prefix, i)).collect()
}

/// One write of up to [`BATCH`] records; its time (ms). Every record must be written.
pub fn put(agent: &ureq::Agent, base: &str, admin: &str, batch: Vec<Value>) -> f64 {
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

/// `count` records (seed `seed`, external ids starting with `prefix`) into the workspace of
/// `admin`, in requests of [`BATCH`], one at a time, saying every 10 requests how far it got;
/// each request's time (ms).
pub fn fill(agent: &ureq::Agent, base: &str, admin: &str, seed: u64, prefix: &str, count: usize) -> Vec<f64> {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut put_ms: Vec<f64> = Vec::new();
    for from in (0..count).step_by(BATCH) {
        put_ms.push(put(agent, base, admin, records(&mut rng, prefix, from, BATCH.min(count - from))));
        if put_ms.len().is_multiple_of(10) {
            eprintln!(
                "  {} records in {:.0} s (last request {:.0} ms)",
                from + BATCH,
                started.elapsed().as_secs_f64(),
                put_ms[put_ms.len() - 1]
            );
        }
    }
    put_ms
}
