//! HTTP for the benches: agents, setup calls that must succeed, and workspaces with API keys.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};

/// What a measured request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What a setup call ([`call`]) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// An agent that keeps its connections open between requests, as a client under load does.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).build()
}

/// An agent that opens a new connection for every request. For setup calls: the local runtime
/// closes a connection that sat idle through a long request (an upsert of many records takes
/// seconds), and a pooled one it closed fails the next request with a reset.
pub fn unpooled_agent(timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(timeout).max_idle_connections(0).build()
}

/// What the local runtime's proxy (wrangler's ProxyWorker, in front of the Worker) answers
/// when its fetch to the Worker fails (wrangler 4.86 then takes the Worker for restarted). It
/// keeps a GET instead, until the next request comes in: a GET can hang. Seen here about once
/// in a few thousand requests, more often after long ones.
pub const PROXY_RESTARTED: &str = "Your worker restarted mid-request";

/// Why a [`try_call`] did not answer 2xx.
#[derive(Debug)]
pub enum CallError {
    /// An answer outside 2xx: its status and body.
    Status(u16, String),
    /// No answer: what went wrong on the way.
    Transport(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(code, body) => write!(f, "{code} {body}"),
            Self::Transport(e) => f.write_str(e),
        }
    }
}

/// A setup call; its JSON answer (`null` when it has none). A refusal of the local proxy is
/// retried (the Worker never saw that request), and so is a GET or PUT that failed on the way
/// (both idempotent here: an upsert sent twice comes back `unchanged`; and a retried GET also
/// frees one the proxy kept), twice at most.
pub fn try_call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Value, CallError> {
    let mut attempt = 1;
    loop {
        let mut req = agent.request(method, url);
        if let Some(token) = token {
            req = req.set("Authorization", &format!("Bearer {token}"));
        }
        let resp = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(&b.to_string()),
            None => req.call(),
        };
        match resp {
            Ok(r) => return Ok(r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                if !(code == 503 && text.starts_with(PROXY_RESTARTED) && attempt < 3) {
                    return Err(CallError::Status(code, text));
                }
                eprintln!("  {method} {url}: the local proxy answered 503 ({PROXY_RESTARTED}); again");
            }
            Err(e) if (method == "GET" || method == "PUT") && attempt < 3 => eprintln!("  {method} {url}: {e}; again"),
            Err(e) => return Err(CallError::Transport(e.to_string())),
        }
        attempt += 1;
    }
}

/// [`try_call`] that must succeed: anything else ends the bench.
pub fn call_on(agent: &ureq::Agent, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> Value {
    try_call(agent, method, url, token, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// [`call_on`] over a connection of its own, [`SETUP_TIMEOUT`] at most.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> Value {
    call_on(&unpooled_agent(SETUP_TIMEOUT), method, url, token, body.as_ref())
}

/// A workspace made for a bench: its id, its admin's token, and one API key per name.
pub struct Workspace<const N: usize> {
    pub id: String,
    pub admin: String,
    pub keys: [String; N],
}

/// A workspace named `name` on the Worker at `base`, with an admin and an API key for each of
/// `keys`, each allowed 100,000 requests a minute (a limit that never gets in the way).
pub fn workspace<const N: usize>(base: &str, op: &str, name: &str, keys: [&str; N]) -> Workspace<N> {
    let ws = call("POST", &format!("{base}/api/admin/workspaces"), Some(op), Some(json!({ "name": name })));
    let id = ws["id"].as_str().unwrap_or_default().to_owned();
    let admin = call(
        "POST",
        &format!("{base}/api/admin/workspaces/{id}/admins"),
        Some(op),
        Some(json!({ "name": "Bench", "email": "bench@example.com" })),
    );
    let admin = admin["token"].as_str().unwrap_or_default().to_owned();
    let keys = keys.map(|key| {
        let k = call(
            "POST",
            &format!("{base}/api/settings/api-keys"),
            Some(&admin),
            Some(json!({ "name": key, "rateLimitPerMinute": 100_000 })),
        );
        k["key"].as_str().unwrap_or_default().to_owned()
    });
    Workspace { id, admin, keys }
}

/// The metrics of a `Server-Timing` header that carry a `dur`, in header order.
pub fn parse_server_timing(header: &str) -> Vec<(String, f64)> {
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
