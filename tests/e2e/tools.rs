//! Agents that query the workspace's records through typed tools: the loop of model calls and
//! tool steps, what each tool returns, and that nothing crosses workspaces or becomes SQL.

use serde_json::{json, Value};

use crate::support::*;

fn put_records(ws: &Workspace, records: Value) {
    ws.put_records(records).expect(200);
}

fn agent_with(ws: &Workspace, body: Value) -> Resp {
    post(&format!("{}/api/settings/agents", ws.base), Some(&ws.admin_token), body)
}

fn tool_agent(ws: &Workspace, tools: Value) -> String {
    let r = agent_with(
        ws,
        json!({ "name": unique("analyst-"), "instructions": "You analyse the pipeline.", "tools": tools }),
    );
    r.expect(201);
    r.body["id"].as_str().unwrap().to_owned()
}

/// 1,000 deals with distinct amounts, a third of them closed; `title_prefix` marks the
/// workspace they belong to.
fn thousand_deals(title_prefix: &str) -> Vec<Value> {
    (0..1000)
        .map(|i| {
            let status = if i % 3 == 0 { "won" } else { "open" };
            let stage = if status == "won" { "Closed Won" } else { ["Discovery", "Proposal", "Negotiation"][i % 3] };
            let owner = ["Dana", "Lee", "Kim"][i % 3];
            json!({
                "kind": "deal",
                "externalId": format!("deal-{i}"),
                "title": format!("{title_prefix} deal {i}"),
                "amount": ((i * 7919) % 1000) * 1000 + i,
                "currency": "USD",
                "stage": stage,
                "status": status,
                "owner": owner,
            })
        })
        .collect()
}

/// The tool messages of a recorded provider request, parsed.
fn tool_results(request: &Value) -> Vec<Value> {
    request["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| serde_json::from_str(m["content"].as_str().unwrap()).unwrap())
        .collect()
}

/// Every string anywhere in a JSON value.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(o) => o.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

#[test]
fn the_top_deals_question_is_answered_with_exactly_the_largest_open_deals_of_the_workspace() {
    let ws = Workspace::new();
    let deals = thousand_deals("Ours");
    for batch in deals.chunks(500) {
        put_records(&ws, json!(batch));
    }
    // Another workspace with the same external ids and larger amounts: never seen.
    let other = Workspace::new();
    let theirs: Vec<Value> = thousand_deals("Theirs")
        .into_iter()
        .map(|mut d| {
            d["amount"] = json!(d["amount"].as_f64().unwrap() * 10.0);
            d
        })
        .collect();
    for batch in theirs.chunks(500) {
        put_records(&other, json!(batch));
    }
    let mut open: Vec<&Value> = deals.iter().filter(|d| d["status"] == "open").collect();
    open.sort_by(|a, b| b["amount"].as_f64().unwrap().total_cmp(&a["amount"].as_f64().unwrap()));
    let top5: Vec<String> = open.iter().take(5).map(|d| d["title"].as_str().unwrap().to_owned()).collect();

    let agent = tool_agent(&ws, json!(["query_records"]));
    let key = ws.key();
    let tag = unique("top-deals-");
    let arguments =
        json!({ "kind": "deal", "filters": { "status": "open" }, "sortBy": "amount", "order": "desc", "limit": 5 });
    stub::script(
        &tag,
        json!([
            { "tool_calls": [{ "name": "query_records", "arguments": arguments }], "usage": { "prompt_tokens": 11, "completion_tokens": 7 } },
            { "reply": "Your five largest open deals are listed.", "usage": { "prompt_tokens": 13, "completion_tokens": 9 } },
        ]),
    );
    let r =
        chat(&key, json!({ "message": format!("{tag} What are the top deals in our pipeline?"), "agentId": agent }));
    r.expect(200);
    assert_eq!(r.body["response"], "Your five largest open deals are listed.");
    // Three D1 round trips: the load, the tool's statement, the store; and a tools phase.
    let timing = r.header("server-timing").unwrap();
    assert!(
        timing.contains("ws;desc=\"workspace object round trips\";dur=3") && timing.contains("tools;dur="),
        "{timing}"
    );

    let requests = stub::requests(&tag);
    assert_eq!(requests.len(), 2);
    // The first call offers the agent's one tool, to be used as the model sees fit.
    let offered: Vec<&str> = requests[0]["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, ["query_records"]);
    assert_eq!(requests[0]["body"]["tool_choice"], "auto");
    // The second carries the call and its result: exactly the five largest open deals, in order.
    let messages = requests[1]["body"]["messages"].as_array().unwrap();
    let calling = messages.iter().find(|m| m["role"] == "assistant" && m["tool_calls"].is_array()).unwrap();
    let call_id = calling["tool_calls"][0]["id"].as_str().unwrap();
    let result_message = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(result_message["tool_call_id"], call_id);
    let result = &tool_results(&requests[1])[0];
    let titles: Vec<&str> =
        result["records"].as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(titles, top5, "{result}");
    let mut seen = Vec::new();
    strings(result, &mut seen);
    assert!(!seen.iter().any(|s| s.starts_with("Theirs")), "another workspace's rows: {result}");

    // The records the tool returned are the answer's sources; the read API shows the call.
    let source_titles: Vec<&str> =
        r.body["sources"].as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap()).collect();
    for title in &top5 {
        assert!(source_titles.contains(&title.as_str()), "{title} not in {source_titles:?}");
    }
    let chat_id = r.body["chatId"].as_str().unwrap();
    let read = get(&format!("/api/chats/{chat_id}"), Some(&key));
    read.expect(200);
    let answer = &read.body["messages"][1];
    assert_eq!(answer["toolCalls"], json!([{ "name": "query_records", "arguments": arguments, "resultCount": 5 }]));
    assert_eq!(read.body["messages"][0]["toolCalls"], json!([]));
    // Usage sums both calls.
    assert_eq!((answer["promptTokens"].as_i64(), answer["completionTokens"].as_i64()), (Some(24), Some(16)));

    // Asking for N gives N.
    let tag = unique("top-n-");
    let three =
        json!({ "kind": "deal", "filters": { "status": "open" }, "sortBy": "amount", "order": "desc", "limit": 3 });
    stub::script(
        &tag,
        json!([{ "tool_calls": [{ "name": "query_records", "arguments": three }] }, { "reply": "Three." }]),
    );
    chat(&key, json!({ "message": format!("{tag} top 3?"), "agentId": agent })).expect(200);
    let result = &tool_results(&stub::requests(&tag)[1])[0];
    let titles: Vec<&str> =
        result["records"].as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap()).collect();
    assert_eq!(titles, top5[..3]);
}

#[test]
fn aggregates_by_stage_add_up_per_currency() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([
            { "kind": "deal", "externalId": "a", "title": "A", "amount": 100, "currency": "USD", "stage": "Discovery", "status": "open" },
            { "kind": "deal", "externalId": "b", "title": "B", "amount": 250, "currency": "USD", "stage": "Discovery", "status": "open" },
            { "kind": "deal", "externalId": "c", "title": "C", "amount": 1000, "currency": "USD", "stage": "Negotiation", "status": "open" },
            { "kind": "deal", "externalId": "d", "title": "D", "amount": 70, "currency": "EUR", "stage": "Discovery", "status": "open" },
            { "kind": "account", "externalId": "x", "title": "Not a deal" },
        ]),
    );
    let agent = tool_agent(&ws, json!(["aggregate_records"]));
    let key = ws.key();
    let tag = unique("aggregate-");
    stub::script(
        &tag,
        json!([
            { "tool_calls": [
                { "name": "aggregate_records", "arguments": { "kind": "deal", "groupBy": "stage", "metric": "sumAmount" } },
                { "name": "aggregate_records", "arguments": { "kind": "deal", "groupBy": "stage", "metric": "count" } },
            ] },
            { "reply": "Totals by stage." },
        ]),
    );
    chat(&key, json!({ "message": format!("{tag} pipeline value by stage?"), "agentId": agent })).expect(200);
    let results = tool_results(&stub::requests(&tag)[1]);
    assert_eq!(results.len(), 2);
    let groups = |r: &Value| r["groups"].as_array().unwrap().clone();
    let find = |gs: &[Value], stage: &str, currency: Option<&str>| -> Value {
        gs.iter()
            .find(|g| {
                let mut s = Vec::new();
                strings(g, &mut s);
                s.iter().any(|x| x == stage) && currency.is_none_or(|c| s.iter().any(|x| x == c))
            })
            .unwrap_or_else(|| panic!("no group {stage} {currency:?} in {gs:?}"))
            .clone()
    };
    let numbers = |g: &Value| -> Vec<f64> { g.as_object().unwrap().values().filter_map(Value::as_f64).collect() };
    let sums = groups(&results[0]);
    // Discovery: 350 USD and 70 EUR, never 420.
    assert!(numbers(&find(&sums, "Discovery", Some("USD"))).contains(&350.0), "{sums:?}");
    assert!(numbers(&find(&sums, "Discovery", Some("EUR"))).contains(&70.0), "{sums:?}");
    assert!(numbers(&find(&sums, "Negotiation", Some("USD"))).contains(&1000.0), "{sums:?}");
    assert!(!sums.iter().any(|g| numbers(g).contains(&420.0)), "currencies were added up: {sums:?}");
    let counts = groups(&results[1]);
    assert!(numbers(&find(&counts, "Discovery", None)).contains(&3.0), "{counts:?}");
    assert!(numbers(&find(&counts, "Negotiation", None)).contains(&1.0), "{counts:?}");
}

#[test]
fn malformed_arguments_unknown_tools_and_hostile_strings_are_answered_not_run() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([
            { "kind": "deal", "externalId": "1", "title": "Percent 100% deal", "amount": 5, "currency": "USD", "owner": "Dana", "accountName": "Acme", "stage": "Discovery", "status": "open" },
            { "kind": "deal", "externalId": "2", "title": "Rocket 🚀 deal", "amount": 7, "currency": "USD", "owner": "Lee", "accountName": "Globex", "stage": "Proposal", "status": "open" },
        ]),
    );
    let agent = tool_agent(&ws, json!(["search_records", "query_records", "aggregate_records"]));
    let key = ws.key();
    let tag = unique("hostile-");
    stub::script(
        &tag,
        json!([
            { "tool_calls": [
                { "name": "query_records", "arguments": "{not json" },
                { "name": "drop_table", "arguments": { "table": "api_keys" } },
                { "name": "query_records", "arguments": { "kind": "deal", "filters": { "owner": "' OR 1=1 --" } } },
                { "name": "query_records", "arguments": { "kind": "deal", "filters": { "accountName": "%" } } },
                { "name": "query_records", "arguments": { "kind": "deal", "filters": { "stage": "_" } } },
                { "name": "query_records", "arguments": { "kind": "deal", "filters": { "properties": { "x\") OR 1=1 --": "y" } } } },
                { "name": "search_records", "arguments": { "query": "🚀 ' OR 1=1 -- %_" } },
                { "name": "aggregate_records", "arguments": { "kind": "deal", "metric": "sumAmount; DROP TABLE agents" } },
                { "name": "query_records", "arguments": { "kind": "deal", "limit": 10_000 } },
            ] },
            { "reply": "I could not find that." },
        ]),
    );
    let r = chat(&key, json!({ "message": format!("{tag} anything?"), "agentId": agent }));
    r.expect(200);
    let results = tool_results(&stub::requests(&tag)[1]);
    assert_eq!(results.len(), 9);
    for i in [0, 1, 5, 7, 8] {
        assert!(results[i]["error"].is_string(), "call {i} should explain an error: {}", results[i]);
    }
    assert!(results[1]["error"].as_str().unwrap().contains("drop_table"), "{}", results[1]);
    // Hostile filter values are values: they match nothing, and match nothing else.
    for i in [2, 3, 4] {
        assert!(results[i]["error"].is_null(), "{}", results[i]);
        assert_eq!(results[i]["records"], json!([]), "call {i}: {}", results[i]);
    }
    let read = get(&format!("/api/chats/{}", r.body["chatId"].as_str().unwrap()), Some(&key));
    let calls = read.body["messages"][1]["toolCalls"].as_array().unwrap().clone();
    assert_eq!(calls.len(), 9);
    assert_eq!(calls[0]["arguments"], "{not json");
    assert!(calls[1]["error"].is_string());
    assert_eq!(calls[2]["resultCount"], 0);
    // Everything is still there.
    assert_eq!(ws.keys().len(), 1);
    get(&format!("{}/api/settings/agents/{agent}", ws.base), Some(&ws.admin_token)).expect(200);
}

#[test]
fn at_the_step_limit_the_last_call_must_answer() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([{ "kind": "deal", "externalId": "1", "title": "Only deal", "amount": 5, "currency": "USD" }]),
    );
    let agent = tool_agent(&ws, json!(["query_records"]));
    let key = ws.key();
    let again = json!({ "tool_calls": [{ "name": "query_records", "arguments": { "kind": "deal" } }] });
    let tag = unique("steps-");
    // The model would call tools forever; the fourth call (AGENT_MAX_STEPS) is made with
    // tool_choice "none" and answers.
    stub::script(&tag, json!([again, again, again, { "reply": "Done looking." }]));
    let r = chat(&key, json!({ "message": format!("{tag} dig"), "agentId": agent }));
    r.expect(200);
    assert_eq!(r.body["response"], "Done looking.");
    let requests = stub::requests(&tag);
    let choices: Vec<&str> = requests.iter().map(|q| q["body"]["tool_choice"].as_str().unwrap()).collect();
    assert_eq!(choices, ["auto", "auto", "auto", "none"]);
    let read = get(&format!("/api/chats/{}", r.body["chatId"].as_str().unwrap()), Some(&key));
    assert_eq!(read.body["messages"][1]["content"], "Done looking.");
    assert_eq!(read.body["messages"][1]["toolCalls"].as_array().unwrap().len(), 3);

    // A provider that ignores tool_choice "none": a clear 502, nothing stored.
    let tag = unique("steps-forever-");
    stub::script(&tag, json!([again]));
    let before = get("/api/chats?limit=100", Some(&key)).body["chats"].as_array().unwrap().len();
    chat(&key, json!({ "message": format!("{tag} dig forever"), "agentId": agent }))
        .expect_error(502, "Upstream error");
    assert_eq!(stub::requests(&tag).len(), 4);
    assert_eq!(get("/api/chats?limit=100", Some(&key)).body["chats"].as_array().unwrap().len(), before);
}

#[test]
fn a_stream_shows_each_tool_call_before_the_answer() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([
            { "kind": "deal", "externalId": "1", "title": "Big one", "amount": 900, "currency": "USD", "status": "open" },
            { "kind": "deal", "externalId": "2", "title": "Small one", "amount": 10, "currency": "USD", "status": "open" },
        ]),
    );
    let agent = tool_agent(&ws, json!(["query_records"]));
    let key = ws.key();
    let tag = unique("stream-tools-");
    let arguments = json!({ "kind": "deal", "sortBy": "amount", "order": "desc", "limit": 1 });
    stub::script(
        &tag,
        json!([
            { "tool_calls": [{ "name": "query_records", "arguments": arguments }] },
            { "chunks": ["The biggest ", "is Big one."] },
        ]),
    );
    let stream =
        sse::chat(&key, json!({ "message": format!("{tag} biggest?"), "agentId": agent, "stream": true }), &[], None);
    stream.assert_well_formed();
    let names = stream.names();
    assert_eq!(names, ["start", "tool", "delta", "delta", "done"], "{names:?}");
    let tool = stream.events.iter().find(|e| e.name == "tool").unwrap();
    assert_eq!(tool.data, json!({ "name": "query_records", "arguments": arguments, "resultCount": 1 }));
    assert_eq!(stream.text(), "The biggest is Big one.");
    let done = stream.last();
    assert!(done.data["sources"].as_array().unwrap().iter().any(|s| s["title"] == "Big one"), "{:?}", done.data);
    let chat_id = stream.events[0].data["chatId"].as_str().unwrap();
    let read = get(&format!("/api/chats/{chat_id}"), Some(&key));
    assert_eq!(read.body["messages"][1]["toolCalls"][0]["resultCount"], 1);
    assert_eq!(read.body["messages"][1]["content"], "The biggest is Big one.");
    // Both calls were streamed.
    assert!(stub::requests(&tag).iter().all(|q| q["body"]["stream"] == true));
}

#[test]
fn agents_have_tools_and_the_default_assistant_gets_them_once_there_are_records() {
    let ws = Workspace::new();
    let plain = agent_with(&ws, json!({ "name": "Plain", "instructions": "Hi." }));
    plain.expect(201);
    assert_eq!(plain.body["tools"], json!([]));
    let id = plain.body["id"].as_str().unwrap().to_owned();
    let url = format!("{}/api/settings/agents/{id}", ws.base);
    let r = request(
        "PATCH",
        &url,
        Some(&ws.admin_token),
        Body::Json(json!({ "tools": ["aggregate_records", "query_records"] })),
        &[],
    );
    r.expect(200);
    assert_eq!(r.body["tools"], json!(["query_records", "aggregate_records"]));
    assert_eq!(get(&url, Some(&ws.admin_token)).body["tools"], json!(["query_records", "aggregate_records"]));
    // The audit log says who gave it which tools.
    let audit = get(&format!("{}/api/settings/audit-log", ws.base), Some(&ws.admin_token));
    let entry =
        audit.body["entries"].as_array().unwrap().iter().find(|e| e["action"] == "agent.updated").unwrap().clone();
    assert_eq!(
        entry["details"]["changes"]["tools"],
        json!({ "from": [], "to": ["query_records", "aggregate_records"] })
    );
    for bad in [json!(["drop_table"]), json!("query_records"), json!([1])] {
        let r = request("PATCH", &url, Some(&ws.admin_token), Body::Json(json!({ "tools": bad })), &[]);
        r.expect(400);
        assert_eq!(r.body["details"]["field"], "tools", "{bad}");
    }

    // The default assistant: no tools in an empty workspace, all three once it has records.
    let key = ws.key();
    let tag = unique("default-tools-");
    chat(&key, json!({ "message": format!("{tag} empty") })).expect(200);
    assert!(stub::requests(&tag)[0]["body"].get("tools").is_none());
    put_records(&ws, json!([{ "kind": "note", "externalId": "n", "title": "A note" }]));
    chat(&key, json!({ "message": format!("{tag} with records") })).expect(200);
    let offered: Vec<String> = stub::requests(&tag)[1]["body"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(offered, ["search_records", "query_records", "aggregate_records"]);
    // An agent without tools sends none.
    let tag = unique("plain-");
    let plain2 =
        agent_with(&ws, json!({ "name": "Plain 2", "instructions": "Hi." })).body["id"].as_str().unwrap().to_owned();
    chat(&key, json!({ "message": format!("{tag} hi"), "agentId": plain2 })).expect(200);
    assert!(stub::requests(&tag)[0]["body"].get("tools").is_none());
}

#[test]
fn a_provider_without_tool_calling_gets_a_clear_502() {
    let ws = Workspace::new();
    put_records(&ws, json!([{ "kind": "note", "externalId": "n", "title": "A note" }]));
    let agent = tool_agent(&ws, json!(["search_records"]));
    let key = ws.key();
    let tag = unique("no-tools-");
    stub::script(&tag, json!([{ "reject_tools": true }]));
    let r = chat(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    r.expect_error(502, "Upstream error");
    assert!(r.body["details"].as_str().unwrap().contains("tool calling"), "{}", r.raw);
    assert!(get("/api/chats", Some(&key)).body["chats"].as_array().unwrap().is_empty());
    // A 400 about something else (a context too long) is not blamed on tools.
    let tag = unique("too-long-");
    let body = json!({ "error": { "message": "maximum context length is 8192 tokens" } }).to_string();
    stub::script(&tag, json!([{ "status": 400, "body": body }]));
    let r = chat(&key, json!({ "message": format!("{tag} hi"), "agentId": agent }));
    r.expect_error(502, "Upstream error");
    assert!(!r.body["details"].as_str().unwrap().contains("tool"), "{}", r.raw);
}

#[test]
fn tool_exchanges_go_back_to_the_model_in_later_turns() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([{ "kind": "deal", "externalId": "1", "title": "Only deal", "amount": 5, "currency": "USD" }]),
    );
    let agent = tool_agent(&ws, json!(["query_records"]));
    let key = ws.key();
    let tag = unique("later-");
    stub::script(
        &tag,
        json!([
            { "tool_calls": [{ "name": "query_records", "arguments": { "kind": "deal" } }] },
            { "reply": "One deal." },
            { "reply": "Still one deal." },
        ]),
    );
    let first = chat(&key, json!({ "message": format!("{tag} how many deals?"), "agentId": agent }));
    first.expect(200);
    let chat_id = first.body["chatId"].as_str().unwrap();
    chat(&key, json!({ "message": format!("{tag} and now?"), "chatId": chat_id })).expect(200);
    let third = &stub::requests(&tag)[2];
    let roles: Vec<&str> = third["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .filter(|r| *r != "system")
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"], "{roles:?}");
}

#[test]
fn a_step_runs_at_most_sixteen_calls() {
    let ws = Workspace::new();
    put_records(
        &ws,
        json!([{ "kind": "deal", "externalId": "1", "title": "Only deal", "amount": 5, "currency": "USD" }]),
    );
    let agent = tool_agent(&ws, json!(["query_records"]));
    let key = ws.key();
    let tag = unique("many-calls-");
    let calls: Vec<Value> =
        (0..20).map(|_| json!({ "name": "query_records", "arguments": { "kind": "deal" } })).collect();
    stub::script(&tag, json!([{ "tool_calls": calls }, { "reply": "Enough." }]));
    chat(&key, json!({ "message": format!("{tag} all of it"), "agentId": agent })).expect(200);
    let results = tool_results(&stub::requests(&tag)[1]);
    assert_eq!(results.len(), 20, "every call gets its answer");
    assert_eq!(results.iter().filter(|r| r["records"].is_array()).count(), 16);
    assert!(results[16..].iter().all(|r| r["error"].as_str().unwrap().contains("too many")), "{results:?}");
}
