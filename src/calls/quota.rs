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
    let used = store.usage_totals(tenant, since).await?;
    Ok((used.call_ms >= quota.saturating_mul(60_000)).then_some(quota))
}

/// Midnight on the first of this month in `timezone` (UTC when the name is unknown), as Unix
/// milliseconds.
fn month_start_ms(timezone: &str, now: DateTime<Utc>) -> i64 {
    let zone: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&zone);
    zone.with_ymd_and_hms(local.year(), local.month(), 1, 0, 0, 0)
        .earliest()
        .map_or_else(|| now.timestamp_millis(), |start| start.timestamp_millis())
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
