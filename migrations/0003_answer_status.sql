-- Streamed answers can end before the provider finished (a cut connection, a stall, the
-- caller leaving): such an answer is kept, marked incomplete, with why it ended and whether
-- its token counts are estimates (a provider sends usage only at the end of a stream).
ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete' CHECK (status IN ('complete', 'incomplete'));
ALTER TABLE messages ADD COLUMN finish_reason TEXT;
ALTER TABLE messages ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
