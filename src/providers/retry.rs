//! One retry policy for every provider adapter: how many times a failed request is repeated
//! and how long to pause between attempts, always within the caller's time budget.

use std::time::Duration;

/// A retry is made only if at least this much of the time budget is left once its backoff
/// is over: an attempt given less would most likely time out, and the caller is waiting.
pub(crate) const MIN_ATTEMPT_TIME: Duration = Duration::from_millis(250);

/// How a request that failed in a way a repeat may cure is retried: up to `max_retries`
/// more attempts, each after a "full jitter" backoff (a random pause between zero and a
/// ceiling that starts at `base_delay` and doubles per retry up to `max_delay`), so clients
/// that failed together do not come back together. A `Retry-After` from the server replaces
/// the backoff. Whatever the policy, a retry is made only if it fits in what is left of the
/// configured timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0 turns retrying off.
    pub max_retries: u32,
    /// Ceiling of the first backoff.
    pub base_delay: Duration,
    /// Highest ceiling a backoff reaches, however many retries came before.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// Two retries, backoffs of up to 100 ms then 200 ms: a blip is ridden out while a caller
    /// on the phone barely notices, and a provider that is down is not hammered.
    pub const DEFAULT: Self = Self {
        max_retries: 2,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };

    /// No retries: each request is attempted once.
    pub const NONE: Self = Self {
        max_retries: 0,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
    };

    /// The pause before retry number `retry` (1 for the first), or `None` when there is to be
    /// no retry: the retries are used up, the server asked for a longer wait than the
    /// `remaining` time allows, or too little time would be left for the attempt. `jitter`,
    /// in `[0, 1]`, picks the point within the backoff's range.
    pub(crate) fn delay(
        &self,
        retry: u32,
        retry_after: Option<Duration>,
        remaining: Duration,
        jitter: f64,
    ) -> Option<Duration> {
        if retry == 0 || retry > self.max_retries {
            return None;
        }
        let room = remaining.checked_sub(MIN_ATTEMPT_TIME)?;
        if let Some(wait) = retry_after {
            return (wait <= room).then_some(wait);
        }
        let doublings = (retry - 1).min(16);
        let ceiling = self
            .base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        Some(ceiling.mul_f64(jitter.clamp(0.0, 1.0)).min(room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceilings_double_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy {
            max_retries: 10,
            ..RetryPolicy::DEFAULT
        };
        let budget = Duration::from_secs(60);
        let ms = Duration::from_millis;
        assert_eq!(policy.delay(1, None, budget, 1.0), Some(ms(100)));
        assert_eq!(policy.delay(2, None, budget, 1.0), Some(ms(200)));
        assert_eq!(policy.delay(3, None, budget, 1.0), Some(ms(400)));
        assert_eq!(policy.delay(5, None, budget, 1.0), Some(ms(1000)));
        assert_eq!(policy.delay(10, None, budget, 1.0), Some(ms(1000)));
        assert_eq!(policy.delay(2, None, budget, 0.5), Some(ms(100)));
        assert_eq!(policy.delay(2, None, budget, 0.0), Some(Duration::ZERO));
    }

    #[test]
    fn no_retry_is_made_past_the_policy_or_outside_the_budget() {
        let policy = RetryPolicy::DEFAULT;
        let ms = Duration::from_millis;
        assert_eq!(policy.delay(3, None, ms(10_000), 0.5), None);
        assert_eq!(RetryPolicy::NONE.delay(1, None, ms(10_000), 0.5), None);
        // Too little left for an attempt after any pause.
        assert_eq!(policy.delay(1, None, MIN_ATTEMPT_TIME - ms(1), 0.0), None);
        // A backoff is shortened so the attempt after it still fits.
        assert_eq!(
            policy.delay(2, None, MIN_ATTEMPT_TIME + ms(50), 1.0),
            Some(ms(50))
        );
    }

    #[test]
    fn a_retry_after_is_waited_for_only_when_it_fits() {
        let policy = RetryPolicy::DEFAULT;
        let secs = Duration::from_secs;
        assert_eq!(policy.delay(1, Some(secs(2)), secs(5), 0.3), Some(secs(2)));
        assert_eq!(policy.delay(1, Some(secs(5)), secs(5), 0.3), None);
        assert_eq!(policy.delay(3, Some(secs(0)), secs(5), 0.3), None);
    }
}
