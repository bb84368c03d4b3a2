//! `/v1/conversations`: staff see each customer's conversation across texts and calls, text
//! the customer themselves, and take a conversation over from the agent (and hand it back).

use actors::ports::EventSink;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Query, Staff};
use super::{validate, AppState};
use crate::store::{
    parse_time_id_cursor, Conversation, ConversationDetail, ConversationPage, Message,
};
use crate::texts::{self, SendError};
use actors::domain::{ConversationId, PhoneNumberId, E164};
use actors::ports::Speaker;

/// Longest text staff may send (Twilio's limit for one message is 1,600 characters).
const MAX_TEXT_CHARS: usize = 1_600;

/// Which conversations to list.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConversationQuery {
    /// Only those staff have taken over.
    #[serde(default)]
    pub taken_over: bool,
    /// A page's `next_cursor`, for the page after it.
    pub cursor: Option<String>,
    /// Conversations per page (1–200, default 50).
    pub limit: Option<i64>,
}

/// A text from staff to the customer.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffText {
    /// The words (1–1600 characters).
    pub body: String,
    /// The tenant's number to text from; by default the tenant's first number.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub from_number_id: Option<PhoneNumberId>,
}

/// The tenant's conversations, most recent first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", security(("bearer" = [])),
    params(ConversationQuery),
    responses((status = 200, body = ConversationPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<ConversationQuery>,
) -> Result<axum::Json<ConversationPage>, ApiError> {
    let limit = validate::range("limit", query.limit.unwrap_or(50), 1, 200)?;
    let cursor = query
        .cursor
        .as_deref()
        .map(|raw| {
            parse_time_id_cursor(raw)
                .ok_or_else(|| ApiError::field("cursor", "is not a cursor this API gave"))
        })
        .transpose()?;
    Ok(axum::Json(
        state
            .store
            .conversations(staff.tenant(), query.taken_over, cursor, limit)
            .await?,
    ))
}

/// One conversation with every line of both channels, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = ConversationDetail), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<ConversationId>,
) -> Result<axum::Json<ConversationDetail>, ApiError> {
    Ok(axum::Json(
        state.store.conversation_detail(staff.tenant(), id).await?,
    ))
}

/// Texts the customer as the staff member (any role but viewer). 502 when Twilio refuses
/// the text; 503 when Twilio is not configured here.
#[utoipa::path(post, path = "/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = StaffText,
    responses((status = 201, body = Message), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn send(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<ConversationId>,
    Json(text): Json<StaffText>,
) -> Result<(StatusCode, axum::Json<Message>), ApiError> {
    staff.require_customer_role("texting customers")?;
    let tenant = staff.tenant();
    let conversation = state.store.conversation(tenant, id).await?;
    let body = validate::text("body", &text.body, 1, MAX_TEXT_CHARS)?;
    let customer = E164::parse(&conversation.customer_number).map_err(|_| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "the customer's number {} cannot receive texts",
                conversation.customer_number
            ),
        )
    })?;
    let numbers = state.store.phone_numbers(tenant).await?;
    let from = match text.from_number_id {
        Some(wanted) => numbers.iter().find(|n| n.id == wanted).ok_or_else(|| {
            ApiError::field("from_number_id", "is not one of this tenant's numbers")
        })?,
        None => numbers.first().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the tenant has no phone number to text from",
            )
        })?,
    };
    let sent = texts::send_text(
        &state,
        tenant,
        (&from.draft.number, &customer),
        (Speaker::Staff, Some(staff.0.id)),
        &body,
        0,
    )
    .await
    .map_err(|e| match e {
        SendError::NotConfigured => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        SendError::Twilio(twilio) => ApiError::new(StatusCode::BAD_GATEWAY, twilio.to_string()),
        SendError::Store(store) => store.into(),
    })?;
    Ok((StatusCode::CREATED, axum::Json(sent)))
}

/// Takes the conversation over (any role but viewer): the agent stops answering this
/// customer's texts, and their calls, live or new, go to the agent's transfer number.
#[utoipa::path(post, path = "/v1/conversations/{id}/takeover", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn take_over(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<ConversationId>,
) -> Result<axum::Json<Conversation>, ApiError> {
    staff.require_customer_role("taking conversations over")?;
    let tenant = staff.tenant();
    let conversation = state
        .store
        .set_takeover(tenant, id, Some(staff.0.id))
        .await?;
    announce_takeover(&state, tenant, &conversation);
    if let Some(calls) = &state.calls {
        if let Err(error) = calls
            .runtime()
            .hand_over(tenant, &conversation.customer_number)
            .await
        {
            tracing::warn!(tenant_id = %tenant, %error, "live calls of a taken-over customer were not handed over");
        }
    }
    Ok(axum::Json(conversation))
}

/// Hands the conversation back to the agent (any role but viewer).
#[utoipa::path(delete, path = "/v1/conversations/{id}/takeover", tag = "conversations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Conversation), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<ConversationId>,
) -> Result<axum::Json<Conversation>, ApiError> {
    staff.require_customer_role("handing conversations back")?;
    let conversation = state.store.set_takeover(staff.tenant(), id, None).await?;
    announce_takeover(&state, staff.tenant(), &conversation);
    Ok(axum::Json(conversation))
}

/// Publishes `conversation.takeover`: the conversation as it now is (`takeover_user_id`
/// set while staff have it, empty once the agent has it back).
fn announce_takeover(
    state: &AppState,
    tenant: actors::domain::TenantId,
    conversation: &Conversation,
) {
    state.events.publish(actors::ports::TenantEvent {
        tenant,
        kind: "conversation.takeover",
        call_id: None,
        data: serde_json::to_value(conversation).unwrap_or_default(),
    });
}
