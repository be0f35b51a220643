-- Chats by age and by viewer label, for deleting old chats and one viewer's chats without a
-- full scan. Additive: code that predates it runs unchanged against it.
CREATE INDEX chats_by_age ON chats (updated_at);
CREATE INDEX chats_by_embed_user ON chats (embed_user) WHERE embed_user IS NOT NULL;
