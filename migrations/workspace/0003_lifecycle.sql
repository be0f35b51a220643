-- An import into this workspace (POST /api/admin/workspaces/{id}/import): claimed before the
-- first row is written, so two imports cannot interleave, and finished with the body's
-- SHA-256 and counts, so the same export imported again is answered without writing anything.
-- Additive: code that predates it runs unchanged against it.
CREATE TABLE imports (
    workspace_id  TEXT PRIMARY KEY,
    fingerprint   TEXT,
    counts        TEXT,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
