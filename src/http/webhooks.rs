//! `/v1/webhooks`: a tenant's webhook endpoints (owner and admin), their delivery log and
//! redelivery by hand. The signing secret is shown once, when the endpoint is created.

use actors::ports::EVENT_KINDS;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Query, Staff};
use super::{validate, AppState};
use crate::store::{DeliveryPage, EndpointDraft, WebhookEndpoint};
use crate::webhooks::{Webhooks, OUTBOX_KINDS};

/// Most event types or patterns one endpoint may list.
const MAX_EVENT_TYPES: usize = 50;

/// An endpoint's fields; on update, absent fields stay as they are.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFields {
    /// Where deliveries are POSTed (`https://…`).
    pub url: Option<String>,
    /// Event types, or patterns like `call.*` (`*`: every type).
    #[schema(example = json!(["call.ended", "lead.*"]))]
    pub event_types: Option<Vec<String>>,
    /// Whether deliveries are made (default true).
    pub enabled: Option<bool>,
}

/// A new endpoint with its secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`): keep it to verify `webhook-signature`; it is not
    /// shown again.
    pub secret: String,
}

/// The tenant's endpoints.
#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    /// Oldest first.
    pub items: Vec<WebhookEndpoint>,
}

/// A page of an endpoint's deliveries.
#[derive(Deserialize, IntoParams)]
pub struct DeliveryQuery {
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Deliveries per page (1–200, default 50).
    pub limit: Option<i64>,
}

/// Checks the event types: known types, or patterns that match one.
fn event_types(raw: Vec<String>) -> Result<Vec<String>, ApiError> {
    if raw.is_empty() || raw.len() > MAX_EVENT_TYPES {
        return Err(ApiError::field(
            "event_types",
            format!("must list 1 to {MAX_EVENT_TYPES} event types"),
        ));
    }
    let known = || EVENT_KINDS.iter().chain(OUTBOX_KINDS);
    let mut types = Vec::with_capacity(raw.len());
    for t in raw {
        let t = t.trim().to_owned();
        let ok = match t.strip_suffix('*') {
            Some(prefix) => known().any(|k| k.starts_with(prefix)),
            None => known().any(|k| *k == t),
        };
        if !ok {
            let all: Vec<&str> = known().copied().collect();
            return Err(ApiError::field(
                "event_types",
                format!(
                    "`{t}` matches no event type; the types are {}",
                    all.join(", ")
                ),
            ));
        }
        types.push(t);
    }
    types.sort();
    types.dedup();
    Ok(types)
}

impl WebhookFields {
    /// Checks each given field and lays it over `base` (`None`: a new endpoint, which needs
    /// a URL and event types).
    async fn apply(
        self,
        webhooks: &Webhooks,
        base: Option<&WebhookEndpoint>,
    ) -> Result<EndpointDraft, ApiError> {
        let event_types = match (self.event_types, base) {
            (Some(types), _) => event_types(types)?,
            (None, Some(base)) => base.event_types.clone(),
            (None, None) => return Err(ApiError::field("event_types", "is required")),
        };
        let url = match (self.url, base) {
            (Some(url), _) => {
                let url = validate::text("url", &url, 1, 2_000)?;
                webhooks
                    .check_url(&url)
                    .await
                    .map_err(|e| ApiError::field("url", e))?
            }
            (None, Some(base)) => base.url.clone(),
            (None, None) => return Err(ApiError::field("url", "is required")),
        };
        Ok(EndpointDraft {
            url,
            event_types,
            enabled: self.enabled.or(base.map(|b| b.enabled)).unwrap_or(true),
        })
    }
}

/// The tenant's webhook endpoints (owner or admin).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookList), (status = 403, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<WebhookList>, ApiError> {
    staff.require_admin()?;
    Ok(axum::Json(WebhookList {
        items: state.store.webhook_endpoints(staff.tenant()).await?,
    }))
}

/// Adds an endpoint (owner or admin): 201 with its signing secret, shown this once. A URL
/// on a loopback or private address is refused unless `WEBHOOKS_ALLOW_PRIVATE` is set.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", security(("bearer" = [])), request_body = WebhookFields,
    responses((status = 201, body = CreatedWebhook), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    Json(fields): Json<WebhookFields>,
) -> Result<(StatusCode, axum::Json<CreatedWebhook>), ApiError> {
    staff.require_admin()?;
    let draft = fields.apply(&state.webhooks, None).await?;
    let secret = Webhooks::new_secret();
    let endpoint = state
        .store
        .create_webhook_endpoint(staff.tenant(), staff.actor(), &draft, &secret)
        .await?;
    state.webhooks.endpoints_changed(staff.tenant());
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWebhook { endpoint, secret }),
    ))
}

/// One endpoint (owner or admin), without its secret.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = WebhookEndpoint), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    staff.require_admin()?;
    Ok(axum::Json(
        state.store.webhook_endpoint(staff.tenant(), id).await?,
    ))
}

/// Changes an endpoint (owner or admin).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = WebhookFields,
    responses((status = 200, body = WebhookEndpoint), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
    Json(fields): Json<WebhookFields>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    staff.require_admin()?;
    let current = state.store.webhook_endpoint(staff.tenant(), id).await?;
    let draft = fields.apply(&state.webhooks, Some(&current)).await?;
    let endpoint = state
        .store
        .update_webhook_endpoint(staff.tenant(), staff.actor(), id, &draft)
        .await?;
    state.webhooks.endpoints_changed(staff.tenant());
    Ok(axum::Json(endpoint))
}

/// Removes an endpoint and its delivery log (owner or admin).
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    state
        .store
        .delete_webhook_endpoint(staff.tenant(), staff.actor(), id)
        .await?;
    state.webhooks.endpoints_changed(staff.tenant());
    Ok(StatusCode::NO_CONTENT)
}

/// An endpoint's deliveries, newest first: each attempt count, last status and error
/// (owner or admin).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks", security(("bearer" = [])),
    params(("id" = String, Path), DeliveryQuery),
    responses((status = 200, body = DeliveryPage), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn deliveries(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<uuid::Uuid>,
    Query(query): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    staff.require_admin()?;
    let limit = validate::range("limit", query.limit.unwrap_or(50), 1, 200)?;
    Ok(axum::Json(
        state
            .store
            .webhook_deliveries(
                staff.tenant(),
                id,
                query.cursor.as_deref(),
                u32::try_from(limit).unwrap_or(50),
            )
            .await?,
    ))
}

/// Sends a delivery again now, whatever became of it (owner or admin); it gets a fresh
/// day of retries.
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", tag = "webhooks",
    security(("bearer" = [])), params(("id" = String, Path), ("delivery_id" = String, Path)),
    responses((status = 202, description = "queued"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn redeliver(
    State(state): State<AppState>,
    staff: Staff,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    let (Ok(id), Ok(delivery)) = (id.parse(), delivery.parse()) else {
        return Err(ApiError::not_found("delivery"));
    };
    state.store.redeliver(staff.tenant(), id, delivery).await?;
    Ok(StatusCode::ACCEPTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_known_types_or_patterns_that_match_one() {
        let types = event_types(vec![
            "lead.*".into(),
            "call.ended".into(),
            "call.ended".into(),
        ]);
        assert_eq!(types.unwrap(), ["call.ended", "lead.*"]);
        assert!(event_types(vec!["user.invited".into()]).is_ok());
        assert!(event_types(vec!["*".into()]).is_ok());
        assert!(event_types(vec!["fax.*".into()]).is_err());
        assert!(event_types(vec!["call.rang".into()]).is_err());
        assert!(event_types(Vec::new()).is_err());
    }
}
