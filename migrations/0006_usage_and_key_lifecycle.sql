-- Per-key usage, one row per key and UTC day (`YYYY-MM-DD`). Rows are added to by upserts, so
-- concurrent requests of one key never lose a count (SQLite runs them one after the other).
-- No foreign key to api_keys: usage outlives its key, which each row names (name and prefix as
-- they were when it was last used), so deleted keys stay readable in past usage.
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
    PRIMARY KEY (key_id, day)
);
CREATE INDEX usage_by_workspace_day ON usage_daily (workspace_id, day);

-- Scope: NULL reaches every agent and the default assistant; a JSON array of agent ids reaches
-- only those (deleting an agent removes it from the arrays that list it).
ALTER TABLE api_keys ADD COLUMN allowed_agent_ids TEXT;
-- A roll links the old key and its successor.
ALTER TABLE api_keys ADD COLUMN rolled_from TEXT;
ALTER TABLE api_keys ADD COLUMN rolled_to TEXT;

-- What an entry changed, as JSON (e.g. a key's old and new limit).
ALTER TABLE audit_log ADD COLUMN details TEXT;
