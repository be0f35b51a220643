//! What every route shares: health, request ids, JSON errors for unknown routes, wrong methods,
//! malformed and oversized bodies.

use serde_json::json;

use crate::support::*;

#[test]
fn health_is_ok_and_has_a_request_id() {
    let r = get("/api/health", None);
    r.expect(200);
    assert_eq!(r.body, json!({ "status": "ok" }));
    assert!(r.header("x-request-id").is_some_and(|id| id.starts_with("req_")));
}

#[test]
fn a_sane_request_id_is_echoed_and_an_odd_one_replaced() {
    let r = request("GET", "/api/health", None, Body::None, &[("X-Request-Id", "trace-abc.123")]);
    assert_eq!(r.header("x-request-id"), Some("trace-abc.123"));
    let odd = "a".repeat(300);
    let r = request("GET", "/api/health", None, Body::None, &[("X-Request-Id", &odd)]);
    assert!(r.header("x-request-id").is_some_and(|id| id.starts_with("req_")));
}

#[test]
fn unknown_route_is_a_json_404() {
    let r = get("/api/nope", None);
    r.expect_error(404, "Not found");
    assert!(r.header("x-request-id").is_some());
    get("/", None).expect_error(404, "Not found");
}

#[test]
fn wrong_method_is_a_json_405_with_allow() {
    let r = get("/api/chat", None);
    r.expect_error(405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("POST"));
    let r = request("PUT", "/api/settings/api-keys", None, Body::None, &[]);
    r.expect_error(405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD, POST"));
    // A method the runtime's request type does not know is not read as GET.
    let r = request("QUERY", "/api/health", None, Body::None, &[]);
    r.expect_error(405, "Method not allowed");
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
}

#[test]
fn malformed_json_is_a_400_on_every_json_route() {
    let ws = Workspace::new();
    let key = ws.key();
    let op = operator_token();
    for (path, token) in [
        ("/api/admin/workspaces".to_owned(), op.as_str()),
        (format!("/api/admin/workspaces/{}/admins", ws.id), op.as_str()),
        ("/api/settings/api-keys".to_owned(), ws.admin_token.as_str()),
        ("/api/settings/agents".to_owned(), ws.admin_token.as_str()),
        ("/api/chat".to_owned(), key.as_str()),
    ] {
        let r = request("POST", &path, Some(token), Body::Raw("{\"name\": "), &[]);
        r.expect_error(400, "Malformed JSON");
    }
}

#[test]
fn a_body_far_too_large_is_a_413() {
    let ws = Workspace::new();
    let key = ws.key();
    let huge = format!("{{\"message\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let r = request("POST", "/api/chat", Some(&key), Body::Raw(&huge), &[]);
    r.expect_error(413, "Request body too large");
}
