//! The audit log: who changed what, written in the same transaction as the change so the
//! trail and the data can never disagree.

use actors::domain::{TenantId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Any, Transaction};

use super::tenants::time_of;
use super::{now_ms, parse_json, to_json, Scope, Store, StoreError};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A staff member, through the API or the dashboard.
    User(UserId),
    /// The voice or SMS agent, through a tool call or post-call extraction.
    Agent,
    /// switchboard itself (sign-up, expiry, a Twilio callback).
    System,
}

impl Actor {
    fn kind(self) -> &'static str {
        match self {
            Actor::User(_) => "user",
            Actor::Agent => "agent",
            Actor::System => "system",
        }
    }

    fn user_id(self) -> Option<String> {
        match self {
            Actor::User(id) => Some(id.to_string()),
            _ => None,
        }
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// `user`, `agent` or `system`.
    pub actor_kind: String,
    /// The staff member, when a person acted.
    pub actor_user_id: Option<String>,
    /// What happened, as `noun.verb` (`agent.updated`).
    pub action: String,
    /// The kind of thing it happened to.
    pub target_kind: String,
    /// Its id, when it has one.
    pub target_id: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    /// When.
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    actor_kind: String,
    actor_user_id: Option<String>,
    action: String,
    target_kind: String,
    target_id: Option<String>,
    detail: String,
    created_at: i64,
}

/// Appends one entry inside the caller's transaction.
pub(crate) async fn record(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    actor: Actor,
    action: &str,
    target_kind: &str,
    target_id: Option<&str>,
    detail: &impl Serialize,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor_kind, actor_user_id, action, target_kind, target_id, detail, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(actor.kind())
    .bind(actor.user_id())
    .bind(action)
    .bind(target_kind)
    .bind(target_id.map(str::to_owned))
    .bind(to_json(detail))
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Store {
    /// The tenant's most recent audit entries, newest first.
    pub async fn audit_log(
        &self,
        tenant: TenantId,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<AuditRow> = sqlx::query_as(
            "SELECT actor_kind, actor_user_id, action, target_kind, target_id, detail, created_at
             FROM audit_log WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        )
        .bind(tenant.to_string())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditEntry {
                    actor_kind: r.actor_kind,
                    actor_user_id: r.actor_user_id,
                    action: r.action,
                    target_kind: r.target_kind,
                    target_id: r.target_id,
                    detail: parse_json(&r.detail)?,
                    created_at: time_of(r.created_at)?,
                })
            })
            .collect()
    }
}
