-- switchboard: outbound webhook delivery and tool-call counts (sqlite; mirrored by the other
-- backend's 0005).
--
-- Events reach webhook endpoints through the outbox: an event is written to
-- outbox_events (fanned_out = 0), the dispatcher of any node adds one delivery per
-- endpoint that wants it (endpoints created after the event are not sent it) and sets
-- fanned_out = 1. Deliveries are claimed across tenants by due time, so they get an index
-- that does not start with the tenant.

ALTER TABLE outbox_events ADD COLUMN fanned_out INTEGER NOT NULL DEFAULT 0 CHECK (fanned_out IN (0, 1));
CREATE INDEX outbox_events_fanned_out_created_idx ON outbox_events (fanned_out, created_at);
ALTER TABLE webhook_deliveries ADD COLUMN last_attempt_at INTEGER NULL;
CREATE INDEX webhook_deliveries_status_next_idx ON webhook_deliveries (status, next_attempt_at);

-- The tools an agent called during calls, one row per call of a tool, for analytics.
CREATE TABLE call_tool_calls (
    id         TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    call_id    TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, call_id) REFERENCES calls (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX call_tool_calls_tenant_created_idx ON call_tool_calls (tenant_id, created_at);
