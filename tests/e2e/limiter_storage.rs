//! What the rate limiter stores, counted on disk: the harness gives these tests a Worker of
//! their own (`ATTIVE_LIMITER_URL`) and its local state folder (`ATTIVE_LIMITER_STATE`), where
//! each limiter object is one SQLite file. A made-up key must leave nothing there; a deleted
//! key or workspace must take its state with it.
//!
//! The local runtime (miniflare) itself creates an 8 KiB file for every object a request
//! reaches, holding only its own `__miniflare_do_name` table (the name the object was
//! addressed by, for its local explorer); Cloudflare keeps no such table and bills only what
//! the object stores. So what is counted is the object's own data: tables that are not the
//! runtime's, and their rows.

use attive_api::domain::token::{Token, TokenKind};
use serde_json::json;

use crate::support::*;

fn base() -> String {
    std::env::var("ATTIVE_LIMITER_URL").expect("ATTIVE_LIMITER_URL is set by tests/e2e.sh")
}

/// The limiter's own storage: how many objects hold a state row (known keys), and the rows of
/// all the tables the objects created, across every object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Storage {
    keys_stored: u64,
    rows: u64,
}

fn storage() -> Storage {
    let dir = std::env::var("ATTIVE_LIMITER_STATE").expect("ATTIVE_LIMITER_STATE is set by tests/e2e.sh");
    let script = r#"
import glob, os, sqlite3, sys
files = [f for f in glob.glob(os.path.join(sys.argv[1], "**", "*.sqlite"), recursive=True)
         if "RateLimiter" in f and not f.endswith("metadata.sqlite")]
keys = rows = 0
runtime = ("sqlite_", "_cf_", "__miniflare")
for f in files:
    db = sqlite3.connect(f, timeout=5)
    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
              if not t.startswith(runtime)]
    for t in tables:
        n = db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
        rows += n
        keys += n if t == "limiter" else 0
    db.close()
print(keys, rows)
"#;
    let out = std::process::Command::new("python3").arg("-c").arg(script).arg(dir).output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut parts = text.split_whitespace().map(|n| n.parse::<u64>().expect("a number"));
    Storage { keys_stored: parts.next().unwrap_or(0), rows: parts.next().unwrap_or(0) }
}

/// The state of a key's object is written while its request is answered; wait for the count
/// to settle at `expected` (the object's write is synchronous, the file system may lag).
fn wait_for_keys(expected: u64) -> Storage {
    let mut now = storage();
    for _ in 0..50 {
        if now.keys_stored == expected {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = storage();
    }
    now
}

#[test]
fn invented_keys_leave_no_limiter_storage_behind() {
    let _turn = SECOND_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let before = storage();
    // Well-formed keys with a valid checksum, as anyone can mint them.
    for i in 0..100 {
        let invented = Token::generate(TokenKind::ApiKey).unwrap();
        let r = post(&format!("{}/api/chat", base()), Some(invented.reveal()), json!({ "message": format!("hi {i}") }));
        r.expect_error(401, "Invalid API key");
        assert!(r.header("ratelimit-limit").is_none());
        if i % 10 == 0 {
            get(&format!("{}/api/chats", base()), Some(invented.reveal())).expect_error(401, "Invalid API key");
        }
    }
    let after = storage();
    assert_eq!(after, before, "100 invented keys changed the limiter's storage");

    // The same count sees a real key: its first request makes its object adopt it.
    let ws = Workspace::on(&base());
    let key = ws.key();
    let r = post(&format!("{}/api/chat", base()), Some(&key), json!({ "message": "hello" }));
    r.expect(200);
    assert_eq!(r.header("ratelimit-remaining"), Some("59"));
    assert!(r.header("server-timing").unwrap_or("").contains("do;desc=\"durable object calls\";dur=2"));
    let next = post(&format!("{}/api/chat", base()), Some(&key), json!({ "message": "again" }));
    assert_eq!(next.header("ratelimit-remaining"), Some("58"));
    // Later requests are back on the concurrent path: one limiter call.
    assert!(next.header("server-timing").unwrap_or("").contains("do;desc=\"durable object calls\";dur=1"));
    assert_eq!(wait_for_keys(before.keys_stored + 1).keys_stored, before.keys_stored + 1);
}

#[test]
fn deleting_a_key_or_a_workspace_removes_its_limiter_state() {
    let _turn = SECOND_WORKER.lock().unwrap_or_else(|e| e.into_inner());
    let before = storage().keys_stored;
    let ws = Workspace::on(&base());
    let keys: Vec<(String, String)> = [json!({ "name": "one" }), json!({ "name": "two", "rateLimitPerMinute": 3 })]
        .into_iter()
        .map(|body| {
            let r = ws.create_key_with(body);
            r.expect(201);
            (r.body["id"].as_str().unwrap().to_owned(), r.body["key"].as_str().unwrap().to_owned())
        })
        .collect();
    // Creating keys does not touch the limiter: their objects are made by their first use.
    assert_eq!(storage().keys_stored, before);
    for (_, key) in &keys {
        get(&format!("{}/api/chats", base()), Some(key)).expect(200);
    }
    assert_eq!(wait_for_keys(before + 2).keys_stored, before + 2);
    // The key with its own limit had it from its first request.
    let r = get(&format!("{}/api/chats", base()), Some(&keys[1].1));
    assert_eq!(r.header("ratelimit-limit"), Some("3"));

    let path = format!("{}/api/settings/api-keys/{}", base(), keys[0].0);
    delete(&path, Some(&ws.admin_token)).expect(204);
    assert_eq!(wait_for_keys(before + 1).keys_stored, before + 1);
    get(&format!("{}/api/chats", base()), Some(&keys[0].1)).expect_error(401, "Invalid API key");

    delete(&format!("{}/api/admin/workspaces/{}", base(), ws.id), Some(&operator_token())).expect(204);
    assert_eq!(wait_for_keys(before).keys_stored, before);
    get(&format!("{}/api/chats", base()), Some(&keys[1].1)).expect_error(401, "Invalid API key");
    // Refused keys do not bring their state back.
    assert_eq!(storage().keys_stored, before);
}
