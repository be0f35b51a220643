//! Operator routes: workspaces and workspace admins, and tenant isolation.

use serde_json::json;

use crate::support::*;

fn workspaces() -> Vec<serde_json::Value> {
    let r = get("/api/admin/workspaces", Some(&operator_token()));
    r.expect(200);
    r.body["workspaces"].as_array().unwrap().clone()
}

#[test]
fn operator_routes_need_the_operator_token() {
    get("/api/admin/workspaces", None).expect_error(401, "Missing admin token");
    get("/api/admin/workspaces", Some("wrong")).expect_error(401, "Invalid admin token");
    let ws = Workspace::new();
    // A workspace admin is not the operator.
    get("/api/admin/workspaces", Some(&ws.admin_token)).expect_error(401, "Invalid admin token");
    let r = request(
        "GET",
        "/api/admin/workspaces",
        None,
        Body::None,
        &[("Authorization", &format!("Basic {}", operator_token()))],
    );
    r.expect_error(401, "Invalid admin token");
}

#[test]
fn create_list_and_delete_a_workspace() {
    let op = operator_token();
    let name = unique("Acme ");
    let r = post("/api/admin/workspaces", Some(&op), json!({ "name": name }));
    r.expect(201);
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ws_"));
    assert_eq!(r.body["name"], name.as_str());
    let created = r.body["createdAt"].as_str().unwrap();
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");
    assert!(workspaces().iter().any(|w| w["id"] == id.as_str() && w["name"] == name.as_str()));

    delete(&format!("/api/admin/workspaces/{id}"), Some(&op)).expect(204);
    assert!(!workspaces().iter().any(|w| w["id"] == id.as_str()));
    delete(&format!("/api/admin/workspaces/{id}"), Some(&op)).expect_error(404, "Workspace not found");
}

#[test]
fn invalid_bodies_name_the_field_and_write_nothing() {
    let op = operator_token();
    let long = unique(&"n".repeat(101));
    for (body, field) in [
        (json!({}), "name"),
        (json!({ "name": "" }), "name"),
        (json!({ "name": "   " }), "name"),
        (json!({ "name": 42 }), "name"),
        (json!({ "name": long }), "name"),
        (json!([1, 2]), "body"),
    ] {
        let r = post("/api/admin/workspaces", Some(&op), body.clone());
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field, "{body}: {}", r.raw);
    }
    assert!(!workspaces().iter().any(|w| w["name"] == long.as_str()));

    let ws = Workspace::new();
    let path = format!("/api/admin/workspaces/{}/admins", ws.id);
    for (body, field) in [(json!({ "email": "a@b.co" }), "name"), (json!({ "name": "A", "email": "nope" }), "email")] {
        let r = post(&path, Some(&op), body);
        r.expect(400);
        assert_eq!(r.body["details"]["field"], field);
    }
}

#[test]
fn admins_get_a_token_once_and_lose_access_when_removed() {
    let op = operator_token();
    let ws = Workspace::new();
    assert!(ws.admin_token.starts_with("atvadm_") && ws.admin_token.len() == 43);
    get("/api/settings/api-keys", Some(&ws.admin_token)).expect(200);

    let r = post(
        &format!("/api/admin/workspaces/{}/admins", ws.id),
        Some(&op),
        json!({ "name": "Bo", "email": "bo@example.com" }),
    );
    r.expect(201);
    assert_eq!(r.body["email"], "bo@example.com");
    let second = r.body["token"].as_str().unwrap().to_owned();
    get("/api/settings/api-keys", Some(&second)).expect(200);

    delete(&format!("/api/admin/workspaces/{}/admins/{}", ws.id, ws.admin_id), Some(&op)).expect(204);
    get("/api/settings/api-keys", Some(&ws.admin_token)).expect_error(401, "Invalid admin token");
    get("/api/settings/api-keys", Some(&second)).expect(200);
    delete(&format!("/api/admin/workspaces/{}/admins/{}", ws.id, ws.admin_id), Some(&op))
        .expect_error(404, "Admin not found");
}

#[test]
fn unknown_workspace_is_404_for_admin_routes() {
    let op = operator_token();
    post("/api/admin/workspaces/ws_doesnotexist/admins", Some(&op), json!({ "name": "A", "email": "a@b.co" }))
        .expect_error(404, "Workspace not found");
    delete("/api/admin/workspaces/ws_doesnotexist/admins/adm_x", Some(&op)).expect_error(404, "Workspace not found");
}

#[test]
fn deleting_a_workspace_revokes_its_keys_and_admins_at_once() {
    let ws = Workspace::new();
    let key = ws.key();
    chat(&key, json!({ "message": "hello" })).expect(200);
    delete(&format!("/api/admin/workspaces/{}", ws.id), Some(&operator_token())).expect(204);
    chat(&key, json!({ "message": "hello again" })).expect_error(401, "Invalid API key");
    get("/api/settings/api-keys", Some(&ws.admin_token)).expect_error(401, "Invalid admin token");
}

#[test]
fn two_workspaces_are_isolated() {
    let (a, b) = (Workspace::new(), Workspace::new());
    let a_key = a.create_key_with(json!({ "name": "A's key" }));
    a_key.expect(201);
    let a_key_id = a_key.body["id"].as_str().unwrap();
    assert!(b.keys().is_empty());
    delete(&format!("/api/settings/api-keys/{a_key_id}"), Some(&b.admin_token)).expect_error(404, "API key not found");
    assert_eq!(a.keys().len(), 1);

    let chat_a = chat(a_key.body["key"].as_str().unwrap(), json!({ "message": "secret plans" }));
    chat_a.expect(200);
    let b_key = b.key();
    let chat_id = chat_a.body["chatId"].as_str().unwrap();
    chat(&b_key, json!({ "message": "peek", "chatId": chat_id })).expect_error(404, "Chat not found");
    get(&format!("/api/chats/{chat_id}"), Some(&b_key)).expect_error(404, "Chat not found");
}
