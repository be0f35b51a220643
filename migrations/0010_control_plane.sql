-- D1 becomes the control plane: each workspace's chats, knowledge, keys, agents, insights,
-- usage and audit log live in its own Durable Object (migrations/workspace/). D1 keeps the
-- registry, the admins, the index that finds the workspace of a key of the first format
-- (which does not say), and the progress of moving existing workspaces out of D1.

-- placement: 'auto', a location hint, or 'jurisdiction:eu' (domain/placement.rs).
-- data_plane: 'd1' (rows still here; every workspace that predates this migration), 'moving',
-- or 'object'. New workspaces start on 'object' (NEW_WORKSPACE_DATA_PLANE can say 'd1').
ALTER TABLE workspaces ADD COLUMN placement TEXT NOT NULL DEFAULT 'auto';
ALTER TABLE workspaces ADD COLUMN data_plane TEXT NOT NULL DEFAULT 'd1'
    CHECK (data_plane IN ('d1', 'moving', 'object'));
-- The earliest time one of the workspace's insights may be due (a lower bound): the Cron
-- Trigger asks only these workspaces' objects.
ALTER TABLE workspaces ADD COLUMN insights_due_at INTEGER;
CREATE INDEX workspaces_by_insights_due ON workspaces (insights_due_at) WHERE insights_due_at IS NOT NULL;

-- Keys of the first format (`atv_…`) do not carry their workspace: this finds it by hash.
-- Keys of the second format (`atv2_…`) are never written here.
CREATE TABLE api_key_index (
    key_hash      TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE
);
INSERT INTO api_key_index (key_hash, workspace_id) SELECT key_hash, workspace_id FROM api_keys;

-- The move of one workspace from D1 to its object (POST /api/admin/data-plane/move).
-- step: the table being copied (or 'verify', 'done'); after_rowid: the last rowid copied of it.
CREATE TABLE data_plane_moves (
    workspace_id  TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    step          TEXT NOT NULL,
    after_rowid   INTEGER NOT NULL DEFAULT 0,
    copied        TEXT NOT NULL DEFAULT '{}',
    started_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    error         TEXT
);

-- A deleted workspace's object and its keys' rate-limiter objects, until they are cleaned up:
-- the registry row goes first (nothing can reach the workspace from then on), the rest after;
-- a failure there is retried by the next delete of the same id.
CREATE TABLE workspace_leftovers (
    workspace_id  TEXT PRIMARY KEY,
    placement     TEXT NOT NULL,
    key_hashes    TEXT NOT NULL,
    deleted_at    INTEGER NOT NULL
);
