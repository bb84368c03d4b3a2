//! Analytics for staff: calls, answer rate, durations, voice-to-voice latency and each
//! stage's, sentiment, the lead funnel, texts and tool use, over a period and per bucket
//! (a day in the tenant's timezone).
//!
//! Everything is computed in SQL that both backends run alike: percentiles are nearest-rank
//! (the smallest value with at least p % of the values at or below it) from window
//! functions, averages are sums and counts divided here, so PostgreSQL and SQLite give the
//! same figures for the same rows.

use std::collections::BTreeMap;

use actors::domain::TenantId;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::tenants::time_of;
use super::{Scope, Store, StoreError};

/// The stages of an agent's reply, as recorded on each turn.
pub const STAGES: &[&str] = &[
    "endpointing_ms",
    "stt_ms",
    "retrieval_ms",
    "llm_first_token_ms",
    "llm_first_sentence_ms",
    "tts_first_byte_ms",
    "voice_to_voice_ms",
];

/// The median and 95th percentile of some milliseconds (absent without values).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Percentiles {
    /// Median.
    pub p50: Option<i64>,
    /// 95th percentile.
    pub p95: Option<i64>,
}

/// Call figures of a period or a bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CallFigures {
    /// Calls that started (refused ones included).
    pub calls: i64,
    /// Calls the agent picked up.
    pub answered: i64,
    /// Mean length of answered calls, in milliseconds.
    pub duration_ms_avg: Option<f64>,
    /// Length of answered calls.
    pub duration_ms: Percentiles,
    /// End of the caller's speech to the agent's first audio, over the agent's replies.
    pub voice_to_voice_ms: Percentiles,
}

/// One bucket of the period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// Where it starts (local midnight, as UTC).
    pub start: DateTime<Utc>,
    /// Its figures.
    #[serde(flatten)]
    pub figures: CallFigures,
}

/// The analytics of a period.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AnalyticsSummary {
    /// Start of the period.
    pub from: DateTime<Utc>,
    /// End of the period (exclusive).
    pub to: DateTime<Utc>,
    /// The whole period's call figures.
    #[serde(flatten)]
    pub totals: CallFigures,
    /// Each stage of the agent's replies, by name (`stt_ms`, `llm_first_token_ms`, …).
    pub stages: BTreeMap<String, Percentiles>,
    /// Analysed calls by sentiment.
    pub sentiment: BTreeMap<String, i64>,
    /// Leads created in the period, by their status now.
    pub lead_funnel: BTreeMap<String, i64>,
    /// Texts by direction (`inbound`, `outbound`).
    pub sms: BTreeMap<String, i64>,
    /// Tools the agents called during calls, by name.
    pub tool_calls: BTreeMap<String, i64>,
    /// Per bucket, oldest first.
    pub buckets: Vec<Bucket>,
}

/// `WITH b(i, lo, hi) AS (VALUES …)` of the buckets (integers this module made, inlined).
fn buckets_cte(buckets: &[(i64, i64)]) -> String {
    let rows: Vec<String> = buckets
        .iter()
        .enumerate()
        .map(|(i, (lo, hi))| format!("({i}, {lo}, {hi})"))
        .collect();
    format!("b(i, lo, hi) AS (VALUES {})", rows.join(", "))
}

impl Store {
    /// The tenant's analytics over `buckets` (consecutive `[start, end)` Unix-ms ranges).
    pub async fn analytics(
        &self,
        tenant: TenantId,
        buckets: &[(i64, i64)],
    ) -> Result<AnalyticsSummary, StoreError> {
        let (Some(&(from, _)), Some(&(_, to))) = (buckets.first(), buckets.last()) else {
            return Err(StoreError::BadReference("the period has no buckets"));
        };
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let t = tenant.to_string();
        let cte = buckets_cte(buckets);

        // Counts and duration sums per bucket.
        let counts: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(&format!(
            "WITH {cte}
             SELECT b.i, COUNT(c.id),
                CAST(COALESCE(SUM(CASE WHEN c.answered_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.duration_ms IS NOT NULL THEN c.duration_ms ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN c.answered_at IS NOT NULL AND c.duration_ms IS NOT NULL THEN 1 ELSE 0 END), 0) AS BIGINT)
             FROM b LEFT JOIN calls c ON c.tenant_id = $1 AND c.started_at >= b.lo AND c.started_at < b.hi
             GROUP BY b.i ORDER BY b.i"
        ))
        .bind(&t)
        .fetch_all(&mut *tx)
        .await?;

        let durations = "SELECT started_at AS t, duration_ms AS x FROM calls
             WHERE tenant_id = $1 AND answered_at IS NOT NULL AND duration_ms IS NOT NULL";
        let stage = |column: &str| {
            format!(
                "SELECT c.started_at AS t, turn.{column} AS x FROM call_turns turn
                 JOIN calls c ON c.tenant_id = turn.tenant_id AND c.id = turn.call_id
                 WHERE turn.tenant_id = $1 AND turn.speaker = 'agent' AND turn.{column} IS NOT NULL"
            )
        };
        let whole = [(from, to)];
        let duration_by_bucket = percentiles(&mut tx, &t, durations, buckets).await?;
        let v2v_by_bucket = percentiles(&mut tx, &t, &stage("voice_to_voice_ms"), buckets).await?;
        let mut stages = BTreeMap::new();
        for column in STAGES {
            let all = percentiles(&mut tx, &t, &stage(column), &whole).await?;
            stages.insert((*column).to_owned(), all[0]);
        }
        let duration_all = percentiles(&mut tx, &t, durations, &whole).await?[0];

        let range = (t.as_str(), from, to);
        let sentiment = counts_by(
            &mut tx,
            "SELECT sentiment, COUNT(*) FROM calls WHERE tenant_id = $1 AND started_at >= $2
             AND started_at < $3 AND sentiment IS NOT NULL GROUP BY sentiment",
            range,
        )
        .await?;
        let lead_funnel = counts_by(
            &mut tx,
            "SELECT status, COUNT(*) FROM leads WHERE tenant_id = $1 AND created_at >= $2
             AND created_at < $3 GROUP BY status",
            range,
        )
        .await?;
        let sms = counts_by(
            &mut tx,
            "SELECT direction, COUNT(*) FROM messages WHERE tenant_id = $1 AND channel = 'sms'
             AND created_at >= $2 AND created_at < $3 GROUP BY direction",
            range,
        )
        .await?;
        let tool_calls = counts_by(
            &mut tx,
            "SELECT name, COUNT(*) FROM call_tool_calls WHERE tenant_id = $1 AND created_at >= $2
             AND created_at < $3 GROUP BY name",
            range,
        )
        .await?;
        tx.commit().await?;

        let figures = |(calls, answered, sum, timed): (i64, i64, i64, i64), d, v| CallFigures {
            calls,
            answered,
            duration_ms_avg: (timed > 0).then(|| sum as f64 / timed as f64),
            duration_ms: d,
            voice_to_voice_ms: v,
        };
        let mut totals = (0, 0, 0, 0);
        let mut bucket_list = Vec::with_capacity(buckets.len());
        for (i, (_, calls, answered, sum, timed)) in counts.into_iter().enumerate() {
            totals = (
                totals.0 + calls,
                totals.1 + answered,
                totals.2 + sum,
                totals.3 + timed,
            );
            bucket_list.push(Bucket {
                start: time_of(buckets[i].0)?,
                figures: figures(
                    (calls, answered, sum, timed),
                    duration_by_bucket[i],
                    v2v_by_bucket[i],
                ),
            });
        }
        let v2v_all = stages.get("voice_to_voice_ms").copied().unwrap_or_default();
        Ok(AnalyticsSummary {
            from: time_of(from)?,
            to: time_of(to)?,
            totals: figures(totals, duration_all, v2v_all),
            stages,
            sentiment,
            lead_funnel,
            sms,
            tool_calls,
            buckets: bucket_list,
        })
    }
}

/// Counts by key from `sql`, a `GROUP BY` query of `(key, count)` rows of tenant `$1` in
/// the period `[$2, $3)`.
async fn counts_by(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sql: &str,
    (tenant, from, to): (&str, i64, i64),
) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql)
        .bind(tenant)
        .bind(from)
        .bind(to)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.into_iter().collect())
}

/// p50 and p95 of `source`'s `x` per bucket of its `t` (a query of rows `(t, x)` filtered
/// by tenant `$1`), in bucket order.
async fn percentiles(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    source: &str,
    buckets: &[(i64, i64)],
) -> Result<Vec<Percentiles>, StoreError> {
    let cte = buckets_cte(buckets);
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(&format!(
        "WITH {cte},
         v AS (SELECT b.i AS i, s.x AS x FROM ({source}) s JOIN b ON s.t >= b.lo AND s.t < b.hi),
         r AS (SELECT i, x, ROW_NUMBER() OVER (PARTITION BY i ORDER BY x) AS rn,
                  COUNT(*) OVER (PARTITION BY i) AS n FROM v)
         SELECT i, MIN(CASE WHEN rn * 100 >= n * 50 THEN x END), MIN(CASE WHEN rn * 100 >= n * 95 THEN x END)
         FROM r GROUP BY i"
    ))
    .bind(tenant)
    .fetch_all(&mut **tx)
    .await?;
    let mut out = vec![Percentiles::default(); buckets.len()];
    for (i, p50, p95) in rows {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| out.get_mut(i)) {
            *slot = Percentiles { p50, p95 };
        }
    }
    Ok(out)
}
