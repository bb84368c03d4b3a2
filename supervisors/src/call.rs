//! `CallSupervisor`: one per live call. Owns the call's state machine
//! (greeting → listening ⇄ thinking ⇄ speaking → ended) and its pipeline children
//! (`SttActor`, `LlmActor`, `TtsActor`), restarts a failed child within its restart budget
//! (resuming the turn it was working on), and past that ends the call gracefully: a short
//! apology, then a transfer to the agent's fallback number or a hang-up, with the failure
//! recorded on the call.
//!
//! Nothing here waits on a port: prompts, tools and records run in tasks that message the
//! call back, so caller audio is never held up behind the database or a provider.
//!
//! After the call: the supervisor counts what the call consumed (call time, caller audio sent
//! to speech-to-text, model tokens, characters spoken) and records it once when the call
//! ends; then, when the customer said anything, a detached task asks the agent's model for
//! a summary, the customer's sentiment and the fields of the agent's extraction schema, and
//! records them on the call. That task outlives the supervisor and has its own deadline; a
//! failed or unreadable analysis is a warning, never a failed call.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actors::conversation::{speaker_label, truncate_keep_end, ConversationMsg};
use actors::llm::{LlmActor, LlmArgs, LlmMsg, LlmReport};
use actors::ports::{
    AgentConfig, CallAnalysis, CallInfo, CallLog, CallOutcome, CallUsage, Channel, ChatMessage,
    ConversationStore, EventSink, HistoryEntry, LanguageModel, LlmRequest, PortError, Sentiment,
    Speaker, SpeechToText, StageTimings, SttOptions, Telephony, TenantEvent, TextToSpeech,
    ToolCall, TurnRecord,
};
use actors::sentences::SentenceSplitter;
use actors::stt::{AudioInlet, EndpointSettings, SttActor, SttArgs, SttReport};
use actors::tts::{TtsActor, TtsArgs, TtsMsg, TtsReport, Utterance};
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::restart::{RestartBudget, RestartPolicy};
use crate::retrieval::{self, Retrieval};
use crate::tenant::TenantMsg;
use crate::text;
use crate::tools::{self, CallAction, ToolContext};

/// Said when the call cannot go on.
const APOLOGY: &str = "I'm sorry, I'm having technical trouble on my end.";
/// Said when the model could not answer a turn at all.
const DID_NOT_CATCH: &str = "Sorry, I didn't catch that. Could you say it again?";
/// Longest wait for the apology to play before the call is ended anyway.
const APOLOGY_TIMEOUT: Duration = Duration::from_secs(6);
/// Tool rounds allowed in one turn, so a model stuck calling tools cannot loop forever.
const MAX_TOOL_ROUNDS: u32 = 4;
/// How the model greets a customer it has talked with before, followed by the agent's usual
/// first message.
pub const GREETING_WITH_HISTORY: &str = "The customer is calling you now and you speak first. You have talked with them before (the conversation so far follows, by text message and phone). Greet them in one or two short sentences, in the spirit of your usual opening and showing that you remember what they last asked about. Your usual opening: ";
/// Longest wait, in milliseconds, for the conversation to build a prompt or fill a greeting.
const CONVERSATION_TIMEOUT_MS: u64 = 2_000;
/// Longest wait for the post-call analysis; past it the call simply has none.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `call.ended` waits for the analysis's summary: staff screens learn of the end
/// within this even when the model is slow (the summary is on the call record later).
const SUMMARY_WAIT: Duration = Duration::from_secs(10);
/// Most transcript characters sent for analysis; a longer call keeps its end (what was
/// agreed), so the request stays within any model's context.
const ANALYSIS_MAX_TRANSCRIPT_CHARS: usize = 48_000;

/// How the post-call analysis request begins: its system message opens with this, which is
/// how a scripted model (or a test) tells the analysis from a reply to the caller.
pub const ANALYSIS_INSTRUCTIONS: &str =
    "You review a finished phone call between a business's AI voice agent and a customer.";

/// The ports a call uses, shared by every call of a runtime.
#[derive(Clone)]
pub struct CallPorts {
    /// Speech-to-text.
    pub stt: Arc<dyn SpeechToText>,
    /// Language model.
    pub llm: Arc<dyn LanguageModel>,
    /// Text-to-speech.
    pub tts: Arc<dyn TextToSpeech>,
    /// Call records.
    pub call_log: Arc<dyn CallLog>,
    /// Customer histories and callbacks.
    pub conversations: Arc<dyn ConversationStore>,
    /// Tenant events.
    pub events: Arc<dyn EventSink>,
    /// Each call's record writer, which outlives the call by its last records: the runtime
    /// waits for these on stop, so a drained server's calls end in the database too.
    pub record_writers: tokio_util::task::TaskTracker,
}

/// Tuning of a call, with production defaults.
#[derive(Debug, Clone, Copy)]
pub struct CallSettings {
    /// Endpointing and barge-in thresholds.
    pub endpoint: EndpointSettings,
    /// Restart intensity for the pipeline children.
    pub restart: RestartPolicy,
    /// How long a customer's conversation stays in memory after it was last asked for
    /// (with no live call): longer than a text reply takes, short enough that a node's
    /// memory follows the customers talking now rather than all it has ever seen.
    pub conversation_idle: Duration,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            endpoint: EndpointSettings::default(),
            restart: RestartPolicy::default(),
            conversation_idle: Duration::from_secs(120),
        }
    }
}

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallPhase {
    /// Speaking the first message.
    Greeting,
    /// Waiting for the caller.
    Listening,
    /// The caller finished; the reply is being written (or its tools run).
    Thinking,
    /// The agent is talking.
    Speaking,
    /// The call is over, or failing: apologising before it ends.
    Ended,
}

/// Messages to a call.
#[derive(Debug)]
pub enum CallMsg {
    /// The inlet for the caller's audio, asked for once when the media stream connects.
    AudioInlet(RpcReplyPort<AudioInlet>),
    /// The phone network played audio up to this mark.
    Marked(String),
    /// The caller hung up.
    CallerHungUp,
    /// The caller pressed a key; `0` asks for a person (when the agent has a transfer
    /// number), as callers expect of any phone menu.
    Dtmf(char),
    /// Staff took the customer's conversation over: the call goes to the agent's transfer
    /// number (without one, the agent keeps the call rather than drop the customer).
    HandOver,
    /// Staff hang the call up (from the dashboard).
    HangUp,
    /// Staff transfer the call to a person at this number (from the dashboard).
    Transfer(actors::domain::E164),
    /// Staff put these words in the agent's mouth: whatever the agent was saying or
    /// preparing stops and it says them, recorded as the agent's line.
    Say(String),
    /// The server is going away: the agent says these words, then hangs up.
    SayGoodbye(String),
    /// Where the call is, for dashboards and tests.
    Phase(RpcReplyPort<CallPhase>),
    /// Report from the STT child.
    Stt(SttReport),
    /// Report from the LLM child.
    Llm(LlmReport),
    /// Report from the TTS child.
    Tts(TtsReport),
    /// The greeting, with its variables filled.
    GreetingReady(String),
    /// The customer has talked with the tenant before: the model writes the greeting from
    /// this prompt, and `fallback` (the filled first message) is said if it cannot.
    GreetingPrompt {
        /// The prompt: the conversation so far and how to greet.
        messages: Vec<ChatMessage>,
        /// The agent's first message, filled.
        fallback: String,
    },
    /// The prompt for `turn` is built.
    PromptReady {
        /// The turn.
        turn: u64,
        /// The prompt.
        messages: Vec<ChatMessage>,
        /// How long automatic retrieval took, when it answered within its budget.
        retrieval_ms: Option<u32>,
    },
    /// The tools of `turn` have answered.
    ToolsDone {
        /// The turn.
        turn: u64,
        /// Each call with its answer.
        results: Vec<(ToolCall, String)>,
        /// What the tools asked of the call.
        action: CallAction,
    },
    /// The apology had its chance to play: finish the failed call.
    FinishFailure,
}

macro_rules! report_conversions {
    ($($variant:ident($report:ty)),*) => {$(
        impl From<$report> for CallMsg {
            fn from(report: $report) -> Self {
                CallMsg::$variant(report)
            }
        }
        impl TryFrom<CallMsg> for $report {
            type Error = CallMsg;
            fn try_from(msg: CallMsg) -> Result<Self, CallMsg> {
                match msg {
                    CallMsg::$variant(report) => Ok(report),
                    other => Err(other),
                }
            }
        }
    )*};
}
report_conversions!(Stt(SttReport), Llm(LlmReport), Tts(TtsReport));

/// What a call is started with.
pub struct CallArgs {
    /// The call.
    pub call: CallInfo,
    /// The agent answering it.
    pub agent: AgentConfig,
    /// Built-in prompt variables (tenant name, caller number).
    pub variables: BTreeMap<String, String>,
    /// The phone leg.
    pub telephony: Arc<dyn Telephony>,
    /// Shared ports.
    pub ports: CallPorts,
    /// The customer's conversation.
    pub conversation: ActorRef<ConversationMsg>,
    /// The tenant's supervisor, through which tools reach the tenant's current knowledge
    /// actor (which may have been restarted since the call began).
    pub tenant: ActorRef<TenantMsg>,
    /// Tuning.
    pub settings: CallSettings,
}

/// The pipeline children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    Stt,
    Llm,
    Tts,
}

/// A sentence of the agent's current turn.
#[derive(Debug, Clone)]
struct Sentence {
    text: String,
    played: bool,
}

/// The agent's turn in progress.
#[derive(Debug)]
struct AgentTurn {
    turn: u64,
    /// The prompt so far, grown by tool rounds.
    prompt: Vec<ChatMessage>,
    sentences: Vec<Sentence>,
    /// The model has finished: no more sentences will come, and the text is in the history.
    written: bool,
    tool_rounds: u32,
    then: CallAction,
    /// Said when the model fails before its first sentence (the greeting's first message);
    /// otherwise the caller hears [`DID_NOT_CATCH`].
    fallback: Option<String>,
    speech_ended_at: Option<Instant>,
    transcript_at: Option<Instant>,
    first_tts_request_at: Option<Instant>,
    timings: StageTimings,
}

impl AgentTurn {
    fn new(turn: u64) -> Self {
        Self {
            turn,
            prompt: Vec::new(),
            sentences: Vec::new(),
            written: false,
            tool_rounds: 0,
            then: CallAction::Continue,
            fallback: None,
            speech_ended_at: None,
            transcript_at: None,
            first_tts_request_at: None,
            timings: StageTimings::default(),
        }
    }

    /// What the caller has heard so far (sentences whose marks came back).
    fn heard(&self) -> String {
        let played: Vec<&str> = self
            .sentences
            .iter()
            .filter(|s| s.played)
            .map(|s| s.text.as_str())
            .collect();
        played.join(" ")
    }

    fn whole_text(&self) -> String {
        let all: Vec<&str> = self.sentences.iter().map(|s| s.text.as_str()).collect();
        all.join(" ")
    }

    fn all_played(&self) -> bool {
        self.sentences.iter().all(|s| s.played)
    }
}

/// A call record, queued for the call's writer task.
enum Record {
    Started,
    Turn(TurnRecord),
    ToolCall(String),
    Ended(CallOutcome),
    Usage(CallUsage),
    Analysis(CallAnalysis),
}

/// The call's state.
pub struct CallState {
    args: CallArgs,
    phase: CallPhase,
    children: Vec<(Child, ActorCell)>,
    /// Holds the current STT actor's hearing, which the media socket feeds; closed when the
    /// call ends.
    audio: AudioInlet,
    llm: ActorRef<LlmMsg>,
    tts: ActorRef<TtsMsg>,
    budgets: [RestartBudget; 3],
    next_turn: u64,
    next_seq: u32,
    current: Option<AgentTurn>,
    /// When the caller's last utterance ended, and the silence the endpointer waited.
    speech_end: Option<(Instant, u32)>,
    failing: Option<String>,
    records: mpsc::UnboundedSender<Record>,
    /// When the call was answered (the supervisor starts on answer), for the call's length.
    answered_at: Instant,
    /// What the call has consumed so far.
    usage: CallUsage,
    /// Every line as recorded, for the post-call analysis.
    transcript: Vec<(Speaker, String)>,
    /// The end was recorded: a second end (a late hang-up) records nothing more.
    ended: bool,
}

impl CallState {
    fn child_of(&self, id: ActorId) -> Option<Child> {
        self.children
            .iter()
            .find(|(_, r)| r.get_id() == id)
            .map(|(c, _)| *c)
    }

    fn publish(&self, kind: &'static str, data: serde_json::Value) {
        self.args.ports.events.publish(TenantEvent {
            tenant: self.args.call.tenant,
            kind,
            call_id: Some(self.args.call.call_id),
            data,
        });
    }

    fn record_line(
        &mut self,
        speaker: Speaker,
        text: &str,
        interrupted: bool,
        timings: StageTimings,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.transcript.push((speaker, text.to_owned()));
        if speaker == Speaker::Agent {
            observe_stages(&timings);
        }
        let _ = self.records.send(Record::Turn(TurnRecord {
            seq,
            speaker,
            text: text.to_owned(),
            interrupted,
            timings,
        }));
    }

    fn remember(&self, speaker: Speaker, text: String) {
        let _ = self
            .args
            .conversation
            .send_message(ConversationMsg::Append(HistoryEntry {
                speaker,
                channel: Channel::Voice,
                text,
                at_ms: now_ms(),
            }));
    }

    /// The model is done with the current turn: no more sentences, and its words go into
    /// the history now, so a barge-in later trims them there.
    fn mark_written(&mut self) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.written {
            return;
        }
        current.written = true;
        let text = current.whole_text();
        if !text.is_empty() {
            self.remember(Speaker::Agent, text);
        }
    }

    /// Ends the current turn before it finished (barge-in, failure, hang-up): stops its
    /// reply and keeps, in the record and the history, only what the caller heard.
    fn cut_turn(&mut self) {
        let Some(current) = self.current.take() else {
            return;
        };
        let _ = self.llm.send_message(LlmMsg::Cancel { turn: current.turn });
        let _ = self.tts.send_message(TtsMsg::Cancel);
        let heard = current.heard();
        if current.written {
            let _ = self
                .args
                .conversation
                .send_message(ConversationMsg::TrimLastAgentLine {
                    heard: heard.clone(),
                });
        } else if !heard.is_empty() {
            self.remember(Speaker::Agent, heard.clone());
        }
        if !heard.is_empty() {
            self.record_line(Speaker::Agent, &heard, true, current.timings);
        }
    }
}

/// Records a reply's stage timings in `switchboard_turn_stage_duration_seconds{stage}`
/// (and what the runtime itself added as stage `runtime`).
fn observe_stages(timings: &StageTimings) {
    let stages = [
        ("endpointing", timings.endpointing_ms),
        ("stt", timings.stt_ms),
        ("retrieval", timings.retrieval_ms),
        ("llm_first_token", timings.llm_first_token_ms),
        ("llm_first_sentence", timings.llm_first_sentence_ms),
        ("tts_first_byte", timings.tts_first_byte_ms),
        ("voice_to_voice", timings.voice_to_voice_ms),
        ("runtime", timings.runtime_overhead_ms()),
    ];
    for (stage, ms) in stages {
        if let Some(ms) = ms {
            metrics::histogram!("switchboard_turn_stage_duration_seconds", "stage" => stage)
                .record(f64::from(ms) / 1000.0);
        }
    }
}

/// The call supervisor.
pub struct CallSupervisor;

async fn spawn_child(
    child: Child,
    myself: &ActorRef<CallMsg>,
    args: &CallArgs,
    audio: &AudioInlet,
) -> Result<ActorCell, ActorProcessingErr> {
    let cell = myself.get_cell();
    Ok(match child {
        Child::Stt => {
            let stt_args = SttArgs {
                session: args.ports.stt.open(
                    &args.call,
                    &SttOptions {
                        language: args.agent.language.clone(),
                        mode: args.agent.stt_mode,
                    },
                ),
                settings: args.settings.endpoint,
                report_to: myself.get_derived(),
                inlet: audio.clone(),
            };
            SttActor::spawn_linked(None, SttActor, stt_args, cell)
                .await?
                .0
                .get_cell()
        }
        Child::Llm => {
            let llm_args = LlmArgs {
                llm: args.ports.llm.clone(),
                report_to: myself.get_derived(),
            };
            LlmActor::spawn_linked(None, LlmActor, llm_args, cell)
                .await?
                .0
                .get_cell()
        }
        Child::Tts => {
            let tts_args = TtsArgs {
                tts: args.ports.tts.clone(),
                telephony: args.telephony.clone(),
                voice: args.agent.voice.clone(),
                language: args.agent.language.clone(),
                report_to: myself.get_derived(),
            };
            TtsActor::spawn_linked(None, TtsActor, tts_args, cell)
                .await?
                .0
                .get_cell()
        }
    })
}

impl Actor for CallSupervisor {
    type Msg = CallMsg;
    type State = CallState;
    type Arguments = CallArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CallMsg>,
        args: CallArgs,
    ) -> Result<CallState, ActorProcessingErr> {
        let audio = AudioInlet::default();
        let stt = spawn_child(Child::Stt, &myself, &args, &audio).await?;
        let llm = spawn_child(Child::Llm, &myself, &args, &audio).await?;
        let tts = spawn_child(Child::Tts, &myself, &args, &audio).await?;
        let (records, queue) = mpsc::unbounded_channel();
        args.ports.record_writers.spawn(write_records(
            (args.ports.call_log.clone(), args.ports.events.clone()),
            args.call.clone(),
            args.conversation.clone(),
            queue,
        ));
        let _ = records.send(Record::Started);
        Ok(CallState {
            children: vec![
                (Child::Stt, stt),
                (Child::Llm, llm.clone()),
                (Child::Tts, tts.clone()),
            ],
            audio,
            llm: llm.into(),
            tts: tts.into(),
            budgets: std::array::from_fn(|_| RestartBudget::new(args.settings.restart)),
            args,
            phase: CallPhase::Greeting,
            next_turn: 1,
            next_seq: 0,
            current: None,
            speech_end: None,
            failing: None,
            records,
            answered_at: Instant::now(),
            usage: CallUsage::default(),
            transcript: Vec::new(),
            ended: false,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<CallMsg>,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("switchboard_calls_live").increment(1.0);
        state.publish(
            "call.started",
            json!({"agent_id": state.args.agent.id, "from": state.args.call.customer}),
        );
        let conversation = state.args.conversation.clone();
        let template = state.args.agent.first_message.clone();
        let system_prompt = state.args.agent.system_prompt.clone();
        let variables = state.args.variables.clone();
        tokio::spawn(async move {
            let filled = ractor::call_t!(
                conversation,
                |reply| ConversationMsg::Fill {
                    template: template.clone(),
                    variables: variables.clone(),
                    reply,
                },
                CONVERSATION_TIMEOUT_MS
            )
            .unwrap_or(template);
            if filled.trim().is_empty() {
                let _ = myself.send_message(CallMsg::GreetingReady(filled));
                return;
            }
            // A customer with history is greeted by the model, which reads it.
            let built = ractor::call_t!(
                conversation,
                |reply| ConversationMsg::BuildPrompt {
                    system_prompt: format!(
                        "{system_prompt}\n\n{GREETING_WITH_HISTORY}\"{filled}\""
                    ),
                    variables,
                    reply,
                },
                CONVERSATION_TIMEOUT_MS
            );
            let greeting = match built {
                Ok(messages) if messages.len() > 1 => CallMsg::GreetingPrompt {
                    messages,
                    fallback: filled,
                },
                _ => CallMsg::GreetingReady(filled),
            };
            let _ = myself.send_message(greeting);
        });
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CallMsg>,
        msg: CallMsg,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CallMsg::AudioInlet(reply) => {
                let _ = reply.send(state.audio.clone());
            }
            CallMsg::Marked(name) => on_marked(&myself, state, &name),
            CallMsg::CallerHungUp => {
                if state.phase == CallPhase::Ended && state.failing.is_none() {
                    return Ok(()); // already ended; this is the network catching up
                }
                let outcome = match state.failing.take() {
                    Some(reason) => CallOutcome::Failed(reason),
                    None => CallOutcome::Completed,
                };
                end_call(&myself, state, outcome);
            }
            CallMsg::Dtmf(digit) => on_dtmf(&myself, state, digit),
            CallMsg::HandOver => hand_to_person(&myself, state, "staff took the conversation over"),
            CallMsg::HangUp => {
                if state.phase != CallPhase::Ended {
                    state.args.telephony.clear();
                    let telephony = state.args.telephony.clone();
                    tokio::spawn(async move {
                        let _ = telephony.hang_up().await;
                    });
                    end_call(&myself, state, CallOutcome::Completed);
                }
            }
            CallMsg::Transfer(number) => {
                if state.phase != CallPhase::Ended {
                    state.args.telephony.clear();
                    transfer_now(&myself, state, number);
                }
            }
            CallMsg::Say(text) => say_now(&myself, state, text, CallAction::Continue),
            CallMsg::SayGoodbye(text) => say_now(&myself, state, text, CallAction::HangUp),
            CallMsg::Phase(reply) => {
                let _ = reply.send(state.phase);
            }
            CallMsg::Stt(report) => on_stt(&myself, state, report),
            CallMsg::Llm(report) => on_llm(&myself, state, report),
            CallMsg::Tts(report) => on_tts(&myself, state, report),
            CallMsg::GreetingReady(text) => {
                if state.phase == CallPhase::Greeting && state.current.is_none() {
                    state.current = Some(AgentTurn::new(0));
                    for sentence in split_sentences(&text) {
                        speak(state, sentence);
                    }
                    state.mark_written();
                    finish_turn_if_played(&myself, state);
                }
            }
            CallMsg::GreetingPrompt { messages, fallback } => {
                if state.phase == CallPhase::Greeting && state.current.is_none() {
                    let mut greeting = AgentTurn::new(0);
                    greeting.prompt = messages;
                    greeting.fallback = Some(fallback);
                    state.current = Some(greeting);
                    generate(state);
                }
            }
            CallMsg::PromptReady {
                turn,
                messages,
                retrieval_ms,
            } => {
                if let Some(current) = state.current.as_mut().filter(|c| c.turn == turn) {
                    current.prompt = messages;
                    current.timings.retrieval_ms = retrieval_ms;
                    generate(state);
                }
            }
            CallMsg::ToolsDone {
                turn,
                results,
                action,
            } => {
                if let Some(current) = state.current.as_mut().filter(|c| c.turn == turn) {
                    for (call, answer) in results {
                        current.prompt.push(ChatMessage::Tool {
                            call_id: call.id,
                            content: answer,
                        });
                    }
                    if action != CallAction::Continue {
                        current.then = action;
                    }
                    generate(state);
                }
            }
            CallMsg::FinishFailure => finish_failure(&myself, state),
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _: ActorRef<CallMsg>,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        metrics::gauge!("switchboard_calls_live").decrement(1.0);
        state.audio.close();
        // Stopped from outside before it ended (the runtime shutting down past its drain
        // deadline): what the call consumed is owed all the same.
        if !state.ended {
            state.ended = true;
            state.usage.call_ms = state.answered_at.elapsed().as_millis() as u64;
            let _ = state.records.send(Record::Usage(state.usage));
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<CallMsg>,
        event: SupervisionEvent,
        state: &mut CallState,
    ) -> Result<(), ActorProcessingErr> {
        let SupervisionEvent::ActorFailed(cell, error) = event else {
            return Ok(());
        };
        let Some(child) = state.child_of(cell.get_id()) else {
            return Ok(());
        };
        tracing::warn!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, ?child, %error, "pipeline child failed");
        if child == Child::Stt {
            // A failed STT actor's hearing hears no more, whatever failed it (a frame takes
            // it out itself; a session event does not): a restart installs a fresh one.
            state.audio.close();
        }
        let kind = match child {
            Child::Stt => "stt",
            Child::Llm => "llm",
            Child::Tts => "tts",
        };
        metrics::counter!("switchboard_actor_failures_total", "actor" => kind).increment(1);
        if state.phase == CallPhase::Ended {
            return Ok(());
        }
        if !state.budgets[child as usize].allow_restart(Instant::now()) {
            let policy = state.args.settings.restart;
            let reason = format!(
                "{child:?} actor failed more than {} times within {:?}: {error}",
                policy.max_restarts, policy.within
            );
            fail_call(&myself, state, reason, child == Child::Tts);
            return Ok(());
        }
        let fresh = spawn_child(child, &myself, &state.args, &state.audio).await?;
        metrics::counter!("switchboard_actor_restarts_total", "actor" => kind).increment(1);
        state.children.retain(|(c, _)| *c != child);
        state.children.push((child, fresh.clone()));
        match child {
            // The fresh actor installed its hearing in the call's inlet as it started.
            Child::Stt => {}
            Child::Llm => {
                state.llm = fresh.into();
                // Resume the reply the failed actor was writing.
                if state
                    .current
                    .as_ref()
                    .is_some_and(|c| !c.written && !c.prompt.is_empty())
                {
                    generate(state);
                }
            }
            Child::Tts => {
                state.tts = fresh.into();
                // Speak again what the failed actor had not got played.
                if let Some(current) = state.current.as_ref() {
                    for (seq, sentence) in current
                        .sentences
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| !s.played)
                    {
                        let _ = state.tts.send_message(TtsMsg::Speak(Utterance {
                            turn: current.turn,
                            seq: seq as u32,
                            text: sentence.text.clone(),
                        }));
                    }
                }
            }
        }
        Ok(())
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn millis(from: Option<Instant>, to: Instant) -> Option<u32> {
    from.map(|f| to.duration_since(f).as_millis().min(u128::from(u32::MAX)) as u32)
}

/// Splits a whole text (the greeting) into sentences for TTS.
fn split_sentences(text: &str) -> Vec<String> {
    let mut splitter = SentenceSplitter::default();
    let mut out = splitter.push(text);
    out.extend(splitter.finish());
    out
}

/// Queues one sentence of the current turn for speech.
fn speak(state: &mut CallState, text: String) {
    let Some(current) = state.current.as_mut() else {
        return;
    };
    if current.first_tts_request_at.is_none() {
        let now = Instant::now();
        current.first_tts_request_at = Some(now);
        current.timings.llm_first_sentence_ms = millis(current.transcript_at, now);
    }
    let utterance = Utterance {
        turn: current.turn,
        seq: current.sentences.len() as u32,
        text: text.clone(),
    };
    current.sentences.push(Sentence {
        text,
        played: false,
    });
    if state.phase != CallPhase::Greeting {
        state.phase = CallPhase::Speaking;
    }
    let _ = state.tts.send_message(TtsMsg::Speak(utterance));
}

/// Asks the model for (more of) the current turn's reply.
fn generate(state: &mut CallState) {
    let Some(current) = state.current.as_ref() else {
        return;
    };
    let request = LlmRequest {
        model: state.args.agent.llm_model.clone(),
        messages: current.prompt.clone(),
        tools: tools::specs(&state.args.agent.tools),
        fallback_models: state.args.agent.llm_fallback_models.clone(),
    };
    let _ = state.llm.send_message(LlmMsg::Generate {
        turn: current.turn,
        request,
    });
}

fn on_stt(myself: &ActorRef<CallMsg>, state: &mut CallState, report: SttReport) {
    if state.phase == CallPhase::Ended {
        return;
    }
    match report {
        // The caller has spoken past the barge-in minimum: whatever the agent was doing
        // for the last turn gives way.
        SttReport::CallerSpeaking => match state.phase {
            CallPhase::Speaking | CallPhase::Greeting => {
                let heard = state
                    .current
                    .as_ref()
                    .map(AgentTurn::heard)
                    .unwrap_or_default();
                state.cut_turn();
                state.args.telephony.clear();
                state.publish("call.barge_in", json!({"heard": heard}));
                state.phase = CallPhase::Listening;
            }
            CallPhase::Thinking => {
                // They were not done: drop the reply in the making; their next transcript
                // starts a new turn.
                state.cut_turn();
                state.phase = CallPhase::Listening;
            }
            CallPhase::Listening | CallPhase::Ended => {}
        },
        SttReport::SpeechEnded {
            trailing_ms,
            audio_ms,
        } => {
            state.usage.stt_ms += u64::from(audio_ms);
            state.speech_end = Some((Instant::now(), trailing_ms));
        }
        SttReport::Partial(text) => state.publish(
            "call.transcript",
            json!({"speaker": "customer", "text": text, "final": false}),
        ),
        SttReport::Final(text) => on_transcript(myself, state, text),
    }
}

fn on_transcript(myself: &ActorRef<CallMsg>, state: &mut CallState, text: String) {
    let text = text.trim().to_owned();
    let speech_end = state.speech_end.take();
    if text.is_empty() {
        return;
    }
    if matches!(state.phase, CallPhase::Speaking | CallPhase::Greeting) {
        // Speech shorter than the barge-in minimum while the agent talks: a back-channel
        // "mm-hm" or a cough, which neither interrupts nor starts a turn.
        tracing::debug!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, "short speech over the agent ignored");
        return;
    }
    state.cut_turn();
    let now = Instant::now();
    let speech_ended_at = speech_end.map(|(at, _)| at);
    state.record_line(Speaker::Customer, &text, false, StageTimings::default());
    state.remember(Speaker::Customer, text.clone());
    state.publish(
        "call.transcript",
        json!({"speaker": "customer", "text": text, "final": true}),
    );

    let turn = state.next_turn;
    state.next_turn += 1;
    let mut current = AgentTurn::new(turn);
    current.speech_ended_at = speech_ended_at;
    current.transcript_at = Some(now);
    current.timings = StageTimings {
        endpointing_ms: speech_end.map(|(_, trailing)| trailing),
        stt_ms: millis(speech_ended_at, now),
        ..StageTimings::default()
    };
    state.current = Some(current);
    state.phase = CallPhase::Thinking;

    let conversation = state.args.conversation.clone();
    let system_prompt = state.args.agent.system_prompt.clone();
    let variables = state.args.variables.clone();
    let retrieval = state
        .args
        .agent
        .auto_retrieval
        .map(|budget| (state.args.tenant.clone(), budget));
    let myself = myself.clone();
    tokio::spawn(async move {
        // The knowledge base is searched while the prompt is built, so retrieval within
        // its budget adds nothing to the turn unless it is the slower of the two.
        let knowledge = async {
            match retrieval {
                Some((tenant, budget)) => {
                    Some(retrieval::retrieve(&tenant, text.clone(), budget).await)
                }
                None => None,
            }
        };
        let prompt = async {
            ractor::call_t!(
                conversation,
                |reply| ConversationMsg::BuildPrompt {
                    system_prompt: system_prompt.clone(),
                    variables,
                    reply,
                },
                CONVERSATION_TIMEOUT_MS
            )
        };
        let (knowledge, built) = tokio::join!(knowledge, prompt);
        // Without the history the model still gets the instructions and the words.
        let mut messages = built.unwrap_or_else(|_| {
            vec![
                ChatMessage::System(system_prompt),
                ChatMessage::User(text.clone()),
            ]
        });
        if let Some(Retrieval::Found { hits, .. }) = &knowledge {
            retrieval::add_knowledge(&mut messages, hits);
        }
        let retrieval_ms = knowledge.as_ref().and_then(Retrieval::took_ms);
        let _ = myself.send_message(CallMsg::PromptReady {
            turn,
            messages,
            retrieval_ms,
        });
    });
}

fn on_llm(myself: &ActorRef<CallMsg>, state: &mut CallState, report: LlmReport) {
    // Tokens count whatever became of their turn: a reply cut off by the caller was paid for.
    if let LlmReport::Usage {
        prompt_tokens,
        completion_tokens,
        ..
    } = report
    {
        state.usage.llm_tokens += u64::from(prompt_tokens) + u64::from(completion_tokens);
        return;
    }
    let turn_of = |r: &LlmReport| match r {
        LlmReport::FirstToken { turn }
        | LlmReport::Sentence { turn, .. }
        | LlmReport::ToolCalls { turn, .. }
        | LlmReport::Usage { turn, .. }
        | LlmReport::Done { turn }
        | LlmReport::Failed { turn, .. } => *turn,
    };
    if state.phase == CallPhase::Ended
        || state.current.as_ref().map(|c| c.turn) != Some(turn_of(&report))
    {
        return;
    }
    match report {
        LlmReport::FirstToken { .. } => {
            if let Some(current) = state.current.as_mut() {
                if current.timings.llm_first_token_ms.is_none() {
                    current.timings.llm_first_token_ms =
                        millis(current.transcript_at, Instant::now());
                }
            }
        }
        LlmReport::Sentence { text, .. } => speak(state, text),
        LlmReport::Usage { .. } => {}
        LlmReport::ToolCalls { text, calls, .. } => run_tools(myself, state, text, calls),
        LlmReport::Done { .. } => {
            state.mark_written();
            finish_turn_if_played(myself, state);
        }
        LlmReport::Failed { error, .. } => {
            tracing::warn!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, %error, "the model could not answer");
            if let Some(current) = state.current.as_ref().filter(|c| c.sentences.is_empty()) {
                let words = current.fallback.clone();
                speak(state, words.unwrap_or_else(|| DID_NOT_CATCH.to_owned()));
            }
            state.mark_written();
            finish_turn_if_played(myself, state);
        }
    }
}

/// Runs a round of tool calls in a task; the model goes on with their answers.
fn run_tools(
    myself: &ActorRef<CallMsg>,
    state: &mut CallState,
    text: String,
    calls: Vec<ToolCall>,
) {
    let Some(current) = state.current.as_mut() else {
        return;
    };
    current.tool_rounds += 1;
    current.prompt.push(ChatMessage::Assistant {
        text,
        tool_calls: calls.clone(),
    });
    if current.tool_rounds > MAX_TOOL_ROUNDS {
        state.mark_written();
        finish_turn_if_played(myself, state);
        return;
    }
    if current.all_played() {
        state.phase = CallPhase::Thinking;
    }
    let turn = current.turn;
    let ctx = ToolContext {
        tenant_id: state.args.call.tenant,
        customer: state.args.call.customer.clone(),
        enabled: state.args.agent.tools.clone(),
        transfer_number: state.args.agent.transfer_number.clone(),
        tenant: state.args.tenant.clone(),
        conversation: state.args.conversation.clone(),
        conversations: state.args.ports.conversations.clone(),
        events: state.args.ports.events.clone(),
        telephony: Some(state.args.telephony.clone()),
    };
    let names: Vec<&str> = calls.iter().map(|c| c.name.as_str()).collect();
    state.publish("call.tool_calls", json!({ "tools": names }));
    for call in &calls {
        let _ = state.records.send(Record::ToolCall(call.name.clone()));
    }
    let myself = myself.clone();
    tokio::spawn(async move {
        let mut results = Vec::with_capacity(calls.len());
        let mut action = CallAction::Continue;
        for call in calls {
            let (answer, wanted) = tools::run(&call, &ctx).await;
            if wanted != CallAction::Continue {
                action = wanted;
            }
            results.push((call, answer));
        }
        let _ = myself.send_message(CallMsg::ToolsDone {
            turn,
            results,
            action,
        });
    });
}

fn on_tts(myself: &ActorRef<CallMsg>, state: &mut CallState, report: TtsReport) {
    match report {
        // Counted whatever became of the sentence: the provider bills the request.
        TtsReport::Synthesizing { characters, .. } => {
            state.usage.tts_characters += u64::from(characters);
        }
        TtsReport::FirstAudio { turn, seq } => {
            let now = Instant::now();
            let Some(current) = state.current.as_mut().filter(|c| c.turn == turn) else {
                return;
            };
            // Audio is forwarded the moment it arrives, so the first TTS byte is also the
            // first audio sent to the caller.
            if seq == 0 && current.timings.tts_first_byte_ms.is_none() {
                current.timings.tts_first_byte_ms = millis(current.first_tts_request_at, now);
                current.timings.voice_to_voice_ms = millis(current.speech_ended_at, now);
                state.publish("call.agent_speaking", json!({"turn": turn}));
            }
        }
        TtsReport::Failed { turn, seq, error } => {
            tracing::warn!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, %error, "a sentence could not be spoken");
            if let Some(sentence) = state
                .current
                .as_mut()
                .filter(|c| c.turn == turn)
                .and_then(|c| c.sentences.get_mut(seq as usize))
            {
                sentence.played = true;
            }
            finish_turn_if_played(myself, state);
        }
    }
}

fn on_marked(myself: &ActorRef<CallMsg>, state: &mut CallState, name: &str) {
    if state.failing.is_some() {
        if name == apology().mark() {
            finish_failure(myself, state);
        }
        return;
    }
    let Some(current) = state.current.as_mut() else {
        return;
    };
    let Some(seq) = name
        .strip_prefix(&format!("t{}s", current.turn))
        .and_then(|s| s.parse::<usize>().ok())
    else {
        return;
    };
    if let Some(sentence) = current.sentences.get_mut(seq) {
        sentence.played = true;
    }
    if !current.written && current.all_played() && state.phase == CallPhase::Speaking {
        // Everything said so far is heard; the model is still working (tools, more words).
        state.phase = CallPhase::Thinking;
    }
    finish_turn_if_played(myself, state);
}

/// The apology spoken when a call fails, as its own turn so no reply's marks match it.
fn apology() -> Utterance {
    Utterance {
        turn: u64::MAX,
        seq: 0,
        text: APOLOGY.to_owned(),
    }
}

/// Once the current turn is written and heard in full, records it and listens again (or
/// carries out what a tool asked: hang up, transfer).
fn finish_turn_if_played(myself: &ActorRef<CallMsg>, state: &mut CallState) {
    if !state
        .current
        .as_ref()
        .is_some_and(|c| c.written && c.all_played())
    {
        return;
    }
    let Some(current) = state.current.take() else {
        return;
    };
    let text = current.whole_text();
    if !text.is_empty() {
        state.record_line(Speaker::Agent, &text, false, current.timings);
        state.publish(
            "call.transcript",
            json!({"speaker": "agent", "text": text, "final": true}),
        );
    }
    state.phase = CallPhase::Listening;
    let telephony = state.args.telephony.clone();
    match current.then {
        CallAction::Continue => {}
        CallAction::HangUp => {
            tokio::spawn(async move {
                let _ = telephony.hang_up().await;
            });
            end_call(myself, state, CallOutcome::Completed);
        }
        CallAction::Transfer(number) => transfer_now(myself, state, number),
    }
}

/// Speaks `text` as the agent's next line at once, cutting off (as a barge-in would) what
/// the agent was saying or preparing; `then` is done once it has played.
fn say_now(myself: &ActorRef<CallMsg>, state: &mut CallState, text: String, then: CallAction) {
    if state.phase == CallPhase::Ended || state.failing.is_some() {
        return;
    }
    if state.current.is_some() {
        state.args.telephony.clear();
        state.cut_turn();
    }
    let turn = state.next_turn;
    state.next_turn += 1;
    let mut current = AgentTurn::new(turn);
    current.then = then;
    state.current = Some(current);
    state.phase = CallPhase::Speaking;
    state.publish("call.agent_speaking", json!({"turn": turn, "by": "staff"}));
    for sentence in split_sentences(&text) {
        speak(state, sentence);
    }
    state.mark_written();
    finish_turn_if_played(myself, state);
}

/// A key press: `0` hands the caller to the agent's transfer number at once, cutting off
/// whatever the agent was saying; other keys are only published.
fn on_dtmf(myself: &ActorRef<CallMsg>, state: &mut CallState, digit: char) {
    state.publish("call.dtmf", json!({"digit": digit.to_string()}));
    if digit == '0' {
        hand_to_person(myself, state, "the caller pressed 0");
    }
}

/// Transfers the call to the agent's transfer number at once, cutting off what the agent
/// was saying; `why` is logged when there is no number to transfer to.
fn hand_to_person(myself: &ActorRef<CallMsg>, state: &mut CallState, why: &str) {
    if state.phase == CallPhase::Ended {
        return;
    }
    let Some(number) = state.args.agent.transfer_number.clone() else {
        tracing::info!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, why, "no transfer number: the agent keeps the call");
        return;
    };
    state.args.telephony.clear();
    transfer_now(myself, state, number);
}

fn transfer_now(myself: &ActorRef<CallMsg>, state: &mut CallState, number: actors::domain::E164) {
    let telephony = state.args.telephony.clone();
    let to = number.clone();
    tokio::spawn(async move {
        let _ = telephony.transfer(&to).await;
    });
    end_call(myself, state, CallOutcome::Transferred(number));
}

/// The pipeline cannot go on: apologise (when TTS still works), then transfer or hang up.
fn fail_call(myself: &ActorRef<CallMsg>, state: &mut CallState, reason: String, tts_broken: bool) {
    if state.failing.is_some() {
        return;
    }
    tracing::error!(call_id = %state.args.call.call_id, tenant_id = %state.args.call.tenant, %reason, "ending the call after repeated failures");
    state.publish("call.failed", json!({"reason": reason}));
    state.cut_turn();
    state.args.telephony.clear();
    state.failing = Some(reason);
    state.phase = CallPhase::Ended;
    if tts_broken {
        finish_failure(myself, state);
        return;
    }
    let _ = state.tts.send_message(TtsMsg::Speak(apology()));
    myself.send_after(APOLOGY_TIMEOUT, || CallMsg::FinishFailure);
}

fn finish_failure(myself: &ActorRef<CallMsg>, state: &mut CallState) {
    let Some(reason) = state.failing.take() else {
        return;
    };
    let telephony = state.args.telephony.clone();
    let transfer_to = state.args.agent.transfer_number.clone();
    tokio::spawn(async move {
        let _ = match transfer_to {
            Some(number) => telephony.transfer(&number).await,
            None => telephony.hang_up().await,
        };
    });
    end_call(myself, state, CallOutcome::Failed(reason));
}

/// Records the end and what the call consumed, starts the post-call analysis, and stops
/// the call; its children stop with it.
fn end_call(myself: &ActorRef<CallMsg>, state: &mut CallState, outcome: CallOutcome) {
    if state.ended {
        return;
    }
    state.ended = true;
    state.cut_turn();
    state.phase = CallPhase::Ended;
    state.usage.call_ms = state.answered_at.elapsed().as_millis() as u64;
    let label = match &outcome {
        CallOutcome::Completed => "completed",
        CallOutcome::Transferred(_) => "transferred",
        CallOutcome::Failed(_) => "failed",
    };
    metrics::counter!("switchboard_calls_total", "outcome" => label).increment(1);
    metrics::histogram!("switchboard_call_duration_seconds")
        .record(state.usage.call_ms as f64 / 1000.0);
    let ended = match &outcome {
        CallOutcome::Completed => json!({"outcome": "completed"}),
        CallOutcome::Transferred(to) => json!({"outcome": "transferred", "transferred_to": to}),
        CallOutcome::Failed(why) => json!({"outcome": "failed", "failure": why}),
    };
    let _ = state.records.send(Record::Ended(outcome));
    if !state.usage.is_empty() {
        let _ = state.records.send(Record::Usage(state.usage));
    }
    start_analysis(state, ended);
    myself.stop(None);
}

/// Publishes `call.ended` with `ended` (outcome, duration) and, when the analysis arrives
/// within [`SUMMARY_WAIT`], its summary and sentiment.
fn announce_end(
    state: &CallState,
    mut ended: serde_json::Value,
    analysis: Option<oneshot::Receiver<CallAnalysis>>,
) {
    let events = state.args.ports.events.clone();
    let (tenant, call_id) = (state.args.call.tenant, state.args.call.call_id);
    ended["duration_ms"] = json!(state.usage.call_ms);
    tokio::spawn(async move {
        let analysis = match analysis {
            Some(analysis) => tokio::time::timeout(SUMMARY_WAIT, analysis)
                .await
                .ok()
                .and_then(Result::ok),
            None => None,
        };
        ended["summary"] = json!(analysis.as_ref().map(|a| a.summary.clone()));
        ended["sentiment"] = json!(analysis.as_ref().map(|a| a.sentiment.as_str()));
        events.publish(TenantEvent {
            tenant,
            kind: "call.ended",
            call_id: Some(call_id),
            data: ended,
        });
    });
}

/// Asks the agent's model, in a task of its own, what the call came to, and queues the
/// answer (and its tokens) for the call's writer. The task owns everything it uses, so the
/// supervisor stopping does not cancel it, and keeps the writer alive until it is done.
fn start_analysis(state: &mut CallState, ended: serde_json::Value) {
    let transcript = std::mem::take(&mut state.transcript);
    if !transcript
        .iter()
        .any(|(speaker, _)| *speaker == Speaker::Customer)
    {
        announce_end(state, ended, None);
        return;
    }
    let (summary, summarised) = oneshot::channel();
    announce_end(state, ended, Some(summarised));
    let request = analysis_request(&state.args.agent, &transcript);
    let llm = state.args.ports.llm.clone();
    let records = state.records.clone();
    let call_id = state.args.call.call_id;
    tokio::spawn(async move {
        let (tokens, answer) = analyse(llm.as_ref(), request).await;
        match answer {
            Ok(analysis) => {
                let _ = summary.send(analysis.clone());
                let _ = records.send(Record::Analysis(analysis));
            }
            Err(why) => {
                tracing::warn!(%call_id, %why, "the call has no analysis");
            }
        }
        if tokens > 0 {
            let _ = records.send(Record::Usage(CallUsage {
                llm_tokens: tokens,
                ..CallUsage::default()
            }));
        }
    });
}

/// The request for the analysis of a call: instructions with the agent's extraction schema,
/// then the transcript, on the agent's own model and without tools.
fn analysis_request(agent: &AgentConfig, transcript: &[(Speaker, String)]) -> LlmRequest {
    let extracted = if agent.analysis_schema.is_empty() {
        "`extracted` is an empty object {}: nothing is to be extracted from this call.".to_owned()
    } else {
        format!(
            "`extracted` holds what the call revealed, following this JSON Schema; leave out \
             what was not said: {}",
            serde_json::Value::Object(agent.analysis_schema.clone())
        )
    };
    let instructions = format!(
        "{ANALYSIS_INSTRUCTIONS} Answer with one JSON object and nothing else: \
         {{\"summary\": \"two or three sentences for the business: who called, what they \
         wanted, what was agreed\", \"sentiment\": \"positive\" or \"neutral\" or \
         \"negative\" (how the customer felt), \"extracted\": {{...}}}}. {extracted}"
    );
    LlmRequest {
        model: agent.llm_model.clone(),
        messages: vec![
            ChatMessage::System(instructions),
            ChatMessage::User(transcript_text(transcript)),
        ],
        tools: Vec::new(),
        fallback_models: agent.llm_fallback_models.clone(),
    }
}

/// The transcript as the analysis reads it, one `Speaker: words` line each; a very long call
/// loses its beginning rather than its end.
fn transcript_text(transcript: &[(Speaker, String)]) -> String {
    let lines: Vec<String> = transcript
        .iter()
        .map(|(speaker, text)| format!("{}: {text}", speaker_label(*speaker)))
        .collect();
    let mut kept = 0;
    let mut chars = 0;
    for line in lines.iter().rev() {
        chars += line.chars().count() + 1;
        if chars > ANALYSIS_MAX_TRANSCRIPT_CHARS && kept > 0 {
            break;
        }
        kept += 1;
    }
    let mut text = String::new();
    if kept < lines.len() {
        text.push_str("[the beginning of the call is left out]\n");
    }
    // One line longer than the whole budget is cut too, keeping its end.
    text.push_str(&truncate_keep_end(
        &lines[lines.len() - kept..].join("\n"),
        ANALYSIS_MAX_TRANSCRIPT_CHARS / 4,
    ));
    text
}

/// Runs the analysis request under [`ANALYSIS_TIMEOUT`]: the tokens the provider reported
/// (spent whether or not the answer is usable) and the analysis, or why there is none.
async fn analyse(
    llm: &dyn LanguageModel,
    request: LlmRequest,
) -> (u64, Result<CallAnalysis, String>) {
    let streamed = tokio::time::timeout(ANALYSIS_TIMEOUT, text::collect(llm, request)).await;
    let (tokens, answer) = match streamed {
        Err(_) => (
            0,
            Err(format!("the model took longer than {ANALYSIS_TIMEOUT:?}")),
        ),
        Ok(Err(error)) => (0, Err(format!("the model failed: {error}"))),
        Ok(Ok((text, _, tokens))) => (tokens, parse_analysis(&text)),
    };
    (tokens, answer)
}

/// Reads the model's analysis leniently: the JSON object may come wrapped in a ```json fence
/// or a sentence, and the sentiment in any case; a missing `extracted` is empty. A summary,
/// a known sentiment and an object are required, since guessing them would store fiction.
fn parse_analysis(answer: &str) -> Result<CallAnalysis, String> {
    let unreadable = || format!("the answer is not a JSON object: {:.200}", answer.trim());
    let (Some(start), Some(end)) = (answer.find('{'), answer.rfind('}')) else {
        return Err(unreadable());
    };
    let object = answer.get(start..=end).ok_or_else(unreadable)?;
    let value: serde_json::Value = serde_json::from_str(object).map_err(|_| unreadable())?;
    let summary = value
        .get("summary")
        .and_then(serde_json::Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("the answer has no summary")?;
    let sentiment = value
        .get("sentiment")
        .and_then(serde_json::Value::as_str)
        .and_then(Sentiment::parse)
        .ok_or("the answer has no sentiment of positive, neutral or negative")?;
    let extracted = match value.get("extracted") {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(fields)) => fields.clone(),
        Some(_) => return Err("`extracted` is not an object".to_owned()),
    };
    Ok(CallAnalysis {
        summary: summary.to_owned(),
        sentiment,
        extracted,
    })
}

/// Attempts at writing one call record before it is given up on.
const RECORD_ATTEMPTS: u32 = 5;
/// The wait before the second attempt; it doubles after each (0.2 + 0.4 + 0.8 + 1.6 s).
const RECORD_RETRY_FIRST: Duration = Duration::from_millis(200);

/// Writes a call's records in order, off the audio path; the lead fields an analysis taught
/// go to the customer's conversation. A record the store could not take (a database busy
/// past its pool's wait under a burst of calls) is tried again a few times, so a slow
/// moment costs time, not the record.
async fn write_records(
    (log, events): (Arc<dyn CallLog>, Arc<dyn EventSink>),
    call: CallInfo,
    conversation: ActorRef<ConversationMsg>,
    mut queue: mpsc::UnboundedReceiver<Record>,
) {
    while let Some(record) = queue.recv().await {
        let mut wait = RECORD_RETRY_FIRST;
        for attempt in 1..=RECORD_ATTEMPTS {
            let written = match &record {
                Record::Started => log.call_started(&call).await,
                Record::Turn(turn) => log.turn(&call, turn).await,
                Record::ToolCall(tool) => log.tool_called(&call, tool).await,
                Record::Ended(outcome) => log.call_ended(&call, outcome).await,
                Record::Usage(usage) => log.usage(&call, usage).await,
                Record::Analysis(analysis) => log.analysis(&call, analysis).await.map(|lead| {
                    events.publish(TenantEvent {
                        tenant: call.tenant,
                        kind: "lead.updated",
                        call_id: Some(call.call_id),
                        data: json!({"customer": call.customer, "fields": lead, "change": "updated", "by": "analysis"}),
                    });
                    let _ = conversation.send_message(ConversationMsg::SetLead(lead));
                }),
            };
            let error = match written {
                Ok(()) => break,
                Err(error) => error,
            };
            if matches!(error, PortError::Refused(_)) || attempt == RECORD_ATTEMPTS {
                tracing::error!(call_id = %call.call_id, tenant_id = %call.tenant, %error, "a call record could not be written");
                break;
            }
            tracing::warn!(call_id = %call.call_id, tenant_id = %call.tenant, %error, attempt, "a call record could not be written yet; trying again");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_analysis_wrapped_in_a_fence_is_read() {
        let answer = "Here you go:\n```json\n{\"summary\": \" Dana booked a service for Tuesday. \",\n \"sentiment\": \"Positive\", \"extracted\": {\"day\": \"Tuesday\"}}\n```";
        let analysis = parse_analysis(answer).unwrap();
        assert_eq!(analysis.summary, "Dana booked a service for Tuesday.");
        assert_eq!(analysis.sentiment, Sentiment::Positive);
        assert_eq!(analysis.extracted["day"], "Tuesday");
    }

    #[test]
    fn an_analysis_without_extracted_fields_extracts_nothing() {
        let analysis =
            parse_analysis(r#"{"summary": "Asked for hours.", "sentiment": "neutral"}"#).unwrap();
        assert!(analysis.extracted.is_empty());
        let analysis = parse_analysis(
            r#"{"summary": "Asked for hours.", "sentiment": "neutral", "extracted": null}"#,
        )
        .unwrap();
        assert!(analysis.extracted.is_empty());
    }

    #[test]
    fn a_bad_analysis_is_refused_rather_than_guessed() {
        for answer in [
            "I could not analyse this call.",
            "{not json}",
            r#"{"sentiment": "neutral"}"#,
            r#"{"summary": "  ", "sentiment": "neutral"}"#,
            r#"{"summary": "Fine.", "sentiment": "ecstatic"}"#,
            r#"{"summary": "Fine.", "sentiment": "neutral", "extracted": "Tuesday"}"#,
            "} backwards {",
        ] {
            assert!(parse_analysis(answer).is_err(), "{answer}");
        }
    }

    fn agent(schema: serde_json::Value) -> AgentConfig {
        AgentConfig {
            id: actors::domain::AgentId::new(),
            system_prompt: String::new(),
            first_message: String::new(),
            language: "en".to_owned(),
            voice: String::new(),
            llm_model: "the-agents-model".to_owned(),
            llm_fallback_models: vec!["the-spare-model".to_owned()],
            stt_mode: actors::ports::SttMode::Utterance,
            tools: vec![],
            transfer_number: None,
            analysis_schema: match schema {
                serde_json::Value::Object(map) => map,
                _ => unreachable!(),
            },
            auto_retrieval: None,
        }
    }

    #[test]
    fn the_analysis_request_carries_the_schema_and_the_transcript_on_the_agents_models() {
        let schema = json!({"type": "object", "properties": {"vehicle": {"type": "string"}}});
        let transcript = [
            (Speaker::Agent, "Thanks for calling!".to_owned()),
            (Speaker::Customer, "My Civic needs tires.".to_owned()),
        ];
        let request = analysis_request(&agent(schema.clone()), &transcript);
        assert_eq!(request.model, "the-agents-model");
        assert_eq!(request.fallback_models, ["the-spare-model"]);
        assert!(request.tools.is_empty());
        let [ChatMessage::System(instructions), ChatMessage::User(text)] =
            request.messages.as_slice()
        else {
            panic!("{:?}", request.messages);
        };
        assert!(instructions.starts_with(ANALYSIS_INSTRUCTIONS));
        assert!(instructions.contains(&schema.to_string()), "{instructions}");
        assert_eq!(
            text,
            "Agent: Thanks for calling!\nCustomer: My Civic needs tires."
        );

        let request = analysis_request(&agent(json!({})), &transcript);
        let ChatMessage::System(instructions) = &request.messages[0] else {
            panic!();
        };
        assert!(instructions.contains("nothing is to be extracted"));
    }

    #[test]
    fn a_very_long_transcript_keeps_its_end() {
        let line = "x".repeat(1_000);
        let transcript: Vec<(Speaker, String)> = (0..100)
            .map(|i| (Speaker::Customer, format!("{i} {line}")))
            .collect();
        let text = transcript_text(&transcript);
        assert!(text.chars().count() <= ANALYSIS_MAX_TRANSCRIPT_CHARS + 100);
        assert!(text.starts_with("[the beginning of the call is left out]"));
        assert!(text.ends_with(&format!("99 {line}")));
    }
}
