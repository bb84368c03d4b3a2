//! `/v1/calls`: the tenant's call history (filtered, paged, each call with its transcript and
//! stage timings), placing outbound calls, and control of live calls: hang up, transfer,
//! put words in the agent's mouth, and listen.
//!
//! A live call is controlled on the node holding its media stream.

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use supervisors::call::CallMsg;
use supervisors::tenant::Refusal;
use tokio::sync::broadcast;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Query, Staff};
use super::{validate, AppState};
use crate::calls::listen::ListenFrame;
use crate::calls::{OutboundCall, OutboundError};
use crate::store::{CallDetail, CallFilter, CallPage};
use actors::domain::{AgentId, CallId, PhoneNumberId, E164};

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

/// Which calls to list.
#[derive(Deserialize, IntoParams)]
pub struct CallListQuery {
    /// Only this status: `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`,
    /// `no-answer`, `canceled`.
    pub status: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Only this agent's calls.
    pub agent_id: Option<String>,
    /// Only calls from or to this number (E.164).
    pub number: Option<String>,
    /// Started at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Started before this time (RFC 3339).
    pub to: Option<String>,
    /// `positive`, `neutral` or `negative`.
    pub sentiment: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Calls per page (1–200, default 50).
    pub limit: Option<i64>,
}

/// Words for the agent to say.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SayFields {
    /// What the agent says next, in its voice (1–1000 characters).
    pub text: String,
}

/// Where to transfer a call.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferFields {
    /// E.164 number; by default the agent's transfer number.
    pub to: Option<String>,
}

const CALL_STATUSES: &[&str] = &[
    "queued",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "failed",
    "no-answer",
    "canceled",
];

fn one_of(
    field: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::field(
            field,
            format!("must be one of {}", allowed.join(", ")),
        )),
        other => Ok(other),
    }
}

fn time_ms(field: &str, value: Option<String>) -> Result<Option<i64>, ApiError> {
    value
        .map(|raw| {
            chrono::DateTime::parse_from_rfc3339(&raw)
                .map(|t| t.timestamp_millis())
                .map_err(|_| {
                    ApiError::field(field, "must be an RFC 3339 time like 2026-03-02T15:00:00Z")
                })
        })
        .transpose()
}

/// The tenant's calls, newest first, filtered and paged.
#[utoipa::path(get, path = "/v1/calls", tag = "calls", security(("bearer" = [])), params(CallListQuery),
    responses((status = 200, body = CallPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<CallListQuery>,
) -> Result<axum::Json<CallPage>, ApiError> {
    let filter = CallFilter {
        status: one_of("status", query.status, CALL_STATUSES)?,
        direction: one_of("direction", query.direction, &["inbound", "outbound"])?,
        agent: query
            .agent_id
            .map(|raw| {
                raw.parse()
                    .map_err(|_| ApiError::field("agent_id", "must be an agent id"))
            })
            .transpose()?,
        number: query
            .number
            .map(|raw| validate::e164("number", &raw).map(|n| n.to_string()))
            .transpose()?,
        from_ms: time_ms("from", query.from)?,
        to_ms: time_ms("to", query.to)?,
        sentiment: one_of(
            "sentiment",
            query.sentiment,
            &["positive", "neutral", "negative"],
        )?,
    };
    let limit = validate::range("limit", query.limit.unwrap_or(50), 1, 200)?;
    let page = state
        .store
        .calls(
            staff.tenant(),
            &filter,
            query.cursor.as_deref(),
            u32::try_from(limit).unwrap_or(50),
        )
        .await?;
    Ok(axum::Json(page))
}

/// One call: its transcript, each turn's stage timings, summary, sentiment and extracted
/// fields.
#[utoipa::path(get, path = "/v1/calls/{id}", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = CallDetail), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<CallId>,
) -> Result<axum::Json<CallDetail>, ApiError> {
    Ok(axum::Json(
        state.store.call_detail(staff.tenant(), id).await?,
    ))
}

/// The actor of the tenant's call `id` if it is live on this node; 404 for another
/// tenant's or an unknown call, 409 for one that is not live here.
async fn live_call(
    state: &AppState,
    staff: &Staff,
    id: CallId,
    what: &str,
) -> Result<ractor::ActorRef<CallMsg>, ApiError> {
    staff.require_customer_role(what)?;
    let call = state.store.call_detail(staff.tenant(), id).await?;
    let live = match &state.calls {
        Some(calls) => calls
            .runtime()
            .call(staff.tenant(), id)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?,
        None => None,
    };
    live.ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the call is {} and not live on this server",
                call.call.status
            ),
        )
    })
}

/// Hangs a live call up (owner, admin or agent).
#[utoipa::path(post, path = "/v1/calls/{id}/hangup", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, description = "hanging up"), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem)))]
pub async fn hang_up(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<CallId>,
) -> Result<StatusCode, ApiError> {
    let call = live_call(&state, &staff, id, "hanging up calls").await?;
    let _ = call.send_message(CallMsg::HangUp);
    Ok(StatusCode::ACCEPTED)
}

/// Transfers a live call to a person (owner, admin or agent): to `to`, or the agent's
/// transfer number. Needs Twilio's REST API.
#[utoipa::path(post, path = "/v1/calls/{id}/transfer", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = TransferFields,
    responses((status = 202, description = "transferring"), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn transfer(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<CallId>,
    Json(fields): Json<TransferFields>,
) -> Result<StatusCode, ApiError> {
    let call = live_call(&state, &staff, id, "transferring calls").await?;
    let to = match fields.to {
        Some(raw) => validate::e164("to", &raw)?,
        None => {
            let detail = state.store.call_detail(staff.tenant(), id).await?;
            let agent = match detail.call.agent_id {
                Some(agent) => Some(state.store.agent(staff.tenant(), agent).await?),
                None => None,
            };
            agent.and_then(|a| a.draft.transfer_number).ok_or_else(|| {
                ApiError::field("to", "is required: the agent has no transfer number")
            })?
        }
    };
    let _ = call.send_message(CallMsg::Transfer(to));
    Ok(StatusCode::ACCEPTED)
}

/// Puts a sentence in the agent's mouth on a live call (owner, admin or agent): it stops
/// what it was saying and says this.
#[utoipa::path(post, path = "/v1/calls/{id}/say", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SayFields,
    responses((status = 202, description = "saying it"), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn say(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<CallId>,
    Json(fields): Json<SayFields>,
) -> Result<StatusCode, ApiError> {
    let text = validate::text("text", &fields.text, 1, 1_000)?;
    let call = live_call(&state, &staff, id, "speaking on calls").await?;
    let _ = call.send_message(CallMsg::Say(text));
    Ok(StatusCode::ACCEPTED)
}

/// How a supervisor authenticates the listen socket.
#[derive(Deserialize, IntoParams)]
pub struct ListenQuery {
    /// A ticket from `POST /v1/events/ticket`, for browsers (which cannot send headers).
    pub ticket: Option<String>,
}

/// Listens to a live call (owner, admin or agent): a WebSocket of text messages
/// `{"event":"media","track":"inbound"|"outbound","payload":<base64 8 kHz μ-law>}`, the
/// caller's and the agent's audio as it passes, closed when the call ends.
#[utoipa::path(get, path = "/v1/calls/{id}/listen", tag = "calls", security(("bearer" = [])),
    params(("id" = String, Path), ListenQuery),
    responses((status = 101, description = "listening"), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn listen(
    State(state): State<AppState>,
    staff: Result<Staff, ApiError>,
    PathId(id): PathId<CallId>,
    Query(query): Query<ListenQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let staff = super::events::staff_or_ticket(&state, staff, query.ticket.as_deref()).await?;
    live_call(&state, &staff, id, "listening to calls").await?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "open this as a WebSocket (Upgrade: websocket)",
        )
    })?;
    let frames = state
        .calls
        .as_ref()
        .and_then(|calls| calls.listeners().listen(id))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "the call's audio is not streaming on this server yet",
            )
        })?;
    Ok(upgrade
        .read_buffer_size(crate::websocket::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| relay_audio(socket, frames)))
}

/// Sends the call's audio to the listener until the call ends or the listener leaves.
async fn relay_audio(mut socket: WebSocket, mut frames: broadcast::Receiver<ListenFrame>) {
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    let text = serde_json::to_string(&frame).unwrap_or_default();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // Too slow: the lost audio is gone; carry on with the live audio.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: close_code::NORMAL,
            reason: "the call has ended".into(),
        })))
        .await;
}
