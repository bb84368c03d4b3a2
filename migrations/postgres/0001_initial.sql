-- switchboard: initial schema (PostgreSQL).
--
-- Conventions (kept identical to migrations/sqlite/0001_initial.sql, because the
-- Rust code reads both through sqlx's `Any` driver):
--   * ids are TEXT (UUID v7 strings made by the application);
--   * timestamps are BIGINT unix epoch milliseconds, column names end in `_at`;
--   * every integer is BIGINT and floats are DOUBLE PRECISION;
--   * flags are BIGINT 0/1 with CHECK (col IN (0, 1)), not BOOLEAN: sqlx's `Any` driver
--     (0.8) cannot read a SQLite BOOLEAN column at all, and through `Any` a Rust `bool`
--     decodes only from a PostgreSQL boolean. An integer reads back as i64 on both
--     backends, so bind and read these columns as i64 0/1;
--   * JSON is stored as TEXT; enums are TEXT with a CHECK constraint.
--
-- Tenancy: every tenant-owned table carries `tenant_id` and every secondary index
-- leads with it. Tables that other tables point at have UNIQUE (tenant_id, id), and
-- references between tenant-owned rows are COMPOSITE foreign keys
-- (tenant_id, x_id) -> x (tenant_id, id), so the database refuses a reference to
-- another tenant's row. Optional references use `ON DELETE SET NULL (x_id)`
-- (PostgreSQL 15+) so only the reference column, never tenant_id, is nulled.
--
-- Row-level security is the second wall: the application runs as (or SET ROLEs
-- to) `switchboard_app`, sets `app.tenant_id` per transaction with
-- set_config('app.tenant_id', $1, true), and sets `app.scope` = 'platform' only for
-- the few deliberate cross-tenant lookups (login by email, refresh-token lookup,
-- Twilio routing by number).

-- ---------------------------------------------------------------------------
-- Application role
-- ---------------------------------------------------------------------------

-- The role is cluster-wide while this migration runs once per database, so parallel
-- test databases may race to create it: check first, and tolerate losing the race.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'switchboard_app') THEN
        BEGIN
            CREATE ROLE switchboard_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently by another migration
        END;
    END IF;
END
$$;

-- Let the migrating (login) user SET ROLE switchboard_app. Superusers do not need
-- the membership and a concurrent grant may collide, so any failure is ignored here.
DO $$
BEGIN
    EXECUTE format('GRANT switchboard_app TO %I', current_user);
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;

GRANT USAGE ON SCHEMA public TO switchboard_app;
-- Read-only: the app may check the migration state but never rewrite it.
GRANT SELECT ON _sqlx_migrations TO switchboard_app;

-- ---------------------------------------------------------------------------
-- Tenants and people
-- ---------------------------------------------------------------------------

-- A business using switchboard; the root of every tenant-owned row.
CREATE TABLE tenants (
    id                    TEXT PRIMARY KEY,
    name                  TEXT NOT NULL,
    timezone              TEXT NOT NULL DEFAULT 'UTC',
    business_hours        TEXT NOT NULL DEFAULT '{}',          -- JSON
    concurrent_call_limit BIGINT NOT NULL DEFAULT 10 CHECK (concurrent_call_limit >= 0),
    monthly_minute_quota  BIGINT NULL CHECK (monthly_minute_quota >= 0), -- NULL = unlimited
    sms_reply_mode        TEXT NOT NULL DEFAULT 'rest' CHECK (sms_reply_mode IN ('rest', 'twiml')),
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL
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
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
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
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NULL,
    revoked_at BIGINT NULL,
    created_at BIGINT NOT NULL,
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
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NULL,
    created_at BIGINT NOT NULL,
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
    auto_retrieval      BIGINT NOT NULL DEFAULT 1 CHECK (auto_retrieval IN (0, 1)),       -- flag
    retrieval_budget_ms BIGINT NOT NULL DEFAULT 150 CHECK (retrieval_budget_ms >= 0),
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX agents_tenant_name_idx ON agents (tenant_id, name);

-- A tenant's Twilio number (E.164, unique platform-wide: calls and texts are routed
-- by the dialled number) and the agent that answers it. An agent that still has
-- numbers cannot be deleted (RESTRICT; the API answers 409).
CREATE TABLE phone_numbers (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number     TEXT NOT NULL UNIQUE,
    agent_id   TEXT NOT NULL,
    label      TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id) ON DELETE RESTRICT
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
    assigned_user_id  TEXT NULL,
    custom_fields     TEXT NOT NULL DEFAULT '{}',                -- JSON
    last_contact_at   BIGINT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, phone),
    FOREIGN KEY (tenant_id, assigned_user_id) REFERENCES users (tenant_id, id)
        ON DELETE SET NULL (assigned_user_id)
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
    lead_id                       TEXT NULL,
    summary                       TEXT NOT NULL DEFAULT '',
    summarized_through_message_id TEXT NULL,                     -- no FK: a bookmark into messages
    takeover_user_id              TEXT NULL,
    takeover_at                   BIGINT NULL,
    last_message_at               BIGINT NULL,
    created_at                    BIGINT NOT NULL,
    updated_at                    BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    UNIQUE (tenant_id, customer_number),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id)
        ON DELETE SET NULL (lead_id),
    FOREIGN KEY (tenant_id, takeover_user_id) REFERENCES users (tenant_id, id)
        ON DELETE SET NULL (takeover_user_id)
);
CREATE INDEX conversations_tenant_last_message_idx ON conversations (tenant_id, last_message_at);
CREATE INDEX conversations_tenant_lead_idx ON conversations (tenant_id, lead_id);

-- ---------------------------------------------------------------------------
-- Calls
-- ---------------------------------------------------------------------------

-- One phone call (Twilio CallSid), its outcome, summary and extracted data. The
-- optional references survive deletion of the agent, number, conversation or lead.
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
    started_at      BIGINT NOT NULL,
    answered_at     BIGINT NULL,
    ended_at        BIGINT NULL,
    duration_ms     BIGINT NULL CHECK (duration_ms >= 0),
    end_reason      TEXT NULL,
    failure         TEXT NULL,
    summary         TEXT NULL,
    sentiment       TEXT NULL CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    extracted       TEXT NOT NULL DEFAULT '{}',                  -- JSON
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, id),
    FOREIGN KEY (tenant_id, agent_id) REFERENCES agents (tenant_id, id)
        ON DELETE SET NULL (agent_id),
    FOREIGN KEY (tenant_id, phone_number_id) REFERENCES phone_numbers (tenant_id, id)
        ON DELETE SET NULL (phone_number_id),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id)
        ON DELETE SET NULL (conversation_id),
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id)
        ON DELETE SET NULL (lead_id)
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
    seq                BIGINT NOT NULL CHECK (seq >= 0),
    speaker            TEXT NOT NULL CHECK (speaker IN ('caller', 'agent', 'staff', 'system')),
    text               TEXT NOT NULL,
    interrupted        BIGINT NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),          -- flag
    started_at         BIGINT NOT NULL,
    endpointing_ms     BIGINT NULL,
    stt_ms             BIGINT NULL,
    llm_first_token_ms BIGINT NULL,
    tts_first_byte_ms  BIGINT NULL,
    voice_to_voice_ms  BIGINT NULL,
    created_at         BIGINT NOT NULL,
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
    sender_user_id  TEXT NULL,
    body            TEXT NOT NULL DEFAULT '',
    media_urls      TEXT NOT NULL DEFAULT '[]',                  -- JSON array of URLs
    twilio_sid      TEXT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'received',            -- Twilio message status
    error_code      TEXT NULL,
    segments        BIGINT NOT NULL DEFAULT 1 CHECK (segments >= 0),
    call_id         TEXT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, sender_user_id) REFERENCES users (tenant_id, id)
        ON DELETE SET NULL (sender_user_id),
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id)
        ON DELETE SET NULL (call_id)
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
    size_bytes     BIGINT NOT NULL CHECK (size_bytes >= 0),
    sha256         TEXT NOT NULL,
    status         TEXT NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued', 'extracting', 'embedding', 'ready', 'failed')),
    failure_reason TEXT NULL,
    progress       DOUBLE PRECISION NOT NULL DEFAULT 0,
    chunk_count    BIGINT NOT NULL DEFAULT 0 CHECK (chunk_count >= 0),
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
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
    quantity    BIGINT NOT NULL,
    call_id     TEXT NULL,
    occurred_at BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id)
        ON DELETE SET NULL (call_id)
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
    enabled     BIGINT NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),                     -- flag
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
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
    created_at BIGINT NOT NULL,
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
    attempts         BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  BIGINT NOT NULL,
    last_status_code BIGINT NULL,
    last_error       TEXT NULL,
    created_at       BIGINT NOT NULL,
    delivered_at     BIGINT NULL,
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
    created_at    BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant_created_idx ON audit_log (tenant_id, created_at);
CREATE INDEX audit_log_tenant_target_idx ON audit_log (tenant_id, target_kind, target_id);

-- ---------------------------------------------------------------------------
-- Privileges and row-level security
-- ---------------------------------------------------------------------------

GRANT SELECT, INSERT, UPDATE, DELETE ON
    tenants, users, refresh_tokens, password_tokens, agents, phone_numbers, leads,
    conversations, calls, call_turns, messages, documents, usage_records,
    webhook_endpoints, outbox_events, webhook_deliveries
TO switchboard_app;

-- The audit trail is append-only for the application.
GRANT SELECT, INSERT ON audit_log TO switchboard_app;

-- One policy per table: a row is visible and writable only inside its own tenant
-- (app.tenant_id), or in the explicit platform scope. FORCE applies the policy to
-- the table owner too; superusers and BYPASSRLS roles are never subject to RLS.
-- current_setting(..., true) yields NULL or '' when unset, which matches nothing.
DO $$
DECLARE
    t    TEXT;
    cond TEXT := $c$(%I = current_setting('app.tenant_id', true)
                     OR current_setting('app.scope', true) = 'platform')$c$;
BEGIN
    FOREACH t IN ARRAY ARRAY[
        'tenants', 'users', 'refresh_tokens', 'password_tokens', 'agents', 'phone_numbers',
        'leads', 'conversations', 'calls', 'call_turns', 'messages', 'documents',
        'usage_records', 'webhook_endpoints', 'outbox_events', 'webhook_deliveries', 'audit_log'
    ]
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON %I USING ' || cond || ' WITH CHECK ' || cond,
            t,
            CASE WHEN t = 'tenants' THEN 'id' ELSE 'tenant_id' END,
            CASE WHEN t = 'tenants' THEN 'id' ELSE 'tenant_id' END
        );
    END LOOP;

    -- Guard: no table in this schema (other than sqlx's bookkeeping) may be left
    -- without row-level security.
    IF EXISTS (
        SELECT 1
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema()
          AND c.relkind = 'r'
          AND c.relname <> '_sqlx_migrations'
          AND NOT (c.relrowsecurity AND c.relforcerowsecurity)
    ) THEN
        RAISE EXCEPTION 'a table in schema % lacks forced row-level security', current_schema();
    END IF;
END
$$;
