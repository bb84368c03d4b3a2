//! `/v1/phone-numbers`: the numbers a tenant has pointed at switchboard and the agent that
//! answers each. Every role reads them; owner and admin change them.

use actors::domain::{AgentId, PhoneNumberId};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Staff};
use super::{validate, AppState};
use crate::store::{PhoneNumber, PhoneNumberDraft};

/// The tenant's numbers.
#[derive(Serialize, ToSchema)]
pub struct PhoneNumberList {
    /// In number order.
    pub items: Vec<PhoneNumber>,
}

/// A number's fields. On create `number` and `agent_id` are required; on update absent
/// fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberFields {
    /// E.164 number, unique across switchboard.
    #[schema(example = "+14155550199")]
    pub number: Option<String>,
    /// The agent that answers it; must be one of this tenant's agents.
    pub agent_id: Option<String>,
    /// A note for staff.
    pub label: Option<String>,
}

impl PhoneNumberFields {
    /// Checks the given fields and lays them over `base` (or builds a draft when there is
    /// none, which needs `number` and `agent_id`).
    fn apply(self, base: Option<PhoneNumberDraft>) -> Result<PhoneNumberDraft, ApiError> {
        let number = match (self.number, &base) {
            (Some(n), _) => validate::e164("number", &n)?,
            (None, Some(b)) => b.number.clone(),
            (None, None) => return Err(ApiError::field("number", "is required")),
        };
        let agent_id = match (self.agent_id, &base) {
            (Some(raw), _) => raw.parse::<AgentId>().map_err(|_| {
                ApiError::field("agent_id", "does not name an agent of this tenant")
            })?,
            (None, Some(b)) => b.agent_id,
            (None, None) => return Err(ApiError::field("agent_id", "is required")),
        };
        let label = match (self.label, base) {
            (Some(l), _) => validate::text("label", &l, 0, 100)?,
            (None, Some(b)) => b.label,
            (None, None) => String::new(),
        };
        Ok(PhoneNumberDraft {
            number,
            agent_id,
            label,
        })
    }
}

/// Every number of the tenant.
#[utoipa::path(get, path = "/v1/phone-numbers", tag = "phone-numbers", security(("bearer" = [])),
    responses((status = 200, body = PhoneNumberList)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<PhoneNumberList>, ApiError> {
    Ok(axum::Json(PhoneNumberList {
        items: state.store.phone_numbers(staff.tenant()).await?,
    }))
}

/// One number.
#[utoipa::path(get, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = PhoneNumber), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<PhoneNumberId>,
) -> Result<axum::Json<PhoneNumber>, ApiError> {
    Ok(axum::Json(
        state.store.phone_number(staff.tenant(), id).await?,
    ))
}

/// Adds a number (owner or admin). A number already on switchboard, in any tenant, is 409.
#[utoipa::path(post, path = "/v1/phone-numbers", tag = "phone-numbers", security(("bearer" = [])), request_body = PhoneNumberFields,
    responses((status = 201, body = PhoneNumber), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    Json(fields): Json<PhoneNumberFields>,
) -> Result<(StatusCode, axum::Json<PhoneNumber>), ApiError> {
    staff.require_admin()?;
    let draft = fields.apply(None)?;
    let number = state
        .store
        .save_phone_number(staff.tenant(), staff.actor(), None, &draft)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(number)))
}

/// Changes a number's agent, label or digits (owner or admin).
#[utoipa::path(patch, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", security(("bearer" = [])), request_body = PhoneNumberFields,
    params(("id" = String, Path)),
    responses((status = 200, body = PhoneNumber), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<PhoneNumberId>,
    Json(fields): Json<PhoneNumberFields>,
) -> Result<axum::Json<PhoneNumber>, ApiError> {
    staff.require_admin()?;
    let current = state.store.phone_number(staff.tenant(), id).await?;
    let draft = fields.apply(Some(current.draft))?;
    Ok(axum::Json(
        state
            .store
            .save_phone_number(staff.tenant(), staff.actor(), Some(id), &draft)
            .await?,
    ))
}

/// Removes a number (owner or admin).
#[utoipa::path(delete, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<PhoneNumberId>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    state
        .store
        .delete_phone_number(staff.tenant(), staff.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
