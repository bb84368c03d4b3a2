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

-- How the agent's caller speech is transcribed: `utterance` (each utterance whole, once the
-- endpointer ends it) or `streaming` (audio streams to the provider while the caller
-- speaks). Every existing agent keeps the per-utterance behaviour it had.
ALTER TABLE agents ADD COLUMN stt_mode TEXT NOT NULL DEFAULT 'utterance'
    CHECK (stt_mode IN ('utterance', 'streaming'));

-- Models tried in order on the same endpoint when the agent's model is unavailable before
-- its first token: a JSON array of model names (at most 3, checked by the API), `[]` for
-- none.
ALTER TABLE agents ADD COLUMN llm_fallback_models TEXT NOT NULL DEFAULT '[]';   -- JSON array
