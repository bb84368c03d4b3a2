//! Metered usage: what each call consumed (call time, speech-to-text audio, model tokens,
//! characters spoken) as `usage_records` rows, one per kind and occasion, and their totals per
//! tenant for quotas, analytics and billing. Rows outlive the call they came from (the
//! reference is nulled when it is deleted), so a deleted call stays billed.

use actors::domain::{CallId, TenantId};
use actors::ports::{CallInfo, CallUsage};
use serde::Serialize;

use sqlx::{Any, Transaction};

use super::{now_ms, Scope, Store, StoreError};

/// Quantities of usage summed by kind, in the units providers bill by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageTotals {
    /// Milliseconds of calls, answer to end.
    pub call_ms: i64,
    /// Milliseconds of caller audio sent to speech-to-text.
    pub stt_ms: i64,
    /// Model tokens, prompt plus completion.
    pub llm_tokens: i64,
    /// Characters sent to text-to-speech.
    pub tts_characters: i64,
    /// SMS segments sent and received.
    pub sms_segments: i64,
}

impl UsageTotals {
    /// Adds `quantity` to the total of `kind`; a kind this build does not know is refused,
    /// since the schema's CHECK should have kept it out.
    fn add(&mut self, kind: &str, quantity: i64) -> Result<(), StoreError> {
        let total = match kind {
            "call_ms" => &mut self.call_ms,
            "stt_ms" => &mut self.stt_ms,
            "llm_tokens" => &mut self.llm_tokens,
            "tts_characters" => &mut self.tts_characters,
            "sms_segments" => &mut self.sms_segments,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "`{other}` is not a usage kind"
                )))
            }
        };
        *total = total.saturating_add(quantity);
        Ok(())
    }
}

/// Writes what a call consumed: one row per kind with a quantity, all or none.
pub(crate) async fn record_call_usage(
    store: &Store,
    call: &CallInfo,
    usage: &CallUsage,
) -> Result<(), StoreError> {
    let kinds = [
        ("call_ms", usage.call_ms),
        ("stt_ms", usage.stt_ms),
        ("llm_tokens", usage.llm_tokens),
        ("tts_characters", usage.tts_characters),
    ];
    let mut tx = store.begin(Scope::Tenant(call.tenant)).await?;
    let now = now_ms();
    let call_id = call.call_id.to_string();
    for (kind, quantity) in kinds {
        let quantity = i64::try_from(quantity).unwrap_or(i64::MAX);
        insert_usage(&mut tx, call.tenant, (kind, quantity), Some(&call_id), now).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adds one usage row inside the caller's transaction; a quantity of zero adds nothing. A
/// `call_id` the tenant does not have is `NotFound`.
pub(crate) async fn insert_usage(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    (kind, quantity): (&str, i64),
    call_id: Option<&str>,
    at_ms: i64,
) -> Result<(), StoreError> {
    if quantity <= 0 {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO usage_records (id, tenant_id, kind, quantity, call_id, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant.to_string())
    .bind(kind)
    .bind(quantity)
    .bind(call_id)
    .bind(at_ms)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::refused_as(None, Some(StoreError::NotFound)))?;
    Ok(())
}

/// Totals from `(kind, sum)` rows.
fn totals_of(rows: Vec<(String, i64)>) -> Result<UsageTotals, StoreError> {
    let mut totals = UsageTotals::default();
    for (kind, quantity) in rows {
        totals.add(&kind, quantity)?;
    }
    Ok(totals)
}

// PostgreSQL sums BIGINT into NUMERIC, which the `Any` driver cannot read: hence the casts.

impl Store {
    /// The tenant's usage in `[from_ms, to_ms)` (Unix milliseconds), by kind: what quotas and
    /// the usage report read.
    pub async fn usage_totals(
        &self,
        tenant: TenantId,
        (from_ms, to_ms): (i64, i64),
    ) -> Result<UsageTotals, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, CAST(SUM(quantity) AS BIGINT) FROM usage_records
             WHERE tenant_id = $1 AND occurred_at >= $2 AND occurred_at < $3 GROUP BY kind",
        )
        .bind(tenant.to_string())
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        totals_of(rows)
    }

    /// What one call of the tenant consumed, by kind.
    pub async fn call_usage(
        &self,
        tenant: TenantId,
        call: CallId,
    ) -> Result<UsageTotals, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT kind, CAST(SUM(quantity) AS BIGINT) FROM usage_records
             WHERE tenant_id = $1 AND call_id = $2 GROUP BY kind",
        )
        .bind(tenant.to_string())
        .bind(call.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        totals_of(rows)
    }
}

#[cfg(test)]
mod tests {
    use actors::domain::{CallId, Role, E164};
    use actors::ports::{CallAnalysis, CallInfo, CallLog, CallUsage, Sentiment};
    use secrecy::SecretString;

    use crate::settings::DatabaseKind;
    use crate::store::{
        Actor, AgentDraft, Direction, NewCall, NewUser, PhoneNumberDraft, Store, UsageTotals,
    };

    /// A fresh SQLite store, and a fresh PostgreSQL one when `TEST_DATABASE_URL` is set, so
    /// one run checks the same SQL on both.
    async fn stores() -> Vec<Store> {
        let dir = std::env::temp_dir().join(format!("sbusage-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let sqlite = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let mut stores = vec![
            Store::open(&SecretString::from(sqlite), DatabaseKind::Sqlite)
                .await
                .unwrap(),
        ];
        if let Some(server) = crate::testing::postgres_url() {
            let url = crate::testing::fresh_postgres_database(&server).await;
            stores.push(
                Store::open(&SecretString::from(url), DatabaseKind::Postgres)
                    .await
                    .unwrap(),
            );
        }
        stores
    }

    /// A tenant with an agent, a number and one call that started.
    async fn started_call(store: &Store, number: &str) -> CallInfo {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let (tenant, _) = store
            .register(
                "Acme",
                NewUser {
                    email: format!("owner-{unique}@acme.example"),
                    name: "Owner".to_owned(),
                    role: Role::Owner,
                    password_hash: None,
                },
            )
            .await
            .unwrap();
        let agent = store
            .save_agent(
                tenant.id,
                Actor::System,
                None,
                &AgentDraft::named("Front desk".to_owned()),
            )
            .await
            .unwrap();
        let number = E164::parse(number).unwrap();
        let phone = store
            .save_phone_number(
                tenant.id,
                Actor::System,
                None,
                &PhoneNumberDraft {
                    number: number.clone(),
                    agent_id: agent.id,
                    label: String::new(),
                },
            )
            .await
            .unwrap();
        let info = CallInfo {
            call_id: CallId::new(),
            tenant: tenant.id,
            agent: agent.id,
            customer: "+14155550100".to_owned(),
            business_number: number.clone(),
        };
        store
            .create_call(
                tenant.id,
                &NewCall {
                    id: info.call_id,
                    call_sid: format!("CA{unique}"),
                    agent: agent.id,
                    phone_number: phone.id,
                    direction: Direction::Inbound,
                    from: info.customer.clone(),
                    to: number,
                },
            )
            .await
            .unwrap();
        store.call_started(&info).await.unwrap();
        info
    }

    #[tokio::test]
    async fn usage_is_stored_per_kind_on_the_call_and_totalled_per_tenant() {
        for store in stores().await {
            let suffix = rand_suffix();
            let info = started_call(&store, &format!("+1415555{suffix}")).await;
            let other = started_call(&store, &format!("+1628555{suffix}")).await;
            let since = super::now_ms();
            let at_end = CallUsage {
                call_ms: 61_000,
                stt_ms: 12_340,
                llm_tokens: 900,
                tts_characters: 0,
            };
            store.usage(&info, &at_end).await.unwrap();
            let analysis_tokens = CallUsage {
                llm_tokens: 120,
                ..CallUsage::default()
            };
            store.usage(&info, &analysis_tokens).await.unwrap();
            store
                .usage(
                    &other,
                    &CallUsage {
                        call_ms: 5,
                        ..CallUsage::default()
                    },
                )
                .await
                .unwrap();

            let rows: i64 = {
                let mut tx = store
                    .begin(super::Scope::Tenant(info.tenant))
                    .await
                    .unwrap();
                let rows = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM usage_records WHERE tenant_id = $1 AND call_id = $2",
                )
                .bind(info.tenant.to_string())
                .bind(info.call_id.to_string())
                .fetch_one(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
                rows
            };
            assert_eq!(rows, 4, "one row per kind with a quantity, per record");

            let expected = UsageTotals {
                call_ms: 61_000,
                stt_ms: 12_340,
                llm_tokens: 1_020,
                tts_characters: 0,
                sms_segments: 0,
            };
            assert_eq!(
                store.call_usage(info.tenant, info.call_id).await.unwrap(),
                expected
            );
            assert_eq!(
                store
                    .usage_totals(info.tenant, (since, i64::MAX))
                    .await
                    .unwrap(),
                expected
            );
            assert_eq!(
                store
                    .usage_totals(info.tenant, (super::now_ms() + 60_000, i64::MAX))
                    .await
                    .unwrap(),
                UsageTotals::default(),
                "nothing after the window's start"
            );
            assert_eq!(
                store
                    .usage_totals(other.tenant, (0, i64::MAX))
                    .await
                    .unwrap()
                    .call_ms,
                5,
                "each tenant sees its own"
            );
            let unknown = CallInfo {
                call_id: CallId::new(),
                ..info.clone()
            };
            assert!(
                store.usage(&unknown, &at_end).await.is_err(),
                "no such call"
            );
            store.close().await;
        }
    }

    #[tokio::test]
    async fn the_analysis_is_stored_on_the_calls_row() {
        for store in stores().await {
            let info = started_call(&store, &format!("+1415555{}", rand_suffix())).await;
            let before = store.call_record(info.tenant, info.call_id).await.unwrap();
            assert_eq!((before.summary, before.sentiment), (None, None));
            assert!(before.extracted.is_empty());

            let analysis = CallAnalysis {
                summary: "Dana booked a tire change for Tuesday.".to_owned(),
                sentiment: Sentiment::Positive,
                extracted: serde_json::json!({"day": "Tuesday", "vehicle": {"make": "Honda"}})
                    .as_object()
                    .unwrap()
                    .clone(),
            };
            store.analysis(&info, &analysis).await.unwrap();
            let after = store.call_record(info.tenant, info.call_id).await.unwrap();
            assert_eq!(after.summary.as_deref(), Some(analysis.summary.as_str()));
            assert_eq!(after.sentiment, Some(Sentiment::Positive));
            assert_eq!(after.extracted, analysis.extracted);
            store.close().await;
        }
    }

    /// Four digits, so each test's numbers are its own (numbers are unique platform-wide).
    fn rand_suffix() -> String {
        format!("{:04}", uuid::Uuid::new_v4().as_u128() % 10_000)
    }
}
