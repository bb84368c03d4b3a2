//! Monthly minute quotas. A tenant with `monthly_minute_quota` set takes no new calls once
//! its answered minutes this calendar month (in the tenant's own timezone) reach it; calls
//! already live finish. Unset means unlimited.

use actors::domain::TenantId;
use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::store::{Store, StoreError};

/// The quota, in minutes, when the tenant has used it all this month.
pub async fn used_up(store: &Store, tenant: TenantId) -> Result<Option<i64>, StoreError> {
    let settings = store.tenant(tenant).await?;
    let Some(quota) = settings.monthly_minute_quota else {
        return Ok(None);
    };
    let since = month_start_ms(&settings.timezone, Utc::now());
    let used = store.usage_totals(tenant, (since, i64::MAX)).await?;
    Ok((used.call_ms >= quota.saturating_mul(60_000)).then_some(quota))
}

/// Midnight on the first of this month in `timezone` (UTC when the name is unknown), as Unix
/// milliseconds.
fn month_start_ms(timezone: &str, now: DateTime<Utc>) -> i64 {
    let zone: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&zone);
    local_midnight_ms(zone, local.year(), local.month(), 1)
        .unwrap_or_else(|| now.timestamp_millis())
}

/// The month `year`-`month` in `timezone` as `[start, end)` Unix milliseconds.
pub fn month_range_ms(timezone: &str, year: i32, month: u32) -> Option<(i64, i64)> {
    let zone: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Some((
        local_midnight_ms(zone, year, month, 1)?,
        local_midnight_ms(zone, next_year, next_month, 1)?,
    ))
}

/// Local midnight of a date in `zone` (the first instant of the day, where a clock change
/// skips midnight), as Unix milliseconds.
pub fn local_midnight_ms(zone: chrono_tz::Tz, year: i32, month: u32, day: u32) -> Option<i64> {
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    (0..3).find_map(|hour| {
        zone.from_local_datetime(&date.and_hms_opt(hour, 0, 0)?)
            .earliest()
            .map(|t| t.timestamp_millis())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_starts_at_local_midnight_on_the_first() {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 3, 0, 0).unwrap();
        // 03:00 UTC on 1 November is still 31 October in Chicago (UTC-5).
        let chicago = month_start_ms("America/Chicago", now);
        assert_eq!(
            chicago,
            Utc.with_ymd_and_hms(2026, 10, 1, 5, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
        let utc = month_start_ms("Not/AZone", now);
        assert_eq!(
            utc,
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis()
        );
    }
}
