//! `/v1/calls`: placing outbound calls. An agent phones a customer from one of the tenant's
//! numbers; the call is admitted like an inbound one, then Twilio dials it.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use supervisors::tenant::Refusal;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, Staff};
use super::AppState;
use crate::calls::{OutboundCall, OutboundError};
use actors::domain::{AgentId, PhoneNumberId, E164};

/// What to dial.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// The customer's number, E.164.
    pub to: String,
    /// The agent who talks.
    #[schema(value_type = String, format = Uuid)]
    pub agent_id: AgentId,
    /// The tenant's number to call from; by default the first number the agent answers.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub from_number_id: Option<PhoneNumberId>,
}

/// Places an outbound call (any role but viewer). 429 when the tenant is at its limit of
/// live calls or has used its monthly minutes; 502 when Twilio refuses the dial; 503 when Twilio or the providers are not
/// configured on this server.
#[utoipa::path(post, path = "/v1/calls", tag = "calls", security(("bearer" = [])), request_body = PlaceCall,
    responses((status = 201, body = OutboundCall), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem), (status = 502, body = Problem),
        (status = 503, body = Problem)))]
pub async fn place(
    State(state): State<AppState>,
    staff: Staff,
    Json(body): Json<PlaceCall>,
) -> Result<(StatusCode, axum::Json<OutboundCall>), ApiError> {
    staff.require_customer_role("placing calls")?;
    let to = E164::parse(&body.to)
        .map_err(|e| ApiError::field("to", format!("is not an E.164 number: {e}")))?;
    let placed = place_call(
        &state,
        &staff,
        &to,
        Some(body.agent_id),
        body.from_number_id,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(placed)))
}

/// Has `agent` call `to` from the tenant's number `from`, for any route that places calls.
/// Without `from`, the call comes from the first number the agent answers; without `agent`,
/// the agent of `from`, or of the tenant's first number.
pub(super) async fn place_call(
    state: &AppState,
    staff: &Staff,
    to: &E164,
    agent: Option<AgentId>,
    from: Option<PhoneNumberId>,
) -> Result<OutboundCall, ApiError> {
    let tenant = staff.tenant();
    // The agent must be the tenant's (404 otherwise, like any other tenant's resource).
    if let Some(agent) = agent {
        state.store.agent(tenant, agent).await?;
    }
    let Some(calls) = &state.calls else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "phone calls are not configured here: set OPENAI_API_KEY and ELEVENLABS_API_KEY",
        ));
    };
    if state
        .store
        .takeover_of(tenant, to.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "staff have taken this customer's conversation over: hand it back to the agent first",
        ));
    }
    let numbers = state.store.phone_numbers(tenant).await?;
    let from = match (from, agent) {
        (Some(id), _) => numbers.into_iter().find(|n| n.id == id).ok_or_else(|| {
            ApiError::field("from_number_id", "is not one of this tenant's numbers")
        })?,
        (None, Some(agent)) => crate::calls::number_answered_by(&numbers, agent)
            .cloned()
            .ok_or_else(|| {
                ApiError::field(
                    "agent_id",
                    "no number is answered by this agent; pass from_number_id",
                )
            })?,
        (None, None) => numbers.into_iter().next().ok_or_else(|| {
            ApiError::field(
                "from_number_id",
                "the tenant has no phone number to call from; add one first",
            )
        })?,
    };
    let agent = agent.unwrap_or(from.draft.agent_id);
    let placed = calls
        .place_outbound(&state.store, &state.public_url, tenant, agent, &from, to)
        .await;
    match placed {
        Ok(call) => {
            tracing::info!(call_id = %call.id, call_sid = %call.call_sid, "outbound call placed");
            Ok(call)
        }
        Err(OutboundError::NotConfigured) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            OutboundError::NotConfigured.to_string(),
        )),
        Err(OutboundError::Refused(refusal @ (Refusal::AtCapacity(_) | Refusal::QuotaUsed(_)))) => {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                refusal.to_string(),
            ))
        }
        Err(OutboundError::Refused(Refusal::UnknownAgent)) => Err(ApiError::field(
            "agent_id",
            "is not an agent that can take calls",
        )),
        Err(OutboundError::Refused(other)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            other.to_string(),
        )),
        Err(error @ OutboundError::Twilio(_)) => {
            tracing::warn!(%error, "Twilio refused an outbound call");
            Err(ApiError::new(StatusCode::BAD_GATEWAY, error.to_string()))
        }
        Err(error @ OutboundError::Twiml(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            error.to_string(),
        )),
        Err(OutboundError::Store(error)) => Err(error.into()),
    }
}
