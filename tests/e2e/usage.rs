//! The usage ledger: exact per-key counters per UTC day, the usage route's range rules, and
//! usage that outlives its key.

use serde_json::{json, Value};

use crate::support::*;

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today() -> String {
    day_offset(0)
}

/// The UTC date `days` days from today (negative: in the past).
pub fn day_offset(days: i64) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let day = secs.div_euclid(86_400) + days;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn usage(ws: &Workspace, query: &str) -> Resp {
    get(&format!("{}/api/settings/usage{query}", ws.base), Some(&ws.admin_token))
}

fn counters(v: &Value) -> [i64; 5] {
    ["requests", "errors", "rateLimited", "promptTokens", "completionTokens"].map(|f| v[f].as_i64().unwrap())
}

/// Failures are counted before their response leaves; successes other than stored turns just
/// after it. Reads poll briefly for the latter.
fn usage_settles(ws: &Workspace, query: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..50 {
        let r = usage(ws, query);
        r.expect(200);
        if done(&r.body) {
            return r.body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("usage never settled: {}", usage(ws, query).raw);
}

#[test]
fn counters_are_exact_under_concurrency_with_errors_and_429s_in_their_columns() {
    let ws = Workspace::new();
    let created = ws.create_key_with(json!({ "name": "Dashboard", "rateLimitPerMinute": 18 }));
    let key = created.body["key"].as_str().unwrap().to_owned();
    let key_id = created.body["id"].as_str().unwrap().to_owned();
    let tag = unique("ledger-");
    stub::script(&tag, json!([{ "reply": "Counted.", "usage": { "prompt_tokens": 11, "completion_tokens": 7 } }]));
    let failing = unique("ledger-fail-");
    stub::script(&failing, json!([{ "status": 500 }]));

    // 15 concurrent chats: all stored, all counted in the batch that stores them.
    let handles: Vec<_> = (0..15)
        .map(|i| {
            let (key, tag) = (key.clone(), tag.clone());
            std::thread::spawn(move || chat(&key, json!({ "message": format!("{tag} #{i}") })))
        })
        .collect();
    for h in handles {
        h.join().unwrap().expect(200);
    }
    // One provider failure (502), two unknown chats (404): 18 requests the limiter counted.
    chat(&key, json!({ "message": format!("{failing} please") })).expect_error(502, "Upstream error");
    for _ in 0..2 {
        chat(&key, json!({ "message": "hi", "chatId": "chat_0000000000000000000000" })).expect(404);
    }
    // Three bad requests (400) and six over the limit (429), concurrently.
    let handles: Vec<_> = (0..9)
        .map(|i| {
            let key = key.clone();
            std::thread::spawn(move || {
                if i < 3 {
                    chat(&key, json!({ "message": 42 }))
                } else {
                    chat(&key, json!({ "message": "one too many" }))
                }
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap().status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 6, "{statuses:?}");

    // Every one of those was counted before its response: no waiting needed.
    let body = usage(&ws, "").expect(200).body.clone();
    let expected = [15 + 1 + 2 + 3 + 6, 1 + 2 + 3, 6, 15 * 11, 15 * 7];
    assert_eq!(counters(&body["totals"]), expected, "{body}");
    let days = body["days"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    let last = days.last().unwrap();
    assert_eq!(last["date"], today());
    assert_eq!(counters(last), expected);
    assert!(days[..29].iter().all(|d| counters(d) == [0; 5]), "{body}");
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0]["keyId"].as_str(), keys[0]["name"].as_str()), (Some(key_id.as_str()), Some("Dashboard")));
    assert_eq!(keys[0]["deleted"], false);
    assert_eq!(counters(&keys[0]), expected);
    // The 502 spent LLM time; the 15 stored turns did too.
    assert!(keys[0]["llmMs"].as_i64().unwrap() > 0);

    // The key list shows the 30-day count; another workspace sees none of it.
    let listed = ws.keys();
    assert_eq!(listed[0]["requests30d"], 27);
    let other = Workspace::new();
    other.key();
    let theirs = usage(&other, "").expect(200).body.clone();
    assert_eq!(counters(&theirs["totals"]), [0; 5]);
    assert_eq!(theirs["keys"].as_array().unwrap().len(), 1);
}

#[test]
fn reads_replays_and_streams_count_too() {
    let ws = Workspace::new();
    let key = ws.key();
    let tag = unique("ledger-stream-");
    stub::script(
        &tag,
        json!([{ "reply": "Streamed and counted.", "usage": { "prompt_tokens": 5, "completion_tokens": 3 } }]),
    );
    let stream = sse::chat(&key, json!({ "message": format!("{tag} go"), "stream": true }), &[], None);
    stream.assert_well_formed();
    let chat_id = stream.last().data["chatId"].as_str().unwrap().to_owned();
    // A stream without a usage report counts our estimate.
    let estimated = unique("ledger-estimate-");
    stub::script(&estimated, json!([{ "reply": "No usage here.", "no_usage": true }]));
    sse::chat(&key, json!({ "message": format!("{estimated} go"), "stream": true }), &[], None).assert_well_formed();
    get("/api/chats", Some(&key)).expect(200);
    get(&format!("/api/chats/{chat_id}"), Some(&key)).expect(200);
    let idem = [("Idempotency-Key", "ledger-replay-1")];
    request("POST", "/api/chat", Some(&key), Body::Json(json!({ "message": format!("{tag} again") })), &idem)
        .expect(200);
    let replay =
        request("POST", "/api/chat", Some(&key), Body::Json(json!({ "message": format!("{tag} again") })), &idem);
    replay.expect(200);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // 2 streams + 2 reads + 1 chat + 1 replay; tokens: 5+3 twice, plus the estimate.
    let body = usage_settles(&ws, "", |b| b["totals"]["requests"] == 6);
    let totals = counters(&body["totals"]);
    assert_eq!(totals[..3], [6, 0, 0], "{body}");
    assert!(totals[3] > 10 && totals[4] > 6, "the estimated stream adds its tokens: {body}");
}

#[test]
fn ranges_are_validated_and_every_day_appears() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&key, json!({ "message": "one" })).expect(200);
    for (query, field) in [
        (format!("?from={}&to={}", today(), day_offset(-1)), "from"),
        ("?from=2026-02-30".to_owned(), "from"),
        ("?to=yesterday".to_owned(), "to"),
        ("?from=2024-01-01&to=2025-01-01".to_owned(), "from"),
    ] {
        let r = usage(&ws, &query);
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{query}: {}", r.raw);
    }
    let year = usage(&ws, &format!("?from={}&to={}", day_offset(-365), today()));
    year.expect(200);
    let days = year.body["days"].as_array().unwrap();
    assert_eq!(days.len(), 366);
    assert_eq!(days[0]["date"], day_offset(-365));
    assert_eq!(days.iter().filter(|d| d["requests"] == 0).count(), 365);
    assert_eq!(days[365]["requests"], 1);

    // A range in the past: zeros, the key still listed.
    let past = usage(&ws, "?from=2025-03-01&to=2025-03-03");
    past.expect(200);
    assert_eq!(past.body["from"], "2025-03-01");
    let dates: Vec<&str> = past.body["days"].as_array().unwrap().iter().map(|d| d["date"].as_str().unwrap()).collect();
    assert_eq!(dates, ["2025-03-01", "2025-03-02", "2025-03-03"]);
    assert_eq!(past.body["keys"][0]["requests"], 0);

    // One key's usage; an unknown key is 404.
    let other = ws.key();
    chat(&other, json!({ "message": "two" })).expect(200);
    chat(&other, json!({ "message": "three" })).expect(200);
    let other_id = ws.keys().iter().find(|k| k["requests30d"] == 2).unwrap()["id"].as_str().unwrap().to_owned();
    let one = usage(&ws, &format!("?keyId={other_id}"));
    one.expect(200);
    assert_eq!(one.body["totals"]["requests"], 2);
    assert_eq!(one.body["keys"].as_array().unwrap().len(), 1);
    usage(&ws, "?keyId=key_0000000000000000000000").expect_error(404, "API key not found");
    // Only admins read usage.
    get("/api/settings/usage", Some(&key)).expect(401);
}

#[test]
fn a_deleted_key_stays_in_past_usage_by_name_and_prefix() {
    let ws = Workspace::new();
    let created = ws.create_key_with(json!({ "name": "Old integration" }));
    let (key, id, prefix) = (
        created.body["key"].as_str().unwrap().to_owned(),
        created.body["id"].as_str().unwrap().to_owned(),
        created.body["prefix"].as_str().unwrap().to_owned(),
    );
    chat(&key, json!({ "message": "one" })).expect(200);
    chat(&key, json!({ "message": "two" })).expect(200);
    delete(&format!("/api/settings/api-keys/{id}"), Some(&ws.admin_token)).expect(204);
    chat(&key, json!({ "message": "after" })).expect(401);
    assert!(ws.keys().is_empty());
    let body = usage(&ws, "").expect(200).body.clone();
    let keys = body["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{body}");
    assert_eq!(keys[0]["keyId"], id.as_str());
    assert_eq!(keys[0]["name"], "Old integration");
    assert_eq!(keys[0]["prefix"], prefix.as_str());
    assert_eq!(keys[0]["deleted"], true);
    // The 401 after deletion is nobody's: the key no longer exists.
    assert_eq!(keys[0]["requests"], 2);
    assert_eq!(usage(&ws, &format!("?keyId={id}")).expect(200).body["totals"]["requests"], 2);
    // A range without its usage leaves it out.
    assert!(usage(&ws, "?from=2025-03-01&to=2025-03-03").body["keys"].as_array().unwrap().is_empty());
}
