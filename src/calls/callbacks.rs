//! The callback scheduler: a background task on every node that can dial out. Every
//! `CALLBACK_POLL_MS` it claims due callbacks (see `store::callbacks` for the claim and the
//! delivery guarantee), places each through [`CallService::place_outbound`], and records the
//! outcome. Because the claim is in the database, callbacks that fell due while every node
//! was down are placed by whichever node starts first, and once however many nodes run.
//!
//! A callback to a customer whose conversation staff have taken over is not placed: it is
//! marked `failed` ("taken over by staff") rather than kept for later, since staff are now
//! talking to the customer themselves and may book a new one; an agent ringing after the
//! release, hours later, would surprise everyone.

use std::sync::Arc;
use std::time::Duration;

use actors::domain::{AgentId, CallId};
use supervisors::tenant::Refusal;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{number_answered_by, CallService, OutboundError};
use crate::store::{Callback, PhoneNumber, Store, MAX_CALLBACK_ATTEMPTS};
use crate::twilio::rest::TwilioError;

/// Most callbacks one node claims per poll; the rest wait for the next poll or another node.
const CLAIM_BATCH: u32 = 10;
/// How much later a transient failure is tried again, times the attempts so far.
const RETRY_DELAY_MS: i64 = 60_000;

/// Why a callback was not placed, and whether trying later may help.
struct NotPlaced {
    reason: String,
    transient: bool,
}

impl NotPlaced {
    fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: false,
        }
    }

    fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            transient: true,
        }
    }
}

impl From<OutboundError> for NotPlaced {
    fn from(error: OutboundError) -> Self {
        let reason = error.to_string();
        match error {
            OutboundError::Refused(
                Refusal::AtCapacity(_)
                | Refusal::QuotaUsed(_)
                | Refusal::Draining
                | Refusal::Unavailable(_),
            ) => Self::transient(reason),
            // Twilio was not reached, or said it could not take the call right now.
            OutboundError::Twilio(TwilioError::Transport(_)) => Self::transient(reason),
            OutboundError::Twilio(TwilioError::Api { status, .. })
                if status == 429 || status >= 500 =>
            {
                Self::transient(reason)
            }
            // The database failed before Twilio was asked (`place_outbound` reports a dial
            // Twilio accepted as placed whatever the database does afterwards).
            OutboundError::Store(_) => Self::transient(reason),
            // Twilio refused the number, or may have dialled before its answer was lost (a
            // timeout, an unreadable body) so that trying again could ring twice; or this
            // server cannot dial at all.
            _ => Self::permanent(reason),
        }
    }
}

/// The agent who makes a callback and the tenant's number it rings from: the callback's
/// agent (else the agent of the tenant's first number), from a number that agent answers
/// (else the tenant's first number). `None` when the tenant has no number.
pub fn caller_line(
    numbers: &[PhoneNumber],
    agent: Option<AgentId>,
) -> Option<(AgentId, &PhoneNumber)> {
    let first = numbers.first()?;
    let agent = agent.unwrap_or(first.draft.agent_id);
    Some((agent, number_answered_by(numbers, agent).unwrap_or(first)))
}

/// Places due callbacks from this node.
pub struct CallbackScheduler {
    store: Store,
    calls: Arc<CallService>,
    public_url: Arc<str>,
    /// This process's id in `callbacks.claimed_by`: who holds a claim, so a node that lost
    /// its lease cannot overwrite the node that took over.
    node: String,
    poll: Duration,
}

impl CallbackScheduler {
    /// A scheduler for this process, polling every `poll`.
    pub fn new(
        store: Store,
        calls: Arc<CallService>,
        public_url: Arc<str>,
        poll: Duration,
    ) -> Self {
        Self {
            store,
            calls,
            public_url,
            node: uuid::Uuid::new_v4().to_string(),
            poll,
        }
    }

    /// Runs the scheduler until `stop` turns true (or its sender is dropped). A poll under
    /// way finishes first, so no claimed callback is left half-placed by a clean shutdown.
    pub fn spawn(self, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            tracing::info!(node = %self.node, poll_ms = self.poll.as_millis() as u64, "callback scheduler started");
            let mut ticks = tokio::time::interval(self.poll);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            break;
                        }
                    }
                    _ = ticks.tick() => self.poll_once().await,
                }
            }
            tracing::info!(node = %self.node, "callback scheduler stopped");
        })
    }

    /// Claims what is due and places it, concurrently.
    async fn poll_once(&self) {
        let claimed = match self
            .store
            .claim_due_callbacks(&self.node, CLAIM_BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "could not claim due callbacks");
                return;
            }
        };
        futures::future::join_all(claimed.iter().map(|callback| {
            let span = tracing::info_span!("callback", tenant_id = %callback.tenant, callback_id = %callback.id);
            self.settle(callback).instrument(span)
        }))
        .await;
    }

    /// Places one claimed callback and records how it went. A failure to record it is
    /// logged; the claim's lease then runs out and another poll takes the row again.
    async fn settle(&self, callback: &Callback) {
        let recorded = match self.place(callback).await {
            Ok(call) => {
                tracing::info!(call_id = %call, "callback placed");
                self.store.callback_placed(callback, &self.node, call).await
            }
            Err(not_placed) => {
                let retry_at = (not_placed.transient && callback.attempts < MAX_CALLBACK_ATTEMPTS)
                    .then(|| crate::store::now_ms() + RETRY_DELAY_MS * callback.attempts);
                tracing::warn!(reason = %not_placed.reason, retry = retry_at.is_some(), "callback not placed");
                self.store
                    .callback_failed(callback, &self.node, &not_placed.reason, retry_at)
                    .await
            }
        };
        if let Err(error) = recorded {
            tracing::warn!(%error, "could not record a callback's outcome");
        }
    }

    async fn place(&self, callback: &Callback) -> Result<CallId, NotPlaced> {
        let tenant = callback.tenant;
        let unavailable = |e: crate::store::StoreError| NotPlaced::transient(e.to_string());
        if self
            .store
            .takeover_of(tenant, callback.customer_number.as_str())
            .await
            .map_err(unavailable)?
            .is_some()
        {
            return Err(NotPlaced::permanent("taken over by staff"));
        }
        let numbers = self
            .store
            .phone_numbers(tenant)
            .await
            .map_err(unavailable)?;
        let (agent, from) = caller_line(&numbers, callback.agent_id)
            .ok_or_else(|| NotPlaced::permanent("the tenant has no phone number to call from"))?;
        let call = self
            .calls
            .place_outbound(
                &self.store,
                &self.public_url,
                tenant,
                agent,
                from,
                &callback.customer_number,
            )
            .await?;
        Ok(call.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PhoneNumberDraft;
    use actors::domain::{PhoneNumberId, E164};

    fn number(digits: &str, agent: AgentId) -> PhoneNumber {
        PhoneNumber {
            id: PhoneNumberId::new(),
            draft: PhoneNumberDraft {
                number: E164::parse(digits).unwrap(),
                agent_id: agent,
                label: String::new(),
            },
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_callback_rings_from_its_agents_number_else_the_first() {
        let (front, sales, stranger) = (AgentId::new(), AgentId::new(), AgentId::new());
        let numbers = [number("+14155550101", front), number("+14155550102", sales)];
        let (agent, from) = caller_line(&numbers, Some(sales)).unwrap();
        assert_eq!((agent, from.draft.number.as_str()), (sales, "+14155550102"));
        let (agent, from) = caller_line(&numbers, None).unwrap();
        assert_eq!((agent, from.draft.number.as_str()), (front, "+14155550101"));
        let (agent, from) = caller_line(&numbers, Some(stranger)).unwrap();
        assert_eq!(
            (agent, from.draft.number.as_str()),
            (stranger, "+14155550101")
        );
        assert!(caller_line(&[], None).is_none());
    }
}
