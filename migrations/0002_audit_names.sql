-- Audit entries keep what a person recognises their target by (a key's name and display
-- prefix, an agent's name), captured when the event happens, so the log still reads after the
-- target is deleted. Entries written before this keep what can still be known: the name of
-- targets that still exist; entries about targets already deleted stay nameless.
ALTER TABLE audit_log ADD COLUMN target_name TEXT;
ALTER TABLE audit_log ADD COLUMN target_prefix TEXT;

UPDATE audit_log
SET target_name = (SELECT k.name FROM api_keys k WHERE k.id = audit_log.target),
    target_prefix = (SELECT k.prefix FROM api_keys k WHERE k.id = audit_log.target)
WHERE target LIKE 'key\_%' ESCAPE '\';

UPDATE audit_log
SET target_name = (SELECT a.name FROM agents a WHERE a.id = audit_log.target)
WHERE target LIKE 'agent\_%' ESCAPE '\';
