//! A tenant's concurrent-call limit across nodes. Each node's runtime counts its own live
//! calls; with `REDIS_URL`, admission first takes one of the tenant's slots in Redis, so
//! the limit holds for the tenant's calls on every node together.
//!
//! A slot is a member of the tenant's sorted set, scored by when its lease ends. Taking one
//! drops expired members and adds this call only while fewer than the limit remain, in one
//! script, so two nodes can never both take the last slot. The node carrying the call renews
//! the lease while the call lives and removes the slot when it ends; a node that dies leaves
//! slots that expire within [`LEASE_MS`].

use std::time::Duration;

use actors::domain::{CallId, TenantId};
use ractor::ActorRef;
use redis::aio::ConnectionManager;
use supervisors::call::CallMsg;

/// How long a slot lives without renewal.
pub const LEASE_MS: i64 = 90_000;

/// How often a live call's slot is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// How often the holder looks whether its call has ended.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Takes a slot: `KEYS[1]` the set; `ARGV` now, limit, lease end, call id. 1 if taken.
const TAKE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 1
";

/// The tenants' call slots in Redis.
#[derive(Clone)]
pub struct CallSlots {
    conn: ConnectionManager,
    prefix: String,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl CallSlots {
    /// Slots in the Redis behind `conn`, under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: String) -> Self {
        Self { conn, prefix }
    }

    fn key(&self, tenant: TenantId) -> String {
        format!("{}:live-calls:{tenant}", self.prefix)
    }

    /// Takes one of the tenant's `limit` slots for `call`; false when all are taken.
    pub async fn take(
        &self,
        tenant: TenantId,
        call: CallId,
        limit: i64,
    ) -> Result<bool, redis::RedisError> {
        let now = now_ms();
        let taken: i64 = redis::Script::new(TAKE)
            .key(self.key(tenant))
            .arg(now)
            .arg(limit)
            .arg(now + LEASE_MS)
            .arg(call.to_string())
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(taken == 1)
    }

    /// Gives the slot back.
    pub async fn release(&self, tenant: TenantId, call: CallId) {
        let released: redis::RedisResult<i64> = redis::cmd("ZREM")
            .arg(self.key(tenant))
            .arg(call.to_string())
            .query_async(&mut self.conn.clone())
            .await;
        if let Err(error) = released {
            tracing::warn!(%error, %call, "a call slot could not be released; it expires by itself");
        }
    }

    /// Keeps the slot while `actor` (the call) lives, then releases it.
    pub fn hold(&self, tenant: TenantId, call: CallId, actor: ActorRef<CallMsg>) {
        let slots = self.clone();
        tokio::spawn(async move {
            let mut renewed = tokio::time::Instant::now();
            while !matches!(
                actor.get_status(),
                ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
            ) {
                tokio::time::sleep(WATCH_EVERY).await;
                if renewed.elapsed() >= RENEW_EVERY {
                    renewed = tokio::time::Instant::now();
                    let renewal: redis::RedisResult<i64> = redis::cmd("ZADD")
                        .arg(slots.key(tenant))
                        .arg("XX")
                        .arg(now_ms() + LEASE_MS)
                        .arg(call.to_string())
                        .query_async(&mut slots.conn.clone())
                        .await;
                    if let Err(error) = renewal {
                        tracing::warn!(%error, %call, "a call slot could not be renewed");
                    }
                }
            }
            slots.release(tenant, call).await;
        });
    }
}
