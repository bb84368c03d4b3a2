//! `/v1/leads`: the tenant's CRM. Every role reads leads; owner, admin and agent change them
//! and have the agent call one. Each change is kept in the lead's trail
//! (`/v1/leads/{id}/changes`) and, for staff changes, in the tenant's audit log.

use std::collections::BTreeMap;

use actors::conversation::is_variable_name;
use actors::domain::{AgentId, LeadId, PhoneNumberId, TenantId, UserId};
use actors::ports::{EventSink, Sentiment};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::calls::place_call;
use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Query, Staff};
use super::{validate, AppState};
use crate::calls::OutboundCall;
use crate::store::{
    lead_variables, Lead, LeadChange, LeadDraft, LeadPage, LeadQuery, LeadSort, LeadStatus,
    ListError, StoreError,
};

/// A lead's fields. On create all are optional; on update absent fields stay as they are and
/// `null` clears a field that may be empty.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadFields {
    /// The customer's name (up to 200 characters).
    #[schema(example = "Ana Diaz")]
    pub name: Option<String>,
    /// E.164 number, unique among the tenant's leads.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>, example = "+14155550123")]
    pub phone: Option<Option<String>>,
    /// Email address.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>, example = "ana@example.com")]
    pub email: Option<Option<String>>,
    /// `new` (the default), `contacted`, `qualified`, `appointment`, `won` or `lost`.
    pub status: Option<String>,
    /// `positive`, `neutral` or `negative`.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub sentiment: Option<Option<String>>,
    /// How ready they are to pay or finance (up to 200 characters).
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub funding_readiness: Option<Option<String>>,
    /// What is known of their credit (up to 200 characters).
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>)]
    pub credit_profile: Option<Option<String>>,
    /// Product or vehicle preferences: a JSON object whose keys are variable names (letters,
    /// digits, `_`, `.`, `-`).
    #[schema(value_type = Option<Object>, example = json!({"vehicle_interest": "RAV4 hybrid"}))]
    pub preferences: Option<Value>,
    /// Free-form notes (up to 10000 characters).
    pub notes: Option<String>,
    /// A staff member of the tenant who owns the lead.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub assigned_user_id: Option<Option<String>>,
    /// Anything else: a JSON object whose keys are variable names.
    #[schema(value_type = Option<Object>, example = json!({"trade_in": "2015 Civic"}))]
    pub custom_fields: Option<Value>,
}

/// Longest `preferences` or `custom_fields` accepted, as JSON: they travel into prompts.
const MAX_OBJECT_CHARS: usize = 20_000;

/// A JSON object whose keys can be used as `{{variables}}`.
fn variable_object(field: &str, raw: Value) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(map) = raw else {
        return Err(ApiError::field(field, "must be a JSON object"));
    };
    if let Some(bad) = map
        .keys()
        .find(|k| k.chars().count() > 64 || !is_variable_name(k))
    {
        return Err(ApiError::field(
            field,
            format!("`{bad}` is not a usable name: use 1-64 letters, digits, `_`, `.` or `-`"),
        ));
    }
    if Value::Object(map.clone()).to_string().chars().count() > MAX_OBJECT_CHARS {
        return Err(ApiError::field(
            field,
            format!("must be at most {MAX_OBJECT_CHARS} characters of JSON"),
        ));
    }
    Ok(map)
}

/// Optional short text: `null` or blank clears it.
fn optional_text(field: &str, raw: Option<String>) -> Result<Option<String>, ApiError> {
    Ok(raw
        .map(|t| validate::text(field, &t, 0, 200))
        .transpose()?
        .filter(|t| !t.is_empty()))
}

fn status(field: &str, raw: &str) -> Result<LeadStatus, ApiError> {
    LeadStatus::parse(raw).ok_or_else(|| {
        ApiError::field(
            field,
            format!("`{raw}` is not a lead status; use new, contacted, qualified, appointment, won or lost"),
        )
    })
}

fn sentiment(field: &str, raw: &str) -> Result<Sentiment, ApiError> {
    Sentiment::parse(raw).ok_or_else(|| {
        ApiError::field(
            field,
            format!("`{raw}` is not a sentiment; use positive, neutral or negative"),
        )
    })
}

impl LeadFields {
    /// Checks each given field and lays it over `base`; `assignee` is the assigned user as
    /// [`checked_assignee`] found it.
    fn apply(
        self,
        assignee: Option<Option<UserId>>,
        mut base: LeadDraft,
    ) -> Result<LeadDraft, ApiError> {
        if let Some(name) = self.name {
            base.name = validate::text("name", &name, 0, 200)?;
        }
        if let Some(phone) = self.phone {
            base.phone = phone.map(|p| validate::e164("phone", &p)).transpose()?;
        }
        if let Some(email) = self.email {
            base.email = email.map(|e| validate::email("email", &e)).transpose()?;
        }
        if let Some(raw) = self.status {
            base.status = status("status", &raw)?;
        }
        if let Some(raw) = self.sentiment {
            base.sentiment = raw.map(|s| sentiment("sentiment", &s)).transpose()?;
        }
        if let Some(text) = self.funding_readiness {
            base.funding_readiness = optional_text("funding_readiness", text)?;
        }
        if let Some(text) = self.credit_profile {
            base.credit_profile = optional_text("credit_profile", text)?;
        }
        if let Some(raw) = self.preferences {
            base.preferences = variable_object("preferences", raw)?;
        }
        if let Some(notes) = self.notes {
            base.notes = validate::text("notes", &notes, 0, 10_000)?;
        }
        if let Some(user) = assignee {
            base.assigned_user_id = user;
        }
        if let Some(raw) = self.custom_fields {
            base.custom_fields = variable_object("custom_fields", raw)?;
        }
        Ok(base)
    }
}

/// A staff member of the tenant, to assign a lead to.
async fn assignee(state: &AppState, staff: &Staff, raw: &str) -> Result<UserId, ApiError> {
    let not_theirs = || ApiError::field("assigned_user_id", "is not a user of this tenant");
    let id = raw.trim().parse::<UserId>().map_err(|_| not_theirs())?;
    match state.store.user(staff.tenant(), id).await {
        Ok(_) => Ok(id),
        Err(StoreError::NotFound) => Err(not_theirs()),
        Err(e) => Err(e.into()),
    }
}

/// Checks the request's assigned user, if it names one: the rest of the fields are checked
/// by [`LeadFields::apply`], which takes the checked id.
async fn checked_assignee(
    state: &AppState,
    staff: &Staff,
    fields: &LeadFields,
) -> Result<Option<Option<UserId>>, ApiError> {
    match &fields.assigned_user_id {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(raw)) => Ok(Some(Some(assignee(state, staff, raw).await?))),
    }
}

/// Which leads to list.
#[derive(Deserialize, IntoParams)]
pub struct LeadListQuery {
    /// Part of the name (any case) or of the phone number.
    pub q: Option<String>,
    /// Only this status.
    pub status: Option<String>,
    /// Only this sentiment.
    pub sentiment: Option<String>,
    /// Only leads assigned to this staff member.
    pub assigned_user_id: Option<String>,
    /// Only leads created at or after this time (RFC 3339).
    pub created_from: Option<String>,
    /// Only leads created before this time (RFC 3339).
    pub created_to: Option<String>,
    /// `created_at`, `updated_at`, `name` or `last_contact_at`, `-` first for descending;
    /// default `-created_at` (newest first).
    pub sort: Option<String>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Leads per page (1–200, default 50).
    pub limit: Option<i64>,
}

fn time_ms(field: &str, raw: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::field(
                field,
                format!("`{raw}` is not an RFC 3339 time like 2026-03-01T00:00:00Z"),
            )
        })
}

impl LeadListQuery {
    fn checked(self) -> Result<LeadQuery, ApiError> {
        Ok(LeadQuery {
            search: self.q,
            status: self
                .status
                .map(|s| status("status", &s))
                .transpose()?,
            sentiment: self
                .sentiment
                .map(|s| sentiment("sentiment", &s))
                .transpose()?,
            assigned_user_id: self
                .assigned_user_id
                .map(|u| {
                    u.trim()
                        .parse::<UserId>()
                        .map_err(|_| ApiError::field("assigned_user_id", "is not a user id"))
                })
                .transpose()?,
            created_from_ms: self
                .created_from
                .map(|t| time_ms("created_from", &t))
                .transpose()?,
            created_to_ms: self
                .created_to
                .map(|t| time_ms("created_to", &t))
                .transpose()?,
            sort: self
                .sort
                .map(|s| {
                    LeadSort::parse(&s).ok_or_else(|| {
                        ApiError::field(
                            "sort",
                            format!("`{s}` is not a sort; use created_at, updated_at, name or last_contact_at, with - first for descending"),
                        )
                    })
                })
                .transpose()?,
            cursor: self.cursor,
            limit: validate::range("limit", self.limit.unwrap_or(50), 1, 200)?,
        })
    }
}

/// The tenant's leads with their stats, a page at a time.
#[utoipa::path(get, path = "/v1/leads", tag = "leads", security(("bearer" = [])), params(LeadListQuery),
    responses((status = 200, body = LeadPage), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<LeadListQuery>,
) -> Result<axum::Json<LeadPage>, ApiError> {
    let query = query.checked()?;
    match state.store.leads(staff.tenant(), &query).await {
        Ok(page) => Ok(axum::Json(page)),
        Err(error @ ListError::BadCursor) => Err(ApiError::field("cursor", error.to_string())),
        Err(ListError::Store(error)) => Err(error.into()),
    }
}

/// One lead with its stats.
#[utoipa::path(get, path = "/v1/leads/{id}", tag = "leads", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Lead), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<LeadId>,
) -> Result<axum::Json<Lead>, ApiError> {
    Ok(axum::Json(state.store.lead(staff.tenant(), id).await?))
}

/// Creates a lead (owner, admin or agent). 409 when another lead has the number.
#[utoipa::path(post, path = "/v1/leads", tag = "leads", security(("bearer" = [])), request_body = LeadFields,
    responses((status = 201, body = Lead), (status = 403, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    Json(fields): Json<LeadFields>,
) -> Result<(StatusCode, axum::Json<Lead>), ApiError> {
    staff.require_customer_role("creating leads")?;
    let assignee = checked_assignee(&state, &staff, &fields).await?;
    let draft = fields.apply(assignee, LeadDraft::default())?;
    let lead = state
        .store
        .create_lead(staff.tenant(), staff.actor(), &draft)
        .await?;
    announce(&state, staff.tenant(), &lead, "created");
    tell_conversation(
        &state,
        staff.tenant(),
        &lead.draft,
        lead_variables(&lead.draft),
    )
    .await;
    Ok((StatusCode::CREATED, axum::Json(lead)))
}

/// Changes a lead (owner, admin or agent). 409 when another lead has the new number.
#[utoipa::path(patch, path = "/v1/leads/{id}", tag = "leads", security(("bearer" = [])), request_body = LeadFields,
    params(("id" = String, Path)),
    responses((status = 200, body = Lead), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<LeadId>,
    Json(fields): Json<LeadFields>,
) -> Result<axum::Json<Lead>, ApiError> {
    staff.require_customer_role("changing leads")?;
    let assignee = checked_assignee(&state, &staff, &fields).await?;
    let mut before = None;
    let lead = state
        .store
        .change_lead(staff.tenant(), staff.actor(), id, |current| {
            before = Some(current.clone());
            fields.apply(assignee, current)
        })
        .await?;
    announce(&state, staff.tenant(), &lead, "updated");
    if let Some(before) = before.filter(|b| b.phone != lead.draft.phone) {
        // The lead left its old number: that customer's conversation has no lead now.
        tell_conversation(&state, staff.tenant(), &before, BTreeMap::new()).await;
    }
    tell_conversation(
        &state,
        staff.tenant(),
        &lead.draft,
        lead_variables(&lead.draft),
    )
    .await;
    Ok(axum::Json(lead))
}

/// Deletes a lead and its trail (owner, admin or agent); its calls and texts stay.
#[utoipa::path(delete, path = "/v1/leads/{id}", tag = "leads", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<LeadId>,
) -> Result<StatusCode, ApiError> {
    staff.require_customer_role("deleting leads")?;
    let lead = state.store.lead(staff.tenant(), id).await?;
    state
        .store
        .delete_lead(staff.tenant(), staff.actor(), id)
        .await?;
    announce(&state, staff.tenant(), &lead, "deleted");
    tell_conversation(&state, staff.tenant(), &lead.draft, BTreeMap::new()).await;
    Ok(StatusCode::NO_CONTENT)
}

/// How much of a lead's trail to read.
#[derive(Deserialize, IntoParams)]
pub struct ChangesQuery {
    /// Newest entries to return (1–500, default 100).
    pub limit: Option<i64>,
}

/// A lead's trail.
#[derive(Serialize, ToSchema)]
pub struct LeadChangeList {
    /// Newest first.
    pub items: Vec<LeadChange>,
}

/// Every change to a lead, newest first: who made it (a staff member, the agent, the
/// post-call analysis) and each changed field before and after.
#[utoipa::path(get, path = "/v1/leads/{id}/changes", tag = "leads", security(("bearer" = [])),
    params(("id" = String, Path), ChangesQuery),
    responses((status = 200, body = LeadChangeList), (status = 404, body = Problem)))]
pub async fn changes(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<LeadId>,
    Query(query): Query<ChangesQuery>,
) -> Result<axum::Json<LeadChangeList>, ApiError> {
    let limit = validate::range("limit", query.limit.unwrap_or(100), 1, 500)?;
    Ok(axum::Json(LeadChangeList {
        items: state.store.lead_changes(staff.tenant(), id, limit).await?,
    }))
}

/// Who calls the lead, and from where.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallLead {
    /// The agent who talks; by default the agent of `from_number_id`, or of the tenant's
    /// first number.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub agent_id: Option<AgentId>,
    /// The tenant's number to call from; by default the first number the agent answers.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub from_number_id: Option<PhoneNumberId>,
}

/// Has the agent call the lead now (owner, admin or agent), as `POST /v1/calls` does. 422
/// when the lead has no phone number.
#[utoipa::path(post, path = "/v1/leads/{id}/call", tag = "leads", security(("bearer" = [])), request_body = CallLead,
    params(("id" = String, Path)),
    responses((status = 201, body = OutboundCall), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem), (status = 502, body = Problem),
        (status = 503, body = Problem)))]
pub async fn call(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<LeadId>,
    Json(body): Json<CallLead>,
) -> Result<(StatusCode, axum::Json<OutboundCall>), ApiError> {
    staff.require_customer_role("placing calls")?;
    let lead = state.store.lead(staff.tenant(), id).await?;
    let Some(phone) = lead.draft.phone else {
        return Err(ApiError::field(
            "phone",
            "the lead has no phone number; add one first",
        ));
    };
    let placed = place_call(&state, &staff, &phone, body.agent_id, body.from_number_id).await?;
    Ok((StatusCode::CREATED, axum::Json(placed)))
}

/// Publishes a `lead.updated` event: the lead as it now is, and what happened to it
/// (`created`, `updated` or `deleted`).
fn announce(state: &AppState, tenant: TenantId, lead: &Lead, change: &str) {
    let mut data = serde_json::to_value(lead).unwrap_or_default();
    if let Some(fields) = data.as_object_mut() {
        fields.insert("change".to_owned(), change.into());
    }
    state.events.publish(actors::ports::TenantEvent {
        tenant,
        kind: "lead.updated",
        call_id: None,
        data,
    });
}

/// Gives a running conversation of the lead's customer the lead's new `fields`, so the
/// agent's next prompt and greeting use what staff just wrote.
async fn tell_conversation(
    state: &AppState,
    tenant: TenantId,
    lead: &LeadDraft,
    fields: BTreeMap<String, String>,
) {
    let (Some(calls), Some(phone)) = (&state.calls, &lead.phone) else {
        return;
    };
    if let Err(error) = calls
        .runtime()
        .lead_changed(tenant, phone.as_str(), fields)
        .await
    {
        tracing::warn!(tenant_id = %tenant, %error, "a running conversation did not get the lead's change");
    }
}
