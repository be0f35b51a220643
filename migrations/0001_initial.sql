-- Attive API Connection schema. Times are milliseconds since the Unix epoch (UTC).
-- D1 enforces foreign keys; deleting a workspace removes everything that belongs to it.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX workspaces_by_recency ON workspaces (created_at DESC, id);

-- Workspace admins sign in to the settings routes with a token of which only the SHA-256 is kept.
CREATE TABLE workspace_admins (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL
);
CREATE INDEX workspace_admins_by_workspace ON workspace_admins (workspace_id);

-- API keys: SHA-256 of the full key and a display prefix, never the key.
-- created_by_name is copied so the list still says who created a key after that admin is removed.
CREATE TABLE api_keys (
    id                     TEXT PRIMARY KEY,
    workspace_id           TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                   TEXT NOT NULL,
    prefix                 TEXT NOT NULL,
    key_hash               TEXT NOT NULL UNIQUE,
    created_by_admin_id    TEXT,
    created_by_name        TEXT NOT NULL,
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER,
    rate_limit_per_minute  INTEGER
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at DESC);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    instructions  TEXT NOT NULL,
    model         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX agents_by_workspace ON agents (workspace_id, created_at DESC);

-- agent_id deliberately has no foreign key: a chat outlives its agent (it stays readable), and
-- continuing it after the agent is deleted is answered "Agent not found".
CREATE TABLE chats (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    agent_id      TEXT,
    title         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX chats_by_workspace_recency ON chats (workspace_id, updated_at DESC, id DESC);

-- seq orders a chat's messages; it is assigned inside the write batch, so concurrent turns on
-- one chat never collide and each user message sits right before its answer.
CREATE TABLE messages (
    id                 TEXT PRIMARY KEY,
    chat_id            TEXT NOT NULL REFERENCES chats (id) ON DELETE CASCADE,
    seq                INTEGER NOT NULL,
    role               TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content            TEXT NOT NULL,
    model              TEXT,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    latency_ms         INTEGER,
    created_at         INTEGER NOT NULL,
    UNIQUE (chat_id, seq)
);

CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace_id, created_at DESC);
