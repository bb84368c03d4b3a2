//! `/v1/analytics/summary` and `/v1/usage`: what the tenant's calls, texts and leads came to
//! over a period, per day in the tenant's timezone, and what it consumed in a month against
//! its limits. Every role reads them.

use chrono::{Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use axum::extract::State;

use super::error::{ApiError, Problem};
use super::extract::{Query, Staff};
use super::AppState;
use crate::calls::quota::{local_midnight_ms, month_range_ms};
use crate::store::{AnalyticsSummary, UsageTotals};

/// Longest period one summary covers.
const MAX_DAYS: i64 = 366;

/// The period of a summary.
#[derive(Deserialize, IntoParams)]
pub struct SummaryQuery {
    /// First day, `YYYY-MM-DD` in the tenant's timezone (default: six days before `to`).
    pub from: Option<String>,
    /// Last day, included (default: today).
    pub to: Option<String>,
    /// Bucket size: `day` (the only one).
    pub bucket: Option<String>,
}

/// The month of a usage report.
#[derive(Deserialize, IntoParams)]
pub struct UsageQuery {
    /// `YYYY-MM` in the tenant's timezone (default: this month).
    pub month: Option<String>,
}

/// What the tenant consumed in a month, in the units providers bill by, against its limits.
#[derive(Serialize, ToSchema)]
pub struct UsageReport {
    /// `YYYY-MM`.
    pub month: String,
    /// The month's start (local midnight on the first, as UTC).
    pub from: chrono::DateTime<Utc>,
    /// The next month's start.
    pub to: chrono::DateTime<Utc>,
    /// Minutes of calls, answer to end, rounded up.
    pub call_minutes: i64,
    /// Seconds of caller audio sent to speech-to-text, rounded up.
    pub stt_seconds: i64,
    /// The exact quantities.
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// The tenant's monthly minute quota, if it has one.
    pub monthly_minute_quota: Option<i64>,
    /// Minutes left this month under the quota.
    pub minutes_remaining: Option<i64>,
    /// The tenant's limit of calls live at once.
    pub concurrent_call_limit: i64,
}

fn date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| ApiError::field(field, "must be a date like 2026-03-02"))
}

/// The tenant's analytics per day: calls, answered, duration mean, p50 and p95,
/// voice-to-voice p50 and p95 (and each stage over the period), sentiment mix, lead funnel,
/// texts and tool calls.
#[utoipa::path(get, path = "/v1/analytics/summary", tag = "analytics", security(("bearer" = [])),
    params(SummaryQuery), responses((status = 200, body = AnalyticsSummary), (status = 422, body = Problem)))]
pub async fn summary(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<SummaryQuery>,
) -> Result<axum::Json<AnalyticsSummary>, ApiError> {
    if let Some(bucket) = query.bucket.as_deref().filter(|b| *b != "day") {
        return Err(ApiError::field(
            "bucket",
            format!("`{bucket}` is not a bucket size; use `day`"),
        ));
    }
    let tenant = state.store.tenant(staff.tenant()).await?;
    let zone: chrono_tz::Tz = tenant.timezone.parse().unwrap_or(chrono_tz::UTC);
    let today = Utc::now().with_timezone(&zone).date_naive();
    let to = query
        .to
        .as_deref()
        .map(|d| date("to", d))
        .transpose()?
        .unwrap_or(today);
    let from = match query.from.as_deref() {
        Some(d) => date("from", d)?,
        None => to - Duration::days(6),
    };
    let days = (to - from).num_days() + 1;
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::field(
            "from",
            format!("the period must be 1 to {MAX_DAYS} days, `from` not after `to`"),
        ));
    }
    let midnight = |d: NaiveDate| {
        local_midnight_ms(zone, d.year(), d.month(), d.day())
            .ok_or_else(|| ApiError::field("from", "is not a date this server can place"))
    };
    let mut buckets = Vec::with_capacity(days as usize);
    let mut day = from;
    while day <= to {
        let next = day + Duration::days(1);
        buckets.push((midnight(day)?, midnight(next)?));
        day = next;
    }
    Ok(axum::Json(
        state.store.analytics(staff.tenant(), &buckets).await?,
    ))
}

/// What the tenant consumed in a month (call minutes, speech-to-text seconds, model tokens,
/// characters spoken, text segments) against its quota and limits.
#[utoipa::path(get, path = "/v1/usage", tag = "analytics", security(("bearer" = [])),
    params(UsageQuery), responses((status = 200, body = UsageReport), (status = 422, body = Problem)))]
pub async fn usage(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<UsageQuery>,
) -> Result<axum::Json<UsageReport>, ApiError> {
    let tenant = state.store.tenant(staff.tenant()).await?;
    let zone: chrono_tz::Tz = tenant.timezone.parse().unwrap_or(chrono_tz::UTC);
    let (year, month) = match query.month.as_deref() {
        Some(raw) => {
            let first = date("month", &format!("{}-01", raw.trim()))
                .map_err(|_| ApiError::field("month", "must be a month like 2026-03"))?;
            (first.year(), first.month())
        }
        None => {
            let now = Utc::now().with_timezone(&zone);
            (now.year(), now.month())
        }
    };
    let (from, to) = month_range_ms(&tenant.timezone, year, month)
        .ok_or_else(|| ApiError::field("month", "is not a month this server can place"))?;
    let totals = state.store.usage_totals(staff.tenant(), (from, to)).await?;
    let call_minutes = (totals.call_ms + 59_999) / 60_000;
    let time = |ms| chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    Ok(axum::Json(UsageReport {
        month: format!("{year:04}-{month:02}"),
        from: time(from),
        to: time(to),
        call_minutes,
        stt_seconds: (totals.stt_ms + 999) / 1_000,
        totals,
        monthly_minute_quota: tenant.monthly_minute_quota,
        minutes_remaining: tenant
            .monthly_minute_quota
            .map(|quota| (quota - totals.call_ms / 60_000).max(0)),
        concurrent_call_limit: tenant.concurrent_call_limit,
    }))
}
