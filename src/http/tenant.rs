//! `/v1/tenant` (the caller's own tenant's settings) and `/v1/audit-log` (who changed what).

use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, Query, Staff};
use super::{validate, AppState};
use crate::store::{AuditEntry, BusinessHours, SmsReplyMode, Tenant, TenantPatch};

/// Changes to the tenant's settings; absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    /// Display name.
    pub name: Option<String>,
    /// IANA timezone.
    #[schema(example = "America/Chicago")]
    pub timezone: Option<String>,
    /// Opening hours per weekday: `{"mon": [["09:00", "17:00"]], …}`.
    #[schema(value_type = Option<Object>)]
    pub business_hours: Option<BusinessHours>,
    /// Most calls live at once (1–10000).
    pub concurrent_call_limit: Option<i64>,
    /// Call minutes per month; `null` removes the quota.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<i64>)]
    pub monthly_minute_quota: Option<Option<i64>>,
    /// How the agent answers texts: `rest` (Twilio's REST API, with delivery reports) or
    /// `twiml` (in the webhook's answer).
    pub sms_reply_mode: Option<SmsReplyMode>,
}

/// The tenant's settings.
#[utoipa::path(get, path = "/v1/tenant", tag = "tenant", security(("bearer" = [])),
    responses((status = 200, body = Tenant)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<Tenant>, ApiError> {
    Ok(axum::Json(state.store.tenant(staff.tenant()).await?))
}

/// Changes the tenant's settings (owner or admin).
#[utoipa::path(patch, path = "/v1/tenant", tag = "tenant", security(("bearer" = [])), request_body = TenantUpdate,
    responses((status = 200, body = Tenant), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    staff: Staff,
    Json(req): Json<TenantUpdate>,
) -> Result<axum::Json<Tenant>, ApiError> {
    staff.require_admin()?;
    let patch = TenantPatch {
        name: req
            .name
            .map(|n| validate::text("name", &n, 1, 100))
            .transpose()?,
        timezone: req
            .timezone
            .map(|t| validate::timezone("timezone", &t))
            .transpose()?,
        business_hours: req
            .business_hours
            .map(|h| validate::business_hours("business_hours", h))
            .transpose()?,
        concurrent_call_limit: req
            .concurrent_call_limit
            .map(|n| validate::range("concurrent_call_limit", n, 1, 10_000))
            .transpose()?,
        monthly_minute_quota: req
            .monthly_minute_quota
            .map(|q| {
                q.map(|n| validate::range("monthly_minute_quota", n, 0, 100_000_000))
                    .transpose()
            })
            .transpose()?,
        sms_reply_mode: req.sms_reply_mode,
    };
    let tenant = state
        .store
        .update_tenant(staff.tenant(), staff.actor(), patch)
        .await?;
    state.tenant_changed(staff.tenant());
    Ok(axum::Json(tenant))
}

/// How much of the audit log to read.
#[derive(Deserialize, IntoParams)]
pub struct AuditQuery {
    /// Newest entries to return (1–500, default 100).
    pub limit: Option<i64>,
}

/// Entries of the audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub items: Vec<AuditEntry>,
}

/// The tenant's audit trail, newest first (owner or admin).
#[utoipa::path(get, path = "/v1/audit-log", tag = "tenant", security(("bearer" = [])), params(AuditQuery),
    responses((status = 200, body = AuditList), (status = 403, body = Problem)))]
pub async fn audit_log(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditList>, ApiError> {
    staff.require_admin()?;
    let limit = validate::range("limit", query.limit.unwrap_or(100), 1, 500)?;
    Ok(axum::Json(AuditList {
        items: state.store.audit_log(staff.tenant(), limit).await?,
    }))
}
