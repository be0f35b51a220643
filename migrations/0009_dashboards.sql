-- Dashboards: chats made with embed tokens, insights answered ahead of time, and the usage
-- ledger's line for them.

-- A chat created with an embed token remembers the key that minted the token and the token's
-- `user` label ('' when it had none): tokens see only the chats of the same key and label.
-- NULL for chats created with an API key.
ALTER TABLE chats ADD COLUMN embed_key_id TEXT;
ALTER TABLE chats ADD COLUMN embed_user TEXT;
CREATE INDEX chats_by_embed_viewer ON chats (embed_key_id, embed_user, updated_at DESC, id DESC)
    WHERE embed_key_id IS NOT NULL;

-- A saved question and its last good answer. `lease_until`: a generation holds the insight
-- until then, so two scheduled runs (or a run and a manual refresh) never generate it twice
-- at once; a generation that dies leaves it to expire.
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

-- The ledger's key column now also holds the insights' line (`insights`, one per workspace),
-- so a row is identified by its workspace too. SQLite cannot change a primary key in place:
-- the table is rebuilt with its rows.
CREATE TABLE usage_daily_v2 (
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
INSERT INTO usage_daily_v2 SELECT workspace_id, key_id, day, key_name, key_prefix, requests, errors,
    rate_limited, prompt_tokens, completion_tokens, llm_ms FROM usage_daily;
DROP TABLE usage_daily;
ALTER TABLE usage_daily_v2 RENAME TO usage_daily;
CREATE INDEX usage_by_workspace_day ON usage_daily (workspace_id, day);
