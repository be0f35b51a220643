//! Typed helpers for the black-box suite: an HTTP client for the service, fixtures that give
//! each test its own workspace, and a handle on the scriptable LLM stand-in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Value,
    pub raw: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error field>")
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.raw);
        self
    }

    /// Asserts a JSON error with the exact message, and the invariants every response has.
    #[track_caller]
    pub fn expect_error(&self, status: u16, error: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.error(), error, "body: {}", self.raw);
        assert!(self.header("content-type").unwrap_or("").starts_with("application/json"));
        self
    }
}

pub enum Body<'a> {
    None,
    Json(Value),
    Raw(&'a str),
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the suite through tests/e2e.sh (make test)"))
}

pub fn base_url() -> String {
    env("ATTIVE_BASE_URL")
}

pub fn operator_token() -> String {
    env("ATTIVE_ADMIN_TOKEN")
}

pub fn llm_api_key() -> String {
    env("LLM_API_KEY")
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build()
}

/// The local dev proxy's answer when its connection to the Worker fails before the request
/// reaches it (a known `wrangler dev` fault with kept-alive connections; the Worker never saw
/// the request). It says to send the request again, so the harness does, at most twice, and
/// says so on stderr. Our own errors are JSON and never match.
fn dropped_by_dev_proxy(status: u16, raw: &str) -> bool {
    status == 503 && raw.starts_with("Your worker restarted mid-request")
}

pub fn request(method: &str, path: &str, token: Option<&str>, body: Body<'_>, extra: &[(&str, &str)]) -> Resp {
    for attempt in 1.. {
        let resp = request_once(method, path, token, &body, extra);
        if attempt >= 3 || !dropped_by_dev_proxy(resp.status, &resp.raw) {
            return resp;
        }
        eprintln!("note: the local dev proxy dropped {method} {path} before the Worker saw it; sent again");
    }
    unreachable!("the loop returns")
}

fn request_once(method: &str, path: &str, token: Option<&str>, body: &Body<'_>, extra: &[(&str, &str)]) -> Resp {
    let url = if path.starts_with("http:") { path.to_owned() } else { format!("{}{path}", base_url()) };
    let mut req = agent().request(method, &url);
    if let Some(token) = token {
        req = req.set("Authorization", &format!("Bearer {token}"));
    }
    for (k, v) in extra {
        req = req.set(k, v);
    }
    let result = match body {
        Body::None => req.call(),
        Body::Json(v) => req.set("Content-Type", "application/json").send_string(&v.to_string()),
        // A raw body is JSON unless the caller names its own type.
        Body::Raw(s) if extra.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) => req.send_string(s),
        Body::Raw(s) => req.set("Content-Type", "application/json").send_string(s),
    };
    let resp = match result {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: transport error {e}"),
    };
    let status = resp.status();
    let headers = resp
        .headers_names()
        .into_iter()
        .filter_map(|n| resp.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_owned())))
        .collect();
    let raw = resp.into_string().unwrap_or_default();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Resp { status, headers, body, raw }
}

pub fn get(path: &str, token: Option<&str>) -> Resp {
    request("GET", path, token, Body::None, &[])
}

pub fn post(path: &str, token: Option<&str>, body: Value) -> Resp {
    request("POST", path, token, Body::Json(body), &[])
}

pub fn delete(path: &str, token: Option<&str>) -> Resp {
    request("DELETE", path, token, Body::None, &[])
}

/// The tests that use the harness's second Worker (`ATTIVE_LIMITER_URL`) take turns: some
/// count its rate limiter's storage, which any other key used there would change.
pub static SECOND_WORKER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The time `seconds` from now, as the API writes times (ISO 8601, UTC).
pub fn iso_in(seconds: i64) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    attive_api::domain::time::to_iso(i64::try_from(now).unwrap_or(0) + seconds * 1000)
}

/// A string no other test uses, to name things and to tag LLM requests.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{prefix}{nanos:x}{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh workspace with one admin: every test gets its own tenant.
pub struct Workspace {
    /// The Worker it lives on (the main one unless made with [`Workspace::on`]).
    pub base: String,
    pub id: String,
    pub admin_token: String,
    pub admin_id: String,
}

impl Workspace {
    pub fn new() -> Self {
        Self::on(&base_url())
    }

    /// A workspace on another Worker of the harness (the degraded ones).
    pub fn on(base: &str) -> Self {
        let op = operator_token();
        let ws = post(&format!("{base}/api/admin/workspaces"), Some(&op), json!({ "name": unique("ws-") }));
        ws.expect(201);
        let id = ws.body["id"].as_str().unwrap().to_owned();
        let admin = post(
            &format!("{base}/api/admin/workspaces/{id}/admins"),
            Some(&op),
            json!({ "name": "Ada Admin", "email": "ada@example.com" }),
        );
        admin.expect(201);
        Self {
            base: base.to_owned(),
            id,
            admin_token: admin.body["token"].as_str().unwrap().to_owned(),
            admin_id: admin.body["id"].as_str().unwrap().to_owned(),
        }
    }

    pub fn create_key_with(&self, body: Value) -> Resp {
        post(&format!("{}/api/settings/api-keys", self.base), Some(&self.admin_token), body)
    }

    /// A new API key of this workspace.
    pub fn key(&self) -> String {
        let r = self.create_key_with(json!({ "name": unique("key-") }));
        r.expect(201);
        r.body["key"].as_str().unwrap().to_owned()
    }

    pub fn keys(&self) -> Vec<Value> {
        let r = get(&format!("{}/api/settings/api-keys", self.base), Some(&self.admin_token));
        r.expect(200);
        r.body["keys"].as_array().unwrap().clone()
    }

    /// `PUT /api/settings/knowledge/records` with these records.
    pub fn put_records(&self, records: Value) -> Resp {
        request(
            "PUT",
            &format!("{}/api/settings/knowledge/records", self.base),
            Some(&self.admin_token),
            Body::Json(json!({ "records": records })),
            &[],
        )
    }

    /// A key made with this body: `(secret, id)`.
    pub fn key_with(&self, body: Value) -> (String, String) {
        let r = self.create_key_with(body);
        r.expect(201);
        (r.body["key"].as_str().unwrap().to_owned(), r.body["id"].as_str().unwrap().to_owned())
    }

    pub fn patch_key(&self, key_id: &str, body: Value) -> Resp {
        request(
            "PATCH",
            &format!("{}/api/settings/api-keys/{key_id}", self.base),
            Some(&self.admin_token),
            Body::Json(body),
            &[],
        )
    }

    pub fn agent(&self, instructions: &str, model: Option<&str>) -> String {
        let r = post(
            &format!("{}/api/settings/agents", self.base),
            Some(&self.admin_token),
            json!({ "name": unique("agent-"), "instructions": instructions, "model": model }),
        );
        r.expect(201);
        r.body["id"].as_str().unwrap().to_owned()
    }
}

pub fn chat(key: &str, body: Value) -> Resp {
    post("/api/chat", Some(key), body)
}

/// The scriptable LLM stand-in.
pub mod stub {
    use super::*;

    fn url() -> String {
        env("LLM_STUB_URL")
    }

    /// Requests whose body contains `tag` get these steps in order; the last one repeats.
    pub fn script(tag: &str, steps: Value) {
        let r = request(
            "POST",
            &format!("{}/_stub/scenario", url()),
            None,
            Body::Json(json!({ "tag": tag, "steps": steps })),
            &[],
        );
        r.expect(200);
    }

    /// Like [`script`], for requests whose path ends with `path` only (one provider of several
    /// the stand-in plays); such a scenario goes before one without a path.
    pub fn script_at(tag: &str, path: &str, steps: Value) {
        let r = request(
            "POST",
            &format!("{}/_stub/scenario", url()),
            None,
            Body::Json(json!({ "tag": tag, "path": path, "steps": steps })),
            &[],
        );
        r.expect(200);
    }

    /// Every completion request the stand-in received that contains `tag`, in arrival order.
    pub fn requests(tag: &str) -> Vec<Value> {
        let r = request("GET", &format!("{}/_stub/requests?tag={tag}", url()), None, Body::None, &[]);
        r.expect(200);
        r.body.as_array().unwrap().clone()
    }
}

/// A streamed `POST /api/chat`, read as it arrives.
pub mod sse {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use super::*;

    pub struct Event {
        pub name: String,
        pub data: Value,
        /// Unix seconds when it arrived (to compare with the stand-in's clock).
        pub at: f64,
    }

    pub struct Stream {
        pub status: u16,
        pub headers: HashMap<String, String>,
        pub events: Vec<Event>,
        /// `: ping` comment lines seen.
        pub pings: usize,
        /// The body when the status is not a stream (a JSON error).
        pub body: Value,
    }

    impl Stream {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
        }

        pub fn names(&self) -> Vec<&str> {
            self.events.iter().map(|e| e.name.as_str()).collect()
        }

        /// The `delta` texts joined.
        pub fn text(&self) -> String {
            self.events.iter().filter(|e| e.name == "delta").filter_map(|e| e.data["text"].as_str()).collect()
        }

        pub fn last(&self) -> &Event {
            self.events.last().expect("at least one event")
        }

        /// Exactly one terminal event (`done` or `error`), last, after a `start` that came first.
        #[track_caller]
        pub fn assert_well_formed(&self) {
            assert_eq!(self.status, 200, "not a stream: {} {:?}", self.body, self.headers);
            let names = self.names();
            assert_eq!(names.first(), Some(&"start"), "{names:?}");
            let terminals = names.iter().filter(|n| **n == "done" || **n == "error").count();
            assert_eq!(terminals, 1, "{names:?}");
            assert!(matches!(names.last(), Some(&"done") | Some(&"error")), "{names:?}");
        }
    }

    pub fn unix_now() -> f64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
    }

    /// Sends the request and reads events until the body ends, or until `stop_after` events
    /// (then the connection is dropped: a caller going away).
    pub fn chat(key: &str, body: Value, extra: &[(&str, &str)], stop_after: Option<usize>) -> Stream {
        chat_at(&base_url(), key, body, extra, stop_after)
    }

    pub fn chat_at(base: &str, key: &str, body: Value, extra: &[(&str, &str)], stop_after: Option<usize>) -> Stream {
        for attempt in 1.. {
            let stream = chat_at_once(base, key, &body, extra, stop_after);
            let raw = stream.body.as_str().unwrap_or_default();
            if attempt >= 3 || !super::dropped_by_dev_proxy(stream.status, raw) {
                return stream;
            }
            eprintln!(
                "note: the local dev proxy dropped a streamed POST /api/chat before the Worker saw it; sent again"
            );
        }
        unreachable!("the loop returns")
    }

    fn chat_at_once(base: &str, key: &str, body: &Value, extra: &[(&str, &str)], stop_after: Option<usize>) -> Stream {
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
        let mut req = agent
            .post(&format!("{base}/api/chat"))
            .set("Authorization", &format!("Bearer {key}"))
            .set("Content-Type", "application/json");
        for (k, v) in extra {
            req = req.set(k, v);
        }
        let resp = match req.send_string(&body.to_string()) {
            Ok(r) | Err(ureq::Error::Status(_, r)) => r,
            Err(e) => panic!("POST /api/chat: transport error {e}"),
        };
        let status = resp.status();
        let headers: HashMap<String, String> = resp
            .headers_names()
            .into_iter()
            .filter_map(|n| resp.header(&n).map(|v| (n.to_ascii_lowercase(), v.to_owned())))
            .collect();
        let is_stream = headers.get("content-type").is_some_and(|t| t.starts_with("text/event-stream"));
        if !is_stream {
            let raw = resp.into_string().unwrap_or_default();
            let body = serde_json::from_str(&raw).unwrap_or(Value::String(raw));
            return Stream { status, headers, events: Vec::new(), pings: 0, body };
        }
        let mut reader = BufReader::new(resp.into_reader());
        let (mut events, mut pings) = (Vec::new(), 0);
        let (mut name, mut data) = (String::new(), String::new());
        let started = Instant::now();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => panic!("reading the stream after {} events: {e}", events.len()),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !name.is_empty() || !data.is_empty() {
                    let parsed = serde_json::from_str(&data).unwrap_or_else(|e| panic!("event data {data:?}: {e}"));
                    events.push(Event { name: std::mem::take(&mut name), data: parsed, at: unix_now() });
                    data.clear();
                    if stop_after.is_some_and(|n| events.len() >= n) {
                        return Stream { status, headers, events, pings, body: Value::Null };
                    }
                }
            } else if line.starts_with(':') {
                pings += usize::from(line.trim() == ": ping");
            } else if let Some(v) = line.strip_prefix("event: ") {
                name = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(v);
            }
            assert!(started.elapsed() < Duration::from_secs(120), "stream still open after 120 s");
        }
        Stream { status, headers, events, pings, body: Value::Null }
    }
}
