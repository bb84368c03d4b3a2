-- switchboard: lead audit trail and callbacks (SQLite; mirrored by
-- migrations/postgres/0003_leads_callbacks.sql).
--
-- `lead_changes` is the per-lead audit trail: every change to a lead, by a staff member, by
-- the agent during a call or a text, or by post-call extraction, with each changed field's
-- old and new value. `callbacks` are calls the agent or staff booked for later; the
-- scheduler of any node claims a due row (status `scheduled` -> `placing`) in one
-- statement, so it is placed once even with several nodes running.
--
-- Ids that must outlive what they name (the staff member, the call, the agent) carry no
-- foreign key, like the audit log's. SQLite has no row-level security; the application's
-- tenant scoping is the wall, as for every table.

CREATE TABLE lead_changes (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lead_id    TEXT NOT NULL,
    actor_kind TEXT NOT NULL CHECK (actor_kind IN ('user', 'agent', 'system')),
    user_id    TEXT NULL,                                        -- the staff member (actor_kind user)
    call_id    TEXT NULL,                                        -- the call the agent changed it in
    changes    TEXT NOT NULL,                                    -- JSON: field -> {"from": …, "to": …}
    created_at BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, lead_id) REFERENCES leads (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX lead_changes_tenant_lead_created_idx ON lead_changes (tenant_id, lead_id, created_at);

CREATE TABLE callbacks (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_number TEXT NOT NULL,                               -- E.164
    lead_id         TEXT NULL,
    agent_id        TEXT NULL,                                   -- who calls; NULL: the agent of the number
    due_at          BIGINT NOT NULL,
    note            TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'placing', 'placed', 'failed', 'canceled')),
    requested_by    TEXT NOT NULL CHECK (requested_by IN ('user', 'agent')),
    user_id         TEXT NULL,                                   -- the staff member who booked it
    claimed_by      TEXT NULL,                                   -- the node placing it
    claimed_at      BIGINT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    call_id         TEXT NULL,                                   -- the call it became
    failure         TEXT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, id)
);
CREATE INDEX callbacks_tenant_due_idx ON callbacks (tenant_id, due_at);
-- The scheduler's scan across tenants (platform scope): due rows by status.
CREATE INDEX callbacks_status_due_idx ON callbacks (status, due_at);
