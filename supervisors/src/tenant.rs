//! `TenantSupervisor`: one per tenant, started on first use. Holds the tenant's
//! configuration snapshot (agents, concurrent-call limit), admits calls within the limit,
//! and supervises the tenant's knowledge actor, its customers' conversations and its live
//! calls. A call that crashes is recorded as failed and hung up; it is never restarted (a
//! half-finished phone call cannot be replayed).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actors::conversation::{ConversationActor, ConversationArgs, ConversationMsg, PromptBudget};
use actors::domain::{CallId, TenantId};
use actors::knowledge::{KnowledgeActor, KnowledgeArgs, KnowledgeMsg};
use actors::ports::{
    AgentConfig, CallInfo, CallOutcome, Embedder, Telephony, TenantConfig, VectorStore,
};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::time::Instant;

use crate::call::{CallArgs, CallMsg, CallPorts, CallSettings, CallSupervisor};
use crate::registry::{Forgotten, Registry, Started};
use crate::restart::RestartBudget;
use crate::text::{self, TextAnswer, TextError, TextJob, TextTurn};
use crate::tools::ToolContext;

/// Longest wait, in milliseconds, for a customer's conversation to load before a call is
/// refused rather than left ringing.
const CONVERSATION_START_TIMEOUT_MS: u64 = 3_000;

/// Why a call was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tenant already has its limit of live calls.
    #[error("the tenant is at its limit of {0} concurrent calls")]
    AtCapacity(usize),
    /// The dialled number's agent is not (or no longer) configured.
    #[error("no such agent")]
    UnknownAgent,
    /// The tenant has used its monthly minutes (checked by the server, which keeps usage).
    #[error("the tenant has used its {0} minutes for this month")]
    QuotaUsed(i64),
    /// The runtime is draining for shutdown.
    #[error("the runtime is draining")]
    Draining,
    /// The call could not be started.
    #[error("the call could not start: {0}")]
    Unavailable(String),
}

/// Messages to a tenant's supervisor.
pub enum TenantMsg {
    /// Admit and start a call.
    StartCall {
        /// The call.
        call: CallInfo,
        /// Its phone leg.
        telephony: Arc<dyn Telephony>,
        /// The call's actor, or why not.
        reply: RpcReplyPort<Result<ActorRef<CallMsg>, Refusal>>,
    },
    /// The conversation actor of a customer, started on first use.
    Conversation {
        /// The customer's number.
        customer: String,
        /// The actor, or why it could not start.
        reply: RpcReplyPort<Started<ActorRef<ConversationMsg>>>,
    },
    /// Staff changed the customer's lead: a running conversation takes its new fields.
    LeadChanged {
        /// The customer's number.
        customer: String,
        /// The lead's fields as prompt variables (empty: the lead is gone).
        fields: BTreeMap<String, String>,
    },
    /// Staff took the customer's conversation over: their live calls go to a person.
    HandOver {
        /// The customer's number.
        customer: String,
    },
    /// Answers a customer's text: the agent reads the conversation and writes one reply.
    AnswerText {
        /// The text to answer (already in the conversation).
        turn: TextTurn,
        /// The reply, or why there is none.
        reply: RpcReplyPort<Result<TextAnswer, TextError>>,
    },
    /// A live call's actor, if the call is live here.
    Call {
        /// The call.
        call_id: CallId,
        /// Its actor.
        reply: RpcReplyPort<Option<ActorRef<CallMsg>>>,
    },
    /// The tenant's knowledge actor; `None` when it kept failing and was given up on.
    Knowledge(RpcReplyPort<Option<ActorRef<KnowledgeMsg>>>),
    /// The tenant's settings changed.
    UpdateConfig(TenantConfig),
    /// Live calls now (including calls being started).
    LiveCalls(RpcReplyPort<usize>),
    /// Admit no more calls.
    Drain,
    /// Every live call says these words and hangs up (the drain time ran out).
    SayGoodbye(String),
    /// Retires conversations idle for longer than the settings allow (internal, periodic).
    RetireIdleConversations,
    /// A conversation actor finished starting (internal).
    ConversationStarted {
        /// The customer.
        customer: String,
        /// The outcome.
        result: Started<ActorRef<ConversationMsg>>,
    },
    /// A call's actor started, or failed to (internal).
    CallStarted {
        /// The call.
        call: CallInfo,
        /// Its phone leg, kept to hang up if the call crashes.
        telephony: Arc<dyn Telephony>,
        /// The actor, or why not.
        result: Result<ActorRef<CallMsg>, String>,
    },
}

/// Ports a tenant needs beyond those of its calls.
#[derive(Clone)]
pub struct TenantPorts {
    /// Ports of every call.
    pub call: CallPorts,
    /// Knowledge chunks.
    pub vectors: Arc<dyn VectorStore>,
    /// Dense vectors, when configured.
    pub embedder: Option<Arc<dyn Embedder>>,
}

/// What a tenant's supervisor is started with.
pub struct TenantArgs {
    /// The tenant.
    pub tenant: TenantId,
    /// Its configuration when started.
    pub config: TenantConfig,
    /// Ports.
    pub ports: TenantPorts,
    /// Call tuning.
    pub settings: CallSettings,
}

struct LiveCall {
    call: CallInfo,
    telephony: Arc<dyn Telephony>,
    actor: ActorRef<CallMsg>,
}

/// A tenant supervisor's state.
pub struct TenantState {
    args: TenantArgs,
    knowledge: Option<ActorRef<KnowledgeMsg>>,
    knowledge_budget: RestartBudget,
    conversations: Registry<String, ActorRef<ConversationMsg>>,
    /// When each loaded conversation was last asked for.
    conversations_used: HashMap<String, Instant>,
    calls: HashMap<CallId, LiveCall>,
    starting_calls: usize,
    /// Children that stopped before their start was reported (a call that crashed at once):
    /// the failure, if any, by actor id, applied when the start report arrives.
    exited_early: HashMap<ActorId, Option<String>>,
    draining: bool,
}

impl TenantState {
    /// Calls live or being started, which count against the limit.
    fn occupied(&self) -> usize {
        self.calls.len() + self.starting_calls
    }

    /// Admission: the pure decision. Returns the agent that will answer.
    fn admit(&self, call: &CallInfo) -> Result<AgentConfig, Refusal> {
        if self.draining {
            return Err(Refusal::Draining);
        }
        let agent = self
            .args
            .config
            .agents
            .iter()
            .find(|a| a.id == call.agent)
            .ok_or(Refusal::UnknownAgent)?;
        let limit = self.args.config.concurrent_call_limit;
        if self.occupied() >= limit {
            return Err(Refusal::AtCapacity(limit));
        }
        Ok(agent.clone())
    }

    /// Stops the conversations nobody asked for within the idle period and whose customer
    /// has no live call: memory goes to customers talking now, and the next call or text
    /// loads the conversation again from the store. Pending writes land first (the actor
    /// flushes as it stops) and askers meanwhile wait for the fresh one.
    fn retire_idle_conversations(&mut self) {
        let now = Instant::now();
        let idle = self.args.settings.conversation_idle;
        let on_calls: std::collections::HashSet<&str> = self
            .calls
            .values()
            .map(|live| live.call.customer.as_str())
            .collect();
        let retiring: Vec<String> = self
            .conversations_used
            .iter()
            .filter(|(customer, used)| {
                now.duration_since(**used) >= idle && !on_calls.contains(customer.as_str())
            })
            .map(|(customer, _)| customer.clone())
            .collect();
        for customer in retiring {
            if let Some(conversation) = self.conversations.retire(&customer) {
                conversation.stop(Some("idle".to_owned()));
            }
        }
    }

    /// A call ended; when it crashed, records the failure and hangs up for it.
    fn call_gone(&self, live: LiveCall, failure: Option<String>) {
        let Some(error) = failure else {
            return;
        };
        tracing::error!(call_id = %live.call.call_id, %error, "a call supervisor crashed");
        let log = self.args.ports.call.call_log.clone();
        tokio::spawn(async move {
            let outcome = CallOutcome::Failed(format!("call supervisor crashed: {error}"));
            let _ = log.call_ended(&live.call, &outcome).await;
            let _ = live.telephony.hang_up().await;
        });
    }
}

/// The tenant supervisor.
pub struct TenantSupervisor;

async fn spawn_knowledge(
    args: &TenantArgs,
    supervisor: ActorCell,
) -> Result<ActorRef<KnowledgeMsg>, ActorProcessingErr> {
    let knowledge_args = KnowledgeArgs {
        tenant: args.tenant,
        store: args.ports.vectors.clone(),
        embedder: args.ports.embedder.clone(),
    };
    Ok(
        KnowledgeActor::spawn_linked(None, KnowledgeActor, knowledge_args, supervisor)
            .await?
            .0,
    )
}

impl Actor for TenantSupervisor {
    type Msg = TenantMsg;
    type State = TenantState;
    type Arguments = TenantArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<TenantMsg>,
        args: TenantArgs,
    ) -> Result<TenantState, ActorProcessingErr> {
        let knowledge = spawn_knowledge(&args, myself.get_cell()).await?;
        metrics::gauge!("switchboard_tenants_active").increment(1.0);
        // Checked twice per idle period: a conversation goes between 1 and 1.5 periods
        // after its last use. The timer ends with the actor.
        myself.send_interval(args.settings.conversation_idle / 2, || {
            TenantMsg::RetireIdleConversations
        });
        Ok(TenantState {
            knowledge_budget: RestartBudget::new(args.settings.restart),
            args,
            knowledge: Some(knowledge),
            conversations: Registry::default(),
            conversations_used: HashMap::new(),
            calls: HashMap::new(),
            starting_calls: 0,
            exited_early: HashMap::new(),
            draining: false,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<TenantMsg>,
        _state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("switchboard_tenants_active").decrement(1.0);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<TenantMsg>,
        msg: TenantMsg,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TenantMsg::StartCall {
                call,
                telephony,
                reply,
            } => match state.admit(&call) {
                Ok(agent) => {
                    state.starting_calls += 1;
                    start_call(&myself, state, call, agent, telephony, reply);
                }
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                }
            },
            TenantMsg::Conversation { customer, reply } => {
                state
                    .conversations_used
                    .insert(customer.clone(), Instant::now());
                if state.conversations.ask(customer.clone(), reply) {
                    start_conversation(&myself, state, customer);
                }
            }
            TenantMsg::RetireIdleConversations => state.retire_idle_conversations(),
            TenantMsg::ConversationStarted { customer, result } => {
                let result =
                    result.and_then(|actor| match state.exited_early.remove(&actor.get_id()) {
                        Some(_) => Err("the conversation stopped as it started".to_owned()),
                        None => Ok(actor),
                    });
                state.conversations.started(customer, result);
            }
            TenantMsg::LeadChanged { customer, fields } => {
                if let Some(conversation) = state.conversations.running_for(&customer) {
                    let _ = conversation.send_message(ConversationMsg::SetLead(fields));
                }
            }
            TenantMsg::HandOver { customer } => {
                for live in state.calls.values().filter(|c| c.call.customer == customer) {
                    let _ = live.actor.send_message(CallMsg::HandOver);
                }
            }
            TenantMsg::AnswerText { turn, reply } => answer_text(&myself, state, turn, reply),
            TenantMsg::Knowledge(reply) => {
                let _ = reply.send(state.knowledge.clone());
            }
            TenantMsg::Call { call_id, reply } => {
                let _ = reply.send(state.calls.get(&call_id).map(|live| live.actor.clone()));
            }
            TenantMsg::UpdateConfig(config) => state.args.config = config,
            TenantMsg::LiveCalls(reply) => {
                let _ = reply.send(state.occupied());
            }
            TenantMsg::Drain => state.draining = true,
            TenantMsg::SayGoodbye(words) => {
                for live in state.calls.values() {
                    let _ = live.actor.send_message(CallMsg::SayGoodbye(words.clone()));
                }
            }
            TenantMsg::CallStarted {
                call,
                telephony,
                result,
            } => {
                state.starting_calls -= 1;
                match result {
                    Ok(actor) => {
                        let live = LiveCall {
                            call,
                            telephony,
                            actor,
                        };
                        match state.exited_early.remove(&live.actor.get_id()) {
                            Some(failure) => state.call_gone(live, failure),
                            None => {
                                state.calls.insert(live.call.call_id, live);
                            }
                        }
                    }
                    Err(error) => {
                        tracing::error!(call_id = %call.call_id, %error, "a call could not start")
                    }
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<TenantMsg>,
        event: SupervisionEvent,
        state: &mut TenantState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failure) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, Some(error.to_string())),
            SupervisionEvent::ActorTerminated(cell, _, _) => (cell, None),
            _ => return Ok(()),
        };
        let id = cell.get_id();
        let live_call = state
            .calls
            .iter()
            .find(|(_, c)| c.actor.get_id() == id)
            .map(|(k, _)| *k);
        let failed = failure.is_some();
        let count_failure = |actor: &'static str| {
            if failed {
                metrics::counter!("switchboard_actor_failures_total", "actor" => actor)
                    .increment(1);
            }
        };
        if let Some(live) = live_call.and_then(|call_id| state.calls.remove(&call_id)) {
            count_failure("call");
            state.call_gone(live, failure);
        } else if state.knowledge.as_ref().is_some_and(|k| k.get_id() == id) {
            count_failure("knowledge");
            // Knowledge is restarted within its budget and given up on past it: calls go on
            // without it (its tool answers that it is unavailable) rather than all ending.
            state.knowledge = None;
            if state.knowledge_budget.allow_restart(Instant::now()) {
                metrics::counter!("switchboard_actor_restarts_total", "actor" => "knowledge")
                    .increment(1);
                state.knowledge = Some(spawn_knowledge(&state.args, myself.get_cell()).await?);
            } else {
                tracing::error!(tenant = %state.args.tenant, "the knowledge actor keeps failing; running without it");
            }
        } else {
            match state.conversations.forget(|c| c.get_id() == id) {
                Forgotten::Gone(customer) => {
                    count_failure("conversation");
                    state.conversations_used.remove(&customer);
                }
                Forgotten::Wanted(customer) => {
                    count_failure("conversation");
                    start_conversation(&myself, state, customer);
                }
                // Not registered yet: a child that stopped before its start was reported.
                Forgotten::Unknown => {
                    state.exited_early.insert(id, failure);
                }
            }
        }
        Ok(())
    }
}

/// The names of the built-in template variables, which [`builtin_variables`] always gives:
/// the tenant's name, the customer's number, and the tenant's local time and date.
pub const BUILTIN_VARIABLES: [&str; 4] =
    ["tenant_name", "caller_number", "local_time", "local_date"];

/// The built-in variables of a call or text with `customer` at `now`, filled into the agent's
/// prompt and first message over the lead's fields. The time and date are the tenant's own
/// (its timezone; UTC when the name is unknown): `local_time` as `14:05`, `local_date` as
/// `Tuesday 2026-03-03`, so the agent can say "this afternoon" or book "next Monday".
pub fn builtin_variables(
    config: &TenantConfig,
    customer: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<String, String> {
    let zone: chrono_tz::Tz = config.timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&zone);
    let [tenant_name, caller_number, local_time, local_date] = BUILTIN_VARIABLES;
    BTreeMap::from([
        (tenant_name.to_owned(), config.name.clone()),
        (caller_number.to_owned(), customer.to_owned()),
        (local_time.to_owned(), local.format("%H:%M").to_string()),
        (
            local_date.to_owned(),
            local.format("%A %Y-%m-%d").to_string(),
        ),
    ])
}

/// Loads the customer's conversation actor in a task; it reports with
/// [`TenantMsg::ConversationStarted`].
fn start_conversation(myself: &ActorRef<TenantMsg>, state: &TenantState, customer: String) {
    let conversation_args = ConversationArgs {
        tenant: state.args.tenant,
        customer: customer.clone(),
        store: state.args.ports.call.conversations.clone(),
        budget: PromptBudget::default(),
    };
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = ConversationActor::spawn_linked(
            None,
            ConversationActor,
            conversation_args,
            myself.get_cell(),
        )
        .await
        .map(|(actor, _)| actor)
        .map_err(|e| e.to_string());
        let _ = myself.send_message(TenantMsg::ConversationStarted { customer, result });
    });
}

/// The customer's conversation actor, asked of the tenant's supervisor (which starts it on
/// first use) from a task, or why it could not be had.
async fn conversation_of(
    tenant: &ActorRef<TenantMsg>,
    customer: &str,
) -> Result<ActorRef<ConversationMsg>, String> {
    ractor::call_t!(
        tenant,
        |reply| TenantMsg::Conversation {
            customer: customer.to_owned(),
            reply,
        },
        CONVERSATION_START_TIMEOUT_MS
    )
    .map_err(|error| format!("the customer's conversation did not load: {error}"))?
}

/// Starts a call's actor in a task: its conversation may need to be loaded first.
fn start_call(
    myself: &ActorRef<TenantMsg>,
    state: &TenantState,
    call: CallInfo,
    agent: AgentConfig,
    telephony: Arc<dyn Telephony>,
    reply: RpcReplyPort<Result<ActorRef<CallMsg>, Refusal>>,
) {
    let variables = builtin_variables(&state.args.config, &call.customer, chrono::Utc::now());
    let ports = state.args.ports.call.clone();
    let settings = state.args.settings;
    let myself = myself.clone();
    tokio::spawn(async move {
        let result = match conversation_of(&myself, &call.customer).await {
            Ok(conversation) => {
                let args = CallArgs {
                    call: call.clone(),
                    agent,
                    variables,
                    telephony: telephony.clone(),
                    ports,
                    conversation,
                    tenant: myself.clone(),
                    settings,
                };
                CallSupervisor::spawn_linked(None, CallSupervisor, args, myself.get_cell())
                    .await
                    .map(|(actor, _)| actor)
                    .map_err(|e| e.to_string())
            }
            Err(error) => Err(error),
        };
        let result = match (
            reply.send(result.clone().map_err(Refusal::Unavailable)),
            result,
        ) {
            // Whoever asked gave up waiting: nobody will send this call audio or hang it up.
            (Err(_), Ok(actor)) => {
                actor.stop(Some("nobody is waiting for this call".to_owned()));
                Err("the caller gave up before the call started".to_owned())
            }
            (_, result) => result,
        };
        let _ = myself.send_message(TenantMsg::CallStarted {
            call,
            telephony,
            result,
        });
    });
}

/// Answers a text in a task: the conversation may need loading and the model takes seconds.
fn answer_text(
    myself: &ActorRef<TenantMsg>,
    state: &TenantState,
    turn: TextTurn,
    reply: RpcReplyPort<Result<TextAnswer, TextError>>,
) {
    if state.draining {
        let _ = reply.send(Err(TextError::Draining));
        return;
    }
    let config = &state.args.config;
    let Some(agent) = config.agents.iter().find(|a| a.id == turn.agent).cloned() else {
        let _ = reply.send(Err(TextError::UnknownAgent));
        return;
    };
    let variables = builtin_variables(config, &turn.customer, chrono::Utc::now());
    let llm = state.args.ports.call.llm.clone();
    let conversations = state.args.ports.call.conversations.clone();
    let events = state.args.ports.call.events.clone();
    let tenant_id = state.args.tenant;
    let myself = myself.clone();
    tokio::spawn(async move {
        let answer = match conversation_of(&myself, &turn.customer).await {
            Ok(conversation) => {
                let tools = ToolContext {
                    tenant_id,
                    customer: turn.customer.clone(),
                    enabled: text::text_tools(&agent),
                    transfer_number: None,
                    tenant: myself.clone(),
                    conversation: conversation.clone(),
                    conversations,
                    events,
                    telephony: None,
                };
                text::answer(TextJob {
                    turn,
                    agent,
                    variables,
                    llm,
                    conversation,
                    tools,
                })
                .await
            }
            Err(error) => Err(TextError::Unavailable(error)),
        };
        let _ = reply.send(answer);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn builtin_variables_give_the_tenants_local_time_and_date() {
        let config = TenantConfig {
            name: "Acme Motors".to_owned(),
            timezone: "America/Chicago".to_owned(),
            concurrent_call_limit: 1,
            agents: Vec::new(),
        };
        // 03:30 UTC on Wednesday 4 March 2026 is still Tuesday evening in Chicago (UTC-6).
        let now = chrono::Utc.with_ymd_and_hms(2026, 3, 4, 3, 30, 0).unwrap();
        let values = builtin_variables(&config, "+14155550100", now);
        assert_eq!(values["tenant_name"], "Acme Motors");
        assert_eq!(values["caller_number"], "+14155550100");
        assert_eq!(values["local_time"], "21:30");
        assert_eq!(values["local_date"], "Tuesday 2026-03-03");
        assert_eq!(
            values.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut names = BUILTIN_VARIABLES.to_vec();
                names.sort_unstable();
                names
            },
            "every built-in name is given"
        );
        let unknown_zone = TenantConfig {
            timezone: "Mars/Olympus".to_owned(),
            ..config
        };
        assert_eq!(
            builtin_variables(&unknown_zone, "+1", now)["local_time"],
            "03:30"
        );
    }
}
