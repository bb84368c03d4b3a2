//! Phone calls on the server side: the runtime started with the real providers, the stream
//! tokens, and the calls waiting for their media stream. The voice webhook and the media
//! socket (`http::twilio`, `http::media`) are thin layers over [`CallService`].
//!
//! The service exists only when the speech and language providers are configured
//! (`OPENAI_API_KEY`, `ELEVENLABS_API_KEY`); without it, calls are answered with a polite
//! "not set up yet".

pub mod callbacks;
pub mod leg;
pub mod listen;
pub mod quota;
pub mod slots;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use std::sync::OnceLock;

use actors::domain::{AgentId, CallId, TenantId, E164};
use actors::ports::{CallInfo, EventSink, TenantEvent};
use anyhow::Context;
use supervisors::call::CallSettings;
use supervisors::runtime::{Runtime, RuntimeArgs, RuntimePorts};
use supervisors::tenant::Refusal;

use crate::knowledge::ingest::KnowledgeBase;
use crate::providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use crate::providers::fallback::FallbackLlm;
use crate::providers::openai::{OpenAiClient, OpenAiConfig, OpenAiLlm, OpenAiStt};
use crate::providers::openai_realtime::OpenAiRealtimeStt;
use crate::providers::stt_router::SttRouter;
use crate::settings::{Settings, VoiceProviders};
use crate::store::{Direction, NewCall, NumberRoute, PhoneNumber, Store, StoreError};
use crate::texts::Texter;
use crate::twilio::rest::{StatusCallback, TwilioClient, TwilioError};
use crate::twilio::twiml::{Connect, Stream, TwimlError, VoiceResponse};
use leg::{PendingLeg, PendingLegs, TwilioLeg};
use supervisors::call::CallMsg;
use token::{
    StreamGrant, StreamTokens, INBOUND_STREAM_TTL_SECS, OUTBOUND_STREAM_TTL_SECS,
    STREAM_TOKEN_PARAMETER,
};

/// What calls still live when the drain time runs out hear before they are hung up.
const DRAIN_GOODBYE: &str =
    "I'm sorry, I have to end our call now. Please call us back in a moment. Goodbye.";

/// How long those calls get to hear it.
const GOODBYE_TIME: Duration = Duration::from_secs(15);

/// Longest wait for a REST request to Twilio.
const TWILIO_TIMEOUT: Duration = Duration::from_secs(10);

/// The TwiML that connects a call to our media socket with its stream token.
pub fn stream_twiml(public_url: &str, token: String) -> Result<String, TwimlError> {
    let socket_base = crate::providers::websocket_base(public_url)
        .ok_or_else(|| TwimlError::InvalidStreamUrl(public_url.to_owned()))?;
    let stream = Stream::new(format!("{socket_base}/twilio/media"))?
        .parameter(STREAM_TOKEN_PARAMETER, token);
    Ok(VoiceResponse::new()
        .connect(Connect::stream(stream))
        .to_xml())
}

/// The first of the tenant's `numbers` that `agent` answers: the number an agent's
/// outbound calls come from, so the customer sees the number they know the agent by.
pub fn number_answered_by(numbers: &[PhoneNumber], agent: AgentId) -> Option<&PhoneNumber> {
    numbers.iter().find(|n| n.draft.agent_id == agent)
}

/// The REST client of the configured Twilio account, or `None` when `TWILIO_ACCOUNT_SID`
/// or `TWILIO_AUTH_TOKEN` is unset: one client (one connection pool) serves calls and texts.
pub fn twilio_client(settings: &Settings) -> anyhow::Result<Option<TwilioClient>> {
    let (Some(rest), Some(token)) = (&settings.twilio_rest, &settings.twilio_auth_token) else {
        return Ok(None);
    };
    TwilioClient::with_options(
        rest.account_sid.clone(),
        token.clone(),
        &rest.api_base,
        TWILIO_TIMEOUT,
    )
    .map(Some)
    .context("TWILIO_ACCOUNT_SID or TWILIO_API_BASE")
}

/// An outbound call Twilio accepted.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OutboundCall {
    /// Our id of the call.
    #[schema(value_type = String, format = Uuid)]
    pub id: CallId,
    /// Twilio's CallSid.
    pub call_sid: String,
}

/// Why an outbound call was not placed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// Twilio's REST API is not configured.
    #[error("outbound calls need TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")]
    NotConfigured,
    /// The runtime did not admit the call.
    #[error(transparent)]
    Refused(Refusal),
    /// Twilio refused or failed the dial.
    #[error(transparent)]
    Twilio(TwilioError),
    /// The stream URL could not be built from `PUBLIC_URL`.
    #[error("PUBLIC_URL gives no usable media stream URL: {0}")]
    Twiml(TwimlError),
    /// The call could not be recorded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the voice webhook should answer a ringing call.
pub enum Answer {
    /// Connect the call's media stream, passing this token (see [`stream_twiml`]).
    Stream {
        /// The stream token for the `<Parameter>`.
        token: String,
    },
    /// The call was not admitted.
    Refused {
        /// Why.
        refusal: Refusal,
        /// Where the agent sends callers it cannot take, if anywhere.
        fallback: Option<E164>,
    },
}

/// The runtime and everything a call needs on the server side.
pub struct CallService {
    runtime: Runtime,
    tokens: StreamTokens,
    legs: PendingLegs,
    twilio: Option<TwilioClient>,
    texter: Texter,
    /// Supervisors listening to calls streaming on this node.
    listeners: listen::Listeners,
    /// Where ringing calls and refusals are announced.
    events: Arc<dyn EventSink>,
    /// The tenants' concurrent-call slots across nodes, with `REDIS_URL`.
    slots: Option<slots::CallSlots>,
}

impl CallService {
    /// Starts the runtime with the configured providers, or returns `None` when there are
    /// none. `twilio` is the account's REST client, when configured (outbound calls,
    /// transfers); `texter` sends the agent's texts during calls; calls search `knowledge`
    /// and publish on `events`.
    pub async fn start(
        settings: &Settings,
        store: &Store,
        (twilio, texter): (Option<TwilioClient>, Texter),
        knowledge: &KnowledgeBase,
        events: Arc<dyn EventSink>,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        let Some(voice) = &settings.voice else {
            return Ok(None);
        };
        let slots = match &settings.redis_url {
            Some(url) => {
                let (_, conn) = crate::redis_client::connect(url)
                    .await
                    .context("connecting to REDIS_URL for call slots")?;
                Some(slots::CallSlots::new(
                    conn,
                    settings.redis_key_prefix.clone(),
                ))
            }
            None => None,
        };
        let runtime = Runtime::start(
            RuntimeArgs {
                ports: provider_ports(voice, store, knowledge, events.clone())?,
                settings: CallSettings {
                    conversation_idle: settings.conversation_idle,
                    ..CallSettings::default()
                },
            },
            None,
        )
        .await
        .context("starting the call runtime")?;
        Ok(Some(Arc::new(Self {
            runtime,
            tokens: StreamTokens::new(&settings.jwt_secret),
            legs: PendingLegs::default(),
            twilio,
            texter,
            listeners: listen::Listeners::default(),
            events,
            slots,
        })))
    }

    /// The runtime, for configuration changes, live counts and draining.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Calls streaming on this node, for supervisors who listen.
    pub fn listeners(&self) -> &listen::Listeners {
        &self.listeners
    }

    /// Stream tokens, for the media socket.
    pub fn tokens(&self) -> &StreamTokens {
        &self.tokens
    }

    /// Whether this server can dial out (Twilio's REST API is configured); the callback
    /// scheduler runs only where it can.
    pub fn places_outbound(&self) -> bool {
        self.twilio.is_some()
    }

    /// Announces a call that rings (`call.ringing`), or one refused for the tenant's limits
    /// (`quota.exceeded`).
    fn announce_admission<T>(
        &self,
        call: &CallInfo,
        direction: Direction,
        admitted: &Result<T, Refusal>,
    ) {
        if let Err(refusal) = admitted {
            let reason = match refusal {
                Refusal::AtCapacity(_) => "concurrent_limit",
                Refusal::QuotaUsed(_) => "monthly_minutes",
                Refusal::Draining => "draining",
                Refusal::UnknownAgent => "unknown_agent",
                Refusal::Unavailable(_) => "unavailable",
            };
            metrics::counter!("switchboard_calls_refused_total", "reason" => reason).increment(1);
        }
        let (kind, data) = match admitted {
            Ok(_) => (
                "call.ringing",
                serde_json::json!({
                    "direction": match direction {
                        Direction::Inbound => "inbound",
                        Direction::Outbound => "outbound",
                    },
                    "customer": call.customer,
                    "business_number": call.business_number,
                    "agent_id": call.agent,
                }),
            ),
            Err(Refusal::AtCapacity(limit)) => (
                "quota.exceeded",
                serde_json::json!({"quota": "concurrent_calls", "limit": limit, "customer": call.customer}),
            ),
            Err(Refusal::QuotaUsed(minutes)) => (
                "quota.exceeded",
                serde_json::json!({"quota": "monthly_minutes", "limit": minutes, "customer": call.customer}),
            ),
            Err(_) => return,
        };
        self.events.publish(TenantEvent {
            tenant: call.tenant,
            kind,
            call_id: Some(call.call_id),
            data,
        });
    }

    /// Records a call Twilio is ringing us with and starts its agent, or says why not. The
    /// call's greeting is prepared while Twilio opens the stream.
    pub async fn answer_inbound(
        &self,
        store: &Store,
        route: &NumberRoute,
        call_sid: &str,
        from: &str,
        to: &E164,
    ) -> Result<Answer, StoreError> {
        let call = CallInfo {
            call_id: CallId::new(),
            tenant: route.tenant,
            agent: route.agent,
            customer: from.to_owned(),
            business_number: to.clone(),
        };
        store
            .create_call(
                route.tenant,
                &NewCall::inbound(&call, call_sid, route.phone_number),
            )
            .await?;
        let sid = Arc::new(OnceLock::from(call_sid.to_owned()));
        let admitted = match quota::used_up(store, route.tenant).await? {
            Some(minutes) => Err(Refusal::QuotaUsed(minutes)),
            None => {
                self.start_leg(store, &call, sid, (call_sid, INBOUND_STREAM_TTL_SECS))
                    .await
            }
        };
        self.announce_admission(&call, Direction::Inbound, &admitted);
        match admitted {
            Ok(token) => Ok(Answer::Stream { token }),
            Err(refusal) => {
                tracing::warn!(call_sid, tenant_id = %route.tenant, %refusal, "call refused");
                store
                    .refuse_call(route.tenant, call.call_id, &refusal.to_string())
                    .await?;
                let fallback = store
                    .agent(route.tenant, route.agent)
                    .await
                    .ok()
                    .and_then(|agent| agent.draft.transfer_number);
                Ok(Answer::Refused { refusal, fallback })
            }
        }
    }

    /// Dials `to` from the tenant's number `from` with `agent` talking: the call is admitted
    /// first (so a tenant at its limit dials nobody), then Twilio is asked to place it with
    /// TwiML that connects the media stream once the callee answers.
    pub async fn place_outbound(
        &self,
        store: &Store,
        public_url: &str,
        tenant: TenantId,
        agent: AgentId,
        from: &PhoneNumber,
        to: &E164,
    ) -> Result<OutboundCall, OutboundError> {
        let twilio = self.twilio.as_ref().ok_or(OutboundError::NotConfigured)?;
        let call = CallInfo {
            call_id: CallId::new(),
            tenant,
            agent,
            customer: to.to_string(),
            business_number: from.draft.number.clone(),
        };
        let placeholder_sid = format!("pending-{}", call.call_id);
        store
            .create_call(
                call.tenant,
                &NewCall {
                    id: call.call_id,
                    call_sid: placeholder_sid.clone(),
                    agent,
                    phone_number: from.id,
                    direction: Direction::Outbound,
                    from: from.draft.number.to_string(),
                    to: to.clone(),
                },
            )
            .await?;
        let sid = Arc::new(OnceLock::new());
        let admitted = match quota::used_up(store, tenant).await? {
            Some(minutes) => Err(Refusal::QuotaUsed(minutes)),
            None => {
                self.start_leg(
                    store,
                    &call,
                    sid.clone(),
                    (&placeholder_sid, OUTBOUND_STREAM_TTL_SECS),
                )
                .await
            }
        };
        self.announce_admission(&call, Direction::Outbound, &admitted);
        let token = match admitted {
            Ok(token) => token,
            Err(refusal) => {
                store
                    .refuse_call(call.tenant, call.call_id, &refusal.to_string())
                    .await?;
                return Err(OutboundError::Refused(refusal));
            }
        };
        let twiml = stream_twiml(public_url, token).map_err(OutboundError::Twiml)?;
        let callback = StatusCallback::all(format!("{public_url}/twilio/voice/status"));
        let placed = twilio
            .create_call(to, &from.draft.number, &twiml, Some(&callback))
            .await;
        let resource = match placed {
            Ok(resource) => resource,
            Err(error) => {
                if let Some(leg) = self.legs.claim(&placeholder_sid) {
                    let _ = leg.call.send_message(CallMsg::CallerHungUp);
                }
                // Past Twilio, what Twilio said decides (whether trying again could ring
                // twice): a record that fails to update is logged, not returned.
                if let Err(store_error) = store
                    .refuse_call(call.tenant, call.call_id, &error.to_string())
                    .await
                {
                    tracing::error!(call_id = %call.call_id, error = %store_error, "a failed dial was not recorded");
                }
                return Err(OutboundError::Twilio(error));
            }
        };
        if let Err(error) = store
            .set_call_sid(call.tenant, call.call_id, &resource.sid)
            .await
        {
            // The call is ringing: report it placed, or a caller would dial it again.
            tracing::error!(call_id = %call.call_id, %error, "a placed call's CallSid was not recorded");
        }
        let _ = sid.set(resource.sid.clone());
        self.legs.rename(&placeholder_sid, resource.sid.clone());
        Ok(OutboundCall {
            id: call.call_id,
            call_sid: resource.sid,
        })
    }

    /// Starts the agent of `call` on a Twilio leg and parks the leg under `parked_as` (its
    /// CallSid, or a placeholder until Twilio gives one) until its stream connects; returns
    /// the stream token.
    async fn start_leg(
        &self,
        store: &Store,
        call: &CallInfo,
        sid: Arc<OnceLock<String>>,
        (parked_as, ttl_secs): (&str, i64),
    ) -> Result<String, Refusal> {
        if let Some(slots) = &self.slots {
            let limit = store
                .tenant(call.tenant)
                .await
                .map_err(|e| Refusal::Unavailable(e.to_string()))?
                .concurrent_call_limit;
            match slots.take(call.tenant, call.call_id, limit).await {
                Ok(true) => {}
                Ok(false) => return Err(Refusal::AtCapacity(usize::try_from(limit).unwrap_or(0))),
                // Redis is down: each node's own limit still holds; better than no calls.
                Err(error) => {
                    tracing::warn!(%error, "call slots unavailable; only this node's limit applies")
                }
            }
        }
        let (leg, commands) =
            TwilioLeg::new(sid.clone(), self.twilio.clone(), self.texter.clone(), call);
        let started = self.runtime.start_call(call.clone(), Arc::new(leg)).await;
        let actor = match (started, &self.slots) {
            (Ok(actor), Some(slots)) => {
                slots.hold(call.tenant, call.call_id, actor.clone());
                actor
            }
            (Ok(actor), None) => actor,
            (Err(refusal), slots) => {
                if let Some(slots) = slots {
                    slots.release(call.tenant, call.call_id).await;
                }
                return Err(refusal);
            }
        };
        self.legs.park(
            parked_as.to_owned(),
            PendingLeg {
                call_id: call.call_id,
                tenant: call.tenant,
                call: actor,
                commands,
            },
            Duration::from_secs(ttl_secs.unsigned_abs()),
        );
        Ok(self.tokens.issue(
            &StreamGrant {
                call_sid: sid.get().cloned(),
                call_id: call.call_id,
                tenant: call.tenant,
                agent: call.agent,
                customer: call.customer.clone(),
                business_number: call.business_number.to_string(),
            },
            ttl_secs,
        ))
    }

    /// The call waiting for this stream, if the token's call is the one waiting; taken so
    /// no second socket can have it.
    pub fn claim_leg(&self, call_sid: &str, call_id: CallId) -> Option<PendingLeg> {
        self.legs.claim_for(call_sid, call_id)
    }

    /// Twilio reported a call over before its stream connected (no answer, busy, hung up
    /// while ringing): its agent stops now rather than at the stream timeout.
    pub fn stream_never_came(&self, call_sid: &str) {
        if let Some(leg) = self.legs.claim(call_sid) {
            let _ = leg.call.send_message(CallMsg::CallerHungUp);
        }
    }

    /// A tenant's agents or limits changed: calls admitted from now on use the new ones.
    pub fn config_changed(&self, tenant: TenantId) {
        self.runtime.config_changed(tenant);
    }

    /// Stops admitting calls and waits up to `deadline` for the live ones to end; those
    /// still live then hear a goodbye and are hung up.
    pub async fn drain(&self, deadline: Duration) {
        match self.runtime.drain(deadline).await {
            Ok(0) => {}
            Ok(live) => {
                tracing::warn!(
                    live,
                    "calls still live when the drain time ran out hear a goodbye and are hung up"
                );
                self.runtime.say_goodbye(DRAIN_GOODBYE).await;
                if let Ok(left) = self.runtime.drain(GOODBYE_TIME).await {
                    if left > 0 {
                        tracing::warn!(left, "calls still live after their goodbye are cut off");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "the runtime did not drain"),
        }
    }

    /// Stops the runtime and every actor in it (after [`Self::drain`]).
    pub async fn stop(&self) {
        self.runtime.stop().await;
    }
}

/// The real adapters behind the runtime's ports.
/// The client of the configured OpenAI-compatible endpoint (speech-to-text, the agents'
/// models, embeddings).
pub fn openai_client(voice: &VoiceProviders) -> anyhow::Result<OpenAiClient> {
    let mut openai = OpenAiConfig::new(voice.openai_api_key.clone());
    openai.base_url = voice.openai_base_url.clone();
    openai.stt_model = voice.openai_stt_model.clone();
    openai.timeout = voice.timeout;
    OpenAiClient::new(openai).context("OPENAI_API_KEY")
}

fn provider_ports(
    voice: &VoiceProviders,
    store: &Store,
    knowledge: &KnowledgeBase,
    events: Arc<dyn EventSink>,
) -> anyhow::Result<RuntimePorts> {
    let openai = openai_client(voice)?;
    let mut elevenlabs = ElevenLabsConfig::new(voice.elevenlabs_api_key.clone())
        .with_base_url(voice.elevenlabs_base_url.clone());
    elevenlabs.model_id = voice.elevenlabs_model.clone();
    elevenlabs.first_byte_timeout = voice.timeout;
    let tts = ElevenLabsTts::new(elevenlabs).context("ELEVENLABS_API_KEY")?;
    let records = Arc::new(crate::store::StoreThread(store.clone()));
    let store = Arc::new(store.clone());
    Ok(RuntimePorts {
        // Each agent's sessions open on the adapter of its `stt_mode`.
        stt: Arc::new(SttRouter::new(
            Arc::new(OpenAiStt::new(openai.clone())),
            Arc::new(OpenAiRealtimeStt::new(openai.clone())),
        )),
        // Agents with fallback models get them tried on the same endpoint.
        llm: Arc::new(FallbackLlm::new(Arc::new(OpenAiLlm::new(openai.clone())))),
        tts: Arc::new(tts),
        call_log: records.clone(),
        conversations: records,
        vectors: knowledge.vectors(),
        embedder: knowledge.embedder(),
        directory: store,
        events,
    })
}
