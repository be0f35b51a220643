-- Which workspace records an agent answers from: JSON {"enabled": bool, "kinds": [...] | null};
-- NULL means the default, enabled with every kind.
ALTER TABLE agents ADD COLUMN knowledge TEXT;

-- The records an answer was given, in the order the model saw them ([S1], [S2], ...), with
-- whether the answer cites each: JSON array, NULL for user messages and older answers.
ALTER TABLE messages ADD COLUMN sources TEXT;
