-- switchboard: how long a turn's automatic knowledge retrieval took (postgres; mirrored by the
-- other backend's 0004). NULL when the agent has it off, or it ran over its budget or failed.

ALTER TABLE call_turns ADD COLUMN retrieval_ms INTEGER NULL CHECK (retrieval_ms >= 0);
