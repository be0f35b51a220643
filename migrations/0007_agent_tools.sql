-- Agent tools: a JSON array of tool names (search_records, query_records, aggregate_records);
-- NULL for agents made before tools existed, which read as none.
ALTER TABLE agents ADD COLUMN tools TEXT;

-- The tools an answer called, as JSON: [{"name", "arguments", "resultCount", "error"?}], in the
-- order they ran; NULL when none.
ALTER TABLE messages ADD COLUMN tool_calls TEXT;
