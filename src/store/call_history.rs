//! Call history for staff: the tenant's calls filtered and paged newest first, and one call
//! with its transcript, each turn's stage timings and what it consumed.

use actors::domain::{AgentId, CallId, ConversationId, LeadId, PhoneNumberId, TenantId};
use actors::ports::StageTimings;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{
    page_cursor, page_from_rows, parse_id, parse_json, time_id_cursor, Scope, Store, StoreError,
};

/// A call as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallSummary {
    /// Our id of the call.
    #[schema(value_type = String, format = Uuid)]
    pub id: CallId,
    /// Twilio's CallSid.
    pub call_sid: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// The calling number.
    pub from_number: String,
    /// The called number.
    pub to_number: String,
    /// The agent that answered or placed it.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub agent_id: Option<AgentId>,
    /// The tenant's number on the call.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub phone_number_id: Option<PhoneNumberId>,
    /// The customer's lead, when the number has one.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub lead_id: Option<LeadId>,
    /// The customer's conversation.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub conversation_id: Option<ConversationId>,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `failed`, `no-answer`, `canceled`.
    pub status: String,
    /// When Twilio rang (or we dialled).
    pub started_at: DateTime<Utc>,
    /// When the agent picked up.
    pub answered_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// From answer to end.
    pub duration_ms: Option<i64>,
    /// `completed`, `transferred`, `failed`, or why it was refused.
    pub end_reason: Option<String>,
    /// What went wrong, when it failed.
    pub failure: Option<String>,
    /// The post-call summary.
    pub summary: Option<String>,
    /// `positive`, `neutral` or `negative`, per the post-call analysis.
    pub sentiment: Option<String>,
}

/// One line of a call's transcript.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallTurn {
    /// Order within the call.
    pub seq: i64,
    /// `caller`, `agent` or `staff`.
    pub speaker: String,
    /// What was said (an agent's line cut to what the caller heard when interrupted).
    pub text: String,
    /// The caller cut the agent off.
    pub interrupted: bool,
    /// When the line was recorded.
    pub at: DateTime<Utc>,
    /// How long each stage of the agent's reply took, in milliseconds, from the end of the
    /// caller's speech; with `runtime_ms`, what the runtime itself added.
    #[schema(value_type = Object)]
    pub timings: TurnTimings,
}

/// A turn's stage timings as shown.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TurnTimings {
    /// The stages.
    #[serde(flatten)]
    pub stages: StageTimings,
    /// Voice-to-voice less the providers' share.
    pub runtime_ms: Option<u32>,
}

/// One call with everything recorded about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallDetail {
    /// The call.
    #[serde(flatten)]
    pub call: CallSummary,
    /// What the post-call analysis extracted, per the agent's schema.
    #[schema(value_type = Object)]
    pub extracted: serde_json::Map<String, serde_json::Value>,
    /// The transcript, in order.
    pub turns: Vec<CallTurn>,
}

/// A page of calls, newest first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallPage {
    /// The calls.
    pub items: Vec<CallSummary>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

/// Which calls to list.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only this status.
    pub status: Option<String>,
    /// Only `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Only this agent's.
    pub agent: Option<AgentId>,
    /// Only calls from or to this number (E.164).
    pub number: Option<String>,
    /// Started at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Started before (Unix ms).
    pub to_ms: Option<i64>,
    /// Only this sentiment.
    pub sentiment: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: String,
    call_sid: String,
    direction: String,
    from_number: String,
    to_number: String,
    agent_id: Option<String>,
    phone_number_id: Option<String>,
    lead_id: Option<String>,
    conversation_id: Option<String>,
    status: String,
    started_at: i64,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    duration_ms: Option<i64>,
    end_reason: Option<String>,
    failure: Option<String>,
    summary: Option<String>,
    sentiment: Option<String>,
    extracted: String,
}

/// The call's columns; its lead and conversation are those of the customer's number when the
/// row does not name them (calls are recorded before the customer's records are resolved).
const SUMMARY_COLUMNS: &str = "id, call_sid, direction, from_number, to_number, agent_id, phone_number_id,
    COALESCE(lead_id, (SELECT l.id FROM leads l WHERE l.tenant_id = calls.tenant_id
        AND l.phone = CASE calls.direction WHEN 'inbound' THEN calls.from_number ELSE calls.to_number END
        LIMIT 1)) AS lead_id,
    COALESCE(conversation_id, (SELECT c.id FROM conversations c WHERE c.tenant_id = calls.tenant_id
        AND c.customer_number = CASE calls.direction WHEN 'inbound' THEN calls.from_number ELSE calls.to_number END
        LIMIT 1)) AS conversation_id, status, started_at, answered_at, ended_at, duration_ms, end_reason, failure, summary,
    sentiment, extracted";

fn optional_id<T: std::str::FromStr>(raw: Option<String>) -> Result<Option<T>, StoreError> {
    raw.map(|r| parse_id(&r)).transpose()
}

fn optional_time(ms: Option<i64>) -> Result<Option<DateTime<Utc>>, StoreError> {
    ms.map(time_of).transpose()
}

impl TryFrom<SummaryRow> for CallSummary {
    type Error = StoreError;
    fn try_from(r: SummaryRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: parse_id(&r.id)?,
            call_sid: r.call_sid,
            direction: r.direction,
            from_number: r.from_number,
            to_number: r.to_number,
            agent_id: optional_id(r.agent_id)?,
            phone_number_id: optional_id(r.phone_number_id)?,
            lead_id: optional_id(r.lead_id)?,
            conversation_id: optional_id(r.conversation_id)?,
            status: r.status,
            started_at: time_of(r.started_at)?,
            answered_at: optional_time(r.answered_at)?,
            ended_at: optional_time(r.ended_at)?,
            duration_ms: r.duration_ms,
            end_reason: r.end_reason,
            failure: r.failure,
            summary: r.summary,
            sentiment: r.sentiment,
        })
    }
}

#[derive(sqlx::FromRow)]
struct TurnRow {
    seq: i64,
    speaker: String,
    text: String,
    interrupted: i64,
    started_at: i64,
    endpointing_ms: Option<i64>,
    stt_ms: Option<i64>,
    retrieval_ms: Option<i64>,
    llm_first_token_ms: Option<i64>,
    llm_first_sentence_ms: Option<i64>,
    tts_first_byte_ms: Option<i64>,
    voice_to_voice_ms: Option<i64>,
}

fn ms(value: Option<i64>) -> Option<u32> {
    value.and_then(|v| u32::try_from(v).ok())
}

impl TryFrom<TurnRow> for CallTurn {
    type Error = StoreError;
    fn try_from(t: TurnRow) -> Result<Self, StoreError> {
        let stages = StageTimings {
            endpointing_ms: ms(t.endpointing_ms),
            stt_ms: ms(t.stt_ms),
            retrieval_ms: ms(t.retrieval_ms),
            llm_first_token_ms: ms(t.llm_first_token_ms),
            llm_first_sentence_ms: ms(t.llm_first_sentence_ms),
            tts_first_byte_ms: ms(t.tts_first_byte_ms),
            voice_to_voice_ms: ms(t.voice_to_voice_ms),
        };
        Ok(Self {
            seq: t.seq,
            speaker: t.speaker,
            text: t.text,
            interrupted: t.interrupted != 0,
            at: time_of(t.started_at)?,
            timings: TurnTimings {
                stages,
                runtime_ms: stages.runtime_overhead_ms(),
            },
        })
    }
}

impl Store {
    /// The tenant's calls matching `filter`, newest first, `limit` a page after `cursor`.
    pub async fn calls(
        &self,
        tenant: TenantId,
        filter: &CallFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<CallPage, StoreError> {
        let after = page_cursor(cursor)?;
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<SummaryRow> = sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls
             WHERE tenant_id = $1
               AND ($2 IS NULL OR status = $2)
               AND ($3 IS NULL OR direction = $3)
               AND ($4 IS NULL OR agent_id = $4)
               AND ($5 IS NULL OR from_number = $5 OR to_number = $5)
               AND ($6 IS NULL OR started_at >= $6)
               AND ($7 IS NULL OR started_at < $7)
               AND ($8 IS NULL OR sentiment = $8)
               AND ($9 IS NULL OR started_at < $9 OR (started_at = $9 AND id < $10))
             ORDER BY started_at DESC, id DESC LIMIT $11"
        ))
        .bind(tenant.to_string())
        .bind(filter.status.as_deref())
        .bind(filter.direction.as_deref())
        .bind(filter.agent.map(|a| a.to_string()))
        .bind(filter.number.as_deref())
        .bind(filter.from_ms)
        .bind(filter.to_ms)
        .bind(filter.sentiment.as_deref())
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id.to_string()).unwrap_or_default())
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let (items, next_cursor) = page_from_rows(rows, limit, |c: &CallSummary| {
            time_id_cursor(c.started_at.timestamp_millis(), c.id)
        })?;
        Ok(CallPage { items, next_cursor })
    }

    /// One call of the tenant with its transcript and stage timings.
    pub async fn call_detail(
        &self,
        tenant: TenantId,
        id: CallId,
    ) -> Result<CallDetail, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<SummaryRow> = sqlx::query_as(&format!(
            "SELECT {SUMMARY_COLUMNS} FROM calls WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let row = row.ok_or(StoreError::NotFound)?;
        let turns: Vec<TurnRow> = sqlx::query_as(
            "SELECT seq, speaker, text, interrupted, started_at, endpointing_ms, stt_ms, retrieval_ms,
                llm_first_token_ms, llm_first_sentence_ms, tts_first_byte_ms, voice_to_voice_ms
             FROM call_turns WHERE tenant_id = $1 AND call_id = $2 ORDER BY seq",
        )
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let extracted = parse_json(&row.extracted)?;
        Ok(CallDetail {
            call: row.try_into()?,
            extracted,
            turns: turns
                .into_iter()
                .map(CallTurn::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}
