-- LLM providers: an agent's own provider (NULL reads as "default") and its fallbacks, as JSON
-- [{"provider", "model"}] (NULL: none).
ALTER TABLE agents ADD COLUMN provider TEXT;
ALTER TABLE agents ADD COLUMN fallbacks TEXT;

-- Which provider answered a stored assistant message (its model is in `model`), and how many
-- targets the turn tried before one answered (1: the first one did). NULL before providers.
ALTER TABLE messages ADD COLUMN provider TEXT;
ALTER TABLE messages ADD COLUMN attempts INTEGER;
