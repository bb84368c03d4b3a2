//! Restart intensity, as in Erlang/OTP: at most N restarts within a window. A child that
//! fails more often than that is not restarted again; its supervisor escalates instead (the
//! table in the crate docs says what escalation means for each child).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max_restarts` restarts within `within`; one more is an escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed in the window.
    pub max_restarts: u32,
    /// The sliding window.
    pub within: Duration,
}

impl Default for RestartPolicy {
    /// A pipeline child may restart 3 times in 60 s.
    fn default() -> Self {
        Self {
            max_restarts: 3,
            within: Duration::from_secs(60),
        }
    }
}

/// Restarts used so far under a policy.
#[derive(Debug, Clone)]
pub struct RestartBudget {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
}

impl RestartBudget {
    /// A fresh budget.
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            recent: VecDeque::new(),
        }
    }

    /// Records a failure at `now`; true when a restart is still allowed.
    pub fn allow_restart(&mut self, now: Instant) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= self.policy.within)
        {
            self.recent.pop_front();
        }
        if self.recent.len() as u32 >= self.policy.max_restarts {
            return false;
        }
        self.recent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_restarts_in_a_minute_are_allowed_and_the_fourth_escalates() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(RestartPolicy::default());
        for i in 0..3 {
            assert!(budget.allow_restart(start + Duration::from_secs(i)));
        }
        assert!(!budget.allow_restart(start + Duration::from_secs(10)));
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let start = Instant::now();
        let mut budget = RestartBudget::new(RestartPolicy::default());
        for i in 0..3 {
            assert!(budget.allow_restart(start + Duration::from_secs(i)));
        }
        assert!(budget.allow_restart(start + Duration::from_secs(61)));
    }
}
