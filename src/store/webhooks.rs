//! Outbound webhooks: a tenant's endpoints, the outbox of events for them, and one delivery
//! row per (endpoint, event) with its retry state, so nothing is lost when a receiver is
//! down or a node restarts.
//!
//! An event is written to `outbox_events` (in the transaction of the change it describes,
//! or by the event bus's webhook tap); the dispatcher fans each new event out into
//! deliveries for the endpoints that want its type, then claims due deliveries across
//! tenants in one statement, so several nodes never send one delivery at once.

use actors::domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{
    audit, now_ms, page_cursor, page_from_rows, parse_json, time_id_cursor, to_json, Actor, Scope,
    Store, StoreError,
};
use crate::settings::DatabaseKind;

/// How long a node may hold a claimed delivery before another may send it again: far
/// longer than one attempt's timeout.
pub const DELIVERY_LEASE_MS: i64 = 60_000;

/// A tenant's webhook endpoint as shown (never with its secret, which is shown once).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    /// The endpoint.
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Event types it receives (`call.*` matches every type starting `call.`; `*` all).
    pub event_types: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What an endpoint is configured with, already checked.
#[derive(Debug, Clone)]
pub struct EndpointDraft {
    /// Where to POST.
    pub url: String,
    /// Types or `prefix.*` patterns.
    pub event_types: Vec<String>,
    /// Whether deliveries are made.
    pub enabled: bool,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WebhookDelivery {
    /// The delivery.
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// The event (the `webhook-id` header; the same on every attempt).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// `pending` (waiting for its next attempt), `delivered` or `failed` (given up).
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the last attempt was made.
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// The receiver's last HTTP status.
    pub last_status_code: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the delivery was created.
    pub created_at: DateTime<Utc>,
    /// When the receiver accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryPage {
    /// The deliveries.
    pub items: Vec<WebhookDelivery>,
    /// Pass as `cursor` for the next page.
    pub next_cursor: Option<String>,
}

/// A delivery claimed for sending, with what sending needs.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// The delivery.
    pub id: String,
    /// Whose.
    pub tenant: TenantId,
    /// The event's id (`webhook-id`).
    pub event_id: String,
    /// The event's type.
    pub event_type: String,
    /// The event's payload (JSON).
    pub payload: String,
    /// When the event happened (Unix ms).
    pub event_created_at: i64,
    /// The attempt this is, from 1.
    pub attempt: i64,
    /// When the delivery was created (Unix ms): retries stop a day after.
    pub created_at: i64,
    /// Where to send.
    pub url: String,
    /// The endpoint's signing secret (`whsec_…`).
    pub secret: String,
}

/// An event waiting to be fanned out.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NewOutboxEvent {
    /// The event.
    pub id: String,
    /// Whose.
    pub tenant_id: String,
    /// Its type.
    pub event_type: String,
    /// When (Unix ms).
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct EndpointRow {
    id: String,
    url: String,
    event_types: String,
    enabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<EndpointRow> for WebhookEndpoint {
    type Error = StoreError;
    fn try_from(r: EndpointRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: super::parse_id(&r.id)?,
            url: r.url,
            event_types: parse_json(&r.event_types)?,
            enabled: r.enabled != 0,
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

const ENDPOINT_COLUMNS: &str = "id, url, event_types, enabled, created_at, updated_at";

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: String,
    event_id: String,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_attempt_at: Option<i64>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    delivered_at: Option<i64>,
}

impl TryFrom<DeliveryRow> for WebhookDelivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: super::parse_id(&r.id)?,
            event_id: r.event_id,
            event_type: r.event_type,
            next_attempt_at: (r.status == "pending")
                .then(|| time_of(r.next_attempt_at))
                .transpose()?,
            status: r.status,
            attempts: r.attempts,
            last_attempt_at: r.last_attempt_at.map(time_of).transpose()?,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            created_at: time_of(r.created_at)?,
            delivered_at: r.delivered_at.map(time_of).transpose()?,
        })
    }
}

const DELIVERY_COLUMNS: &str =
    "d.id, d.event_id, e.event_type, d.status, d.attempts, d.next_attempt_at,
    d.last_attempt_at, d.last_status_code, d.last_error, d.created_at, d.delivered_at";

#[derive(sqlx::FromRow)]
struct DueRow {
    id: String,
    tenant_id: String,
    event_id: String,
    event_type: String,
    payload: String,
    event_created_at: i64,
    attempts: i64,
    created_at: i64,
    url: String,
    secret: String,
}

/// Writes an event for webhooks inside `tx` (the transaction of the change it describes).
pub(crate) async fn enqueue_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant: TenantId,
    event_type: &str,
    payload: &serde_json::Value,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO outbox_events (id, tenant_id, event_type, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(event_type)
    .bind(to_json(payload))
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether an endpoint subscribed to `patterns` wants events of type `kind`.
pub fn wants(patterns: &[String], kind: &str) -> bool {
    patterns.iter().any(|p| {
        p == "*"
            || p == kind
            || p.strip_suffix('*')
                .is_some_and(|prefix| kind.starts_with(prefix))
    })
}

impl Store {
    /// The tenant's endpoints, oldest first.
    pub async fn webhook_endpoints(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(WebhookEndpoint::try_from).collect()
    }

    /// One endpoint of the tenant.
    pub async fn webhook_endpoint(
        &self,
        tenant: TenantId,
        id: uuid::Uuid,
    ) -> Result<WebhookEndpoint, StoreError> {
        self.owned_row::<EndpointRow, _>(
            tenant,
            ("webhook_endpoints", ENDPOINT_COLUMNS),
            &id.to_string(),
        )
        .await
    }

    /// Creates an endpoint signing with `secret`.
    pub async fn create_webhook_endpoint(
        &self,
        tenant: TenantId,
        actor: Actor,
        draft: &EndpointDraft,
        secret: &str,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        let row: EndpointRow = sqlx::query_as(&format!(
            "INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, secret, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(&draft.url)
        .bind(to_json(&draft.event_types))
        .bind(secret)
        .bind(i64::from(draft.enabled))
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let endpoint = WebhookEndpoint::try_from(row)?;
        let detail = serde_json::json!({"url": endpoint.url, "event_types": endpoint.event_types});
        let id = endpoint.id.to_string();
        audit::record(
            &mut tx,
            tenant,
            actor,
            "webhook.created",
            "webhook",
            Some(&id),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    /// Replaces an endpoint's configuration.
    pub async fn update_webhook_endpoint(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: uuid::Uuid,
        draft: &EndpointDraft,
    ) -> Result<WebhookEndpoint, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "UPDATE webhook_endpoints SET url = $3, event_types = $4, enabled = $5, updated_at = $6
             WHERE tenant_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(&draft.url)
        .bind(to_json(&draft.event_types))
        .bind(i64::from(draft.enabled))
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let endpoint = WebhookEndpoint::try_from(row.ok_or(StoreError::NotFound)?)?;
        let detail = serde_json::json!({"url": endpoint.url, "event_types": endpoint.event_types, "enabled": endpoint.enabled});
        audit::record(
            &mut tx,
            tenant,
            actor,
            "webhook.updated",
            "webhook",
            Some(&id.to_string()),
            &detail,
        )
        .await?;
        tx.commit().await?;
        Ok(endpoint)
    }

    /// Deletes an endpoint and its deliveries.
    pub async fn delete_webhook_endpoint(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: uuid::Uuid,
    ) -> Result<(), StoreError> {
        self.delete_one(
            tenant,
            actor,
            ("webhook_endpoints", "webhook"),
            &id.to_string(),
            None,
        )
        .await
    }

    /// Writes an event for the tenant's webhooks (the event bus's tap).
    pub async fn enqueue_webhook_event(
        &self,
        tenant: TenantId,
        event_type: &str,
        payload: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        enqueue_in(&mut tx, tenant, event_type, payload, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events not yet fanned out, oldest first, across tenants.
    pub async fn unfanned_events(&self, limit: u32) -> Result<Vec<NewOutboxEvent>, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let rows = sqlx::query_as(
            "SELECT id, tenant_id, event_type, created_at FROM outbox_events
             WHERE fanned_out = 0 ORDER BY created_at, id LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// Adds a delivery of `event` to each enabled endpoint of its tenant that wants its type
    /// and existed when it happened, and marks the event fanned out; safe to repeat.
    pub async fn fan_out(&self, event: &NewOutboxEvent) -> Result<usize, StoreError> {
        let tenant: TenantId = super::parse_id(&event.tenant_id)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let endpoints: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, event_types FROM webhook_endpoints
             WHERE tenant_id = $1 AND enabled = 1 AND created_at <= $2",
        )
        .bind(&event.tenant_id)
        .bind(event.created_at)
        .fetch_all(&mut *tx)
        .await?;
        let mut added = 0;
        let now = now_ms();
        for (endpoint, types) in endpoints {
            let types: Vec<String> = parse_json(&types)?;
            if !wants(&types, &event.event_type) {
                continue;
            }
            added += sqlx::query(
                "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5) ON CONFLICT (tenant_id, endpoint_id, event_id) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&event.tenant_id)
            .bind(&endpoint)
            .bind(&event.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        sqlx::query("UPDATE outbox_events SET fanned_out = 1 WHERE tenant_id = $1 AND id = $2")
            .bind(&event.tenant_id)
            .bind(&event.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(added)
    }

    /// Claims up to `limit` due deliveries across tenants for sending: each is leased for
    /// [`DELIVERY_LEASE_MS`] (a node that dies mid-send leaves it due again then) and counts
    /// an attempt.
    pub async fn claim_due_deliveries(&self, limit: u32) -> Result<Vec<DueDelivery>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin(Scope::Platform).await?;
        let lock = match self.kind {
            DatabaseKind::Postgres => "FOR UPDATE SKIP LOCKED",
            DatabaseKind::Sqlite => "",
        };
        let claimed: Vec<(String,)> = sqlx::query_as(&format!(
            "UPDATE webhook_deliveries SET next_attempt_at = $1, attempts = attempts + 1, last_attempt_at = $2
             WHERE id IN (
                SELECT id FROM webhook_deliveries
                WHERE status = 'pending' AND next_attempt_at <= $2
                ORDER BY next_attempt_at LIMIT $3 {lock})
               AND status = 'pending' AND next_attempt_at <= $2
             RETURNING id"
        ))
        .bind(now + DELIVERY_LEASE_MS)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut due = Vec::with_capacity(claimed.len());
        for (id,) in claimed {
            let row: DueRow = sqlx::query_as(
                "SELECT d.id, d.tenant_id, d.event_id, e.event_type, e.payload, e.created_at AS event_created_at,
                    d.attempts, d.created_at, w.url, w.secret
                 FROM webhook_deliveries d
                 JOIN outbox_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
                 JOIN webhook_endpoints w ON w.tenant_id = d.tenant_id AND w.id = d.endpoint_id
                 WHERE d.id = $1",
            )
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            due.push(DueDelivery {
                id: row.id,
                tenant: super::parse_id(&row.tenant_id)?,
                event_id: row.event_id,
                event_type: row.event_type,
                payload: row.payload,
                event_created_at: row.event_created_at,
                attempt: row.attempts,
                created_at: row.created_at,
                url: row.url,
                secret: row.secret,
            });
        }
        tx.commit().await?;
        Ok(due)
    }

    /// Records an attempt's outcome: delivered, due again at `retry_at`, or given up
    /// (`retry_at` `None`).
    pub async fn record_delivery_attempt(
        &self,
        delivery: &DueDelivery,
        delivered: bool,
        (status_code, error): (Option<u16>, Option<&str>),
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let (status, next) = match (delivered, retry_at) {
            (true, _) => ("delivered", now),
            (false, Some(at)) => ("pending", at),
            (false, None) => ("failed", now),
        };
        let mut tx = self.begin(Scope::Tenant(delivery.tenant)).await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, last_status_code = $5,
                last_error = $6, delivered_at = CASE WHEN $3 = 'delivered' THEN $7 ELSE delivered_at END
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(delivery.tenant.to_string())
        .bind(&delivery.id)
        .bind(status)
        .bind(next)
        .bind(status_code.map(i64::from))
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An endpoint's deliveries, newest first.
    pub async fn webhook_deliveries(
        &self,
        tenant: TenantId,
        endpoint: uuid::Uuid,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<DeliveryPage, StoreError> {
        self.webhook_endpoint(tenant, endpoint).await?;
        let after = page_cursor(cursor)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d
             JOIN outbox_events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
             WHERE d.tenant_id = $1 AND d.endpoint_id = $2
               AND ($3 IS NULL OR d.created_at < $3 OR (d.created_at = $3 AND d.id < $4))
             ORDER BY d.created_at DESC, d.id DESC LIMIT $5"
        ))
        .bind(tenant.to_string())
        .bind(endpoint.to_string())
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id.to_string()).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let (items, next_cursor) = page_from_rows(rows, limit, |d: &WebhookDelivery| {
            time_id_cursor(d.created_at.timestamp_millis(), d.id)
        })?;
        Ok(DeliveryPage { items, next_cursor })
    }

    /// Sends a delivery again now, whatever became of it (staff's "redeliver").
    pub async fn redeliver(
        &self,
        tenant: TenantId,
        endpoint: uuid::Uuid,
        delivery: uuid::Uuid,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let updated = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $4, created_at = $4
             WHERE tenant_id = $1 AND endpoint_id = $2 AND id = $3",
        )
        .bind(tenant.to_string())
        .bind(endpoint.to_string())
        .bind(delivery.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_types_prefixes_and_everything() {
        let patterns = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants(&patterns(&["call.*"]), "call.ended"));
        assert!(!wants(&patterns(&["call.*"]), "sms.sent"));
        assert!(wants(
            &patterns(&["sms.sent", "lead.updated"]),
            "lead.updated"
        ));
        assert!(wants(&patterns(&["*"]), "document.status"));
        assert!(!wants(&patterns(&[]), "call.ended"));
    }
}
