//! `/v1/agents`: the tenant's voice agents. Every role reads them; owner and admin change them.

use actors::domain::AgentId;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Staff};
use super::{validate, AppState};
use actors::conversation::template_variables;
use actors::ports::{SttMode, Tool};
use supervisors::tenant::BUILTIN_VARIABLES;

use crate::store::{Agent, AgentDraft};

/// The tenant's agents.
#[derive(Serialize, ToSchema)]
pub struct AgentList {
    /// By name.
    pub items: Vec<Agent>,
}

/// An agent's fields. On create only `name` is required; on update absent fields stay as
/// they are and `transfer_number: null` clears the number.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentFields {
    /// Name staff know it by (1–100 characters).
    #[schema(example = "Front desk")]
    pub name: Option<String>,
    /// Instructions for the language model (up to 20000 characters).
    pub system_prompt: Option<String>,
    /// What the agent says on pick-up (up to 2000 characters).
    pub first_message: Option<String>,
    /// BCP 47 language tag; default `en`.
    pub language: Option<String>,
    /// Text-to-speech voice id.
    pub voice: Option<String>,
    /// Language model; default `gpt-4o-mini`.
    pub llm_model: Option<String>,
    /// Models tried in order, on the same endpoint, when `llm_model` is unavailable or too
    /// slow to start answering: at most 3 distinct names, none of them `llm_model`; default
    /// none.
    #[schema(example = json!(["gpt-4.1-mini"]))]
    pub llm_fallback_models: Option<Vec<String>>,
    /// Speech-to-text mode: `utterance` (the default: each utterance transcribed whole once
    /// it ends) or `streaming` (audio streams while the caller speaks, for lower latency).
    #[schema(example = "streaming")]
    pub stt_mode: Option<String>,
    /// Tools the model may call: `search_knowledge`, `transfer_to_human`, `end_call`,
    /// `update_lead`, `send_sms`, `schedule_callback`.
    #[schema(value_type = Option<Vec<String>>)]
    pub enabled_tools: Option<Vec<Tool>>,
    /// E.164 number for transfers and fallbacks.
    #[serde(default, deserialize_with = "validate::double_option")]
    #[schema(value_type = Option<String>, example = "+14155550100")]
    pub transfer_number: Option<Option<String>>,
    /// JSON Schema (an object, up to 20000 characters) of the fields the post-call analysis
    /// extracts from each call; `{}`, the default, extracts nothing.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>, example = json!({"type": "object", "properties": {"vehicle": {"type": "string"}}}))]
    pub analysis_schema: Option<serde_json::Value>,
    /// Search the knowledge base with the customer's words before each reply and give the
    /// model the best chunks; default true.
    pub auto_retrieval: Option<bool>,
    /// Longest that search may take before the reply goes on without it, 0–2000 ms;
    /// default 150.
    pub retrieval_budget_ms: Option<i64>,
}

/// Deserializes a field that was given, `null` included, so `null` is judged (and refused)
/// rather than taken for "leave alone".
fn present<'de, D>(d: D) -> Result<Option<serde_json::Value>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    serde_json::Value::deserialize(d).map(Some)
}

/// Most fallback models an agent may list: each one tried costs the caller a failed
/// attempt's wait, so a long list only lengthens the silence before the apology.
const MAX_FALLBACK_MODELS: usize = 3;

/// Longest automatic-retrieval budget: beyond two seconds the caller hears the wait.
const MAX_RETRIEVAL_BUDGET_MS: i64 = 2_000;

/// A speech-to-text mode by its name.
fn stt_mode(field: &str, raw: &str) -> Result<SttMode, ApiError> {
    SttMode::parse(raw.trim()).ok_or_else(|| {
        ApiError::field(
            field,
            format!("`{raw}` is not a speech-to-text mode; use utterance or streaming"),
        )
    })
}

/// Fallback model names: at most [`MAX_FALLBACK_MODELS`], each a model name as `llm_model`
/// takes it, none repeated and none the primary (`primary`), since trying a failed model
/// again right away only doubles the wait.
fn fallback_models(field: &str, raw: Vec<String>, primary: &str) -> Result<Vec<String>, ApiError> {
    if raw.len() > MAX_FALLBACK_MODELS {
        return Err(ApiError::field(
            field,
            format!("may list at most {MAX_FALLBACK_MODELS} models"),
        ));
    }
    let mut models: Vec<String> = Vec::with_capacity(raw.len());
    for name in raw {
        let name = validate::text(field, &name, 1, 100)?;
        if name == primary {
            return Err(ApiError::field(
                field,
                format!("`{name}` is the agent's llm_model; list other models to fall back to"),
            ));
        }
        if models.contains(&name) {
            return Err(ApiError::field(field, format!("lists `{name}` twice")));
        }
        models.push(name);
    }
    Ok(models)
}

/// Longest extraction schema accepted, serialized: it travels in every analysis prompt.
const MAX_ANALYSIS_SCHEMA_CHARS: usize = 20_000;

/// An extraction schema: a JSON object describing an object (when it says what type it is),
/// small enough to send with every call's analysis.
fn analysis_schema(
    field: &str,
    raw: serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    let serde_json::Value::Object(schema) = raw else {
        return Err(ApiError::field(
            field,
            "must be a JSON object (a JSON Schema of the fields to extract)",
        ));
    };
    if let Some(kind) = schema.get("type") {
        if kind.as_str() != Some("object") {
            return Err(ApiError::field(
                field,
                "describes what is extracted from a call, which is an object: its `type` must be \"object\"",
            ));
        }
    }
    if serde_json::Value::Object(schema.clone())
        .to_string()
        .chars()
        .count()
        > MAX_ANALYSIS_SCHEMA_CHARS
    {
        return Err(ApiError::field(
            field,
            format!("must be at most {MAX_ANALYSIS_SCHEMA_CHARS} characters of JSON"),
        ));
    }
    Ok(schema)
}

impl AgentFields {
    /// Checks each given field and lays it over `base`.
    fn apply(self, mut base: AgentDraft) -> Result<AgentDraft, ApiError> {
        if let Some(name) = self.name {
            base.name = validate::text("name", &name, 1, 100)?;
        }
        if let Some(prompt) = self.system_prompt {
            base.system_prompt = validate::text("system_prompt", &prompt, 0, 20_000)?;
        }
        if let Some(message) = self.first_message {
            base.first_message = validate::text("first_message", &message, 0, 2_000)?;
        }
        if let Some(language) = self.language {
            base.language = validate::language("language", &language)?;
        }
        if let Some(voice) = self.voice {
            base.voice = validate::text("voice", &voice, 0, 100)?;
        }
        if let Some(model) = self.llm_model {
            base.llm_model = validate::text("llm_model", &model, 1, 100)?;
        }
        // Judged against the primary as it will be after this change; a new primary that is
        // one of the stored fallbacks is refused the same way.
        let fallbacks = self
            .llm_fallback_models
            .unwrap_or_else(|| base.llm_fallback_models.clone());
        base.llm_fallback_models =
            fallback_models("llm_fallback_models", fallbacks, &base.llm_model)?;
        if let Some(mode) = self.stt_mode {
            base.stt_mode = stt_mode("stt_mode", &mode)?;
        }
        if let Some(mut tools) = self.enabled_tools {
            tools.sort();
            tools.dedup();
            base.enabled_tools = tools;
        }
        if let Some(number) = self.transfer_number {
            base.transfer_number = number
                .map(|n| validate::e164("transfer_number", &n))
                .transpose()?;
        }
        if let Some(schema) = self.analysis_schema {
            base.analysis_schema = analysis_schema("analysis_schema", schema)?;
        }
        if let Some(on) = self.auto_retrieval {
            base.auto_retrieval = on;
        }
        if let Some(budget) = self.retrieval_budget_ms {
            let budget =
                validate::range("retrieval_budget_ms", budget, 0, MAX_RETRIEVAL_BUDGET_MS)?;
            base.retrieval_budget_ms = u32::try_from(budget).unwrap_or(u32::MAX);
        }
        Ok(base)
    }
}

/// Every agent of the tenant.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, body = AgentList)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<AgentList>, ApiError> {
    Ok(axum::Json(AgentList {
        items: state.store.agents(staff.tenant()).await?,
    }))
}

/// One agent.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Agent), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<AgentId>,
) -> Result<axum::Json<Agent>, ApiError> {
    Ok(axum::Json(state.store.agent(staff.tenant(), id).await?))
}

/// Creates an agent (owner or admin).
#[utoipa::path(post, path = "/v1/agents", tag = "agents", security(("bearer" = [])), request_body = AgentFields,
    responses((status = 201, body = Agent), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn create(
    State(state): State<AppState>,
    staff: Staff,
    Json(fields): Json<AgentFields>,
) -> Result<(StatusCode, axum::Json<Agent>), ApiError> {
    staff.require_admin()?;
    let Some(name) = fields.name.clone() else {
        return Err(ApiError::field("name", "is required"));
    };
    let draft = fields.apply(AgentDraft::named(name))?;
    let agent = state
        .store
        .save_agent(staff.tenant(), staff.actor(), None, &draft)
        .await?;
    state.tenant_changed(staff.tenant());
    Ok((StatusCode::CREATED, axum::Json(agent)))
}

/// Changes an agent (owner or admin).
#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])), request_body = AgentFields,
    params(("id" = String, Path)),
    responses((status = 200, body = Agent), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn update(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<AgentId>,
    Json(fields): Json<AgentFields>,
) -> Result<axum::Json<Agent>, ApiError> {
    staff.require_admin()?;
    let current = state.store.agent(staff.tenant(), id).await?;
    let draft = fields.apply(current.draft)?;
    let agent = state
        .store
        .save_agent(staff.tenant(), staff.actor(), Some(id), &draft)
        .await?;
    state.tenant_changed(staff.tenant());
    Ok(axum::Json(agent))
}

/// Deletes an agent no number points at (owner or admin).
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn delete(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<AgentId>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    state
        .store
        .delete_agent(staff.tenant(), staff.actor(), id)
        .await?;
    state.tenant_changed(staff.tenant());
    Ok(StatusCode::NO_CONTENT)
}

/// The `{{variables}}` of an agent's templates, and which of them nothing fills.
#[derive(Serialize, ToSchema)]
pub struct AgentVariables {
    /// Every variable the system prompt and first message use, in order of first use.
    pub variables: Vec<String>,
    /// Those that no built-in, standard lead field, or preference or custom field of any of
    /// the tenant's leads provides: they would be filled with nothing.
    pub unknown: Vec<String>,
}

/// Checks an agent's templates against what calls and texts fill them from: the built-ins
/// (`tenant_name`, `caller_number`, `local_time`, `local_date`), the standard lead variables
/// and every preference or custom field name the tenant's leads have.
#[utoipa::path(post, path = "/v1/agents/{id}/validate", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = AgentVariables), (status = 404, body = Problem)))]
pub async fn validate_variables(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<AgentId>,
) -> Result<axum::Json<AgentVariables>, ApiError> {
    let agent = state.store.agent(staff.tenant(), id).await?;
    let mut variables = template_variables(&agent.draft.system_prompt);
    for name in template_variables(&agent.draft.first_message) {
        if !variables.contains(&name) {
            variables.push(name);
        }
    }
    let from_leads = state.store.lead_variable_names(staff.tenant()).await?;
    let unknown = variables
        .iter()
        .filter(|v| !from_leads.contains(*v) && !BUILTIN_VARIABLES.contains(&v.as_str()))
        .cloned()
        .collect();
    Ok(axum::Json(AgentVariables { variables, unknown }))
}
