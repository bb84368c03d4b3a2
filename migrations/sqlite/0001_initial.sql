-- switchboard: initial schema (SQLite).
--
-- Mirrors migrations/postgres/0001_initial.sql column for column, because the Rust
-- code reads both through sqlx's `Any` driver:
--   * ids are TEXT (UUID v7 strings made by the application);
--   * timestamps are INTEGER unix epoch milliseconds, column names end in `_at`;
--   * every integer is INTEGER (64-bit) and floats are REAL;
--   * flags are INTEGER 0/1 with CHECK (col IN (0, 1)), not BOOLEAN: sqlx's `Any` driver
--     (0.8) refuses any row holding a column declared BOOLEAN ("Any driver does not
--     support the SQLite type Bool"). Bind and read these columns as i64 0/1;
--   * JSON is stored as TEXT; enums are TEXT with a CHECK constraint.
-- Foreign keys are enforced only with PRAGMA foreign_keys = ON (sqlx's SQLite
-- driver turns it on for every connection by default).
--
-- Tenancy: every tenant-owned table carries `tenant_id` and every secondary index
-- leads with it. Tables that other tables point at have UNIQUE (tenant_id, id), and
-- references between tenant-owned rows are COMPOSITE foreign keys
-- (tenant_id, x_id) -> x (tenant_id, id), so the database refuses a reference to
-- another tenant's row.
--
-- Differences from PostgreSQL, forced by SQLite (same observable behaviour):
--   * Optional (nullable) references. SQLite has no `ON DELETE SET NULL (col)`, and
--     a plain SET NULL on a composite key would also null tenant_id. So the composite
--     key keeps the default NO ACTION, and a BEFORE DELETE trigger on the parent
--     nulls just the referencing column first (see "Optional references" below).
--   * phone_numbers.agent_id uses NO ACTION rather than RESTRICT. Both refuse to
--     delete an agent that still has numbers, but SQLite checks RESTRICT at once, in
--     the middle of a tenant's cascade. Whether a tenant could then be deleted would
--     depend on the order in which tables were created. NO ACTION is checked at the
--     end of the statement.
--   * No row-level security: SQLite has none; the application's tenant scoping is
--     the only wall besides the composite keys.

-- ---------------------------------------------------------------------------
-- Tenants and people
-- ---------------------------------------------------------------------------

-- A business using switchboard; the root of every tenant-owned row.
CREATE TABLE tenants (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    timezone              TEXT NOT NULL DEFAULT 'UTC',
    business_hours        TEXT NOT NULL DEFAULT '{}',          -- JSON
    concurrent_call_limit INTEGER NOT NULL DEFAULT 10 CHECK (concurrent_call_limit >= 0),
    monthly_minute_quota  INTEGER NULL CHECK (monthly_minute_quota >= 0), -- NULL = unlimited
    sms_reply_mode        TEXT NOT NULL DEFAULT 'rest' CHECK (sms_reply_mode IN ('rest', 'twiml')),
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL
);

-- Dashboard users. Email is unique platform-wide (login does not name the tenant)
-- and is stored lower-case by the application.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'agent', 'viewer')),
    password_hash TEXT NULL,                                     -- NULL until an invited user sets one
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX users_tenant_email_idx ON users (tenant_id, email);

-- Rotating refresh tokens (only a hash is stored). A family shares one login; reuse
-- of a used token revokes the whole family.
CREATE TABLE refresh_tokens (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    family_id  TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NULL,
    revoked_at INTEGER NULL,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_tenant_user_idx ON refresh_tokens (tenant_id, user_id);
CREATE INDEX refresh_tokens_tenant_family_idx ON refresh_tokens (tenant_id, family_id);

-- Single-use password-reset and invitation tokens (only a hash is stored).
CREATE TABLE password_tokens (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('reset', 'invite')),
    token_hash TEXT NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER NULL,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX password_tokens_tenant_user_idx ON password_tokens (tenant_id, user_id);

-- ---------------------------------------------------------------------------
-- Agents and numbers
-- ---------------------------------------------------------------------------

-- An AI agent's configuration: prompt, voice, model, tools, retrieval settings.
CREATE TABLE agents (
    id                  TEXT PRIMARY KEY,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name                TEXT NOT NULL,
    system_prompt       TEXT NOT NULL DEFAULT '',
    first_message       TEXT NOT NULL DEFAULT '',
    language            TEXT NOT NULL DEFAULT 'en',
    voice               TEXT NOT NULL DEFAULT '',
    llm_model           TEXT NOT NULL DEFAULT 'gpt-4o-mini',
    enabled_tools       TEXT NOT NULL DEFAULT '[]',              -- JSON array of tool names
    transfer_number     TEXT NULL,
    auto_retrieval      INTEGER NOT NULL DEFAULT 1 CHECK (auto_retrieval IN (0, 1)),      -- flag
    retrieval_budget_ms INTEGER NOT NULL DEFAULT 150 CHECK (retrieval_budget_ms >= 0),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX agents_tenant_name_idx ON agents (tenant_id, name);

-- A tenant's Twilio number (E.164, unique platform-wide: calls and texts are routed
-- by the dialled number) and the agent that answers it. An agent that still has
-- numbers cannot be deleted (NO ACTION, see the header; the API answers 409).
CREATE TABLE phone_numbers (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number     TEXT NOT NULL UNIQUE,
    agent_id   TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE NO ACTION
);
CREATE INDEX phone_numbers_tenant_agent_idx ON phone_numbers (tenant_id, agent_id);

-- ---------------------------------------------------------------------------
-- CRM and conversations
-- ---------------------------------------------------------------------------

-- A lead in the tenant's CRM; at most one per phone number within a tenant.
CREATE TABLE leads (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name              TEXT NOT NULL DEFAULT '',
    phone             TEXT NULL,
    email             TEXT NULL,
    status            TEXT NOT NULL DEFAULT 'new'
                      CHECK (status IN ('new', 'contacted', 'qualified', 'appointment', 'won', 'lost')),
    sentiment         TEXT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    funding_readiness TEXT NULL,
    credit_profile    TEXT NULL,
    preferences       TEXT NOT NULL DEFAULT '{}',                -- JSON
    notes             TEXT NOT NULL DEFAULT '',
    assigned_user_id  TEXT NULL,                                 -- nulled when the user is deleted
    custom_fields     TEXT NOT NULL DEFAULT '{}',                -- JSON
    last_contact_at   INTEGER NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, phone),
    FOREIGN KEY (tenant_id, assigned_user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX leads_tenant_status_updated_idx ON leads (tenant_id, status, updated_at);
CREATE INDEX leads_tenant_assigned_idx ON leads (tenant_id, assigned_user_id);
CREATE INDEX leads_tenant_name_idx ON leads (tenant_id, name);

-- The thread with one customer number within a tenant (SMS and call transcripts),
-- with its rolling summary and any staff takeover.
CREATE TABLE conversations (
    id                            TEXT PRIMARY KEY,
    tenant_id                     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_number               TEXT NOT NULL,
    lead_id                       TEXT NULL,                     -- nulled when the lead is deleted
    summary                       TEXT NOT NULL DEFAULT '',
    summarized_through_message_id TEXT NULL,                     -- no FK: a bookmark into messages
    takeover_user_id              TEXT NULL,                     -- nulled when the user is deleted
    takeover_at                   INTEGER NULL,
    last_message_at               INTEGER NULL,
    created_at                    INTEGER NOT NULL,
    updated_at                    INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, customer_number),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id),
    FOREIGN KEY (tenant_id, takeover_user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX conversations_tenant_last_message_idx ON conversations (tenant_id, last_message_at);
CREATE INDEX conversations_tenant_lead_idx ON conversations (tenant_id, lead_id);

-- ---------------------------------------------------------------------------
-- Calls
-- ---------------------------------------------------------------------------

-- One phone call (Twilio CallSid), its outcome, summary and extracted data. The
-- optional references are nulled when the agent, number, conversation or lead is
-- deleted; the call itself survives.
CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_sid        TEXT NOT NULL UNIQUE,
    agent_id        TEXT NULL,
    phone_number_id TEXT NULL,
    conversation_id TEXT NULL,
    lead_id         TEXT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number     TEXT NOT NULL,
    to_number       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'ringing', 'in-progress', 'completed',
                                                    'busy', 'failed', 'no-answer', 'canceled')),
    started_at      INTEGER NOT NULL,
    answered_at     INTEGER NULL,
    ended_at        INTEGER NULL,
    duration_ms     INTEGER NULL CHECK (duration_ms >= 0),
    end_reason      TEXT NULL,
    failure         TEXT NULL,
    summary         TEXT NULL,
    sentiment       TEXT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    extracted       TEXT NOT NULL DEFAULT '{}',                  -- JSON
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id),
    FOREIGN KEY (tenant_id, phone_number_id) REFERENCES phone_numbers (tenant_id, id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id)
);
CREATE INDEX calls_tenant_started_idx ON calls (tenant_id, started_at);
CREATE INDEX calls_tenant_status_started_idx ON calls (tenant_id, status, started_at);
CREATE INDEX calls_tenant_agent_started_idx ON calls (tenant_id, agent_id, started_at);
CREATE INDEX calls_tenant_lead_started_idx ON calls (tenant_id, lead_id, started_at);
CREATE INDEX calls_tenant_conversation_idx ON calls (tenant_id, conversation_id);

-- The transcript of a call, one row per utterance, with per-turn latency metrics.
CREATE TABLE call_turns (
    id                 TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id            TEXT NOT NULL,
    seq                INTEGER NOT NULL CHECK (seq >= 0),
    speaker            TEXT NOT NULL CHECK (speaker IN ('caller', 'agent', 'staff', 'system')),
    text               TEXT NOT NULL,
    interrupted        INTEGER NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),         -- flag
    started_at         INTEGER NOT NULL,
    endpointing_ms     INTEGER NULL,
    stt_ms             INTEGER NULL,
    llm_first_token_ms INTEGER NULL,
    tts_first_byte_ms  INTEGER NULL,
    voice_to_voice_ms  INTEGER NULL,
    created_at         INTEGER NOT NULL,
    UNIQUE (tenant_id, call_id, seq),
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id) ON DELETE CASCADE
);

-- A message in a conversation: an SMS either way, or a voice-channel entry.
CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id TEXT NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('sms', 'voice')),
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'agent', 'staff', 'system')),
    sender_user_id  TEXT NULL,                                   -- nulled when the user is deleted
    body            TEXT NOT NULL DEFAULT '',
    media_urls      TEXT NOT NULL DEFAULT '[]',                  -- JSON array of URLs
    twilio_sid      TEXT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'received',            -- Twilio message status
    error_code      TEXT NULL,
    segments        INTEGER NOT NULL DEFAULT 1 CHECK (segments >= 0),
    call_id         TEXT NULL,                                   -- nulled when the call is deleted
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, sender_user_id) REFERENCES users (tenant_id, id),
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id)
);
CREATE INDEX messages_tenant_conversation_created_idx ON messages (tenant_id, conversation_id, created_at);
CREATE INDEX messages_tenant_call_idx ON messages (tenant_id, call_id);

-- ---------------------------------------------------------------------------
-- Knowledge base
-- ---------------------------------------------------------------------------

-- An uploaded knowledge document and its ingestion state (chunks live in the
-- vector store).
CREATE TABLE documents (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    content_type   TEXT NOT NULL,
    size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
    sha256         TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    failure_reason TEXT NULL,
    progress       REAL NOT NULL DEFAULT 0,
    chunk_count    INTEGER NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, name)
);
CREATE INDEX documents_tenant_status_idx ON documents (tenant_id, status);

-- ---------------------------------------------------------------------------
-- Metering
-- ---------------------------------------------------------------------------

-- Metered usage for quotas and billing; kept when the call it came from is deleted.
CREATE TABLE usage_records (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL
                CHECK (kind IN ('call_ms', 'stt_ms', 'llm_tokens', 'tts_characters', 'sms_segments')),
    quantity    INTEGER NOT NULL,
    call_id     TEXT NULL,                                       -- nulled when the call is deleted
    occurred_at INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id)
);
CREATE INDEX usage_records_tenant_kind_occurred_idx ON usage_records (tenant_id, kind, occurred_at);
CREATE INDEX usage_records_tenant_call_idx ON usage_records (tenant_id, call_id);

-- ---------------------------------------------------------------------------
-- Webhooks
-- ---------------------------------------------------------------------------

-- A tenant's webhook subscription. `secret` is kept in the clear because it signs
-- every delivery (HMAC). Lookups by tenant use the UNIQUE (tenant_id, id) index.
CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    event_types TEXT NOT NULL DEFAULT '[]',                      -- JSON array of event type names
    secret      TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),                    -- flag
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
);

-- Transactional outbox: every event to be delivered to webhooks, written in the same
-- transaction as the change it describes. May hold secrets in flight (e.g. a
-- password-reset link) until delivered.
CREATE TABLE outbox_events (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event_type TEXT NOT NULL,
    payload    TEXT NOT NULL,                                    -- JSON
    created_at INTEGER NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX outbox_events_tenant_created_idx ON outbox_events (tenant_id, created_at);

-- One event's delivery to one endpoint, with retry state. At most one row per
-- (endpoint, event), so fan-out can be made idempotent with ON CONFLICT DO NOTHING.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    endpoint_id      TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  INTEGER NOT NULL,
    last_status_code INTEGER NULL,
    last_error       TEXT NULL,
    created_at       INTEGER NOT NULL,
    delivered_at     INTEGER NULL,
    UNIQUE (tenant_id, endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, event_id) REFERENCES outbox_events (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_tenant_status_next_idx ON webhook_deliveries (tenant_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_tenant_endpoint_created_idx ON webhook_deliveries (tenant_id, endpoint_id, created_at);
CREATE INDEX webhook_deliveries_tenant_event_idx ON webhook_deliveries (tenant_id, event_id);

-- ---------------------------------------------------------------------------
-- Audit
-- ---------------------------------------------------------------------------

-- Who did what to which resource. actor_user_id and target_id carry no foreign key:
-- the audit trail must outlive the users and resources it mentions.
CREATE TABLE audit_log (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    actor_kind    TEXT NOT NULL CHECK (actor_kind IN ('user', 'agent', 'system')),
    actor_user_id TEXT NULL,
    action        TEXT NOT NULL,
    target_kind   TEXT NOT NULL,
    target_id     TEXT NULL,
    detail        TEXT NOT NULL DEFAULT '{}',                    -- JSON
    created_at    INTEGER NOT NULL
);
CREATE INDEX audit_log_tenant_created_idx ON audit_log (tenant_id, created_at);
CREATE INDEX audit_log_tenant_target_idx ON audit_log (tenant_id, target_kind, target_id);

-- ---------------------------------------------------------------------------
-- Optional references: ON DELETE SET NULL (col), done by hand
-- ---------------------------------------------------------------------------
-- Each trigger clears, within the same tenant, the nullable columns that point at
-- the row about to be deleted. The composite key (NO ACTION) then finds no
-- referencing row, and tenant_id is never touched. This is the same effect as
-- PostgreSQL's `ON DELETE SET NULL (col)`.

CREATE TRIGGER users_null_optional_refs
BEFORE DELETE ON users
BEGIN
    UPDATE leads SET assigned_user_id = NULL
        WHERE tenant_id = OLD.tenant_id AND assigned_user_id = OLD.id;
    UPDATE conversations SET takeover_user_id = NULL
        WHERE tenant_id = OLD.tenant_id AND takeover_user_id = OLD.id;
    UPDATE messages SET sender_user_id = NULL
        WHERE tenant_id = OLD.tenant_id AND sender_user_id = OLD.id;
END;

CREATE TRIGGER agents_null_optional_refs
BEFORE DELETE ON agents
BEGIN
    UPDATE calls SET agent_id = NULL
        WHERE tenant_id = OLD.tenant_id AND agent_id = OLD.id;
END;

CREATE TRIGGER phone_numbers_null_optional_refs
BEFORE DELETE ON phone_numbers
BEGIN
    UPDATE calls SET phone_number_id = NULL
        WHERE tenant_id = OLD.tenant_id AND phone_number_id = OLD.id;
END;

CREATE TRIGGER leads_null_optional_refs
BEFORE DELETE ON leads
BEGIN
    UPDATE conversations SET lead_id = NULL
        WHERE tenant_id = OLD.tenant_id AND lead_id = OLD.id;
    UPDATE calls SET lead_id = NULL
        WHERE tenant_id = OLD.tenant_id AND lead_id = OLD.id;
END;

CREATE TRIGGER conversations_null_optional_refs
BEFORE DELETE ON conversations
BEGIN
    UPDATE calls SET conversation_id = NULL
        WHERE tenant_id = OLD.tenant_id AND conversation_id = OLD.id;
END;

CREATE TRIGGER calls_null_optional_refs
BEFORE DELETE ON calls
BEGIN
    UPDATE messages SET call_id = NULL
        WHERE tenant_id = OLD.tenant_id AND call_id = OLD.id;
    UPDATE usage_records SET call_id = NULL
        WHERE tenant_id = OLD.tenant_id AND call_id = OLD.id;
END;
