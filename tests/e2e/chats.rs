//! The chat read API: list (newest first, paged), read with messages, delete.

use serde_json::json;

use crate::support::*;

#[test]
fn chats_are_listed_newest_first_with_an_opaque_cursor() {
    let ws = Workspace::new();
    let key = ws.key();
    let ids: Vec<String> = (0..5)
        .map(|i| {
            chat(&key, json!({ "message": format!("chat number {i}") })).body["chatId"].as_str().unwrap().to_owned()
        })
        .collect();
    let page1 = get("/api/chats?limit=2", Some(&key));
    page1.expect(200);
    let listed: Vec<&str> = page1.body["chats"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[4].as_str(), ids[3].as_str()]);
    assert_eq!(page1.body["chats"][0]["title"], "chat number 4");
    let cursor = page1.body["nextCursor"].as_str().unwrap().to_owned();
    let page2 = get(&format!("/api/chats?limit=2&cursor={cursor}"), Some(&key));
    let cursor2 = page2.body["nextCursor"].as_str().unwrap().to_owned();
    let page3 = get(&format!("/api/chats?limit=2&cursor={cursor2}"), Some(&key));
    let rest: Vec<&str> = page2.body["chats"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page3.body["chats"].as_array().unwrap())
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(rest, [ids[2].as_str(), ids[1].as_str(), ids[0].as_str()]);
    assert!(page3.body["nextCursor"].is_null());

    // Continuing an old chat moves it to the top.
    chat(&key, json!({ "message": "bump", "chatId": ids[0] })).expect(200);
    assert_eq!(get("/api/chats?limit=1", Some(&key)).body["chats"][0]["id"], ids[0].as_str());

    get("/api/chats?limit=0", Some(&key)).expect(400);
    get("/api/chats?limit=101", Some(&key)).expect(400);
    get("/api/chats?cursor=garbage", Some(&key)).expect(400);
}

#[test]
fn a_chat_reads_back_with_its_messages_and_can_be_deleted() {
    let ws = Workspace::new();
    let key = ws.key();
    let r = chat(&key, json!({ "message": "What are the top deals in our pipeline?" }));
    let chat_id = r.body["chatId"].as_str().unwrap().to_owned();
    let got = get(&format!("/api/chats/{chat_id}"), Some(&key));
    got.expect(200);
    assert_eq!(got.body["title"], "What are the top deals in our pipeline?");
    let messages = got.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["id"], r.body["messageId"]);
    assert_eq!(messages[1]["content"], r.body["response"]);

    delete(&format!("/api/chats/{chat_id}"), Some(&key)).expect(204);
    get(&format!("/api/chats/{chat_id}"), Some(&key)).expect_error(404, "Chat not found");
    chat(&key, json!({ "message": "more", "chatId": chat_id })).expect_error(404, "Chat not found");
    // Another key of the same workspace sees the same chats.
    let other_key = ws.key();
    let again = chat(&key, json!({ "message": "shared" }));
    get(&format!("/api/chats/{}", again.body["chatId"].as_str().unwrap()), Some(&other_key)).expect(200);
}
