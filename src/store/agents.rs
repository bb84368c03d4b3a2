//! Voice agents: per-tenant configuration of who answers (prompt, first message, language,
//! voice, model and its fallbacks, how speech is transcribed, tools, where to transfer, what
//! to extract from a call afterwards). A phone number points at one agent.

use actors::domain::{AgentId, TenantId, E164};
use actors::ports::{SttMode, Tool};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{audit, now_ms, parse_id, parse_json, to_json, Actor, Scope, Store, StoreError};

/// An agent as stored and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agent {
    /// The agent's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: AgentId,
    /// The agent's configuration.
    #[serde(flatten)]
    pub draft: AgentDraft,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Everything an agent is configured with, already checked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AgentDraft {
    /// Name staff know it by ("Front desk").
    pub name: String,
    /// Instructions for the language model; may contain `{{variables}}`.
    pub system_prompt: String,
    /// What the agent says when it picks up; may contain `{{variables}}`.
    pub first_message: String,
    /// BCP 47 language tag (`en`, `en-US`, `es`).
    pub language: String,
    /// Text-to-speech voice id.
    pub voice: String,
    /// Language model name.
    pub llm_model: String,
    /// Models tried in order, on the same endpoint, when `llm_model` is unavailable or too
    /// slow to start answering (at most 3; empty: no fallback).
    #[schema(example = json!(["gpt-4.1-mini"]))]
    pub llm_fallback_models: Vec<String>,
    /// How the caller's speech is transcribed: `utterance` (each utterance whole, once it
    /// ends) or `streaming` (audio streams as the caller speaks, for lower latency).
    #[schema(value_type = String, example = "streaming")]
    pub stt_mode: SttMode,
    /// Tools the model may call: `search_knowledge`, `transfer_to_human`, `end_call`,
    /// `update_lead`, `send_sms`, `schedule_callback`.
    #[schema(value_type = Vec<String>, example = json!(["search_knowledge", "transfer_to_human"]))]
    pub enabled_tools: Vec<Tool>,
    /// Where `transfer_to_human` and failed calls send the caller.
    #[schema(value_type = Option<String>, example = "+14155550100")]
    pub transfer_number: Option<E164>,
    /// JSON Schema (an object) of the fields the post-call analysis extracts from each
    /// call into the call's `extracted`; `{}` extracts nothing.
    #[schema(value_type = Object, example = json!({"type": "object", "properties": {"vehicle": {"type": "string"}}}))]
    pub analysis_schema: serde_json::Map<String, serde_json::Value>,
    /// Whether the knowledge base is searched with the customer's words before each reply
    /// and its best chunks given to the model.
    pub auto_retrieval: bool,
    /// Longest that search may take, in milliseconds; past it the reply goes on without it.
    pub retrieval_budget_ms: u32,
}

impl Agent {
    /// The agent as the runtime runs it.
    pub fn runtime_config(&self) -> actors::ports::AgentConfig {
        let d = &self.draft;
        actors::ports::AgentConfig {
            id: self.id,
            system_prompt: d.system_prompt.clone(),
            first_message: d.first_message.clone(),
            language: d.language.clone(),
            voice: d.voice.clone(),
            llm_model: d.llm_model.clone(),
            llm_fallback_models: d.llm_fallback_models.clone(),
            stt_mode: d.stt_mode,
            tools: d.enabled_tools.clone(),
            transfer_number: d.transfer_number.clone(),
            analysis_schema: d.analysis_schema.clone(),
            auto_retrieval: d
                .auto_retrieval
                .then(|| std::time::Duration::from_millis(u64::from(d.retrieval_budget_ms))),
        }
    }
}

/// A new agent's automatic-retrieval budget: about what a caller does not notice on top of
/// the model's own first-token time.
pub const DEFAULT_RETRIEVAL_BUDGET_MS: u32 = 150;
/// What a new agent says on pick-up until it is given its own words.
pub const DEFAULT_FIRST_MESSAGE: &str = "Hello, thanks for calling. How can I help you today?";
/// A new agent's voice: ElevenLabs' premade "Rachel", available on every account.
pub const DEFAULT_VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

impl AgentDraft {
    /// A new agent's configuration: this name and the defaults for everything else.
    pub fn named(name: String) -> Self {
        Self {
            name,
            system_prompt: String::new(),
            first_message: DEFAULT_FIRST_MESSAGE.to_owned(),
            language: "en".to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            llm_model: "gpt-4o-mini".to_owned(),
            llm_fallback_models: Vec::new(),
            stt_mode: SttMode::Utterance,
            enabled_tools: Vec::new(),
            transfer_number: None,
            analysis_schema: serde_json::Map::new(),
            auto_retrieval: true,
            retrieval_budget_ms: DEFAULT_RETRIEVAL_BUDGET_MS,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: String,
    name: String,
    system_prompt: String,
    first_message: String,
    language: String,
    voice: String,
    llm_model: String,
    enabled_tools: String,
    transfer_number: Option<String>,
    analysis_schema: String,
    stt_mode: String,
    llm_fallback_models: String,
    auto_retrieval: i64,
    retrieval_budget_ms: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> Result<Self, StoreError> {
        Ok(Agent {
            id: parse_id(&r.id)?,
            draft: AgentDraft {
                name: r.name,
                system_prompt: r.system_prompt,
                first_message: r.first_message,
                language: r.language,
                voice: r.voice,
                llm_model: r.llm_model,
                llm_fallback_models: parse_json(&r.llm_fallback_models)?,
                stt_mode: SttMode::parse(&r.stt_mode).ok_or_else(|| {
                    StoreError::Corrupt(format!("unknown stt_mode {:?}", r.stt_mode))
                })?,
                enabled_tools: parse_json(&r.enabled_tools)?,
                transfer_number: r
                    .transfer_number
                    .map(|n| E164::parse(&n).map_err(|e| StoreError::Corrupt(e.to_string())))
                    .transpose()?,
                analysis_schema: parse_json(&r.analysis_schema)?,
                auto_retrieval: r.auto_retrieval != 0,
                retrieval_budget_ms: u32::try_from(r.retrieval_budget_ms).map_err(|_| {
                    StoreError::Corrupt(format!(
                        "retrieval_budget_ms {} is out of range",
                        r.retrieval_budget_ms
                    ))
                })?,
            },
            created_at: time_of(r.created_at)?,
            updated_at: time_of(r.updated_at)?,
        })
    }
}

const AGENT_COLUMNS: &str = "id, name, system_prompt, first_message, language, voice, llm_model, enabled_tools, transfer_number, analysis_schema, stt_mode, llm_fallback_models, auto_retrieval, retrieval_budget_ms, created_at, updated_at";

impl Store {
    /// Every agent of the tenant, by name.
    pub async fn agents(&self, tenant: TenantId) -> Result<Vec<Agent>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<AgentRow> = sqlx::query_as(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE tenant_id = $1 ORDER BY name, id"
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter().map(Agent::try_from).collect()
    }

    /// One agent of the tenant.
    pub async fn agent(&self, tenant: TenantId, id: AgentId) -> Result<Agent, StoreError> {
        self.owned_row::<AgentRow, _>(tenant, ("agents", AGENT_COLUMNS), &id.to_string())
            .await
    }

    /// Creates an agent, or (with `id`) replaces an existing one's configuration.
    pub async fn save_agent(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: Option<AgentId>,
        draft: &AgentDraft,
    ) -> Result<Agent, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        let sql = match id {
            None => format!(
                "INSERT INTO agents (tenant_id, id, name, system_prompt, first_message, language, voice, llm_model,
                    enabled_tools, transfer_number, created_at, updated_at, analysis_schema, stt_mode,
                    llm_fallback_models, auto_retrieval, retrieval_budget_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16) RETURNING {AGENT_COLUMNS}"
            ),
            Some(_) => format!(
                "UPDATE agents SET name = $3, system_prompt = $4, first_message = $5, language = $6, voice = $7,
                    llm_model = $8, enabled_tools = $9, transfer_number = $10, updated_at = $11,
                    analysis_schema = $12, stt_mode = $13, llm_fallback_models = $14,
                    auto_retrieval = $15, retrieval_budget_ms = $16
                 WHERE tenant_id = $1 AND id = $2 RETURNING {AGENT_COLUMNS}"
            ),
        };
        let row: Option<AgentRow> = sqlx::query_as(&sql)
            .bind(tenant.to_string())
            .bind(id.unwrap_or_default().to_string())
            .bind(&draft.name)
            .bind(&draft.system_prompt)
            .bind(&draft.first_message)
            .bind(&draft.language)
            .bind(&draft.voice)
            .bind(&draft.llm_model)
            .bind(to_json(&draft.enabled_tools))
            .bind(draft.transfer_number.as_ref().map(|n| n.to_string()))
            .bind(now)
            .bind(to_json(&draft.analysis_schema))
            .bind(draft.stt_mode.as_str())
            .bind(to_json(&draft.llm_fallback_models))
            .bind(i64::from(draft.auto_retrieval))
            .bind(i64::from(draft.retrieval_budget_ms))
            .fetch_optional(&mut *tx)
            .await?;
        let agent: Agent = row.ok_or(StoreError::NotFound)?.try_into()?;
        let action = if id.is_some() {
            "agent.updated"
        } else {
            "agent.created"
        };
        audit::record(
            &mut tx,
            tenant,
            actor,
            action,
            "agent",
            Some(&agent.id.to_string()),
            &agent.draft,
        )
        .await?;
        tx.commit().await?;
        Ok(agent)
    }

    /// Deletes an agent that no phone number points at.
    pub async fn delete_agent(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: AgentId,
    ) -> Result<(), StoreError> {
        let in_use = StoreError::Conflict(
            "phone numbers still point at this agent; point them at another agent first",
        );
        let table = ("agents", "agent");
        self.delete_one(tenant, actor, table, &id.to_string(), Some(in_use))
            .await
    }
}
