-- Workspace knowledge: the records a workspace pushes (CRM deals, accounts, contacts, notes,
-- customer feedback, documents), searched on every chat turn. Validation happens in the Worker
-- (domain/knowledge.rs) before anything is written; the constraints here are the last line.
--
-- id is an INTEGER PRIMARY KEY, i.e. the rowid itself, so it doubles as the full-text index's
-- rowid and the join between the two is a rowid lookup. public_id (`rec_` + base62, made by the
-- Worker) is what the API shows and what stored sources refer to, never the rowid.
-- ws_token is the workspace id without its underscore: one full-text token, indexed so that a
-- search matches within its own workspace (`ws_token:"…" AND (…)`) and does not grow with what
-- other workspaces hold. The CHECK ties it to workspace_id: a raw id there would be split into
-- two tokens and the workspace's records would silently never be found.
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
-- Top deals by amount (and counts per stage) within a workspace.
CREATE INDEX knowledge_records_by_amount ON knowledge_records (workspace_id, kind, amount DESC);
-- Listing newest first, with (updated_at, id) as the cursor.
CREATE INDEX knowledge_records_by_recency ON knowledge_records (workspace_id, updated_at DESC, id DESC);

-- The full-text index, with knowledge_records as its external content: the text is stored once,
-- and snippet() reads it from there (a contentless table would return NULL snippets). Its
-- columns must have the content table's column names. Rank with
-- bm25(knowledge_fts, 0.0, 5.0, 1.0, 3.0): ws_token weighs nothing, then title, body, account.
-- porter folds "complaining" and "complained" together; remove_diacritics 2 makes "cafe" find
-- "Café".
CREATE VIRTUAL TABLE knowledge_fts USING fts5 (
    ws_token,
    title,
    body,
    account_name,
    content = 'knowledge_records',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

-- Triggers keep the index in step with every write, including the deletes that cascade from a
-- workspace. An external-content index is told what to forget with the 'delete' command and the
-- row's old values, which must be exactly what was indexed (anything else corrupts it).
CREATE TRIGGER knowledge_records_fts_insert AFTER INSERT ON knowledge_records BEGIN
    INSERT INTO knowledge_fts (rowid, ws_token, title, body, account_name)
    VALUES (new.id, new.ws_token, new.title, new.body, new.account_name);
END;

CREATE TRIGGER knowledge_records_fts_delete AFTER DELETE ON knowledge_records BEGIN
    INSERT INTO knowledge_fts (knowledge_fts, rowid, ws_token, title, body, account_name)
    VALUES ('delete', old.id, old.ws_token, old.title, old.body, old.account_name);
END;

-- Only when indexed text changes: an upsert that moves a deal's amount or stage leaves the
-- index alone.
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

-- Backups: `wrangler d1 export` refuses a database with virtual tables. Export the base tables
-- one by one (`--table <name> --no-schema`); to restore, apply the migrations to an empty
-- database, import the rows (the insert trigger indexes them as they come), and finish with
-- `INSERT INTO knowledge_fts (knowledge_fts) VALUES ('rebuild');` and 'integrity-check'.
