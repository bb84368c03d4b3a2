//! Phone numbers a tenant has pointed at switchboard. A number belongs to one tenant across
//! the whole platform (it is how a call finds its tenant) and answers with one of that
//! tenant's agents; the database refuses a number pointing at another tenant's agent.

use actors::domain::{AgentId, PhoneNumberId, TenantId, E164};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{audit, now_ms, parse_id, Actor, Scope, Store, StoreError};

/// A number as stored and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    /// The number's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: PhoneNumberId,
    /// The number's configuration.
    #[serde(flatten)]
    pub draft: PhoneNumberDraft,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// What a number is configured with, already checked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneNumberDraft {
    /// The number in E.164.
    #[schema(value_type = String, example = "+14155550199")]
    pub number: E164,
    /// The agent that answers it.
    #[schema(value_type = String, format = Uuid)]
    pub agent_id: AgentId,
    /// A note for staff ("Service line").
    pub label: String,
}

#[derive(sqlx::FromRow)]
struct PhoneNumberRow {
    id: String,
    number: String,
    agent_id: String,
    label: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<PhoneNumberRow> for PhoneNumber {
    type Error = StoreError;
    fn try_from(r: PhoneNumberRow) -> Result<Self, StoreError> {
        Ok(PhoneNumber {
            id: parse_id(&r.id)?,
            draft: PhoneNumberDraft {
                number: E164::parse(&r.number).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                agent_id: parse_id(&r.agent_id)?,
                label: r.label,
            },
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

const NUMBER_COLUMNS: &str = "id, number, agent_id, label, created_at, updated_at";
const NUMBER_TAKEN: &str = "this number is already in use on switchboard";
const NO_SUCH_AGENT: &str = "agent_id does not name an agent of this tenant";

impl Store {
    /// Every number of the tenant, in number order.
    pub async fn phone_numbers(&self, tenant: TenantId) -> Result<Vec<PhoneNumber>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<PhoneNumberRow> = sqlx::query_as(&format!(
            "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE tenant_id = $1 ORDER BY number"
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(PhoneNumber::try_from).collect()
    }

    /// One number of the tenant.
    pub async fn phone_number(
        &self,
        tenant: TenantId,
        id: PhoneNumberId,
    ) -> Result<PhoneNumber, StoreError> {
        let table = ("phone_numbers", NUMBER_COLUMNS);
        self.owned_row::<PhoneNumberRow, _>(tenant, table, &id.to_string())
            .await
    }

    /// Adds a number, or (with `id`) changes which agent answers it and its label.
    pub async fn save_phone_number(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: Option<PhoneNumberId>,
        draft: &PhoneNumberDraft,
    ) -> Result<PhoneNumber, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let sql = match id {
            None => format!(
                "INSERT INTO phone_numbers (tenant_id, id, number, agent_id, label, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING {NUMBER_COLUMNS}"
            ),
            Some(_) => format!(
                "UPDATE phone_numbers SET number = $3, agent_id = $4, label = $5, updated_at = $6
                 WHERE tenant_id = $1 AND id = $2 RETURNING {NUMBER_COLUMNS}"
            ),
        };
        let row: Option<PhoneNumberRow> = sqlx::query_as(&sql)
            .bind(tenant.to_string())
            .bind(id.unwrap_or_default().to_string())
            .bind(draft.number.to_string())
            .bind(draft.agent_id.to_string())
            .bind(&draft.label)
            .bind(now_ms())
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::refused_as(
                Some(StoreError::Conflict(NUMBER_TAKEN)),
                Some(StoreError::BadReference(NO_SUCH_AGENT)),
            ))?;
        let number: PhoneNumber = row.ok_or(StoreError::NotFound)?.try_into()?;
        let action = if id.is_some() {
            "phone_number.updated"
        } else {
            "phone_number.created"
        };
        audit::record(
            &mut tx,
            tenant,
            actor,
            action,
            "phone_number",
            Some(&number.id.to_string()),
            &number.draft,
        )
        .await?;
        tx.commit().await?;
        Ok(number)
    }

    /// Removes a number; calls to it are no longer answered.
    pub async fn delete_phone_number(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: PhoneNumberId,
    ) -> Result<(), StoreError> {
        let table = ("phone_numbers", "phone_number");
        self.delete_one(tenant, actor, table, &id.to_string(), None)
            .await
    }
}

/// Where a dialled number leads: the only lookup that crosses tenants, because a call
/// arrives with nothing but the number it was made to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRoute {
    /// The tenant that owns the number.
    pub tenant: TenantId,
    /// The number's row.
    pub phone_number: PhoneNumberId,
    /// The agent that answers it.
    pub agent: AgentId,
}

impl Store {
    /// The tenant, number and agent a call to `number` belongs to, if any.
    pub async fn route_number(&self, number: &E164) -> Result<Option<NumberRoute>, StoreError> {
        let mut tx = self.begin_read(Scope::Platform).await?;
        let row: Option<(String, String, String)> =
            sqlx::query_as("SELECT tenant_id, id, agent_id FROM phone_numbers WHERE number = $1")
                .bind(number.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        row.map(|(tenant, id, agent)| {
            Ok(NumberRoute {
                tenant: parse_id(&tenant)?,
                phone_number: parse_id(&id)?,
                agent: parse_id(&agent)?,
            })
        })
        .transpose()
    }
}
