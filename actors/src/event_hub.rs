//! The event hub: fans each tenant's events (call started, transcript lines, lead updates)
//! out to that tenant's live subscribers, the dashboard's Server-Sent Events streams.
//!
//! One [`EventHub`] runs under the root supervisor. Publishing never waits on a subscriber: a
//! publisher casts [`EventHubMsg::Publish`] (through [`EventHubSink`], the [`EventSink`] port
//! the rest of the engine holds), and the hub hands each event to every subscriber of the
//! event's tenant with `try_send` into that subscriber's bounded queue. A subscriber whose
//! queue is full loses events, which are counted; as soon as it has room again it first
//! receives [`HubItem::Lagged`] with the count, so a dashboard knows to reload rather than
//! show a silently incomplete picture. A slow browser thus costs its own view, never a call.
//!
//! Subscribers only ever see events of the tenant they subscribed for; a subscriber that went
//! away (its [`Subscription`] was dropped) is removed the next time the hub notices.
//!
//! Across nodes, the server forwards events through Redis and publishes what it receives
//! here; the hub itself is per process.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::domain::TenantId;
use crate::ports::{EventSink, TenantEvent};

/// The event hub actor. See the module docs.
pub struct EventHub;

/// What an [`EventHub`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHubArgs {
    /// Largest queue a subscriber may ask for: each queued event is held in memory until the
    /// subscriber reads it, so a subscriber cannot make the hub hold an unbounded amount.
    pub max_capacity: usize,
}

impl Default for EventHubArgs {
    fn default() -> Self {
        Self { max_capacity: 1024 }
    }
}

/// What an [`EventHub`] is asked.
pub enum EventHubMsg {
    /// An event happened; deliver it to the subscribers of its tenant.
    Publish(TenantEvent),
    /// Opens a subscription to one tenant's events.
    Subscribe {
        /// Whose events.
        tenant: TenantId,
        /// How many events may wait unread before later ones are dropped (clamped to
        /// 1..=[`EventHubArgs::max_capacity`]).
        capacity: usize,
        /// The subscription.
        reply: RpcReplyPort<Subscription>,
    },
    /// How many live subscribers a tenant has (closed ones are removed first).
    SubscriberCount {
        /// Whose subscribers.
        tenant: TenantId,
        /// The count.
        reply: RpcReplyPort<usize>,
    },
}

/// What a subscriber receives.
#[derive(Debug, Clone, PartialEq)]
pub enum HubItem {
    /// The next event of the tenant.
    Event(TenantEvent),
    /// This many events were dropped since the last item because the queue was full.
    Lagged {
        /// How many.
        missed: u64,
    },
}

/// One subscriber's end: events of one tenant, in publication order, with
/// [`HubItem::Lagged`] where some were dropped. Dropping it unsubscribes. It is also a
/// [`futures::Stream`], for the SSE handler.
#[derive(Debug)]
pub struct Subscription {
    /// Whose events these are.
    tenant: TenantId,
    /// The queue the hub fills.
    items: mpsc::Receiver<HubItem>,
}

impl Subscription {
    /// Whose events these are.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The next item; `None` once the hub has stopped.
    pub async fn recv(&mut self) -> Option<HubItem> {
        self.items.recv().await
    }

    /// The next item if one is waiting.
    pub fn try_recv(&mut self) -> Option<HubItem> {
        self.items.try_recv().ok()
    }
}

impl futures::Stream for Subscription {
    type Item = HubItem;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<HubItem>> {
        self.items.poll_recv(cx)
    }
}

/// The hub's end of one subscription.
struct Subscriber {
    /// The subscriber's queue.
    queue: mpsc::Sender<HubItem>,
    /// Events dropped since the subscriber was last told.
    missed: u64,
}

impl Subscriber {
    /// Offers `event` without waiting: first the pending lag notice, if any, then the event;
    /// what does not fit is counted. Returns whether the subscriber is still there.
    fn offer(&mut self, event: &TenantEvent) -> bool {
        if self.missed > 0 {
            match self.queue.try_send(HubItem::Lagged {
                missed: self.missed,
            }) {
                Ok(()) => self.missed = 0,
                Err(TrySendError::Full(_)) => {
                    self.missed = self.missed.saturating_add(1);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        match self.queue.try_send(HubItem::Event(event.clone())) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// The state of an [`EventHub`]: the subscribers of each tenant.
pub struct EventHubState {
    /// Live subscribers by tenant; a tenant with none has no entry.
    subscribers: HashMap<TenantId, Vec<Subscriber>>,
    /// Largest queue a subscriber may have.
    max_capacity: usize,
}

impl EventHubState {
    /// A hub with no subscribers.
    pub fn new(args: EventHubArgs) -> Self {
        Self {
            subscribers: HashMap::new(),
            max_capacity: args.max_capacity.max(1),
        }
    }

    /// Adds a subscriber of `tenant` with a queue of `capacity` (clamped to 1..=max).
    pub fn subscribe(&mut self, tenant: TenantId, capacity: usize) -> Subscription {
        let (queue, items) = mpsc::channel(capacity.clamp(1, self.max_capacity));
        let list = self.subscribers.entry(tenant).or_default();
        list.retain(|s| !s.queue.is_closed());
        list.push(Subscriber { queue, missed: 0 });
        Subscription { tenant, items }
    }

    /// Delivers `event` to the subscribers of its tenant, dropping (and counting) it for those
    /// whose queue is full and removing those that went away. Never waits.
    pub fn publish(&mut self, event: &TenantEvent) {
        if let Some(list) = self.subscribers.get_mut(&event.tenant) {
            list.retain_mut(|s| s.offer(event));
            if list.is_empty() {
                self.subscribers.remove(&event.tenant);
            }
        }
    }

    /// Live subscribers of `tenant`, after removing those that went away.
    pub fn subscriber_count(&mut self, tenant: TenantId) -> usize {
        let Some(list) = self.subscribers.get_mut(&tenant) else {
            return 0;
        };
        list.retain(|s| !s.queue.is_closed());
        let count = list.len();
        if count == 0 {
            self.subscribers.remove(&tenant);
        }
        count
    }
}

impl Actor for EventHub {
    type Msg = EventHubMsg;
    type State = EventHubState;
    type Arguments = EventHubArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: EventHubArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(EventHubState::new(args))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            EventHubMsg::Publish(event) => state.publish(&event),
            EventHubMsg::Subscribe {
                tenant,
                capacity,
                reply,
            } => {
                let _ = reply.send(state.subscribe(tenant, capacity));
            }
            EventHubMsg::SubscriberCount { tenant, reply } => {
                let _ = reply.send(state.subscriber_count(tenant));
            }
        }
        Ok(())
    }
}

/// The [`EventSink`] port backed by an [`EventHub`]: what calls, conversations and the API
/// hold to publish. Publishing is a cast, so it never waits; once the hub has stopped (the
/// process is shutting down) events are dropped quietly.
#[derive(Clone)]
pub struct EventHubSink(pub ActorRef<EventHubMsg>);

impl EventSink for EventHubSink {
    fn publish(&self, event: TenantEvent) {
        if self.0.cast(EventHubMsg::Publish(event)).is_err() {
            tracing::debug!("the event hub has stopped; event dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn event(tenant: TenantId, n: u64) -> TenantEvent {
        TenantEvent {
            tenant,
            kind: "call.transcript",
            call_id: None,
            data: serde_json::json!({ "n": n }),
        }
    }

    fn number(item: Option<HubItem>) -> u64 {
        match item {
            Some(HubItem::Event(e)) => e.data["n"].as_u64().unwrap(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn a_full_subscriber_is_told_how_many_it_missed_once_it_has_room() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let mut sub = hub.subscribe(tenant, 2);
        for n in 0..5 {
            hub.publish(&event(tenant, n));
        }
        assert_eq!(number(sub.try_recv()), 0);
        assert_eq!(number(sub.try_recv()), 1);
        assert_eq!(sub.try_recv(), None);
        hub.publish(&event(tenant, 5));
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 3 }));
        assert_eq!(number(sub.try_recv()), 5);
    }

    #[test]
    fn with_room_for_one_item_the_lag_notice_goes_first_and_the_event_is_counted() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let mut sub = hub.subscribe(tenant, 1);
        hub.publish(&event(tenant, 0));
        hub.publish(&event(tenant, 1));
        assert_eq!(number(sub.try_recv()), 0);
        hub.publish(&event(tenant, 2));
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 1 }));
        // Event 2 did not fit behind the notice: it is the next one reported missed.
        hub.publish(&event(tenant, 3));
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 1 }));
        assert_eq!(sub.try_recv(), None);
    }

    #[test]
    fn events_reach_only_subscribers_of_their_tenant() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        let mut sub_a = hub.subscribe(a, 8);
        let mut sub_b = hub.subscribe(b, 8);
        hub.publish(&event(a, 1));
        assert_eq!(number(sub_a.try_recv()), 1);
        assert_eq!(sub_b.try_recv(), None);
        assert_eq!(sub_a.tenant(), a);
    }

    #[test]
    fn closed_subscribers_are_removed_and_capacity_zero_is_one() {
        let mut hub = EventHubState::new(EventHubArgs { max_capacity: 4 });
        let tenant = TenantId::new();
        let gone = hub.subscribe(tenant, 0);
        let mut kept = hub.subscribe(tenant, 100);
        drop(gone);
        hub.publish(&event(tenant, 1));
        assert_eq!(hub.subscriber_count(tenant), 1);
        assert_eq!(number(kept.try_recv()), 1);
        drop(kept);
        assert_eq!(hub.subscriber_count(tenant), 0);
        assert!(hub.subscribers.is_empty());
    }

    #[tokio::test]
    async fn a_slow_subscriber_is_told_it_lagged_and_the_publisher_never_blocked() {
        let (hub, _) = Actor::spawn(None, EventHub, EventHubArgs::default())
            .await
            .unwrap();
        let tenant = TenantId::new();
        let mut slow = ractor::call_t!(
            hub,
            |reply| EventHubMsg::Subscribe {
                tenant,
                capacity: 8,
                reply
            },
            1000
        )
        .unwrap();
        let sink = EventHubSink(hub.clone());

        let started = Instant::now();
        for n in 0..10_000 {
            sink.publish(event(tenant, n));
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "publishing 10,000 events took {:?}",
            started.elapsed()
        );

        // A call after the casts returns once the hub has handled all of them.
        let count = ractor::call_t!(
            hub,
            |reply| EventHubMsg::SubscriberCount { tenant, reply },
            5000
        )
        .unwrap();
        assert_eq!(count, 1);
        for n in 0..8 {
            assert_eq!(number(slow.recv().await), n);
        }
        assert_eq!(slow.try_recv(), None);

        sink.publish(event(tenant, 10_000));
        assert_eq!(slow.recv().await, Some(HubItem::Lagged { missed: 9_992 }));
        assert_eq!(number(slow.recv().await), 10_000);
        hub.stop(None);
    }

    #[tokio::test]
    async fn a_stopped_hub_quietly_drops_events() {
        let (hub, handle) = Actor::spawn(None, EventHub, EventHubArgs::default())
            .await
            .unwrap();
        let sink = EventHubSink(hub.clone());
        hub.stop(None);
        handle.await.unwrap();
        sink.publish(event(TenantId::new(), 1));
    }
}
