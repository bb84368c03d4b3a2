//! `/v1/events`: the tenant's live events as Server-Sent Events, for staff screens.
//!
//! Each event carries its id (`id:`), its type (`event:`, so `EventSource` listeners can pick
//! types) and a JSON body `{id, type, call_id, data}`. A client that reconnects sends
//! `Last-Event-ID` (browsers do so by themselves) and gets what it missed from the bounded
//! replay buffer first; when the buffer no longer reaches back that far it is told so by a
//! `stream.replay_incomplete` event, and a subscriber too slow to keep up gets
//! `stream.lagged` with the number of events it lost, never a slower call. A comment line
//! every 15 s keeps proxies from closing an idle stream.
//!
//! Browsers' `EventSource` cannot send an `Authorization` header, so besides the bearer
//! token the stream accepts `?ticket=` from `POST /v1/events/ticket`: single-use, valid for
//! 30 s, and useless once the stream is open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actors::domain::CallId;
use actors::event_hub::{EventId, HubItem, StampedEvent};
use actors::ports::EVENT_KINDS;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Query, Staff};
use super::AppState;
use crate::events::TICKET_TTL;
use crate::store::StoreError;

/// How often an idle stream gets a keep-alive comment.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events that may wait unread for one subscriber before it is told it lagged.
const SUBSCRIBER_QUEUE: usize = 512;

/// What the browser waits before reconnecting a dropped stream, in milliseconds.
const RETRY_MS: Duration = Duration::from_millis(2_000);

/// Which events a stream carries.
#[derive(Deserialize, IntoParams)]
pub struct EventFilter {
    /// Comma-separated event types; `call.*` matches every type starting `call.`, `*` or
    /// nothing matches all.
    #[param(example = "call.*,sms.received")]
    pub types: Option<String>,
    /// Only events of this call.
    pub call_id: Option<String>,
    /// A ticket from `POST /v1/events/ticket`, instead of the `Authorization` header.
    pub ticket: Option<String>,
    /// Resume after this event id, for clients that cannot send `Last-Event-ID`.
    pub last_event_id: Option<String>,
}

/// A ticket that opens one event stream.
#[derive(Serialize, ToSchema)]
pub struct EventTicket {
    /// Pass as `?ticket=` to `GET /v1/events`; works once.
    pub ticket: String,
    /// Seconds it stays valid.
    pub expires_in: u64,
}

/// One event as the stream's `data:` carries it.
#[derive(Serialize, ToSchema)]
pub struct EventBody<'a> {
    /// The event's id (also its SSE `id:`), `<milliseconds>-<sequence>`.
    #[schema(value_type = String, example = "1764859200000-0")]
    pub id: String,
    /// The event's type (also its SSE `event:`).
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "call.transcript")]
    pub kind: &'a str,
    /// The call it concerns, if any.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub call_id: Option<CallId>,
    /// Type-specific details.
    #[schema(value_type = Object)]
    pub data: &'a serde_json::Value,
}

/// What a stream lets through.
struct Selector {
    /// Exact types, and prefixes (from `call.*`); empty: everything.
    types: Vec<String>,
    prefixes: Vec<String>,
    call_id: Option<CallId>,
}

impl Selector {
    fn parse(filter: &EventFilter) -> Result<Self, ApiError> {
        let mut selector = Self {
            types: Vec::new(),
            prefixes: Vec::new(),
            call_id: None,
        };
        for raw in filter.types.as_deref().unwrap_or("").split(',') {
            let raw = raw.trim();
            if raw.is_empty() || raw == "*" {
                continue;
            }
            let known = match raw.strip_suffix('*') {
                Some(prefix) => {
                    selector.prefixes.push(prefix.to_owned());
                    EVENT_KINDS.iter().any(|k| k.starts_with(prefix))
                }
                None => {
                    selector.types.push(raw.to_owned());
                    EVENT_KINDS.contains(&raw)
                }
            };
            if !known {
                return Err(ApiError::field(
                    "types",
                    format!(
                        "`{raw}` matches no event type; the types are {}",
                        EVENT_KINDS.join(", ")
                    ),
                ));
            }
        }
        if let Some(id) = &filter.call_id {
            selector.call_id = Some(
                id.parse()
                    .map_err(|_| ApiError::field("call_id", "must be a call id (a UUID)"))?,
            );
        }
        Ok(selector)
    }

    fn lets_through(&self, event: &StampedEvent) -> bool {
        let kind = event.event.kind;
        let type_ok = (self.types.is_empty() && self.prefixes.is_empty())
            || self.types.iter().any(|t| t == kind)
            || self.prefixes.iter().any(|p| kind.starts_with(p.as_str()));
        type_ok && self.call_id.is_none_or(|c| event.event.call_id == Some(c))
    }
}

/// A ticket for `GET /v1/events?ticket=…` or `GET /v1/calls/{id}/listen?ticket=…`, for
/// browsers' `EventSource` and `WebSocket`, which cannot send the `Authorization` header.
/// Single use, valid 30 seconds.
#[utoipa::path(post, path = "/v1/events/ticket", tag = "events", security(("bearer" = [])),
    responses((status = 201, body = EventTicket), (status = 401, body = Problem)))]
pub async fn ticket(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<(StatusCode, axum::Json<EventTicket>), ApiError> {
    let ticket = state
        .events
        .issue_ticket(staff.tenant(), staff.0.id)
        .await
        .map_err(unavailable)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EventTicket {
            ticket,
            expires_in: TICKET_TTL.as_secs(),
        }),
    ))
}

/// The tenant's live events as `text/event-stream`, resumable with `Last-Event-ID`. Types:
/// `call.ringing`, `call.started`, `call.transcript` (partial and final), `call.agent_speaking`,
/// `call.barge_in`, `call.tool_calls`, `call.dtmf`, `call.ended`, `call.failed`,
/// `sms.received`, `sms.sent`, `conversation.takeover`, `lead.updated`, `document.status`,
/// `quota.exceeded`; and, about the stream itself, `stream.lagged` and
/// `stream.replay_incomplete`.
#[utoipa::path(get, path = "/v1/events", tag = "events", security(("bearer" = [])), params(EventFilter),
    responses((status = 200, content_type = "text/event-stream", body = EventBody),
        (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn stream(
    State(state): State<AppState>,
    staff: Result<Staff, ApiError>,
    headers: HeaderMap,
    Query(filter): Query<EventFilter>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let staff = staff_or_ticket(&state, staff, filter.ticket.as_deref()).await?;
    let selector = Selector::parse(&filter)?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .or(filter.last_event_id.as_deref())
        .map(|raw| {
            raw.trim()
                .parse::<EventId>()
                .map_err(|e| ApiError::field("Last-Event-ID", e))
        })
        .transpose()?;
    let opened = state
        .events
        .subscribe(staff.tenant(), SUBSCRIBER_QUEUE, after)
        .await
        .map_err(unavailable)?;
    let mut last = after;
    let mut head: Vec<Event> = vec![Event::default().retry(RETRY_MS).comment("connected")];
    if !opened.replay_complete {
        head.push(notice(
            "stream.replay_incomplete",
            serde_json::json!({"detail": "events after the given id are no longer kept; reload the view"}),
        ));
    }
    for event in &opened.replay {
        if last.is_none_or(|l| event.id > l) {
            last = Some(event.id);
            if selector.lets_through(event) {
                head.push(sse_event(event));
            }
        }
    }
    let live = opened.live.filter_map(move |item| {
        let out = match item {
            HubItem::Event(event) => {
                // Already sent in the replay (published while it was being read).
                if last.is_some_and(|l| event.id <= l) {
                    None
                } else {
                    last = Some(event.id);
                    selector.lets_through(&event).then(|| sse_event(&event))
                }
            }
            HubItem::Lagged { missed } => Some(notice(
                "stream.lagged",
                serde_json::json!({"missed": missed, "detail": "this stream fell behind and lost events; reload the view"}),
            )),
        };
        std::future::ready(out.map(Ok))
    });
    let subscribed = Subscribed::new();
    let live = live.map(move |item| {
        let _ = &subscribed;
        item
    });
    // When the server drains for shutdown the stream ends, telling the browser to come back
    // (its `EventSource` reconnects by itself, through the load balancer to another node,
    // resuming from its last event id).
    let mut draining = state.draining.clone();
    let live = live.take_until(async move {
        let _ = draining.wait_for(|d| *d).await;
    });
    let farewell = futures::stream::once(async {
        Ok(notice(
            "stream.reconnect",
            serde_json::json!({"detail": "this server is shutting down; reconnect to resume"}),
        ))
    });
    let stream = futures::stream::iter(head.into_iter().map(Ok))
        .chain(live)
        .chain(farewell);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")))
}

/// Counts an open stream in `switchboard_sse_subscribers` for as long as it lives.
struct Subscribed;

impl Subscribed {
    fn new() -> Self {
        metrics::gauge!("switchboard_sse_subscribers").increment(1.0);
        Self
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        metrics::gauge!("switchboard_sse_subscribers").decrement(1.0);
    }
}

/// The staff member behind the bearer token, or else behind `ticket` (for browsers, whose
/// `EventSource` and `WebSocket` cannot send the `Authorization` header).
pub(super) async fn staff_or_ticket(
    state: &AppState,
    staff: Result<Staff, ApiError>,
    ticket: Option<&str>,
) -> Result<Staff, ApiError> {
    match (staff, ticket) {
        (Ok(staff), _) => Ok(staff),
        (Err(_), Some(ticket)) => staff_of_ticket(state, ticket).await,
        (Err(e), None) => Err(e),
    }
}

/// The staff member a ticket was issued to, if it is unused, fresh and they still exist.
async fn staff_of_ticket(state: &AppState, ticket: &str) -> Result<Staff, ApiError> {
    let invalid =
        || ApiError::unauthorized("this ticket is unknown, used or expired; ask for a new one");
    let (tenant, user) = state
        .events
        .redeem_ticket(ticket)
        .await
        .map_err(unavailable)?
        .ok_or_else(invalid)?;
    match state.store.user(tenant, user).await {
        Ok(user) => Ok(Staff(user)),
        Err(StoreError::NotFound) => Err(invalid()),
        Err(e) => Err(e.into()),
    }
}

fn sse_event(event: &Arc<StampedEvent>) -> Event {
    let body = EventBody {
        id: event.id.to_string(),
        kind: event.event.kind,
        call_id: event.event.call_id,
        data: &event.event.data,
    };
    Event::default()
        .id(body.id.clone())
        .event(event.event.kind)
        .data(serde_json::to_string(&body).unwrap_or_default())
}

/// An event about the stream itself (no id: it is not part of the tenant's stream).
fn notice(kind: &str, data: serde_json::Value) -> Event {
    Event::default()
        .event(kind)
        .data(serde_json::json!({"type": kind, "data": data}).to_string())
}

fn unavailable(e: anyhow::Error) -> ApiError {
    tracing::warn!(error = %e, "the event bus could not answer");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "live events are unavailable right now; try again shortly",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::domain::TenantId;
    use actors::ports::TenantEvent;

    fn filter(types: &str, call_id: Option<&str>) -> EventFilter {
        EventFilter {
            types: Some(types.to_owned()),
            call_id: call_id.map(str::to_owned),
            ticket: None,
            last_event_id: None,
        }
    }

    fn stamped(kind: &'static str, call_id: Option<CallId>) -> StampedEvent {
        StampedEvent {
            id: EventId::default(),
            event: TenantEvent {
                tenant: TenantId::new(),
                kind,
                call_id,
                data: serde_json::Value::Null,
            },
        }
    }

    #[test]
    fn types_match_exactly_or_by_prefix_and_calls_by_id() {
        let call = CallId::new();
        let selector = Selector::parse(&filter("call.*, sms.received", None)).unwrap();
        assert!(selector.lets_through(&stamped("call.transcript", None)));
        assert!(selector.lets_through(&stamped("sms.received", None)));
        assert!(!selector.lets_through(&stamped("sms.sent", None)));
        let one_call = Selector::parse(&filter("*", Some(&call.to_string()))).unwrap();
        assert!(one_call.lets_through(&stamped("call.ended", Some(call))));
        assert!(!one_call.lets_through(&stamped("call.ended", Some(CallId::new()))));
        assert!(!one_call.lets_through(&stamped("lead.updated", None)));
        let all = Selector::parse(&filter("", None)).unwrap();
        assert!(all.lets_through(&stamped("document.status", None)));
    }

    #[test]
    fn unknown_types_and_bad_call_ids_are_refused() {
        assert!(Selector::parse(&filter("call.rang", None)).is_err());
        assert!(Selector::parse(&filter("fax.*", None)).is_err());
        assert!(Selector::parse(&filter("*", Some("abc"))).is_err());
    }
}
