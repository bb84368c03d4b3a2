//! `/v1/callbacks`: calls booked for later, by staff here or by the agent's
//! `schedule_callback` tool. Every role reads them; owner, admin and agent book and cancel.
//! The scheduler (`calls::callbacks`) places them when they are due.

use actors::domain::AgentId;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Query, Staff};
use super::{validate, AppState};
use crate::store::{
    Callback, CallbackPage, CallbackRequester, CallbackStatus, NewCallback, StoreError,
};

/// Which callbacks to list.
#[derive(Deserialize, IntoParams)]
pub struct CallbackListQuery {
    /// Only this status: `scheduled`, `placing`, `placed`, `failed` or `canceled`.
    pub status: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Callbacks per page (1–200, default 50).
    pub limit: Option<i64>,
}

/// A callback to book.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackFields {
    /// The customer's number, E.164.
    #[schema(example = "+14155550123")]
    pub to: String,
    /// When to call, RFC 3339 with an offset; must be in the future.
    #[schema(example = "2026-03-02T15:00:00-06:00")]
    pub due_at: String,
    /// Why, for the agent and for staff (at most 1000 characters).
    pub note: Option<String>,
    /// The agent who calls; by default the agent of the tenant's first number.
    pub agent_id: Option<String>,
}

/// The tenant's callbacks, soonest due first, optionally of one status.
#[utoipa::path(get, path = "/v1/callbacks", tag = "callbacks", security(("bearer" = [])), params(CallbackListQuery),
    responses((status = 200, body = CallbackPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<CallbackListQuery>,
) -> Result<axum::Json<CallbackPage>, ApiError> {
    let status = query
        .status
        .map(|raw| {
            serde_json::from_value::<CallbackStatus>(serde_json::Value::String(raw.clone()))
                .map_err(|_| {
                    ApiError::field(
                        "status",
                        format!(
                            "`{raw}` is not one of scheduled, placing, placed, failed, canceled"
                        ),
                    )
                })
        })
        .transpose()?;
    let limit = validate::range("limit", query.limit.unwrap_or(50), 1, 200)?;
    let page = state
        .store
        .callbacks(
            staff.tenant(),
            status,
            query.cursor.as_deref(),
            u32::try_from(limit).unwrap_or(50),
        )
        .await
        .map_err(|e| match e {
            StoreError::BadReference(detail) => ApiError::field("cursor", detail),
            other => other.into(),
        })?;
    Ok(axum::Json(page))
}

/// One callback.
#[utoipa::path(get, path = "/v1/callbacks/{id}", tag = "callbacks", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Callback), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<axum::Json<Callback>, ApiError> {
    Ok(axum::Json(state.store.callback(staff.tenant(), id).await?))
}

/// Books a callback (owner, admin or agent). 404 for an `agent_id` of another tenant; 422
/// for a bad number or a time that is not in the future.
#[utoipa::path(post, path = "/v1/callbacks", tag = "callbacks", security(("bearer" = [])), request_body = CallbackFields,
    responses((status = 201, body = Callback), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    Json(fields): Json<CallbackFields>,
) -> Result<(StatusCode, axum::Json<Callback>), ApiError> {
    staff.require_customer_role("booking callbacks")?;
    let customer = validate::e164("to", &fields.to)?;
    let due_at = DateTime::parse_from_rfc3339(fields.due_at.trim())
        .map_err(|_| {
            ApiError::field(
                "due_at",
                format!(
                    "`{}` is not an RFC 3339 time like 2026-03-02T15:00:00-06:00",
                    fields.due_at
                ),
            )
        })?
        .with_timezone(&Utc);
    if due_at <= Utc::now() {
        return Err(ApiError::field("due_at", "must be in the future"));
    }
    let note = validate::text("note", fields.note.as_deref().unwrap_or_default(), 0, 1000)?;
    let agent = match fields.agent_id {
        Some(raw) => {
            let id = raw.trim().parse::<AgentId>().map_err(|_| {
                ApiError::field("agent_id", "does not name an agent of this tenant")
            })?;
            // Another tenant's agent is a 404, like any other tenant's resource.
            state.store.agent(staff.tenant(), id).await?;
            Some(id)
        }
        None => None,
    };
    let callback = state
        .store
        .create_callback(
            staff.tenant(),
            &NewCallback {
                customer,
                due_at_ms: due_at.timestamp_millis(),
                note,
                agent,
                requested_by: CallbackRequester::Staff(staff.0.id),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(callback)))
}

/// Cancels a callback that is still scheduled (owner, admin or agent); 409 once it is
/// being placed or has ended.
#[utoipa::path(post, path = "/v1/callbacks/{id}/cancel", tag = "callbacks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Callback), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<axum::Json<Callback>, ApiError> {
    staff.require_customer_role("canceling callbacks")?;
    Ok(axum::Json(
        state
            .store
            .cancel_callback(staff.tenant(), staff.actor(), id)
            .await?,
    ))
}
