//! Callbacks: calls the agent (through its `schedule_callback` tool) or a staff member booked
//! for later, and the scheduler's side of placing them.
//!
//! A callback is `scheduled` until it is due; a node's scheduler then claims it (`placing`,
//! stamped with the node and the time) in one statement, places the call, and marks it
//! `placed` with the call's id or `failed` with a reason. Staff may cancel it while it is
//! still `scheduled`.
//!
//! Delivery is **once in normal operation and at most [`MAX_CALLBACK_ATTEMPTS`] dials in
//! the worst case**. The claim is atomic (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one
//! writer at a time), so two nodes never claim the same row. A transient failure (the tenant
//! at its call limit, Twilio unreachable) puts the row back to `scheduled` a little later.
//! A row left in `placing` longer than [`CALLBACK_LEASE_MS`] means its node died mid-way; it
//! is claimed again, which may dial a second time if the dead node had already reached
//! Twilio. We accept that (a customer rarely minds a second ring, but always minds a
//! promised call that never comes) and bound it by the attempt count: a row is claimed at
//! most [`MAX_CALLBACK_ATTEMPTS`] times, after which it is `failed`.

use actors::domain::{AgentId, CallId, LeadId, TenantId, UserId, E164};
use actors::ports::{PortError, PortResult};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{
    audit, now_ms, page_cursor, page_from_rows, parse_id, time_id_cursor, Actor, Scope, Store,
    StoreError,
};
use crate::settings::DatabaseKind;

/// Most times a callback is claimed (first dial, retries, reclaims after a node died).
pub const MAX_CALLBACK_ATTEMPTS: i64 = 3;

/// How long a node may hold a callback in `placing` before another node may take it over.
/// Far longer than placing a call takes (the Twilio request alone times out in 10 s).
pub const CALLBACK_LEASE_MS: i64 = 120_000;

/// Where a callback is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallbackStatus {
    /// Waiting for its time.
    Scheduled,
    /// A node is placing the call now.
    Placing,
    /// The call was placed; `call_id` names it.
    Placed,
    /// It will not be placed; `failure` says why.
    Failed,
    /// Staff canceled it before it was placed.
    Canceled,
}

impl CallbackStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Placing => "placing",
            Self::Placed => "placed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    fn parse(raw: &str) -> Result<Self, StoreError> {
        Ok(match raw {
            "scheduled" => Self::Scheduled,
            "placing" => Self::Placing,
            "placed" => Self::Placed,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            other => return Err(StoreError::Corrupt(format!("callback status `{other}`"))),
        })
    }
}

/// Who booked a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRequester {
    /// A staff member, through the API.
    Staff(UserId),
    /// The agent, through its `schedule_callback` tool.
    Agent,
}

/// A callback to book.
#[derive(Debug, Clone)]
pub struct NewCallback {
    /// Whom to call.
    pub customer: E164,
    /// When, in Unix milliseconds.
    pub due_at_ms: i64,
    /// Why, for the agent and for staff.
    pub note: String,
    /// Who talks; `None`: the agent of the tenant's first number.
    pub agent: Option<AgentId>,
    /// Who booked it.
    pub requested_by: CallbackRequester,
}

/// A callback as stored and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Callback {
    /// The callback's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: uuid::Uuid,
    /// The tenant it belongs to.
    #[serde(skip)]
    pub tenant: TenantId,
    /// The customer to call, E.164.
    #[schema(value_type = String, example = "+14155550123")]
    pub customer_number: E164,
    /// The customer's lead, when one had this number at booking time.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub lead_id: Option<LeadId>,
    /// Who talks; `null`: the agent of the tenant's first number.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub agent_id: Option<AgentId>,
    /// When the call is due.
    pub due_at: DateTime<Utc>,
    /// Why the customer wants the call.
    pub note: String,
    /// Where it is in its life.
    pub status: CallbackStatus,
    /// `user` (staff) or `agent`.
    pub requested_by: String,
    /// The staff member who booked it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub user_id: Option<UserId>,
    /// Times a node has claimed it.
    pub attempts: i64,
    /// The call it became.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub call_id: Option<CallId>,
    /// Why it failed (or, while retried, why the last try did).
    pub failure: Option<String>,
    /// When it was booked.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct CallbackRow {
    id: String,
    tenant_id: String,
    customer_number: String,
    lead_id: Option<String>,
    agent_id: Option<String>,
    due_at: i64,
    note: String,
    status: String,
    requested_by: String,
    user_id: Option<String>,
    attempts: i64,
    call_id: Option<String>,
    failure: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CallbackRow> for Callback {
    type Error = StoreError;
    fn try_from(r: CallbackRow) -> Result<Self, StoreError> {
        Ok(Callback {
            id: parse_id(&r.id)?,
            tenant: parse_id(&r.tenant_id)?,
            customer_number: E164::parse(&r.customer_number)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            lead_id: r.lead_id.as_deref().map(parse_id).transpose()?,
            agent_id: r.agent_id.as_deref().map(parse_id).transpose()?,
            due_at: time_of(r.due_at)?,
            note: r.note,
            status: CallbackStatus::parse(&r.status)?,
            requested_by: r.requested_by,
            user_id: r.user_id.as_deref().map(parse_id).transpose()?,
            attempts: r.attempts,
            call_id: r.call_id.as_deref().map(parse_id).transpose()?,
            failure: r.failure,
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

/// A page of callbacks, soonest due first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallbackPage {
    /// The callbacks, soonest due first.
    pub items: Vec<Callback>,
    /// Pass as `cursor` for the next page; `None` on the last one.
    pub next_cursor: Option<String>,
}

const CALLBACK_COLUMNS: &str = "id, tenant_id, customer_number, lead_id, agent_id, due_at, note, status, requested_by, user_id, attempts, call_id, failure, created_at, updated_at";

/// The position after `callback` in due order, as an opaque cursor.
fn cursor_of(callback: &Callback) -> String {
    time_id_cursor(callback.due_at.timestamp_millis(), callback.id)
}

/// Resolves the time an agent gave for a callback: ISO 8601 with a UTC offset
/// (`2026-03-02T15:00:00-06:00`), or a local date and time (`2026-03-02T15:00`) in the
/// tenant's `timezone`. The error is written for the model, which asks the customer again.
pub fn resolve_callback_time(
    raw: &str,
    timezone: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    let zone: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let local_now = now.with_timezone(&zone).format("%Y-%m-%dT%H:%M");
    let raw = raw.trim();
    let due = match DateTime::parse_from_rfc3339(raw) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => {
            let naive = [
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%dT%H:%M",
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%d %H:%M",
            ]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(raw, format).ok())
            .ok_or_else(|| {
                format!(
                    "`{raw}` is not an ISO 8601 date and time; give one like {local_now} \
                         (local time in {zone}, where it is now {local_now})"
                )
            })?;
            zone.from_local_datetime(&naive)
                .earliest()
                .ok_or_else(|| format!("{raw} does not exist in {zone} (the clocks skip it)"))?
                .with_timezone(&Utc)
        }
    };
    if due < now {
        return Err(format!(
            "{raw} is in the past: it is now {local_now} in {zone}"
        ));
    }
    Ok(due)
}

impl Store {
    /// Books a callback, linking the customer's lead when the tenant has one with that
    /// number, and records it in the audit log and as a `callback.requested` event.
    pub async fn create_callback(
        &self,
        tenant: TenantId,
        new: &NewCallback,
    ) -> Result<Callback, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let lead: Option<String> =
            sqlx::query_scalar("SELECT id FROM leads WHERE tenant_id = $1 AND phone = $2")
                .bind(tenant.to_string())
                .bind(new.customer.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let (requested_by, user, actor) = match new.requested_by {
            CallbackRequester::Staff(user) => ("user", Some(user.to_string()), Actor::User(user)),
            CallbackRequester::Agent => ("agent", None, Actor::Agent),
        };
        let now = now_ms();
        let row: CallbackRow = sqlx::query_as(&format!(
            "INSERT INTO callbacks (id, tenant_id, customer_number, lead_id, agent_id, due_at, note,
                requested_by, user_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {CALLBACK_COLUMNS}"
        ))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(tenant.to_string())
        .bind(new.customer.to_string())
        .bind(lead)
        .bind(new.agent.map(|a| a.to_string()))
        .bind(new.due_at_ms)
        .bind(&new.note)
        .bind(requested_by)
        .bind(user)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let callback = Callback::try_from(row)?;
        let detail = serde_json::json!({
            "id": callback.id,
            "customer": callback.customer_number,
            "due_at": callback.due_at,
            "note": callback.note,
            "requested_by": requested_by,
        });
        let id = callback.id.to_string();
        audit::record(
            &mut tx,
            tenant,
            actor,
            "callback.created",
            "callback",
            Some(&id),
            &detail,
        )
        .await?;
        super::webhooks::enqueue_in(&mut tx, tenant, "callback.requested", &detail, now).await?;
        tx.commit().await?;
        Ok(callback)
    }

    /// The tenant's callbacks, soonest due first (the order staff work through them), with
    /// an optional status filter; `limit` per page, continuing after `cursor`.
    pub async fn callbacks(
        &self,
        tenant: TenantId,
        status: Option<CallbackStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<CallbackPage, StoreError> {
        let after = page_cursor(cursor)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<CallbackRow> = sqlx::query_as(&format!(
            "SELECT {CALLBACK_COLUMNS} FROM callbacks
             WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR due_at > $3 OR (due_at = $3 AND id > $4))
             ORDER BY due_at, id LIMIT $5"
        ))
        .bind(tenant.to_string())
        .bind(status.map(CallbackStatus::as_str))
        .bind(after.map(|(due, _)| due))
        .bind(after.map(|(_, id)| id.to_string()).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let (items, next_cursor) = page_from_rows(rows, limit, cursor_of)?;
        Ok(CallbackPage { items, next_cursor })
    }

    /// One of the tenant's callbacks.
    pub async fn callback(&self, tenant: TenantId, id: uuid::Uuid) -> Result<Callback, StoreError> {
        let table = ("callbacks", CALLBACK_COLUMNS);
        self.owned_row::<CallbackRow, _>(tenant, table, &id.to_string())
            .await
    }

    /// Cancels a callback that is still `scheduled`; `Conflict` once a node has claimed it
    /// or it has ended, since the call may already be ringing.
    pub async fn cancel_callback(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: uuid::Uuid,
    ) -> Result<Callback, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<CallbackRow> = sqlx::query_as(&format!(
            "UPDATE callbacks SET status = 'canceled', updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND status = 'scheduled' RETURNING {CALLBACK_COLUMNS}"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT status FROM callbacks WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            return Err(match exists {
                Some(_) => StoreError::Conflict(
                    "only a scheduled callback can be canceled; this one is already being placed or has ended",
                ),
                None => StoreError::NotFound,
            });
        };
        let id = id.to_string();
        audit::record(
            &mut tx,
            tenant,
            actor,
            "callback.canceled",
            "callback",
            Some(&id),
            &serde_json::json!({}),
        )
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    /// The scheduler's claim, across tenants: moves up to `limit` due callbacks, and those
    /// whose node died while placing them (claimed longer than [`CALLBACK_LEASE_MS`] ago
    /// and not yet at [`MAX_CALLBACK_ATTEMPTS`]), to `placing` for `node`, in one statement,
    /// and returns them. Rows another node is claiming at the same moment are skipped, never
    /// shared.
    pub async fn claim_due_callbacks(
        &self,
        node: &str,
        limit: u32,
    ) -> Result<Vec<Callback>, StoreError> {
        let now = now_ms();
        let mut tx = self.begin(Scope::Platform).await?;
        // A row whose node died once too often gives up here rather than ringing again.
        sqlx::query(
            "UPDATE callbacks SET status = 'failed', failure = 'the node placing it stopped', updated_at = $1
             WHERE status = 'placing' AND claimed_at <= $2 AND attempts >= $3",
        )
        .bind(now)
        .bind(now - CALLBACK_LEASE_MS)
        .bind(MAX_CALLBACK_ATTEMPTS)
        .execute(&mut *tx)
        .await?;
        // PostgreSQL: the sub-select locks what it picks and skips what another node's
        // claim has locked. SQLite has one writer at a time, so the statement is atomic.
        let lock = match self.kind {
            DatabaseKind::Postgres => "FOR UPDATE SKIP LOCKED",
            DatabaseKind::Sqlite => "",
        };
        let rows: Vec<CallbackRow> = sqlx::query_as(&format!(
            "UPDATE callbacks SET status = 'placing', claimed_by = $1, claimed_at = $2,
                attempts = attempts + 1, updated_at = $2
             WHERE id IN (
                SELECT id FROM callbacks
                WHERE (status = 'scheduled' AND due_at <= $2)
                   OR (status = 'placing' AND claimed_at <= $3 AND attempts < $4)
                ORDER BY due_at LIMIT $5 {lock})
               AND (status = 'scheduled' OR (status = 'placing' AND claimed_at <= $3))
             RETURNING {CALLBACK_COLUMNS}"
        ))
        .bind(node)
        .bind(now)
        .bind(now - CALLBACK_LEASE_MS)
        .bind(MAX_CALLBACK_ATTEMPTS)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed = rows
            .into_iter()
            .map(Callback::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|c| c.due_at);
        Ok(claimed)
    }

    /// Marks a callback `node` claimed as placed, as the call `call`.
    pub async fn callback_placed(
        &self,
        callback: &Callback,
        node: &str,
        call: CallId,
    ) -> Result<(), StoreError> {
        self.finish_callback(callback, node, "placed", Some(call), None, None)
            .await
    }

    /// Records why placing a callback `node` claimed failed: with `retry_at` (Unix ms) it is
    /// `scheduled` again for then, otherwise `failed` for good.
    pub async fn callback_failed(
        &self,
        callback: &Callback,
        node: &str,
        reason: &str,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let status = if retry_at.is_some() {
            "scheduled"
        } else {
            "failed"
        };
        self.finish_callback(callback, node, status, None, Some(reason), retry_at)
            .await
    }

    /// Moves a claimed callback on, only while `node` still holds the claim (a node that
    /// lost its lease must not overwrite the node that took over).
    async fn finish_callback(
        &self,
        callback: &Callback,
        node: &str,
        status: &str,
        call: Option<CallId>,
        failure: Option<&str>,
        due_at: Option<i64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(callback.tenant)).await?;
        let updated = sqlx::query(
            "UPDATE callbacks SET status = $4, call_id = COALESCE($5, call_id), failure = $6,
                due_at = COALESCE($7, due_at), updated_at = $8
             WHERE tenant_id = $1 AND id = $2 AND status = 'placing' AND claimed_by = $3",
        )
        .bind(callback.tenant.to_string())
        .bind(callback.id.to_string())
        .bind(node)
        .bind(status)
        .bind(call.map(|c| c.to_string()))
        .bind(failure.map(str::to_owned))
        .bind(due_at)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        if updated == 0 {
            tracing::warn!(callback_id = %callback.id, node, status, "a callback's claim was lost before it was finished (its lease ran out)");
        }
        Ok(())
    }

    /// The `schedule_callback` tool's booking: `when` resolved in the tenant's timezone, the
    /// call given to the agent who last spoke with the customer (by phone), else left to
    /// the agent of the tenant's first number. Returns the booked time in the tenant's
    /// timezone; bad input is `Refused` with words for the model.
    pub(crate) async fn book_agent_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> PortResult<String> {
        let port = |e: StoreError| e.into_port("callbacks");
        let customer = E164::parse(customer)
            .map_err(|e| PortError::Refused(format!("this customer cannot be called back: {e}")))?;
        let zone = self.tenant(tenant).await.map_err(port)?.timezone;
        let due = resolve_callback_time(when, &zone, Utc::now()).map_err(PortError::Refused)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await.map_err(port)?;
        let agent: Option<String> = sqlx::query_scalar(
            "SELECT agent_id FROM calls WHERE tenant_id = $1 AND agent_id IS NOT NULL
                AND (from_number = $2 OR to_number = $2)
             ORDER BY started_at DESC LIMIT 1",
        )
        .bind(tenant.to_string())
        .bind(customer.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| port(e.into()))?;
        tx.commit().await.map_err(|e| port(e.into()))?;
        let new = NewCallback {
            customer,
            due_at_ms: due.timestamp_millis(),
            note: note.trim().to_owned(),
            agent: agent.as_deref().map(parse_id).transpose().map_err(port)?,
            requested_by: CallbackRequester::Agent,
        };
        self.create_callback(tenant, &new).await.map_err(port)?;
        let zone: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        Ok(due.with_timezone(&zone).to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(raw)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_local_time_is_read_in_the_tenants_timezone_and_an_offset_is_kept() {
        let now = at("2026-03-02T12:00:00Z");
        // Chicago is UTC-6 in early March.
        assert_eq!(
            resolve_callback_time("2026-03-02T15:00", "America/Chicago", now).unwrap(),
            at("2026-03-02T21:00:00Z")
        );
        assert_eq!(
            resolve_callback_time("2026-03-02 15:00:30", "America/Chicago", now).unwrap(),
            at("2026-03-02T21:00:30Z")
        );
        assert_eq!(
            resolve_callback_time("2026-03-02T15:00:00+01:00", "America/Chicago", now).unwrap(),
            at("2026-03-02T14:00:00Z")
        );
    }

    #[test]
    fn nonsense_and_past_times_are_refused_with_the_local_time_now() {
        let now = at("2026-03-02T12:00:00Z");
        let nonsense = resolve_callback_time("tomorrow at 3", "America/Chicago", now).unwrap_err();
        assert!(nonsense.contains("2026-03-02T06:00"), "{nonsense}");
        let past = resolve_callback_time("2026-03-02T05:00", "America/Chicago", now).unwrap_err();
        assert!(past.contains("in the past"), "{past}");
        // 02:30 on the day the clocks go forward does not exist in Chicago.
        let gap = resolve_callback_time("2026-03-08T02:30", "America/Chicago", now).unwrap_err();
        assert!(gap.contains("does not exist"), "{gap}");
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let id = uuid::Uuid::now_v7();
        let cursor = time_id_cursor(1700, id);
        assert_eq!(
            super::super::parse_time_id_cursor(&cursor),
            Some((1700, id))
        );
        assert_eq!(
            super::super::parse_time_id_cursor::<uuid::Uuid>("nonsense"),
            None
        );
        assert_eq!(
            super::super::parse_time_id_cursor::<uuid::Uuid>("1700_nonsense"),
            None
        );
    }
}
