//! Outbound webhooks: events a tenant's systems subscribed to, POSTed to their endpoints as
//! the Standard Webhooks specification describes (headers `webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`),
//! so receivers verify them with that specification's libraries.
//!
//! Nothing is lost: an event is written to the outbox in the database first (by the change
//! it describes, or by [`Webhooks::tap`] for live events), then the dispatcher of any node
//! fans it out into one delivery per endpoint and sends due deliveries, retrying a failed
//! one with exponential backoff (from `WEBHOOK_RETRY_BASE_MS`, doubling, at most two hours
//! apart) for a day, after which it is `failed` and can be redelivered by hand.
//!
//! Targets on loopback, private, link-local or otherwise non-public addresses are refused
//! (server-side request forgery) unless `WEBHOOKS_ALLOW_PRIVATE` is set: when the endpoint is
//! saved, and again at every delivery, through a DNS resolver that drops such addresses, so a
//! name that later resolves elsewhere gains nothing. Redirects are not followed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actors::domain::TenantId;
use actors::ports::{EventSink, TenantEvent};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::sync::{mpsc, watch};

use crate::store::{wants, DueDelivery, Store};

/// Longest a receiver may take to answer one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Deliveries are retried for this long after they were created.
const RETRY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Longest wait between two attempts.
const MAX_RETRY_GAP_MS: i64 = 2 * 60 * 60 * 1000;

/// Deliveries sent at once by one node.
const CLAIM_BATCH: u32 = 32;

/// How long a tenant's endpoint list is trusted before it is read again (staff's changes
/// on this node take effect at once; on other nodes within this).
const ENDPOINT_CACHE: Duration = Duration::from_secs(5);

/// Live events waiting to be written to the outbox before new ones are dropped.
const TAP_QUEUE: usize = 4096;

/// Event types only the database writes (with the change they describe), besides the live
/// events of [`actors::ports::EVENT_KINDS`].
pub const OUTBOX_KINDS: &[&str] = &[
    "user.invited",
    "user.password_reset_requested",
    "callback.requested",
];

/// Webhook settings.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSettings {
    /// Endpoints may be on private addresses (tests, on-premises receivers).
    pub allow_private: bool,
    /// Wait before the first retry; each later one doubles.
    pub retry_base: Duration,
    /// How often each node looks for due deliveries.
    pub poll: Duration,
}

/// A tenant's enabled endpoints' event types, and when they were read.
type EndpointTypes = (Instant, Vec<Vec<String>>);

/// The webhook dispatcher and its tap. See the module docs.
pub struct Webhooks {
    store: Store,
    client: reqwest::Client,
    settings: WebhookSettings,
    /// Each tenant's endpoints' event types, cached.
    endpoints: Mutex<HashMap<TenantId, EndpointTypes>>,
}

impl Webhooks {
    /// The dispatcher on `store`.
    pub fn new(store: Store, settings: WebhookSettings) -> anyhow::Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(crate::USER_AGENT)
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: settings.allow_private,
            }))
            .build()?;
        Ok(Arc::new(Self {
            store,
            client,
            settings,
            endpoints: Mutex::default(),
        }))
    }

    /// A new endpoint secret, `whsec_` and 32 random bytes in base64, as the specification
    /// writes them.
    pub fn new_secret() -> String {
        let mut key = [0_u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// Checks an endpoint URL before it is saved: `http(s)`, no credentials, and (unless
    /// private targets are allowed) a host that resolves to public addresses only.
    pub async fn check_url(&self, raw: &str) -> Result<String, String> {
        let url = reqwest::Url::parse(raw).map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("must be an http:// or https:// URL".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry credentials; receivers verify the signature".to_owned());
        }
        let host = url.host_str().ok_or("must name a host")?.to_owned();
        if !self.settings.allow_private {
            let port = url.port_or_known_default().unwrap_or(443);
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("its host does not resolve: {e}"))?
                .collect();
            if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
                return Err(
                    "points at a loopback, private or otherwise non-public address; \
                     set WEBHOOKS_ALLOW_PRIVATE to allow that"
                        .to_owned(),
                );
            }
        }
        Ok(url.to_string())
    }

    /// Forgets the tenant's cached endpoints, after staff changed them.
    pub fn endpoints_changed(&self, tenant: TenantId) {
        self.endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&tenant);
    }

    /// The event sink that writes live events some endpoint wants into the outbox.
    pub fn tap(self: &Arc<Self>) -> Arc<dyn EventSink> {
        let (queue, mut events) = mpsc::channel::<TenantEvent>(TAP_QUEUE);
        let webhooks = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                webhooks.enqueue(event).await;
            }
        });
        Arc::new(Tap(queue))
    }

    /// Writes `event` to the outbox if one of its tenant's endpoints wants it.
    async fn enqueue(&self, event: TenantEvent) {
        let cached = self
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&event.tenant)
            .filter(|(read, _)| read.elapsed() < ENDPOINT_CACHE)
            .map(|(_, types)| types.clone());
        let types = match cached {
            Some(types) => types,
            None => match self.store.webhook_endpoints(event.tenant).await {
                Ok(endpoints) => {
                    let types: Vec<Vec<String>> = endpoints
                        .into_iter()
                        .filter(|e| e.enabled)
                        .map(|e| e.event_types)
                        .collect();
                    self.endpoints
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(event.tenant, (Instant::now(), types.clone()));
                    types
                }
                Err(error) => {
                    tracing::warn!(%error, "webhook endpoints could not be read; event not queued");
                    return;
                }
            },
        };
        if !types.iter().any(|t| wants(t, event.kind)) {
            return;
        }
        let mut payload = event.data;
        if let (Some(fields), Some(call)) = (payload.as_object_mut(), event.call_id) {
            fields.insert("call_id".to_owned(), call.to_string().into());
        }
        if let Err(error) = self
            .store
            .enqueue_webhook_event(event.tenant, event.kind, &payload)
            .await
        {
            tracing::warn!(%error, kind = event.kind, "an event could not be queued for webhooks");
        }
    }

    /// Runs the dispatcher until `stop` turns true.
    pub fn spawn(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(error) = self.dispatch_once().await {
                    tracing::warn!(%error, "webhook dispatch failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
            }
        })
    }

    /// Fans new events out and sends the deliveries that are due.
    pub async fn dispatch_once(&self) -> Result<(), crate::store::StoreError> {
        for event in self.store.unfanned_events(100).await? {
            self.store.fan_out(&event).await?;
        }
        let due = self.store.claim_due_deliveries(CLAIM_BATCH).await?;
        futures::future::join_all(due.iter().map(|d| self.deliver(d))).await;
        Ok(())
    }

    /// One attempt of one delivery, recorded.
    async fn deliver(&self, delivery: &DueDelivery) {
        let payload: serde_json::Value =
            serde_json::from_str(&delivery.payload).unwrap_or(serde_json::Value::Null);
        let body = serde_json::json!({
            "type": delivery.event_type,
            "timestamp": chrono::DateTime::from_timestamp_millis(delivery.event_created_at),
            "data": payload,
        })
        .to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let outcome = match sign(&delivery.secret, &delivery.event_id, timestamp, &body) {
            Ok(signature) => self
                .client
                .post(&delivery.url)
                .header("content-type", "application/json")
                .header("webhook-id", &delivery.event_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .map(|r| r.status()),
            Err(error) => {
                tracing::error!(%error, "an endpoint's secret is unusable");
                self.record(
                    delivery,
                    false,
                    (None, Some("the endpoint's secret is unusable")),
                    None,
                )
                .await;
                return;
            }
        };
        let (delivered, status, error) = match outcome {
            Ok(status) if status.is_success() => (true, Some(status.as_u16()), None),
            Ok(status) => (
                false,
                Some(status.as_u16()),
                Some(format!("the receiver answered {status}")),
            ),
            Err(e) => (false, None, Some(describe(&e))),
        };
        let retry_at = (!delivered)
            .then(|| {
                next_attempt_at(
                    delivery.created_at,
                    chrono::Utc::now().timestamp_millis(),
                    delivery.attempt,
                    self.settings.retry_base,
                )
            })
            .flatten();
        self.record(delivery, delivered, (status, error.as_deref()), retry_at)
            .await;
    }

    async fn record(
        &self,
        delivery: &DueDelivery,
        delivered: bool,
        result: (Option<u16>, Option<&str>),
        retry_at: Option<i64>,
    ) {
        let outcome = match (delivered, retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "retrying",
            (false, None) => "failed",
        };
        metrics::counter!("switchboard_webhook_deliveries_total", "result" => outcome).increment(1);
        if let Err(error) = self
            .store
            .record_delivery_attempt(delivery, delivered, result, retry_at)
            .await
        {
            tracing::warn!(%error, "a delivery's outcome could not be recorded; it will be sent again");
        }
    }
}

/// When to try again after failed attempt number `attempt` of a delivery created at
/// `created_at`: `base` doubled per attempt, at most two hours apart, and never past a day
/// after it was created (`None`: give up).
pub fn next_attempt_at(created_at: i64, now: i64, attempt: i64, base: Duration) -> Option<i64> {
    let base = i64::try_from(base.as_millis()).unwrap_or(i64::MAX);
    let shift = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let gap = base.saturating_mul(1_i64 << shift).min(MAX_RETRY_GAP_MS);
    let at = now.saturating_add(gap);
    (at <= created_at.saturating_add(RETRY_WINDOW_MS)).then_some(at)
}

/// The `webhook-signature` header for a message: `v1,` and the base64 HMAC-SHA256, keyed by
/// the secret's bytes, of `id.timestamp.body`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| e.to_string())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A failed request in words a tenant can act on (no internals).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        format!(
            "the receiver did not answer within {} s",
            DELIVERY_TIMEOUT.as_secs()
        )
    } else if error.is_connect() {
        let mut inner: &dyn std::error::Error = error;
        while let Some(next) = inner.source() {
            inner = next;
        }
        format!("could not connect: {inner}")
    } else {
        "the request failed".to_owned()
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Resolves names to public addresses only (unless private ones are allowed), so a
/// delivery cannot be pointed at the inside of the network by a name that changes.
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The sink [`Webhooks::tap`] returns.
struct Tap(mpsc::Sender<TenantEvent>);

impl EventSink for Tap {
    fn publish(&self, event: TenantEvent) {
        if self.0.try_send(event).is_err() {
            metrics::counter!("switchboard_events_dropped_total", "reason" => "webhook_queue_full")
                .increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_up_to_two_hours_and_stop_after_a_day() {
        let base = Duration::from_secs(10);
        assert_eq!(next_attempt_at(0, 0, 1, base), Some(10_000));
        assert_eq!(next_attempt_at(0, 0, 2, base), Some(20_000));
        assert_eq!(next_attempt_at(0, 0, 12, base), Some(MAX_RETRY_GAP_MS));
        let late = RETRY_WINDOW_MS - 5_000;
        assert_eq!(next_attempt_at(0, late, 1, base), None);
        assert_eq!(
            next_attempt_at(0, late - 5_000, 1, base),
            Some(late + 5_000)
        );
    }

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the specification's test vectors.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            sign(secret, id, 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(sign("whsec_not base64!", id, 1, body).is_err());
    }

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }
}
