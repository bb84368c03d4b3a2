-- switchboard: post-call analysis (SQLite; mirrors migrations/postgres/0002_call_analysis.sql).
--
-- After a call, the agent's model writes a summary, the customer's sentiment and the
-- fields named by the agent's extraction schema onto the call's row (`calls.summary`,
-- `calls.sentiment`, `calls.extracted`, which 0001 created). The schema itself lives
-- on the agent: a JSON Schema object, stored as TEXT like every JSON column, `{}`
-- meaning "extract nothing".
--
-- No table is added, so nothing needs the triggers 0001 gives optional references
-- (and PostgreSQL's row-level security needs nothing new either).

ALTER TABLE agents ADD COLUMN analysis_schema TEXT NOT NULL DEFAULT '{}';   -- JSON object

-- Per-turn timing: the final transcript to the model's first complete sentence, which is
-- what speech waits for; with it, a turn's voice-to-voice latency splits into the
-- providers' time and the runtime's own.
ALTER TABLE call_turns ADD COLUMN llm_first_sentence_ms INTEGER NULL CHECK (llm_first_sentence_ms >= 0);
