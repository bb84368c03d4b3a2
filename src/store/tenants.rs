//! Tenants: one business each, with the settings that bound its calls (timezone, business
//! hours, concurrent-call limit, monthly minute quota).

use std::collections::BTreeMap;

use actors::domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{now_ms, parse_id, parse_json, to_json, Actor, Scope, Store, StoreError};

/// Opening hours per weekday (`mon` … `sun`), each a list of `["09:00", "17:30"]` spans in
/// the tenant's timezone. A missing day is closed.
pub type BusinessHours = BTreeMap<String, Vec<[String; 2]>>;

/// A tenant as staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Tenant {
    /// The tenant's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: TenantId,
    /// Display name, used by the agent ("Thanks for calling Acme Motors").
    pub name: String,
    /// IANA timezone for business hours and local times (`America/Chicago`).
    pub timezone: String,
    /// Opening hours per weekday.
    #[schema(value_type = Object)]
    pub business_hours: BusinessHours,
    /// Most calls that may be live at once; more are refused politely.
    pub concurrent_call_limit: i64,
    /// Call minutes allowed per calendar month; `null` is unlimited.
    pub monthly_minute_quota: Option<i64>,
    /// How the agent answers texts: through Twilio's REST API (`rest`, with delivery
    /// reports) or in the webhook's TwiML reply (`twiml`, no REST credentials used).
    pub sms_reply_mode: SmsReplyMode,
    /// When the tenant registered.
    pub created_at: DateTime<Utc>,
    /// Last change to these settings.
    pub updated_at: DateTime<Utc>,
}

/// A change to a tenant's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantPatch {
    /// New display name.
    pub name: Option<String>,
    /// New IANA timezone.
    pub timezone: Option<String>,
    /// New opening hours.
    pub business_hours: Option<BusinessHours>,
    /// New concurrent-call limit.
    pub concurrent_call_limit: Option<i64>,
    /// New minute quota; `Some(None)` removes the quota.
    pub monthly_minute_quota: Option<Option<i64>>,
    /// New way of answering texts.
    pub sms_reply_mode: Option<SmsReplyMode>,
}

/// How the agent's replies to texts are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmsReplyMode {
    /// A Messages.json request per reply, with a delivery status callback.
    Rest,
    /// A `<Message>` in the answer to Twilio's webhook.
    Twiml,
}

impl SmsReplyMode {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rest => "rest",
            Self::Twiml => "twiml",
        }
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    id: String,
    name: String,
    timezone: String,
    business_hours: String,
    concurrent_call_limit: i64,
    monthly_minute_quota: Option<i64>,
    sms_reply_mode: String,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: parse_id(&r.id)?,
            name: r.name,
            timezone: r.timezone,
            business_hours: parse_json(&r.business_hours)?,
            concurrent_call_limit: r.concurrent_call_limit,
            monthly_minute_quota: r.monthly_minute_quota,
            sms_reply_mode: match r.sms_reply_mode.as_str() {
                "twiml" => SmsReplyMode::Twiml,
                "rest" => SmsReplyMode::Rest,
                other => return Err(StoreError::Corrupt(format!("sms_reply_mode {other}"))),
            },
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

/// Reads a stored millisecond timestamp.
pub(crate) fn time_of(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("{ms} is not a time")))
}

const TENANT_COLUMNS: &str =
    "id, name, timezone, business_hours, concurrent_call_limit, monthly_minute_quota, sms_reply_mode, created_at, updated_at";

impl Store {
    /// The tenant's settings.
    pub async fn tenant(&self, tenant: TenantId) -> Result<Tenant, StoreError> {
        let mut tx = self.begin_read(Scope::Tenant(tenant)).await?;
        let row: Option<TenantRow> = sqlx::query_as(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"
        ))
        .bind(tenant.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.ok_or(StoreError::NotFound)?.try_into()
    }

    /// Applies `patch` and records the change in the audit log.
    pub async fn update_tenant(
        &self,
        tenant: TenantId,
        actor: Actor,
        patch: TenantPatch,
    ) -> Result<Tenant, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<TenantRow> = sqlx::query_as(&format!(
            "UPDATE tenants SET
                name = COALESCE($2, name),
                timezone = COALESCE($3, timezone),
                business_hours = COALESCE($4, business_hours),
                concurrent_call_limit = COALESCE($5, concurrent_call_limit),
                monthly_minute_quota = CASE WHEN $6 THEN $7 ELSE monthly_minute_quota END,
                sms_reply_mode = COALESCE($9, sms_reply_mode),
                updated_at = $8
             WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        ))
        .bind(tenant.to_string())
        .bind(patch.name.clone())
        .bind(patch.timezone.clone())
        .bind(patch.business_hours.as_ref().map(to_json))
        .bind(patch.concurrent_call_limit)
        .bind(patch.monthly_minute_quota.is_some())
        .bind(patch.monthly_minute_quota.flatten())
        .bind(now_ms())
        .bind(patch.sms_reply_mode.map(SmsReplyMode::as_str))
        .fetch_optional(&mut *tx)
        .await?;
        let updated: Tenant = row.ok_or(StoreError::NotFound)?.try_into()?;
        super::audit::record(
            &mut tx,
            tenant,
            actor,
            "tenant.updated",
            "tenant",
            Some(&tenant.to_string()),
            &patch,
        )
        .await?;
        tx.commit().await?;
        Ok(updated)
    }
}

/// The runtime reads a tenant's configuration from here when the tenant is first used and
/// whenever its settings change.
#[async_trait::async_trait]
impl actors::ports::TenantDirectory for Store {
    async fn tenant_config(
        &self,
        tenant: TenantId,
    ) -> actors::ports::PortResult<actors::ports::TenantConfig> {
        let read = async {
            let settings = self.tenant(tenant).await?;
            let agents = self.agents(tenant).await?;
            Ok::<_, StoreError>(actors::ports::TenantConfig {
                name: settings.name,
                timezone: settings.timezone,
                concurrent_call_limit: usize::try_from(settings.concurrent_call_limit).unwrap_or(0),
                agents: agents.iter().map(super::Agent::runtime_config).collect(),
            })
        };
        read.await.map_err(|e| e.into_port("tenant directory"))
    }
}
