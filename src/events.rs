//! The event bus: where calls, texts, leads and documents publish what happens, and where the
//! dashboard's Server-Sent Events streams read it, scoped to one tenant.
//!
//! In process, an [`EventHub`] actor stamps each event with its id, keeps each tenant's
//! latest events for subscribers that resume, and fans them out. With `REDIS_URL` set,
//! events travel through Redis so a subscriber on any node sees calls on every node: one
//! script appends the event to the tenant's stream (`<prefix>:events:<tenant>`, capped at
//! [`REDIS_STREAM_LEN`] entries, which also gives the id) and publishes it on
//! `<prefix>:events`, atomically, so every node receives events in id order; each node
//! subscribes to that channel and hands what it receives to its hub. A resuming subscriber
//! is then replayed from the Redis stream, which holds events from before this node started.
//!
//! Publishing never waits: with Redis it queues for a publisher task (dropping, and
//! counting, what does not fit), and when Redis cannot be reached the event still reaches
//! this node's subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actors::domain::{CallId, TenantId, UserId};
use actors::event_hub::{
    EventHub, EventHubArgs, EventHubMsg, EventHubSink, EventId, StampedEvent, Subscription,
};
use actors::ports::{event_kind, EventSink, TenantEvent};
use futures::StreamExt;
use ractor::{Actor, ActorRef};
use rand::RngCore;
use redis::aio::ConnectionManager;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// Events kept per tenant in the Redis stream (approximately: Redis trims in whole nodes).
pub const REDIS_STREAM_LEN: usize = 1024;

/// Events waiting for the Redis publisher before new ones are dropped.
const OUTBOX: usize = 8192;

/// Most events one resume replays from Redis.
const REPLAY_LIMIT: usize = 2048;

/// Appends the event to the tenant's stream and publishes `tenant id event` on the channel,
/// atomically, so subscribers of the channel see ids in order. Returns the id.
const REDIS_PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'e', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[2] .. ' ' .. id .. ' ' .. ARGV[3])
return id
";

/// An event as it travels through Redis (the tenant and id travel beside it).
#[derive(Serialize, Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    call_id: Option<CallId>,
    data: serde_json::Value,
}

/// How long a stream ticket may wait to be used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// The process's event bus. See the module docs.
pub struct EventBus {
    /// The hub; replaced if it ever stops while the bus is in use.
    hub: Arc<RwLock<ActorRef<EventHubMsg>>>,
    /// Also gets every event published here (the webhooks' outbox), once per cluster.
    tap: Option<Arc<dyn EventSink>>,
    /// Redis, when events are shared between nodes.
    redis: Option<RedisEvents>,
    /// Unused stream tickets by their SHA-256, when kept in process.
    tickets: Mutex<HashMap<[u8; 32], (TenantId, UserId, Instant)>>,
}

/// The Redis side of the bus.
struct RedisEvents {
    /// Events waiting to be published.
    outbox: mpsc::Sender<TenantEvent>,
    /// For replays.
    conn: ConnectionManager,
    /// `REDIS_KEY_PREFIX`.
    prefix: String,
}

/// A subscriber's start: the events to replay, then the live ones.
pub struct Opened {
    /// Live events (and lag notices).
    pub live: Subscription,
    /// Events after the subscriber's last seen id, oldest first.
    pub replay: Vec<Arc<StampedEvent>>,
    /// Whether `replay` holds every event after that id (false: some are gone).
    pub replay_complete: bool,
}

impl EventBus {
    /// A bus kept in this process; `tap` also gets every event.
    pub async fn local(tap: Option<Arc<dyn EventSink>>) -> anyhow::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            hub: start_hub().await?,
            tap,
            redis: None,
            tickets: Mutex::default(),
        }))
    }

    /// A bus shared through Redis at `url`; fails within seconds when Redis is unreachable.
    /// `tap` gets every event published on this node.
    pub async fn redis(
        url: &SecretString,
        prefix: String,
        tap: Option<Arc<dyn EventSink>>,
    ) -> anyhow::Result<Arc<Self>> {
        let (client, conn) = crate::redis_client::connect(url).await?;
        let hub = start_hub().await?;
        let (outbox, queued) = mpsc::channel(OUTBOX);
        let channel = format!("{prefix}:events");
        tokio::spawn(relay_from_redis(client, channel.clone(), Arc::clone(&hub)));
        tokio::spawn(publish_to_redis(
            queued,
            conn.clone(),
            prefix.clone(),
            Arc::clone(&hub),
        ));
        Ok(Arc::new(Self {
            hub,
            tap,
            redis: Some(RedisEvents {
                outbox,
                conn,
                prefix,
            }),
            tickets: Mutex::default(),
        }))
    }

    fn hub(&self) -> ActorRef<EventHubMsg> {
        self.hub
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Subscribes to `tenant`'s events, resuming after `after` when given.
    pub async fn subscribe(
        &self,
        tenant: TenantId,
        capacity: usize,
        after: Option<EventId>,
    ) -> anyhow::Result<Opened> {
        let mut live = ractor::call_t!(
            self.hub(),
            |reply| EventHubMsg::Subscribe {
                tenant,
                capacity,
                after,
                reply,
            },
            2_000
        )
        .map_err(|e| anyhow::anyhow!("the event hub did not answer: {e}"))?;
        let (replay, replay_complete) = match (&self.redis, after) {
            // Read after subscribing: an event published meanwhile is in both, and the
            // stream skips what it already replayed.
            (Some(redis), Some(after)) => redis.replay(tenant, after).await?,
            _ => (std::mem::take(&mut live.replay), live.replay_complete),
        };
        Ok(Opened {
            live,
            replay,
            replay_complete,
        })
    }
}

impl EventBus {
    /// A single-use ticket that opens one event stream as `user` within [`TICKET_TTL`]: a
    /// browser's `EventSource` cannot send an `Authorization` header, and an access token in
    /// a URL would end up in logs and history.
    pub async fn issue_ticket(&self, tenant: TenantId, user: UserId) -> anyhow::Result<String> {
        let mut bytes = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let ticket = hex::encode(bytes);
        let digest: [u8; 32] = Sha256::digest(ticket.as_bytes()).into();
        match &self.redis {
            Some(redis) => {
                let mut conn = redis.conn.clone();
                let () = redis::cmd("SET")
                    .arg(redis.ticket_key(&digest))
                    .arg(format!("{tenant} {user}"))
                    .arg("PX")
                    .arg(TICKET_TTL.as_millis() as u64)
                    .query_async(&mut conn)
                    .await?;
            }
            None => {
                let mut tickets = self
                    .tickets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                tickets.retain(|_, (_, _, issued)| now.duration_since(*issued) < TICKET_TTL);
                tickets.insert(digest, (tenant, user, now));
            }
        }
        Ok(ticket)
    }

    /// Whose ticket this is, once: a used, expired or unknown ticket is `None`.
    pub async fn redeem_ticket(&self, ticket: &str) -> anyhow::Result<Option<(TenantId, UserId)>> {
        let digest: [u8; 32] = Sha256::digest(ticket.as_bytes()).into();
        match &self.redis {
            Some(redis) => {
                let mut conn = redis.conn.clone();
                let owner: Option<String> = redis::cmd("GETDEL")
                    .arg(redis.ticket_key(&digest))
                    .query_async(&mut conn)
                    .await?;
                Ok(owner.and_then(|owner| {
                    let (tenant, user) = owner.split_once(' ')?;
                    Some((tenant.parse().ok()?, user.parse().ok()?))
                }))
            }
            None => {
                let mut tickets = self
                    .tickets
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                Ok(tickets
                    .remove(&digest)
                    .filter(|(_, _, issued)| issued.elapsed() < TICKET_TTL)
                    .map(|(tenant, user, _)| (tenant, user)))
            }
        }
    }
}

impl EventSink for EventBus {
    fn publish(&self, event: TenantEvent) {
        if let Some(tap) = &self.tap {
            tap.publish(event.clone());
        }
        match &self.redis {
            None => EventHubSink(self.hub()).publish(event),
            Some(redis) => {
                if let Err(e) = redis.outbox.try_send(event) {
                    metrics::counter!("switchboard_events_dropped_total", "reason" => "outbox_full")
                        .increment(1);
                    tracing::warn!("the event outbox is full; an event was dropped");
                    drop(e);
                }
            }
        }
    }
}

impl RedisEvents {
    /// Where a ticket (by its digest) is kept.
    fn ticket_key(&self, digest: &[u8; 32]) -> String {
        format!("{}:event-ticket:{}", self.prefix, hex::encode(digest))
    }

    /// The tenant's events after `after` from its Redis stream, and whether that is all of
    /// them (false when the stream was trimmed past `after`).
    async fn replay(
        &self,
        tenant: TenantId,
        after: EventId,
    ) -> anyhow::Result<(Vec<Arc<StampedEvent>>, bool)> {
        let key = stream_key(&self.prefix, tenant);
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("({after}"))
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_LIMIT)
            .query_async(&mut conn)
            .await?;
        let oldest: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await?;
        let length: usize = redis::cmd("XLEN").arg(&key).query_async(&mut conn).await?;
        let oldest = oldest
            .first()
            .and_then(|(id, _)| id.parse::<EventId>().ok());
        let trimmed = length >= REDIS_STREAM_LEN && oldest.is_some_and(|o| o > after);
        let replay = entries
            .into_iter()
            .filter_map(|(id, fields)| {
                let json = fields.get(1)?;
                decode(tenant, &id, json)
            })
            .collect();
        Ok((replay, !trimmed))
    }
}

/// The Redis stream of a tenant's events.
fn stream_key(prefix: &str, tenant: TenantId) -> String {
    format!("{prefix}:events:{tenant}")
}

/// An event read back from Redis; `None` (and a warning) when it is not one of ours.
fn decode(tenant: TenantId, id: &str, json: &str) -> Option<Arc<StampedEvent>> {
    let parsed = id
        .parse::<EventId>()
        .ok()
        .zip(serde_json::from_str::<WireEvent>(json).ok());
    let Some((id, wire)) = parsed else {
        tracing::warn!(%id, "an unreadable event came from Redis; skipped");
        return None;
    };
    let Some(kind) = event_kind(&wire.kind) else {
        tracing::warn!(kind = %wire.kind, "an event of an unknown kind came from Redis; skipped");
        return None;
    };
    Some(Arc::new(StampedEvent {
        id,
        event: TenantEvent {
            tenant,
            kind,
            call_id: wire.call_id,
            data: wire.data,
        },
    }))
}

/// Starts the hub and a keeper that starts a new one if it ever stops.
async fn start_hub() -> anyhow::Result<Arc<RwLock<ActorRef<EventHubMsg>>>> {
    let (hub, handle) = Actor::spawn(None, EventHub, EventHubArgs::default()).await?;
    let slot = Arc::new(RwLock::new(hub));
    let keeper = Arc::clone(&slot);
    tokio::spawn(async move {
        let mut handle = handle;
        loop {
            let _ = handle.await;
            // Subscribers' queues closed with it: their streams end and browsers reconnect.
            metrics::counter!("switchboard_actor_restarts_total", "actor" => "event_hub")
                .increment(1);
            tracing::error!("the event hub stopped; starting a new one");
            match Actor::spawn(None, EventHub, EventHubArgs::default()).await {
                Ok((hub, next)) => {
                    *keeper
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = hub;
                    handle = next;
                }
                Err(error) => {
                    tracing::error!(%error, "the event hub could not be restarted");
                    return;
                }
            }
        }
    });
    Ok(slot)
}

/// Publishes queued events through Redis; an event Redis refuses still reaches this
/// node's subscribers.
async fn publish_to_redis(
    mut queued: mpsc::Receiver<TenantEvent>,
    mut conn: ConnectionManager,
    prefix: String,
    hub: Arc<RwLock<ActorRef<EventHubMsg>>>,
) {
    let script = redis::Script::new(REDIS_PUBLISH);
    let channel = format!("{prefix}:events");
    while let Some(event) = queued.recv().await {
        let wire = WireEvent {
            kind: event.kind.to_owned(),
            call_id: event.call_id,
            data: event.data.clone(),
        };
        let json = serde_json::to_string(&wire).unwrap_or_default();
        let published: redis::RedisResult<String> = script
            .key(stream_key(&prefix, event.tenant))
            .key(&channel)
            .arg(REDIS_STREAM_LEN)
            .arg(event.tenant.to_string())
            .arg(&json)
            .invoke_async(&mut conn)
            .await;
        if let Err(error) = published {
            metrics::counter!("switchboard_events_dropped_total", "reason" => "redis").increment(1);
            tracing::warn!(%error, "an event could not be published through Redis; only this node's subscribers get it");
            let hub = hub
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            EventHubSink(hub).publish(event);
        }
    }
}

/// Hands every event published on the channel (by any node, this one included) to the hub;
/// reconnects with backoff when the subscription drops.
async fn relay_from_redis(
    client: redis::Client,
    channel: String,
    hub: Arc<RwLock<ActorRef<EventHubMsg>>>,
) {
    let mut backoff = Duration::from_millis(250);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = Duration::from_millis(250);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        let mut parts = payload.splitn(3, ' ');
                        let (Some(tenant), Some(id), Some(json)) =
                            (parts.next(), parts.next(), parts.next())
                        else {
                            continue;
                        };
                        let Ok(tenant) = tenant.parse::<TenantId>() else {
                            continue;
                        };
                        if let Some(event) = decode(tenant, id, json) {
                            let hub = hub
                                .read()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .clone();
                            let _ = hub.cast(EventHubMsg::Deliver(event));
                        }
                    }
                    tracing::warn!("the Redis event subscription ended; resubscribing");
                }
                Err(error) => tracing::warn!(%error, "subscribing to Redis events failed"),
            },
            Err(error) => tracing::warn!(%error, "connecting to Redis for events failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_from_redis_keep_their_id_and_unknown_kinds_are_skipped() {
        let tenant = TenantId::new();
        let json = r#"{"type":"call.started","call_id":null,"data":{"from":"+15550001"}}"#;
        let event = decode(tenant, "17-3", json).unwrap();
        assert_eq!(event.id, EventId { ms: 17, seq: 3 });
        assert_eq!(event.event.kind, "call.started");
        assert_eq!(event.event.tenant, tenant);
        assert_eq!(event.event.data["from"], "+15550001");
        assert!(decode(
            tenant,
            "17-3",
            r#"{"type":"made.up","call_id":null,"data":{}}"#
        )
        .is_none());
        assert!(decode(tenant, "not-an-id", json).is_none());
        assert!(decode(tenant, "17-3", "{").is_none());
    }
}
