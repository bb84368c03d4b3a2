//! Fixed-window rate limits (login attempts per email and per client address). Kept in
//! process by default; with `REDIS_URL` the counters live in Redis so every node behind a
//! load balancer counts the same attempts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

/// Why an attempt was not allowed.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Too many attempts in the current window; try again after this long.
    #[error("too many attempts; try again in {} s", retry_after.as_secs())]
    Limited {
        /// Time until the window resets.
        retry_after: Duration,
    },
    /// The shared counter store could not be reached; refusing is safer than not counting.
    #[error("rate limiter unavailable: {0}")]
    Unavailable(String),
}

/// Where counters are kept.
pub enum RateLimiter {
    /// In this process: right for a single node.
    Local(Mutex<HashMap<String, Window>>),
    /// In Redis, shared by every node.
    Redis {
        /// Reconnecting connection.
        conn: Box<ConnectionManager>,
        /// Prefix of every key (`REDIS_KEY_PREFIX`).
        prefix: String,
    },
}

/// One counter's current window.
pub struct Window {
    started: Instant,
    count: u32,
}

/// Counters kept in process before expired ones are swept.
const LOCAL_SWEEP_AT: usize = 10_000;

/// Increments the counter and starts its expiry on the first hit, atomically, returning the
/// count and the milliseconds left in the window.
const REDIS_HIT: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {n, ttl}
";

impl RateLimiter {
    /// Counters in this process.
    pub fn local() -> Self {
        Self::Local(Mutex::new(HashMap::new()))
    }

    /// Counters in Redis; fails within a few seconds when Redis cannot be reached, so a
    /// misconfigured node stops at start-up instead of hanging.
    pub async fn redis(url: &SecretString, prefix: String) -> Result<Self, redis::RedisError> {
        let (_, conn) = crate::redis_client::connect(url).await?;
        Ok(Self::Redis {
            conn: Box::new(conn),
            prefix,
        })
    }

    /// Counts one attempt under `key` and refuses it when it is past `limit` in `window`.
    /// Keys are hashed, so no email address is written to Redis.
    pub async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<(), RateLimitError> {
        let digest = hex::encode(&Sha256::digest(key.as_bytes())[..16]);
        match self {
            RateLimiter::Local(windows) => {
                let now = Instant::now();
                let mut windows = windows.lock().unwrap_or_else(|e| e.into_inner());
                if windows.len() >= LOCAL_SWEEP_AT {
                    windows.retain(|_, w| now.duration_since(w.started) < window);
                }
                let w = windows.entry(digest).or_insert(Window {
                    started: now,
                    count: 0,
                });
                if now.duration_since(w.started) >= window {
                    *w = Window {
                        started: now,
                        count: 0,
                    };
                }
                w.count += 1;
                if w.count > limit {
                    return Err(RateLimitError::Limited {
                        retry_after: window.saturating_sub(now.duration_since(w.started)),
                    });
                }
                Ok(())
            }
            RateLimiter::Redis { conn, prefix } => {
                let (count, ttl_ms): (u32, u64) = redis::Script::new(REDIS_HIT)
                    .key(format!("{prefix}:rl:{digest}"))
                    .arg(window.as_millis() as u64)
                    .invoke_async(&mut (**conn).clone())
                    .await
                    .map_err(|e| RateLimitError::Unavailable(e.to_string()))?;
                if count > limit {
                    return Err(RateLimitError::Limited {
                        retry_after: Duration::from_millis(ttl_ms),
                    });
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn limits_then_resets(limiter: RateLimiter) {
        let key = format!("test-{}", uuid::Uuid::new_v4());
        let window = Duration::from_millis(300);
        for _ in 0..3 {
            limiter.hit(&key, 3, window).await.unwrap();
        }
        match limiter.hit(&key, 3, window).await {
            Err(RateLimitError::Limited { retry_after }) => assert!(retry_after <= window),
            other => panic!("the fourth attempt should be limited, got {other:?}"),
        }
        limiter.hit("another key", 3, window).await.unwrap();
        tokio::time::sleep(window + Duration::from_millis(50)).await;
        limiter.hit(&key, 3, window).await.unwrap();
    }

    #[tokio::test]
    async fn local_counters_limit_then_reset() {
        limits_then_resets(RateLimiter::local()).await;
    }

    #[tokio::test]
    async fn redis_counters_limit_then_reset() {
        let Some(url) = crate::testing::redis_url() else {
            return;
        };
        let limiter = RateLimiter::redis(&url.into(), format!("sbtest-{}", uuid::Uuid::new_v4()))
            .await
            .expect("TEST_REDIS_URL is set but Redis cannot be reached");
        limits_then_resets(limiter).await;
    }
}
