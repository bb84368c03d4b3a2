//! `Runtime`: the root supervisor. Starts a tenant's supervisor on first use (reading the
//! tenant's configuration through the directory port, off its own mailbox) and drains for
//! shutdown: no new calls, then wait for the live ones. Events go out through the
//! [`EventSink`] port (the server's event bus, which also serves the dashboard and the
//! knowledge base, so it outlives and does not depend on the runtime).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actors::domain::TenantId;
use actors::ports::{
    CallInfo, CallLog, ConversationStore, Embedder, EventSink, LanguageModel, SpeechToText,
    Telephony, TenantDirectory, TextToSpeech, VectorStore,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::call::{CallMsg, CallPorts, CallSettings};
use crate::registry::{Registry, Started};
use crate::tenant::{Refusal, TenantArgs, TenantMsg, TenantPorts, TenantSupervisor};
use crate::text::{TextAnswer, TextError, TextTurn};
use actors::conversation::ConversationMsg;

/// Longest wait for one actor to answer the runtime handle.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait on stop for the calls' last records: more than a record's retries take
/// (0.2 + 0.4 + 0.8 + 1.6 s) with a few records queued behind it.
const RECORDS_FLUSH: Duration = Duration::from_secs(15);

/// Every port the runtime needs, implemented by the server's adapters (or in-memory fakes
/// in tests).
#[derive(Clone)]
pub struct RuntimePorts {
    /// Speech-to-text.
    pub stt: Arc<dyn SpeechToText>,
    /// Language model.
    pub llm: Arc<dyn LanguageModel>,
    /// Text-to-speech.
    pub tts: Arc<dyn TextToSpeech>,
    /// Call records.
    pub call_log: Arc<dyn CallLog>,
    /// Customer histories.
    pub conversations: Arc<dyn ConversationStore>,
    /// Knowledge chunks.
    pub vectors: Arc<dyn VectorStore>,
    /// Dense vectors, when configured.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Tenants' configuration.
    pub directory: Arc<dyn TenantDirectory>,
    /// Where calls publish their events.
    pub events: Arc<dyn EventSink>,
}

/// Messages to the root supervisor.
pub enum RuntimeMsg {
    /// A tenant's supervisor, started on first use.
    Tenant {
        /// The tenant.
        tenant: TenantId,
        /// Its supervisor, or why it could not start.
        reply: RpcReplyPort<Started<ActorRef<TenantMsg>>>,
    },
    /// A tenant's supervisor finished starting (internal).
    TenantStarted {
        /// The tenant.
        tenant: TenantId,
        /// The outcome.
        result: Started<ActorRef<TenantMsg>>,
    },
    /// A tenant's settings changed: reload them.
    ConfigChanged(TenantId),
    /// Every running tenant supervisor.
    Tenants(RpcReplyPort<Vec<ActorRef<TenantMsg>>>),
    /// Stop admitting calls everywhere.
    Drain,
}

/// What the runtime is started with.
pub struct RuntimeArgs {
    /// Ports.
    pub ports: RuntimePorts,
    /// Call tuning.
    pub settings: CallSettings,
}

/// The root supervisor's state.
pub struct RuntimeState {
    args: RuntimeArgs,
    record_writers: TaskTracker,
    tenants: Registry<TenantId, ActorRef<TenantMsg>>,
    tenant_ids: HashMap<ractor::ActorId, TenantId>,
    draining: bool,
}

/// The root supervisor.
pub struct RuntimeActor;

impl RuntimeState {
    fn tenant_ports(&self) -> TenantPorts {
        let ports = &self.args.ports;
        TenantPorts {
            call: CallPorts {
                stt: ports.stt.clone(),
                llm: ports.llm.clone(),
                tts: ports.tts.clone(),
                call_log: ports.call_log.clone(),
                conversations: ports.conversations.clone(),
                events: ports.events.clone(),
                record_writers: self.record_writers.clone(),
            },
            vectors: ports.vectors.clone(),
            embedder: ports.embedder.clone(),
        }
    }
}

impl Actor for RuntimeActor {
    type Msg = RuntimeMsg;
    type State = RuntimeState;
    type Arguments = (RuntimeArgs, TaskTracker);

    async fn pre_start(
        &self,
        _myself: ActorRef<RuntimeMsg>,
        (args, record_writers): (RuntimeArgs, TaskTracker),
    ) -> Result<RuntimeState, ActorProcessingErr> {
        Ok(RuntimeState {
            args,
            record_writers,
            tenants: Registry::default(),
            tenant_ids: HashMap::new(),
            draining: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<RuntimeMsg>,
        msg: RuntimeMsg,
        state: &mut RuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RuntimeMsg::Tenant { tenant, reply } => {
                if state.tenants.ask(tenant, reply) {
                    let directory = state.args.ports.directory.clone();
                    let ports = state.tenant_ports();
                    let settings = state.args.settings;
                    tokio::spawn(async move {
                        let result = async {
                            let config = directory
                                .tenant_config(tenant)
                                .await
                                .map_err(|e| e.to_string())?;
                            let args = TenantArgs {
                                tenant,
                                config,
                                ports,
                                settings,
                            };
                            let (actor, _) = TenantSupervisor::spawn_linked(
                                None,
                                TenantSupervisor,
                                args,
                                myself.get_cell(),
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                            Ok(actor)
                        }
                        .await;
                        let _ = myself.send_message(RuntimeMsg::TenantStarted { tenant, result });
                    });
                }
            }
            RuntimeMsg::TenantStarted { tenant, result } => {
                if let Ok(actor) = &result {
                    state.tenant_ids.insert(actor.get_id(), tenant);
                    // A drain that began while the tenant was starting reaches it too.
                    if state.draining {
                        let _ = actor.send_message(TenantMsg::Drain);
                    }
                }
                state.tenants.started(tenant, result);
            }
            RuntimeMsg::ConfigChanged(tenant) => {
                let running = state
                    .tenants
                    .running()
                    .find(|t| state.tenant_ids.get(&t.get_id()) == Some(&tenant))
                    .cloned();
                if let Some(actor) = running {
                    let directory = state.args.ports.directory.clone();
                    tokio::spawn(async move {
                        match directory.tenant_config(tenant).await {
                            Ok(config) => {
                                let _ = actor.send_message(TenantMsg::UpdateConfig(config));
                            }
                            Err(error) => {
                                tracing::warn!(%tenant, %error, "tenant configuration could not be reloaded")
                            }
                        }
                    });
                }
            }
            RuntimeMsg::Tenants(reply) => {
                let _ = reply.send(state.tenants.running().cloned().collect());
            }
            RuntimeMsg::Drain => {
                state.draining = true;
                for tenant in state.tenants.running() {
                    let _ = tenant.send_message(TenantMsg::Drain);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RuntimeMsg>,
        event: SupervisionEvent,
        state: &mut RuntimeState,
    ) -> Result<(), ActorProcessingErr> {
        let cell = match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                tracing::error!(actor = %cell.get_id(), %error, "a runtime child failed");
                cell
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => cell,
            _ => return Ok(()),
        };
        let id = cell.get_id();
        if state.tenant_ids.remove(&id).is_some() {
            // A tenant supervisor stopped: the next use of the tenant starts a fresh one.
            state.tenants.forget(|t| t.get_id() == id);
        }
        Ok(())
    }
}

/// A handle on a running runtime: what the server (and tests) use.
#[derive(Clone)]
pub struct Runtime {
    actor: ActorRef<RuntimeMsg>,
    record_writers: TaskTracker,
}

/// Why the runtime could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime has stopped.
    #[error("the runtime is not running")]
    Stopped,
    /// An actor did not answer in time.
    #[error("the runtime did not answer in time")]
    TimedOut,
    /// A tenant could not be started.
    #[error("tenant unavailable: {0}")]
    Tenant(String),
}

/// Asks an actor through ractor's RPC, within [`ASK_TIMEOUT`].
async fn ask<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
) -> Result<T, RuntimeError> {
    ask_within(actor, msg, ASK_TIMEOUT).await
}

/// Asks an actor through ractor's RPC, within `timeout`.
async fn ask_within<M: ractor::Message, T: Send + 'static>(
    actor: &ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<T, RuntimeError> {
    match actor.call(msg, Some(timeout)).await {
        Ok(ractor::rpc::CallResult::Success(answer)) => Ok(answer),
        Ok(ractor::rpc::CallResult::Timeout) => Err(RuntimeError::TimedOut),
        Ok(ractor::rpc::CallResult::SenderError) | Err(_) => Err(RuntimeError::Stopped),
    }
}

impl Runtime {
    /// Starts the runtime, supervised by `supervisor` when given (tests put a probe there).
    pub async fn start(
        args: RuntimeArgs,
        supervisor: Option<ractor::ActorCell>,
    ) -> Result<Self, ractor::SpawnErr> {
        let record_writers = TaskTracker::new();
        let args = (args, record_writers.clone());
        let (actor, _) = match supervisor {
            Some(cell) => RuntimeActor::spawn_linked(None, RuntimeActor, args, cell).await?,
            None => RuntimeActor::spawn(None, RuntimeActor, args).await?,
        };
        Ok(Self {
            actor,
            record_writers,
        })
    }

    /// The tenant's supervisor, started on first use.
    pub async fn tenant(&self, tenant: TenantId) -> Result<ActorRef<TenantMsg>, RuntimeError> {
        ask(&self.actor, |reply| RuntimeMsg::Tenant { tenant, reply })
            .await?
            .map_err(RuntimeError::Tenant)
    }

    /// Admits and starts a call, or says why not.
    pub async fn start_call(
        &self,
        call: CallInfo,
        telephony: Arc<dyn Telephony>,
    ) -> Result<ActorRef<CallMsg>, Refusal> {
        let tenant = self
            .tenant(call.tenant)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        ask(&tenant, |reply| TenantMsg::StartCall {
            call,
            telephony,
            reply,
        })
        .await
        .map_err(|e| Refusal::Unavailable(e.to_string()))?
    }

    /// A tenant's live call, if it is live on this node.
    pub async fn call(
        &self,
        tenant: TenantId,
        call_id: actors::domain::CallId,
    ) -> Result<Option<ActorRef<CallMsg>>, RuntimeError> {
        let tenant = self.tenant(tenant).await?;
        ask(&tenant, |reply| TenantMsg::Call { call_id, reply }).await
    }

    /// The conversation actor of a tenant's customer, loaded from the store on first use.
    pub async fn conversation(
        &self,
        tenant: TenantId,
        customer: &str,
    ) -> Result<ActorRef<ConversationMsg>, RuntimeError> {
        let supervisor = self.tenant(tenant).await?;
        ask(&supervisor, |reply| TenantMsg::Conversation {
            customer: customer.to_owned(),
            reply,
        })
        .await?
        .map_err(RuntimeError::Tenant)
    }

    /// Staff changed a customer's lead: a running conversation of the customer takes the
    /// lead's new `fields` (prompt variables) for its next prompt.
    pub async fn lead_changed(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        self.tenant(tenant)
            .await?
            .send_message(TenantMsg::LeadChanged {
                customer: customer.to_owned(),
                fields,
            })
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Staff took a customer's conversation over: the customer's live calls are handed to
    /// the agent's transfer number.
    pub async fn hand_over(&self, tenant: TenantId, customer: &str) -> Result<(), RuntimeError> {
        self.tenant(tenant)
            .await?
            .send_message(TenantMsg::HandOver {
                customer: customer.to_owned(),
            })
            .map_err(|_| RuntimeError::Stopped)
    }

    /// Lets the agent answer a text already in the customer's conversation; gives up after
    /// `deadline`.
    pub async fn answer_text(
        &self,
        tenant: TenantId,
        turn: TextTurn,
        deadline: Duration,
    ) -> Result<TextAnswer, TextError> {
        let unavailable = |e: RuntimeError| TextError::Unavailable(e.to_string());
        let supervisor = self.tenant(tenant).await.map_err(unavailable)?;
        ask_within(
            &supervisor,
            |reply| TenantMsg::AnswerText { turn, reply },
            deadline,
        )
        .await
        .map_err(unavailable)?
    }

    /// A tenant's settings changed; its supervisor reloads them.
    pub fn config_changed(&self, tenant: TenantId) {
        let _ = self.actor.send_message(RuntimeMsg::ConfigChanged(tenant));
    }

    /// Live calls in every tenant.
    pub async fn live_calls(&self) -> Result<usize, RuntimeError> {
        let tenants = ask(&self.actor, RuntimeMsg::Tenants).await?;
        let mut total = 0;
        for tenant in tenants {
            total += ask(&tenant, TenantMsg::LiveCalls).await.unwrap_or(0);
        }
        Ok(total)
    }

    /// Stops admitting calls and waits until the live ones end or `deadline` passes;
    /// returns how many calls were still live at the end.
    pub async fn drain(&self, deadline: Duration) -> Result<usize, RuntimeError> {
        self.actor
            .send_message(RuntimeMsg::Drain)
            .map_err(|_| RuntimeError::Stopped)?;
        let until = Instant::now() + deadline;
        loop {
            let live = self.live_calls().await?;
            if live == 0 || Instant::now() >= until {
                return Ok(live);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Has every live call say `words` and hang up once they have played.
    pub async fn say_goodbye(&self, words: &str) {
        let Ok(tenants) = ask(&self.actor, RuntimeMsg::Tenants).await else {
            return;
        };
        for tenant in tenants {
            let _ = tenant.send_message(TenantMsg::SayGoodbye(words.to_owned()));
        }
    }

    /// Stops the runtime and everything under it, then waits (up to 15 s) for the calls'
    /// last records to be written.
    pub async fn stop(&self) {
        let _ = self.actor.stop_and_wait(None, Some(ASK_TIMEOUT)).await;
        self.record_writers.close();
        if tokio::time::timeout(RECORDS_FLUSH, self.record_writers.wait())
            .await
            .is_err()
        {
            tracing::error!(
                writers = self.record_writers.len(),
                "calls' last records were still being written when the runtime stopped"
            );
        }
    }
}
