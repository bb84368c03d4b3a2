//! Calls and their transcripts. The voice webhook creates the call row when Twilio rings;
//! the runtime then records through the [`CallLog`] port, which this store implements:
//! answered, each line with its stage timings as it happens (a crash mid-call keeps what
//! was said), how it ended, what it consumed (rows of `usage_records`, see `usage.rs`) and,
//! once the model has written it, the post-call analysis on the call's row.

use std::collections::BTreeMap;

use actors::domain::{AgentId, CallId, PhoneNumberId, TenantId, E164};
use actors::ports::{
    CallAnalysis, CallInfo, CallLog, CallOutcome, CallUsage, PortResult, Sentiment, Speaker,
    TurnRecord,
};
use async_trait::async_trait;

use super::{leads, now_ms, parse_id, to_json, usage, Actor, Scope, Store, StoreError};

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A customer called the tenant's number.
    Inbound,
    /// The agent called a customer.
    Outbound,
}

/// A call as the webhook (or an outbound dial) creates it.
#[derive(Debug, Clone)]
pub struct NewCall {
    /// The call.
    pub id: CallId,
    /// Twilio's id of the call (`CA…`), unique across the platform.
    pub call_sid: String,
    /// The agent that answers.
    pub agent: AgentId,
    /// The tenant's number on the call.
    pub phone_number: PhoneNumberId,
    /// Which way.
    pub direction: Direction,
    /// The calling number (anything Twilio sends: E.164, `client:…`, a SIP URI).
    pub from: String,
    /// The called number.
    pub to: E164,
}

impl NewCall {
    /// The row of an inbound `call` Twilio rang us with as `call_sid`, on the tenant's
    /// number `phone_number`.
    pub fn inbound(call: &CallInfo, call_sid: &str, phone_number: PhoneNumberId) -> Self {
        Self {
            id: call.call_id,
            call_sid: call_sid.to_owned(),
            agent: call.agent,
            phone_number,
            direction: Direction::Inbound,
            from: call.customer.clone(),
            to: call.business_number.clone(),
        }
    }
}

impl Store {
    /// Records a call Twilio is ringing us with (or that we are placing), linked to the lead
    /// of the customer's number when the tenant has one.
    pub async fn create_call(&self, tenant: TenantId, call: &NewCall) -> Result<(), StoreError> {
        let query = sqlx::query(
            "INSERT INTO calls (id, tenant_id, call_sid, agent_id, phone_number_id, direction, from_number, to_number,
                status, started_at, created_at, updated_at, lead_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ringing', $9, $9, $9,
                (SELECT id FROM leads WHERE tenant_id = $2 AND phone = $10))",
        )
        .bind(call.id.to_string())
        .bind(tenant.to_string())
        .bind(&call.call_sid)
        .bind(call.agent.to_string())
        .bind(call.phone_number.to_string())
        .bind(match call.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        })
        .bind(&call.from)
        .bind(call.to.to_string())
        .bind(now_ms())
        .bind(match call.direction {
            Direction::Inbound => call.from.clone(),
            Direction::Outbound => call.to.to_string(),
        });
        self.write_one(tenant, query)
            .await
            .map(|_| ())
            .map_err(|e| {
                refused_call(
                    e,
                    Some(StoreError::BadReference(
                        "the call's agent or number is not this tenant's",
                    )),
                )
            })
    }
}

/// What a write of a call's row the database refused means: its CallSid is another call's,
/// or (for `bad_reference`) it names an agent or number that is not the tenant's.
fn refused_call(error: StoreError, bad_reference: Option<StoreError>) -> StoreError {
    match error {
        StoreError::Database(db) => StoreError::refused_as(
            Some(StoreError::Conflict(
                "a call with this CallSid already exists",
            )),
            bad_reference,
        )(db),
        other => other,
    }
}

impl Store {
    /// A call that rang but was not admitted (the tenant was at its limit, the server was
    /// draining): `busy`, with the reason kept for the call log.
    pub async fn refuse_call(
        &self,
        tenant: TenantId,
        call: CallId,
        reason: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let query = sqlx::query(
            "UPDATE calls SET status = 'busy', end_reason = 'refused', failure = $3, ended_at = $4,
                duration_ms = 0, updated_at = $4
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(call.to_string())
        .bind(reason)
        .bind(now);
        update_call(self, tenant, query).await
    }
}

/// Runs an update of one call's row; the call must exist.
async fn update_call<'q>(
    store: &Store,
    tenant: TenantId,
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
) -> Result<(), StoreError> {
    match store.write_one(tenant, query).await? {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

#[async_trait]
impl CallLog for Store {
    async fn call_started(&self, call: &CallInfo) -> PortResult<()> {
        let query = sqlx::query(
            "UPDATE calls SET status = 'in-progress', answered_at = $3, updated_at = $3
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(call.tenant.to_string())
        .bind(call.call_id.to_string())
        .bind(now_ms());
        update_call(self, call.tenant, query)
            .await
            .map_err(|e| e.into_port("call log"))
    }
    async fn turn(&self, call: &CallInfo, turn: &TurnRecord) -> PortResult<()> {
        let t = turn.timings;
        let query = sqlx::query(
            "INSERT INTO call_turns (id, tenant_id, call_id, seq, speaker, text, interrupted, started_at,
                endpointing_ms, stt_ms, llm_first_token_ms, tts_first_byte_ms, voice_to_voice_ms, created_at,
                llm_first_sentence_ms, retrieval_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $8, $14, $15)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(call.tenant.to_string())
        .bind(call.call_id.to_string())
        .bind(i64::from(turn.seq))
        .bind(match turn.speaker {
            Speaker::Customer => "caller",
            Speaker::Agent => "agent",
            Speaker::Staff => "staff",
        })
        .bind(&turn.text)
        .bind(i64::from(turn.interrupted))
        .bind(now_ms())
        .bind(t.endpointing_ms.map(i64::from))
        .bind(t.stt_ms.map(i64::from))
        .bind(t.llm_first_token_ms.map(i64::from))
        .bind(t.tts_first_byte_ms.map(i64::from))
        .bind(t.voice_to_voice_ms.map(i64::from))
        .bind(t.llm_first_sentence_ms.map(i64::from))
        .bind(t.retrieval_ms.map(i64::from));
        self.write_one(call.tenant, query)
            .await
            .map(|_| ())
            .map_err(|e| e.into_port("call log"))
    }

    async fn tool_called(&self, call: &CallInfo, tool: &str) -> PortResult<()> {
        let query = sqlx::query(
            "INSERT INTO call_tool_calls (id, tenant_id, call_id, name, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(call.tenant.to_string())
        .bind(call.call_id.to_string())
        .bind(tool)
        .bind(now_ms());
        self.write_one(call.tenant, query)
            .await
            .map(|_| ())
            .map_err(|e| e.into_port("call log"))
    }

    async fn call_ended(&self, call: &CallInfo, outcome: &CallOutcome) -> PortResult<()> {
        let (status, reason, failure) = match outcome {
            CallOutcome::Completed => ("completed", "completed", None),
            CallOutcome::Transferred(_) => ("completed", "transferred", None),
            CallOutcome::Failed(why) => ("failed", "failed", Some(why.clone())),
        };
        let query = sqlx::query(
            "UPDATE calls SET status = $4, end_reason = $5, failure = $6, ended_at = $3, updated_at = $3,
                duration_ms = $3 - COALESCE(answered_at, started_at)
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(call.tenant.to_string())
        .bind(call.call_id.to_string())
        .bind(now_ms())
        .bind(status)
        .bind(reason)
        .bind(failure);
        update_call(self, call.tenant, query)
            .await
            .map_err(|e| e.into_port("call log"))
    }

    async fn usage(&self, call: &CallInfo, usage: &CallUsage) -> PortResult<()> {
        usage::record_call_usage(self, call, usage)
            .await
            .map_err(|e| e.into_port("call log"))
    }

    /// Files the analysis on the call and, in the same transaction, on the customer's lead
    /// (created if they have none): the sentiment, and the extracted fields as
    /// `leads::learn` sorts them, recorded in the lead's trail as the system's, from this call.
    async fn analysis(
        &self,
        call: &CallInfo,
        analysis: &CallAnalysis,
    ) -> PortResult<BTreeMap<String, String>> {
        let run = async {
            let mut tx = self.begin(Scope::Tenant(call.tenant)).await?;
            let updated = sqlx::query(
                "UPDATE calls SET summary = $3, sentiment = $4, extracted = $5, updated_at = $6
                 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(call.tenant.to_string())
            .bind(call.call_id.to_string())
            .bind(analysis.summary.clone())
            .bind(analysis.sentiment.as_str())
            .bind(to_json(&analysis.extracted))
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            leads::learn(
                &mut tx,
                call.tenant,
                &call.customer,
                (Actor::System, Some(call.call_id)),
                Some(analysis.sentiment),
                analysis.extracted.clone(),
            )
            .await?;
            let lead = leads::customer_variables(&mut tx, call.tenant, &call.customer).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(lead)
        };
        run.await.map_err(|e| e.into_port("call log"))
    }
}

/// A call as recorded: how it went and what was said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// `ringing`, `in-progress`, `completed`, `failed`, …
    pub status: String,
    /// `completed`, `transferred` or `failed`, once it ended.
    pub end_reason: Option<String>,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// From answer to end.
    pub duration_ms: Option<i64>,
    /// The post-call analysis's few sentences, once the model wrote them.
    pub summary: Option<String>,
    /// How the customer came across, per the analysis.
    pub sentiment: Option<Sentiment>,
    /// What the analysis extracted, following the agent's schema (empty until then).
    pub extracted: serde_json::Map<String, serde_json::Value>,
    /// The transcript with stage timings, in order.
    pub turns: Vec<TurnRecord>,
}

impl Store {
    /// The tenant's call with this Twilio CallSid.
    pub async fn call_by_sid(
        &self,
        tenant: TenantId,
        call_sid: &str,
    ) -> Result<CallId, StoreError> {
        let mut tx = self.begin_read(Scope::Tenant(tenant)).await?;
        let id: Option<String> =
            sqlx::query_scalar("SELECT id FROM calls WHERE tenant_id = $1 AND call_sid = $2")
                .bind(tenant.to_string())
                .bind(call_sid)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        parse_id(&id.ok_or(StoreError::NotFound)?)
    }

    /// Files the SID Twilio gave an outbound call we had recorded before dialling.
    pub async fn set_call_sid(
        &self,
        tenant: TenantId,
        call: CallId,
        call_sid: &str,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE calls SET call_sid = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.to_string())
        .bind(call.to_string())
        .bind(call_sid)
        .bind(now_ms());
        update_call(self, tenant, query)
            .await
            .map_err(|e| refused_call(e, None))
    }

    /// One call of the tenant with its transcript, as the runtime recorded it.
    pub async fn call_record(
        &self,
        tenant: TenantId,
        call: CallId,
    ) -> Result<CallRecord, StoreError> {
        let detail = self.call_detail(tenant, call).await?;
        let sentiment = detail
            .call
            .sentiment
            .map(|raw| {
                Sentiment::parse(&raw)
                    .ok_or_else(|| StoreError::Corrupt(format!("`{raw}` is not a sentiment")))
            })
            .transpose()?;
        let turns = detail
            .turns
            .into_iter()
            .map(|t| TurnRecord {
                seq: u32::try_from(t.seq).unwrap_or(u32::MAX),
                speaker: match t.speaker.as_str() {
                    "caller" => Speaker::Customer,
                    "agent" => Speaker::Agent,
                    _ => Speaker::Staff,
                },
                text: t.text,
                interrupted: t.interrupted,
                timings: t.timings.stages,
            })
            .collect();
        Ok(CallRecord {
            status: detail.call.status,
            end_reason: detail.call.end_reason,
            failure: detail.call.failure,
            duration_ms: detail.call.duration_ms,
            summary: detail.call.summary,
            sentiment,
            extracted: detail.extracted,
            turns,
        })
    }
}

/// A call's status as Twilio reports it in a status callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwilioCallStatus {
    /// Waiting to be placed.
    Queued,
    /// Ringing.
    Ringing,
    /// Answered.
    InProgress,
    /// Ended after being answered.
    Completed,
    /// The callee was busy.
    Busy,
    /// The call could not be placed.
    Failed,
    /// Nobody answered.
    NoAnswer,
    /// Hung up before it was answered.
    Canceled,
}

impl TwilioCallStatus {
    /// Parses Twilio's `CallStatus` value.
    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "queued" => Self::Queued,
            "ringing" => Self::Ringing,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "busy" => Self::Busy,
            "failed" => Self::Failed,
            "no-answer" => Self::NoAnswer,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::NoAnswer => "no-answer",
            Self::Canceled => "canceled",
        }
    }

    /// The call is over: nothing more will happen on it.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Ringing | Self::InProgress)
    }
}

impl Store {
    /// Applies a Twilio status callback to the call with this CallSid, wherever it belongs
    /// (the callback carries no tenant). A final status sets the end time once and, when
    /// Twilio gives it, the duration; a call the runtime already marked failed stays failed.
    /// False when no call has that CallSid.
    pub async fn apply_call_status(
        &self,
        call_sid: &str,
        status: TwilioCallStatus,
        duration_secs: Option<i64>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let now = now_ms();
        let updated = sqlx::query(
            "UPDATE calls SET
                status = CASE WHEN status = 'failed' THEN status ELSE $2 END,
                ended_at = CASE WHEN $3 THEN COALESCE(ended_at, $5) ELSE ended_at END,
                duration_ms = CASE WHEN $4 IS NOT NULL THEN $4 * 1000 ELSE duration_ms END,
                updated_at = $5
             WHERE call_sid = $1",
        )
        .bind(call_sid)
        .bind(status.as_str())
        .bind(status.is_final())
        .bind(duration_secs)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(updated > 0)
    }
}
