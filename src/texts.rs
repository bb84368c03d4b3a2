//! Texting customers: a text that arrives is stored in the customer's conversation and, unless
//! staff have taken the conversation over, answered by the agent of the number it was sent
//! to; staff text customers from the dashboard. Every text, either way, is stored with what
//! Twilio says of it, and joins the conversation the agent reads on every channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::conversation::ConversationMsg;
use actors::domain::{TenantId, UserId, E164};
use actors::ports::{Channel, EventSink, HistoryEntry, Speaker, TenantEvent};
use ractor::ActorRef;
use supervisors::text::TextTurn;

use crate::http::AppState;
use crate::store::{Message, NewMessage, NumberRoute, SmsReplyMode, Store, StoreError};
use crate::twilio::rest::{MessageStatus, TwilioClient, TwilioError};

/// Said when a text holds only pictures, which the agent cannot read yet.
pub const PICTURES_NOT_READ: &str =
    "Thanks for the picture! I can't view images yet. Could you tell me about it in a text?";
/// Sent when the agent could not answer, so the customer is not left waiting in silence.
pub const COULD_NOT_ANSWER: &str =
    "Sorry, I can't answer right now. Someone from our team will get back to you soon.";
/// How long, from the webhook's arrival, the agent may take when its reply goes back in the
/// webhook's TwiML answer (Twilio waits 15 s for a webhook, storing included).
const TWIML_REPLY_DEADLINE: Duration = Duration::from_secs(11);
/// How long the agent may take when its reply goes out through the REST API.
const REST_REPLY_DEADLINE: Duration = Duration::from_secs(45);
/// Media URLs kept per text (Twilio sends at most 10).
const MAX_MEDIA: usize = 10;

/// A text Twilio delivered to one of the tenants' numbers.
#[derive(Debug, Clone)]
pub struct InboundText {
    /// Twilio's id of it (`SM…`, `MM…` with pictures).
    pub message_sid: String,
    /// The customer's number.
    pub from: String,
    /// The words (may be empty for a picture).
    pub body: String,
    /// The pictures' URLs.
    pub media_urls: Vec<String>,
    /// Segments Twilio counted.
    pub segments: i64,
}

impl InboundText {
    /// Reads `MediaUrl0…` of an inbound webhook, as many as `NumMedia` says (at most ten).
    pub fn media_from(
        num_media: Option<&str>,
        media_url: impl Fn(usize) -> Option<String>,
    ) -> Vec<String> {
        let count = num_media.and_then(|n| n.parse::<usize>().ok()).unwrap_or(0);
        (0..count.min(MAX_MEDIA)).filter_map(media_url).collect()
    }
}

/// What the webhook answers Twilio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookReply {
    /// An empty `<Response/>`: nothing to send now (the reply, if any, goes by REST).
    Nothing,
    /// A `<Message>` to the customer.
    Message(String),
}

/// Why a text could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Twilio's REST credentials are not set.
    #[error("texting is not configured here: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")]
    NotConfigured,
    /// Twilio refused or could not be reached.
    #[error(transparent)]
    Twilio(#[from] TwilioError),
    /// The text went out but could not be stored.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The conversation actor of the customer, when the runtime runs. Asked for before a text
/// is stored, so an actor started now loads the conversation without it and the text joins
/// it once (see [`remember`]).
async fn conversation_actor(
    state: &AppState,
    tenant: TenantId,
    customer: &str,
) -> Option<ActorRef<ConversationMsg>> {
    let calls = state.calls.as_ref()?;
    match calls.runtime().conversation(tenant, customer).await {
        Ok(actor) => Some(actor),
        Err(error) => {
            tracing::warn!(tenant_id = %tenant, %error, "the customer's conversation is not running; the text is stored only");
            None
        }
    }
}

/// Adds a stored text to the running conversation, so the agent reads it next.
fn remember(conversation: Option<&ActorRef<ConversationMsg>>, message: &Message, speaker: Speaker) {
    if let Some(actor) = conversation {
        let _ = actor.send_message(ConversationMsg::Remember(HistoryEntry {
            speaker,
            channel: Channel::Sms,
            text: message.body.clone(),
            at_ms: message.created_at,
        }));
    }
}

/// Sends texts through Twilio's REST API and stores each with its SID, status and cost, so
/// every text the business sends (the agent's replies, staff texts, texts during a call) is
/// in the customer's conversation and gets its delivery reports.
#[derive(Clone)]
pub struct Texter {
    store: Store,
    twilio: Option<TwilioClient>,
    /// Where Twilio reports delivery: `PUBLIC_URL/twilio/sms/status`.
    status_url: String,
    /// Where each text sent or received is announced (`sms.sent`, `sms.received`).
    events: Arc<dyn EventSink>,
}

impl Texter {
    /// A texter on the account's REST client (`None`: texts cannot be sent).
    pub fn new(
        store: Store,
        twilio: Option<TwilioClient>,
        public_url: &str,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            store,
            twilio,
            status_url: format!("{public_url}/twilio/sms/status"),
            events,
        }
    }

    /// Publishes `sms.received` (from the customer) or `sms.sent` for a stored text.
    pub fn announce(&self, tenant: TenantId, customer: &str, message: &Message) {
        let kind = if message.direction == "inbound" {
            "sms.received"
        } else {
            "sms.sent"
        };
        let mut data = serde_json::to_value(message).unwrap_or_default();
        if let Some(fields) = data.as_object_mut() {
            fields.insert("customer".to_owned(), customer.into());
        }
        self.events.publish(TenantEvent {
            tenant,
            kind,
            call_id: message.call_id,
            data,
        });
    }

    /// Whether texts can be sent (Twilio's REST API is configured).
    pub fn can_send(&self) -> bool {
        self.twilio.is_some()
    }

    /// Texts `customer` from `from` and stores the text with the tokens the model used to
    /// write it.
    pub async fn send(
        &self,
        tenant: TenantId,
        (from, customer): (&E164, &E164),
        (sender, user): (Speaker, Option<UserId>),
        body: &str,
        llm_tokens: u64,
    ) -> Result<Message, SendError> {
        let twilio = self.twilio.as_ref().ok_or(SendError::NotConfigured)?;
        let sent = twilio
            .send_sms(customer, from, body, Some(&self.status_url))
            .await?;
        let error_code = sent.error_code.map(|c| c.to_string());
        let text = NewMessage {
            customer: customer.as_str(),
            channel: Channel::Sms,
            sender,
            sender_user_id: user,
            body,
            media_urls: &[],
            twilio_sid: Some(&sent.sid),
            status: sent.status.unwrap_or(MessageStatus::Queued).as_str(),
            error_code: error_code.as_deref(),
            segments: sent
                .num_segments
                .as_deref()
                .and_then(|n| n.parse::<u32>().ok())
                .map_or(1, i64::from),
            llm_tokens: i64::try_from(llm_tokens).unwrap_or(i64::MAX),
            at_ms: crate::store::now_ms(),
        };
        let message =
            self.store
                .record_message(tenant, &text)
                .await?
                .ok_or(StoreError::Conflict(
                    "Twilio gave a message SID that is already stored",
                ))?;
        self.announce(tenant, customer.as_str(), &message);
        Ok(message)
    }
}

/// Texts `customer` from `from` (see [`Texter::send`]) and adds the text to the customer's
/// running conversation, so the agent reads it next.
pub async fn send_text(
    state: &AppState,
    tenant: TenantId,
    (from, customer): (&E164, &E164),
    author: (Speaker, Option<UserId>),
    body: &str,
    llm_tokens: u64,
) -> Result<Message, SendError> {
    if !state.texter.can_send() {
        return Err(SendError::NotConfigured);
    }
    let conversation = conversation_actor(state, tenant, customer.as_str()).await;
    let message = state
        .texter
        .send(tenant, (from, customer), author, body, llm_tokens)
        .await?;
    remember(conversation.as_ref(), &message, author.0);
    Ok(message)
}

/// Stores a text that arrived and lets the agent answer it: in the returned TwiML when the
/// tenant prefers, otherwise by REST in the background. A text Twilio already delivered
/// (a retried webhook) is not stored or answered twice; nobody answers a conversation staff
/// have taken over.
pub async fn receive_text(
    state: &AppState,
    route: &NumberRoute,
    business_number: &E164,
    text: InboundText,
) -> Result<WebhookReply, StoreError> {
    let arrived = Instant::now();
    let tenant = route.tenant;
    // Everything that can fail is read before the text is stored: a failure after it would
    // leave a stored text that Twilio's retry (a duplicate) never gets answered.
    let mode = state.store.tenant(tenant).await?.sms_reply_mode;
    let taken_over = state.store.takeover_of(tenant, &text.from).await?;
    let last_call = state.store.last_call_summary(tenant, &text.from).await?;
    let conversation = conversation_actor(state, tenant, &text.from).await;
    let stored = NewMessage {
        customer: &text.from,
        channel: Channel::Sms,
        sender: Speaker::Customer,
        sender_user_id: None,
        body: &text.body,
        media_urls: &text.media_urls,
        twilio_sid: Some(&text.message_sid),
        status: "received",
        error_code: None,
        segments: text.segments,
        llm_tokens: 0,
        at_ms: crate::store::now_ms(),
    };
    let Some(message) = state.store.record_message(tenant, &stored).await? else {
        tracing::info!(message_sid = %text.message_sid, "Twilio delivered a text twice; answered once");
        return Ok(WebhookReply::Nothing);
    };
    remember(conversation.as_ref(), &message, Speaker::Customer);
    state.texter.announce(tenant, &text.from, &message);
    if let Some(user) = taken_over {
        tracing::info!(tenant_id = %tenant, user_id = %user, "a text to a conversation staff have taken over; the agent stays quiet");
        return Ok(WebhookReply::Nothing);
    }
    let Some(calls) = state.calls.clone() else {
        tracing::warn!(tenant_id = %tenant, "a text arrived but no language model is configured; stored unanswered");
        return Ok(WebhookReply::Nothing);
    };
    // Without REST credentials, or to a sender that is not a phone number (a short code),
    // the reply can only go back in the webhook's answer.
    let rest_to = E164::parse(&text.from)
        .ok()
        .filter(|_| mode == SmsReplyMode::Rest && state.texter.can_send());
    let deadline = match rest_to {
        Some(_) => REST_REPLY_DEADLINE,
        None => TWIML_REPLY_DEADLINE.saturating_sub(arrived.elapsed()),
    };
    let mut context = Vec::new();
    if let Some((started_at, summary)) = last_call {
        let when = chrono::DateTime::from_timestamp_millis(started_at)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default();
        context.push(format!(
            "The last phone call with this customer ({when}): {summary}"
        ));
    }
    if !text.media_urls.is_empty() {
        context.push(format!(
            "The customer's text came with {} picture(s) you cannot see; say so politely and ask them to describe what they sent.",
            text.media_urls.len()
        ));
    }
    let turn = TextTurn {
        customer: text.from.clone(),
        agent: route.agent,
        context,
    };
    let pictures_only = text.body.trim().is_empty() && !text.media_urls.is_empty();
    let answer = async move {
        if pictures_only {
            return (PICTURES_NOT_READ.to_owned(), 0);
        }
        match calls.runtime().answer_text(tenant, turn, deadline).await {
            Ok(answer) => (answer.text, answer.llm_tokens),
            Err(error) => {
                tracing::warn!(tenant_id = %tenant, %error, "the agent could not answer a text; sending an apology");
                (COULD_NOT_ANSWER.to_owned(), 0)
            }
        }
    };
    if let Some(customer) = rest_to {
        let state = state.clone();
        let from = business_number.clone();
        tokio::spawn(async move {
            let (reply, tokens) = answer.await;
            if still_taken_over(&state, tenant, customer.as_str()).await {
                return;
            }
            let author = (Speaker::Agent, None);
            let numbers = (&from, &customer);
            if let Err(error) = send_text(&state, tenant, numbers, author, &reply, tokens).await {
                tracing::error!(tenant_id = %tenant, %error, "the agent's reply to a text was not sent");
            }
        });
        return Ok(WebhookReply::Nothing);
    }
    let (reply, tokens) = answer.await;
    if still_taken_over(state, tenant, &text.from).await {
        return Ok(WebhookReply::Nothing);
    }
    let stored = NewMessage {
        customer: &text.from,
        channel: Channel::Sms,
        sender: Speaker::Agent,
        sender_user_id: None,
        body: &reply,
        media_urls: &[],
        twilio_sid: None,
        // Twilio sends a TwiML reply without telling us its SID, so no report follows.
        status: "accepted",
        error_code: None,
        segments: 1,
        llm_tokens: i64::try_from(tokens).unwrap_or(i64::MAX),
        at_ms: crate::store::now_ms(),
    };
    if let Some(message) = state.store.record_message(tenant, &stored).await? {
        remember(conversation.as_ref(), &message, Speaker::Agent);
        state.texter.announce(tenant, &text.from, &message);
    }
    Ok(WebhookReply::Message(reply))
}

/// Whether staff took the conversation over while the agent was writing its reply, in which
/// case the reply is dropped (a database that cannot say counts as not taken over).
async fn still_taken_over(state: &AppState, tenant: TenantId, customer: &str) -> bool {
    let taken = matches!(state.store.takeover_of(tenant, customer).await, Ok(Some(_)));
    if taken {
        tracing::info!(tenant_id = %tenant, "staff took the conversation over while the agent wrote; its reply is dropped");
    }
    taken
}
