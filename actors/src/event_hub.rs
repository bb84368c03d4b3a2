//! The event hub: fans each tenant's events (call started, transcript lines, lead updates)
//! out to that tenant's live subscribers, the dashboard's Server-Sent Events streams, and
//! keeps the latest of them so a subscriber that reconnects can resume where it left off.
//!
//! One [`EventHub`] runs per process, started by the server's event bus. Every event gets an
//! [`EventId`] (`<milliseconds>-<sequence>`, the shape of a Redis stream id): the hub stamps
//! events published here ([`EventHubMsg::Publish`]), and takes events stamped elsewhere as
//! they are ([`EventHubMsg::Deliver`], what arrives from other nodes through Redis). Each
//! tenant's latest events are kept in a bounded ring; [`EventHubMsg::Subscribe`] registers a
//! subscriber and hands it the events after its last seen id in the same step, so nothing
//! falls between the replay and the live feed.
//!
//! Publishing never waits on a subscriber: the hub hands each event to every subscriber of
//! the event's tenant with `try_send` into that subscriber's bounded queue. A subscriber whose
//! queue is full loses events, which are counted; as soon as it has room again it first
//! receives [`HubItem::Lagged`] with the count, so a dashboard knows to reload rather than
//! show a silently incomplete picture. A slow browser thus costs its own view, never a call.
//!
//! Subscribers only ever see events of the tenant they subscribed for; a subscriber that went
//! away (its [`Subscription`] was dropped) is removed the next time the hub notices.
//!
//! Across nodes, the server forwards events through Redis and publishes what it receives
//! here; the hub itself is per process.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::domain::TenantId;
use crate::ports::{EventSink, TenantEvent};

/// Where an event sits in its tenant's stream: milliseconds since the epoch and a sequence
/// within that millisecond, ordered, written `1712345678901-0` (as Redis stream ids are, so
/// the ids of a single node and of a Redis-backed cluster look alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EventId {
    /// Milliseconds since the Unix epoch.
    pub ms: u64,
    /// Order within the millisecond.
    pub seq: u64,
}

impl EventId {
    /// The id after `self` at time `now_ms`: a later millisecond starts its sequence at 0;
    /// the same (or an earlier, if the clock stepped back) continues the sequence.
    pub fn next(self, now_ms: u64) -> Self {
        if now_ms > self.ms {
            Self { ms: now_ms, seq: 0 }
        } else {
            Self {
                ms: self.ms,
                seq: self.seq + 1,
            }
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EventId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not an event id like 1712345678901-0");
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        Ok(Self {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// An event with its place in the tenant's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StampedEvent {
    /// Its id.
    pub id: EventId,
    /// The event.
    pub event: TenantEvent,
}

/// The event hub actor. See the module docs.
pub struct EventHub;

/// What an [`EventHub`] starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHubArgs {
    /// Largest queue a subscriber may ask for: each queued event is held in memory until the
    /// subscriber reads it, so a subscriber cannot make the hub hold an unbounded amount.
    pub max_capacity: usize,
    /// Latest events kept per tenant for subscribers that resume: enough for a browser's
    /// reconnect of a few seconds during busy calls, bounded so a busy tenant costs a fixed
    /// amount of memory.
    pub replay_capacity: usize,
}

impl Default for EventHubArgs {
    fn default() -> Self {
        Self {
            max_capacity: 1024,
            replay_capacity: 1024,
        }
    }
}

/// What an [`EventHub`] is asked.
pub enum EventHubMsg {
    /// An event happened here; stamp it, keep it and deliver it to its tenant's subscribers.
    Publish(TenantEvent),
    /// An event stamped elsewhere (another node, through Redis); keep it and deliver it.
    Deliver(Arc<StampedEvent>),
    /// Opens a subscription to one tenant's events.
    Subscribe {
        /// Whose events.
        tenant: TenantId,
        /// How many events may wait unread before later ones are dropped (clamped to
        /// 1..=[`EventHubArgs::max_capacity`]).
        capacity: usize,
        /// The last event the subscriber saw, to resume after; `None` for live events only.
        after: Option<EventId>,
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
    Event(Arc<StampedEvent>),
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
    /// The events after the subscriber's last seen id that the hub still kept, oldest first.
    pub replay: Vec<Arc<StampedEvent>>,
    /// Whether `replay` holds every event after that id: false when older ones were already
    /// dropped from the ring (the subscriber has missed some and should reload).
    pub replay_complete: bool,
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
    fn offer(&mut self, event: &Arc<StampedEvent>) -> bool {
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
        match self.queue.try_send(HubItem::Event(Arc::clone(event))) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.missed = self.missed.saturating_add(1);
                true
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// The state of an [`EventHub`]: the subscribers of each tenant and its latest events.
pub struct EventHubState {
    /// Live subscribers by tenant; a tenant with none has no entry.
    subscribers: HashMap<TenantId, Vec<Subscriber>>,
    /// Each tenant's latest events, oldest first.
    recent: HashMap<TenantId, VecDeque<Arc<StampedEvent>>>,
    /// The id given to the last event stamped here.
    last_id: EventId,
    /// Largest queue a subscriber may have.
    max_capacity: usize,
    /// Events kept per tenant.
    replay_capacity: usize,
}

impl EventHubState {
    /// A hub with no subscribers.
    pub fn new(args: EventHubArgs) -> Self {
        Self {
            subscribers: HashMap::new(),
            recent: HashMap::new(),
            last_id: EventId::default(),
            max_capacity: args.max_capacity.max(1),
            replay_capacity: args.replay_capacity,
        }
    }

    /// Adds a subscriber of `tenant` with a queue of `capacity` (clamped to 1..=max), handing
    /// it the kept events after `after`.
    pub fn subscribe(
        &mut self,
        tenant: TenantId,
        capacity: usize,
        after: Option<EventId>,
    ) -> Subscription {
        let (queue, items) = mpsc::channel(capacity.clamp(1, self.max_capacity));
        let list = self.subscribers.entry(tenant).or_default();
        list.retain(|s| !s.queue.is_closed());
        list.push(Subscriber { queue, missed: 0 });
        let (replay, replay_complete) = match after {
            None => (Vec::new(), true),
            Some(after) => {
                let kept = self.recent.get(&tenant);
                let replay: Vec<_> = kept
                    .into_iter()
                    .flatten()
                    .filter(|e| e.id > after)
                    .cloned()
                    .collect();
                // Complete when the ring still reaches back to `after`, or never dropped
                // anything (a ring not yet full holds everything since the hub started).
                let oldest = kept.and_then(|k| k.front()).map(|e| e.id);
                let full = kept.is_some_and(|k| k.len() >= self.replay_capacity);
                let complete = !full || oldest.is_some_and(|oldest| oldest <= after);
                (replay, complete)
            }
        };
        Subscription {
            tenant,
            replay,
            replay_complete,
            items,
        }
    }

    /// Stamps `event` with the next id and delivers it.
    pub fn publish(&mut self, event: TenantEvent, now_ms: u64) -> Arc<StampedEvent> {
        self.last_id = self.last_id.next(now_ms);
        let stamped = Arc::new(StampedEvent {
            id: self.last_id,
            event,
        });
        self.deliver(Arc::clone(&stamped));
        stamped
    }

    /// Keeps `event` for replay and hands it to the subscribers of its tenant, dropping (and
    /// counting) it for those whose queue is full and removing those that went away. Never
    /// waits.
    pub fn deliver(&mut self, event: Arc<StampedEvent>) {
        let tenant = event.event.tenant;
        if self.replay_capacity > 0 {
            let kept = self.recent.entry(tenant).or_default();
            if kept.len() >= self.replay_capacity {
                kept.pop_front();
            }
            kept.push_back(Arc::clone(&event));
        }
        if let Some(list) = self.subscribers.get_mut(&tenant) {
            list.retain_mut(|s| s.offer(&event));
            if list.is_empty() {
                self.subscribers.remove(&tenant);
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
            EventHubMsg::Publish(event) => {
                state.publish(event, now_ms());
            }
            EventHubMsg::Deliver(event) => state.deliver(event),
            EventHubMsg::Subscribe {
                tenant,
                capacity,
                after,
                reply,
            } => {
                let _ = reply.send(state.subscribe(tenant, capacity, after));
            }
            EventHubMsg::SubscriberCount { tenant, reply } => {
                let _ = reply.send(state.subscriber_count(tenant));
            }
        }
        Ok(())
    }
}

/// The [`EventSink`] port backed by an [`EventHub`] in this process: publishing is a cast,
/// so it never waits; once the hub has stopped (the process is shutting down) events are
/// dropped quietly.
#[derive(Clone)]
pub struct EventHubSink(pub ActorRef<EventHubMsg>);

impl EventSink for EventHubSink {
    fn publish(&self, event: TenantEvent) {
        if self.0.cast(EventHubMsg::Publish(event)).is_err() {
            tracing::debug!("the event hub has stopped; event dropped");
        }
    }
}

/// Milliseconds since the Unix epoch, for event ids.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
            Some(HubItem::Event(e)) => e.event.data["n"].as_u64().unwrap(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    fn numbers(events: &[Arc<StampedEvent>]) -> Vec<u64> {
        events
            .iter()
            .map(|e| e.event.data["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn a_full_subscriber_is_told_how_many_it_missed_once_it_has_room() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let mut sub = hub.subscribe(tenant, 2, None);
        for n in 0..5 {
            hub.publish(event(tenant, n), 1);
        }
        assert_eq!(number(sub.try_recv()), 0);
        assert_eq!(number(sub.try_recv()), 1);
        assert_eq!(sub.try_recv(), None);
        hub.publish(event(tenant, 5), 1);
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 3 }));
        assert_eq!(number(sub.try_recv()), 5);
    }

    #[test]
    fn with_room_for_one_item_the_lag_notice_goes_first_and_the_event_is_counted() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let mut sub = hub.subscribe(tenant, 1, None);
        hub.publish(event(tenant, 0), 1);
        hub.publish(event(tenant, 1), 1);
        assert_eq!(number(sub.try_recv()), 0);
        hub.publish(event(tenant, 2), 1);
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 1 }));
        // Event 2 did not fit behind the notice: it is the next one reported missed.
        hub.publish(event(tenant, 3), 1);
        assert_eq!(sub.try_recv(), Some(HubItem::Lagged { missed: 1 }));
        assert_eq!(sub.try_recv(), None);
    }

    #[test]
    fn events_reach_only_subscribers_of_their_tenant() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let (a, b) = (TenantId::new(), TenantId::new());
        let mut sub_a = hub.subscribe(a, 8, None);
        let mut sub_b = hub.subscribe(b, 8, None);
        hub.publish(event(a, 1), 1);
        assert_eq!(number(sub_a.try_recv()), 1);
        assert_eq!(sub_b.try_recv(), None);
        assert_eq!(sub_a.tenant(), a);
    }

    #[test]
    fn closed_subscribers_are_removed_and_capacity_zero_is_one() {
        let mut hub = EventHubState::new(EventHubArgs {
            max_capacity: 4,
            replay_capacity: 4,
        });
        let tenant = TenantId::new();
        let gone = hub.subscribe(tenant, 0, None);
        let mut kept = hub.subscribe(tenant, 100, None);
        drop(gone);
        hub.publish(event(tenant, 1), 1);
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
                after: None,
                reply
            },
            1000
        )
        .unwrap();
        let started = Instant::now();
        for n in 0..10_000 {
            hub.cast(EventHubMsg::Publish(event(tenant, n))).unwrap();
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

        hub.cast(EventHubMsg::Publish(event(tenant, 10_000)))
            .unwrap();
        assert_eq!(slow.recv().await, Some(HubItem::Lagged { missed: 9_992 }));
        assert_eq!(number(slow.recv().await), 10_000);
        hub.stop(None);
    }

    #[test]
    fn ids_increase_within_a_millisecond_and_across_a_clock_step_back() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let ids: Vec<String> = [5, 5, 7, 6]
            .into_iter()
            .map(|now| hub.publish(event(tenant, 0), now).id.to_string())
            .collect();
        assert_eq!(ids, ["5-0", "5-1", "7-0", "7-1"]);
        assert_eq!("7-1".parse::<EventId>(), Ok(EventId { ms: 7, seq: 1 }));
        assert!("7".parse::<EventId>().is_err());
        assert!("x-1".parse::<EventId>().is_err());
    }

    #[test]
    fn a_subscriber_resumes_after_its_last_event_without_gap_or_repeat() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let (tenant, other) = (TenantId::new(), TenantId::new());
        let mut seen = Vec::new();
        for n in 0..5 {
            seen.push(hub.publish(event(tenant, n), 100 + n).id);
            hub.publish(event(other, 99), 100 + n);
        }
        let mut sub = hub.subscribe(tenant, 8, Some(seen[1]));
        assert!(sub.replay_complete);
        assert_eq!(numbers(&sub.replay), [2, 3, 4]);
        hub.publish(event(tenant, 5), 200);
        assert_eq!(number(sub.try_recv()), 5);
        assert_eq!(sub.try_recv(), None);
        // Resuming after the newest event replays nothing; live only replays nothing.
        assert!(hub.subscribe(tenant, 8, Some(seen[4])).replay.len() == 1);
        assert!(hub.subscribe(tenant, 8, None).replay.is_empty());
    }

    #[test]
    fn a_resume_older_than_the_ring_is_reported_incomplete() {
        let mut hub = EventHubState::new(EventHubArgs {
            max_capacity: 8,
            replay_capacity: 3,
        });
        let tenant = TenantId::new();
        let first = hub.publish(event(tenant, 0), 1).id;
        for n in 1..5 {
            hub.publish(event(tenant, n), 1 + n);
        }
        let sub = hub.subscribe(tenant, 8, Some(first));
        assert!(!sub.replay_complete);
        assert_eq!(numbers(&sub.replay), [2, 3, 4]);
        let recent = hub.subscribe(tenant, 8, Some(EventId { ms: 3, seq: 0 }));
        assert!(recent.replay_complete);
        assert_eq!(numbers(&recent.replay), [3, 4]);
    }

    #[test]
    fn events_stamped_elsewhere_keep_their_ids() {
        let mut hub = EventHubState::new(EventHubArgs::default());
        let tenant = TenantId::new();
        let mut sub = hub.subscribe(tenant, 8, None);
        let id = EventId { ms: 42, seq: 7 };
        hub.deliver(Arc::new(StampedEvent {
            id,
            event: event(tenant, 1),
        }));
        match sub.try_recv() {
            Some(HubItem::Event(e)) => assert_eq!(e.id, id),
            other => panic!("{other:?}"),
        }
        let resumed = hub.subscribe(tenant, 8, Some(EventId { ms: 42, seq: 6 }));
        assert_eq!(numbers(&resumed.replay), [1]);
    }

    #[tokio::test]
    async fn a_stopped_hub_refuses_events() {
        let (hub, handle) = Actor::spawn(None, EventHub, EventHubArgs::default())
            .await
            .unwrap();
        hub.stop(None);
        handle.await.unwrap();
        assert!(hub
            .cast(EventHubMsg::Publish(event(TenantId::new(), 1)))
            .is_err());
    }
}
