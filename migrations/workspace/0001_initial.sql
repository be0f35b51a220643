-- The schema of one workspace's own database (its `Workspace` Durable Object): the data-plane
-- tables of the shared D1 as they stood after its migration 0009, minus what stays in the
-- control plane (the registry, admins, the key index). The SQL of the Worker is the same on
-- both, so every table keeps its workspace_id column and `workspaces` holds this one workspace.
-- Applied by the object itself when it starts (src/workspace.rs); later files are additive.

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

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
    rate_limit_per_minute  INTEGER,
    allowed_agent_ids      TEXT,
    rolled_from            TEXT,
    rolled_to              TEXT
);
CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, created_at DESC);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    instructions  TEXT NOT NULL,
    model         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    knowledge     TEXT,
    tools         TEXT,
    provider      TEXT,
    fallbacks     TEXT
);
CREATE INDEX agents_by_workspace ON agents (workspace_id, created_at DESC);

CREATE TABLE chats (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    agent_id      TEXT,
    title         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    embed_key_id  TEXT,
    embed_user    TEXT
);
CREATE INDEX chats_by_workspace_recency ON chats (workspace_id, updated_at DESC, id DESC);
CREATE INDEX chats_by_embed_viewer ON chats (embed_key_id, embed_user, updated_at DESC, id DESC)
    WHERE embed_key_id IS NOT NULL;

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
    status             TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'incomplete')),
    finish_reason      TEXT,
    usage_estimated    INTEGER NOT NULL DEFAULT 0,
    sources            TEXT,
    tool_calls         TEXT,
    provider           TEXT,
    attempts           INTEGER,
    UNIQUE (chat_id, seq)
);

CREATE TABLE audit_log (
    id             TEXT PRIMARY KEY,
    workspace_id   TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    target_name    TEXT,
    target_prefix  TEXT,
    details        TEXT
);
CREATE INDEX audit_log_by_workspace ON audit_log (workspace_id, created_at DESC);

-- See the D1 migration 0004 for why id is the rowid and what ws_token is.
CREATE TABLE knowledge_records (
    id                 INTEGER PRIMARY KEY,
    public_id          TEXT NOT NULL UNIQUE,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    ws_token           TEXT NOT NULL CHECK (ws_token = replace(workspace_id, '_', '')),
    kind               TEXT NOT NULL CHECK (kind IN ('deal', 'account', 'contact', 'note', 'feedback', 'document')),
    external_id        TEXT NOT NULL,
    title              TEXT NOT NULL,
    body               TEXT,
    url                TEXT,
    source             TEXT,
    account_name       TEXT,
    amount             REAL CHECK (amount IS NULL OR amount >= 0),
    currency           TEXT,
    stage              TEXT,
    status             TEXT CHECK (status IS NULL OR (kind = 'deal' AND status IN ('open', 'won', 'lost'))),
    close_date         TEXT,
    owner              TEXT,
    properties         TEXT,
    content_hash       TEXT NOT NULL,
    source_updated_at  INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    UNIQUE (workspace_id, kind, external_id)
);
CREATE INDEX knowledge_records_by_amount ON knowledge_records (workspace_id, kind, amount DESC);
CREATE INDEX knowledge_records_by_recency ON knowledge_records (workspace_id, updated_at DESC, id DESC);

CREATE VIRTUAL TABLE knowledge_fts USING fts5 (
    ws_token,
    title,
    body,
    account_name,
    content = 'knowledge_records',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER knowledge_records_fts_insert AFTER INSERT ON knowledge_records BEGIN
    INSERT INTO knowledge_fts (rowid, ws_token, title, body, account_name)
    VALUES (new.id, new.ws_token, new.title, new.body, new.account_name);
END;

CREATE TRIGGER knowledge_records_fts_delete AFTER DELETE ON knowledge_records BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, ws_token, title, body, account_name)
    VALUES ('delete', old.id, old.ws_token, old.title, old.body, old.account_name);
END;

CREATE TRIGGER knowledge_records_fts_update AFTER UPDATE OF id, ws_token, title, body, account_name ON knowledge_records
WHEN old.id IS NOT new.id
    OR old.ws_token IS NOT new.ws_token
    OR old.title IS NOT new.title
    OR old.body IS NOT new.body
    OR old.account_name IS NOT new.account_name
BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, ws_token, title, body, account_name)
    VALUES ('delete', old.id, old.ws_token, old.title, old.body, old.account_name);
    INSERT INTO knowledge_fts (rowid, ws_token, title, body, account_name)
    VALUES (new.id, new.ws_token, new.title, new.body, new.account_name);
END;

CREATE TABLE insights (
    id                 TEXT PRIMARY KEY,
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    prompt             TEXT NOT NULL,
    agent_id           TEXT,
    refresh_seconds    INTEGER NOT NULL,
    answer             TEXT,
    sources            TEXT,
    etag               TEXT,
    model              TEXT,
    provider           TEXT,
    generated_at       INTEGER,
    next_refresh_at    INTEGER NOT NULL,
    failures           INTEGER NOT NULL DEFAULT 0,
    outdated           INTEGER NOT NULL DEFAULT 0,
    last_error_code    TEXT,
    last_error_at      INTEGER,
    prompt_tokens      INTEGER,
    completion_tokens  INTEGER,
    lease_until        INTEGER,
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX insights_by_workspace ON insights (workspace_id, created_at);
CREATE INDEX insights_due ON insights (next_refresh_at);

CREATE TABLE usage_daily (
    workspace_id       TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key_id             TEXT NOT NULL,
    day                TEXT NOT NULL,
    key_name           TEXT NOT NULL,
    key_prefix         TEXT NOT NULL,
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    rate_limited       INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    llm_ms             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, key_id, day)
);
CREATE INDEX usage_by_workspace_day ON usage_daily (workspace_id, day);
