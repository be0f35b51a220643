//! The route table: every path the service answers, the methods each allows, and the endpoint
//! that serves them. Pure, so unknown paths (404) and wrong methods (405 with `Allow`) are
//! decided and tested without a runtime, and the README and tests can list the routes.

use crate::domain::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Health,
    OpenApi,
    SettingsPage,
    SettingsScript,
    SettingsStyle,
    SettingsIcon,
    /// Settings page modules (`/settings/js/…`) and the embed widget: static files the edge
    /// serves before the Worker runs (reached here only for other methods).
    SettingsModule,
    EmbedScript,
    ListWorkspaces,
    CreateWorkspace,
    DeleteWorkspace,
    DataPlane,
    MoveWorkspace,
    BackupWorkspace,
    RestoreWorkspace,
    CreateAdmin,
    DeleteAdmin,
    ListApiKeys,
    CreateApiKey,
    UpdateApiKey,
    DeleteApiKey,
    RollApiKey,
    Usage,
    AuditLog,
    Export,
    WorkspaceSettings,
    UpdateWorkspaceSettings,
    Erasure,
    ListAgents,
    CreateAgent,
    GetAgent,
    UpdateAgent,
    DeleteAgent,
    UpsertRecords,
    DeleteRecords,
    ListRecords,
    GetRecord,
    KnowledgeStats,
    SearchKnowledge,
    Chat,
    ListChats,
    GetChat,
    DeleteChat,
    CreateEmbedToken,
    GetInsight,
    ListInsights,
    CreateInsight,
    GetInsightSettings,
    UpdateInsight,
    DeleteInsight,
    RefreshInsight,
    ChatCompletions,
    ListModels,
    GetModel,
}

type Methods = &'static [(&'static str, Endpoint)];

/// `(pattern, [(method, endpoint)])`; `{name}` matches one non-empty path segment.
pub const ROUTES: &[(&str, Methods)] = &[
    ("/api/health", &[("GET", Endpoint::Health)]),
    ("/api/openapi.json", &[("GET", Endpoint::OpenApi)]),
    ("/settings", &[("GET", Endpoint::SettingsPage)]),
    ("/settings/app.js", &[("GET", Endpoint::SettingsScript)]),
    ("/settings/app.css", &[("GET", Endpoint::SettingsStyle)]),
    ("/settings/favicon.svg", &[("GET", Endpoint::SettingsIcon)]),
    ("/settings/js/{module}", &[("GET", Endpoint::SettingsModule)]),
    ("/embed/v1.js", &[("GET", Endpoint::EmbedScript)]),
    ("/api/admin/workspaces", &[("GET", Endpoint::ListWorkspaces), ("POST", Endpoint::CreateWorkspace)]),
    ("/api/admin/workspaces/{workspaceId}", &[("DELETE", Endpoint::DeleteWorkspace)]),
    ("/api/admin/data-plane", &[("GET", Endpoint::DataPlane)]),
    ("/api/admin/data-plane/move", &[("POST", Endpoint::MoveWorkspace)]),
    ("/api/admin/workspaces/{workspaceId}/export", &[("GET", Endpoint::BackupWorkspace)]),
    ("/api/admin/workspaces/{workspaceId}/import", &[("POST", Endpoint::RestoreWorkspace)]),
    ("/api/admin/workspaces/{workspaceId}/admins", &[("POST", Endpoint::CreateAdmin)]),
    ("/api/admin/workspaces/{workspaceId}/admins/{adminId}", &[("DELETE", Endpoint::DeleteAdmin)]),
    ("/api/settings/api-keys", &[("GET", Endpoint::ListApiKeys), ("POST", Endpoint::CreateApiKey)]),
    ("/api/settings/api-keys/{keyId}", &[("PATCH", Endpoint::UpdateApiKey), ("DELETE", Endpoint::DeleteApiKey)]),
    ("/api/settings/api-keys/{keyId}/roll", &[("POST", Endpoint::RollApiKey)]),
    ("/api/settings/usage", &[("GET", Endpoint::Usage)]),
    ("/api/settings/audit-log", &[("GET", Endpoint::AuditLog)]),
    ("/api/settings/export", &[("GET", Endpoint::Export)]),
    ("/api/settings/workspace", &[("GET", Endpoint::WorkspaceSettings), ("PATCH", Endpoint::UpdateWorkspaceSettings)]),
    ("/api/settings/erasure", &[("POST", Endpoint::Erasure)]),
    ("/api/settings/agents", &[("GET", Endpoint::ListAgents), ("POST", Endpoint::CreateAgent)]),
    (
        "/api/settings/agents/{agentId}",
        &[("GET", Endpoint::GetAgent), ("PATCH", Endpoint::UpdateAgent), ("DELETE", Endpoint::DeleteAgent)],
    ),
    ("/api/settings/knowledge/records", &[("GET", Endpoint::ListRecords), ("PUT", Endpoint::UpsertRecords)]),
    ("/api/settings/knowledge/records/delete", &[("POST", Endpoint::DeleteRecords)]),
    ("/api/settings/knowledge/records/{recordId}", &[("GET", Endpoint::GetRecord)]),
    ("/api/settings/knowledge/stats", &[("GET", Endpoint::KnowledgeStats)]),
    ("/api/settings/knowledge/search", &[("GET", Endpoint::SearchKnowledge)]),
    ("/api/chat", &[("POST", Endpoint::Chat)]),
    ("/api/chats", &[("GET", Endpoint::ListChats)]),
    ("/api/chats/{chatId}", &[("GET", Endpoint::GetChat), ("DELETE", Endpoint::DeleteChat)]),
    ("/api/embed-tokens", &[("POST", Endpoint::CreateEmbedToken)]),
    ("/api/insights/{insightId}", &[("GET", Endpoint::GetInsight)]),
    ("/api/settings/insights", &[("GET", Endpoint::ListInsights), ("POST", Endpoint::CreateInsight)]),
    (
        "/api/settings/insights/{insightId}",
        &[
            ("GET", Endpoint::GetInsightSettings),
            ("PATCH", Endpoint::UpdateInsight),
            ("DELETE", Endpoint::DeleteInsight),
        ],
    ),
    ("/api/settings/insights/{insightId}/refresh", &[("POST", Endpoint::RefreshInsight)]),
    ("/v1/chat/completions", &[("POST", Endpoint::ChatCompletions)]),
    ("/v1/models", &[("GET", Endpoint::ListModels)]),
    ("/v1/models/{modelId}", &[("GET", Endpoint::GetModel)]),
];

impl Endpoint {
    /// The routes an embed token may be used on (the chat ones only if it may chat); every
    /// other route refuses it with 403 before anything else is looked at.
    pub fn takes_embed_tokens(self) -> bool {
        matches!(self, Self::Chat | Self::ListChats | Self::GetChat | Self::GetInsight)
    }
}

/// A matched request: the endpoint, the pattern (what the log names, never the raw path) and
/// the path parameters in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub endpoint: Endpoint,
    pub pattern: &'static str,
    pub params: Vec<String>,
}

impl Matched {
    /// The n-th path parameter; routes with parameters always have them, so the empty default
    /// is never used but keeps the request path free of panics.
    pub fn param(&self, n: usize) -> &str {
        self.params.get(n).map_or("", String::as_str)
    }
}

/// `HEAD` is served by every `GET` route (RFC 9110 §9.3.2): the same status and headers, no
/// body. The caller drops the body; here it resolves like `GET`.
///
/// # Errors
/// 404 for a path no route has, 405 with the allowed methods for a known path.
pub fn resolve(method: &str, path: &str) -> Result<Matched, ApiError> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    let wanted = if method == "HEAD" { "GET" } else { method };
    for &(pattern, methods) in ROUTES {
        let Some(params) = match_pattern(pattern, path) else {
            continue;
        };
        return match methods.iter().find(|(m, _)| *m == wanted) {
            Some(&(_, endpoint)) => Ok(Matched { endpoint, pattern, params }),
            None => Err(ApiError::MethodNotAllowed { allow: allowed(methods) }),
        };
    }
    Err(ApiError::NotFound("Not found", None))
}

/// The first endpoint of a path, whatever the method (a preflight asks about a path).
pub fn any_method(path: &str) -> Option<Endpoint> {
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    ROUTES
        .iter()
        .find(|(pattern, _)| match_pattern(pattern, path).is_some())
        .and_then(|(_, methods)| methods.first().map(|&(_, e)| e))
}

/// The `Allow` list of a path: its methods, with `HEAD` after `GET`.
fn allowed(methods: Methods) -> Vec<&'static str> {
    let mut allow = Vec::with_capacity(methods.len() + 1);
    for &(m, _) in methods {
        allow.push(m);
        if m == "GET" {
            allow.push("HEAD");
        }
    }
    allow
}

fn match_pattern(pattern: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut pattern_parts = pattern.split('/');
    let mut path_parts = path.split('/');
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') => {
                if s.is_empty() {
                    return None;
                }
                params.push(s.to_owned());
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_routes_with_params() {
        let m = resolve("DELETE", "/api/admin/workspaces/ws_1/admins/adm_2").unwrap();
        assert_eq!(m.endpoint, Endpoint::DeleteAdmin);
        assert_eq!(m.params, ["ws_1", "adm_2"]);
        assert_eq!(m.pattern, "/api/admin/workspaces/{workspaceId}/admins/{adminId}");
        assert_eq!(resolve("POST", "/api/chat/").unwrap().endpoint, Endpoint::Chat);
    }

    #[test]
    fn unknown_paths_are_404() {
        for path in ["/", "/api", "/api/chat/x", "/api/chats//", "/API/chat"] {
            let err = resolve("GET", path).unwrap_err();
            assert_eq!(err.status(), 404, "{path}");
        }
    }

    #[test]
    fn wrong_methods_are_405_with_allow() {
        assert_eq!(resolve("GET", "/api/chat").unwrap_err(), ApiError::MethodNotAllowed { allow: vec!["POST"] });
        assert_eq!(resolve("HEAD", "/api/chat").unwrap_err(), ApiError::MethodNotAllowed { allow: vec!["POST"] });
        assert_eq!(
            resolve("PUT", "/api/settings/agents/agent_x").unwrap_err(),
            ApiError::MethodNotAllowed { allow: vec!["GET", "HEAD", "PATCH", "DELETE"] }
        );
        assert_eq!(
            resolve("POST", "/api/chats/c").unwrap_err(),
            ApiError::MethodNotAllowed { allow: vec!["GET", "HEAD", "DELETE"] }
        );
        assert_eq!(
            resolve("DELETE", "/api/admin/workspaces").unwrap_err(),
            ApiError::MethodNotAllowed { allow: vec!["GET", "HEAD", "POST"] }
        );
    }

    #[test]
    fn head_is_served_by_every_get_route() {
        for &(pattern, methods) in ROUTES {
            let path = pattern.replace('{', "x").replace('}', "");
            let get = resolve("GET", &path);
            let head = resolve("HEAD", &path);
            match get {
                Ok(m) => assert_eq!(head.unwrap(), m, "{pattern}"),
                Err(_) => assert!(methods.iter().all(|(m, _)| *m != "GET") && head.is_err(), "{pattern}"),
            }
        }
        assert_eq!(resolve("HEAD", "/settings").unwrap().endpoint, Endpoint::SettingsPage);
    }

    /// The published OpenAPI document and this table describe the same routes: every route
    /// is documented, and nothing is documented that does not exist.
    #[test]
    fn openapi_document_and_router_agree() {
        let doc: serde_json::Value = serde_json::from_str(include_str!("../../openapi.json")).unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.push((path.clone(), method.to_ascii_uppercase()));
            }
        }
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .flat_map(|(pattern, methods)| methods.iter().map(move |(m, _)| ((*pattern).to_owned(), (*m).to_owned())))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }
}
