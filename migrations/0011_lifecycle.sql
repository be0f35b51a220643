-- Chat retention, a workspace setting (PATCH /api/settings/workspace): chats whose last message
-- is older than this many days are deleted by the Cron Trigger. NULL keeps chats forever.
-- retention_due_at: when the Cron Trigger next looks at the workspace (set when retention is
-- set, moved an hour on after each finished sweep).
ALTER TABLE workspaces ADD COLUMN chat_retention_days INTEGER
    CHECK (chat_retention_days IS NULL OR chat_retention_days BETWEEN 1 AND 3650);
ALTER TABLE workspaces ADD COLUMN retention_due_at INTEGER;
CREATE INDEX workspaces_by_retention_due ON workspaces (retention_due_at) WHERE retention_due_at IS NOT NULL;
