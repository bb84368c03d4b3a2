//! `LlmActor`: one per call. Streams a reply from the language-model port in a task of its
//! own, hands complete sentences to the call as they form, and reports tool calls, token
//! usage and the end of the reply. A new `Generate` or a `Cancel` drops the running stream, which cancels it.

use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use crate::ports::{LanguageModel, LlmDelta, LlmRequest, PortError, ToolCall};
use crate::sentences::SentenceSplitter;
use crate::task::ActorTask;

/// What the LLM actor tells its call. Every report carries the turn it belongs to, so the
/// call can ignore reports of a turn it has cancelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmReport {
    /// The first token of the reply arrived.
    FirstToken {
        /// The turn.
        turn: u64,
    },
    /// A complete sentence, ready to speak.
    Sentence {
        /// The turn.
        turn: u64,
        /// The sentence.
        text: String,
    },
    /// The model wants tools run before it goes on.
    ToolCalls {
        /// The turn.
        turn: u64,
        /// Text the model wrote before the calls.
        text: String,
        /// The calls.
        calls: Vec<ToolCall>,
    },
    /// What the generation cost, as the provider counted it; reported whatever became of
    /// the turn, since a cancelled reply was paid for too.
    Usage {
        /// The turn.
        turn: u64,
        /// Tokens read.
        prompt_tokens: u32,
        /// Tokens written.
        completion_tokens: u32,
    },
    /// The reply is complete.
    Done {
        /// The turn.
        turn: u64,
    },
    /// The model could not answer.
    Failed {
        /// The turn.
        turn: u64,
        /// Why.
        error: PortError,
    },
}

/// Messages to the LLM actor.
#[derive(Debug)]
pub enum LlmMsg {
    /// Write the reply for `turn`, dropping any reply still being written.
    Generate {
        /// The turn.
        turn: u64,
        /// The prompt and tools.
        request: LlmRequest,
    },
    /// Stop writing the reply of `turn` (barge-in, hang-up).
    Cancel {
        /// The turn.
        turn: u64,
    },
    /// The generation task panicked (a bug in a model adapter): fail, so the call's
    /// restart policy applies.
    TaskPanicked(String),
}

/// What the LLM actor is started with.
pub struct LlmArgs {
    /// The model port.
    pub llm: Arc<dyn LanguageModel>,
    /// Where reports go: the call.
    pub report_to: DerivedActorRef<LlmReport>,
}

/// The running generation, if any.
pub struct LlmState {
    llm: Arc<dyn LanguageModel>,
    report_to: DerivedActorRef<LlmReport>,
    running: Option<(u64, ActorTask)>,
}

/// The LLM actor.
pub struct LlmActor;

impl Actor for LlmActor {
    type Msg = LlmMsg;
    type State = LlmState;
    type Arguments = LlmArgs;

    async fn pre_start(
        &self,
        _: ActorRef<LlmMsg>,
        args: LlmArgs,
    ) -> Result<LlmState, ActorProcessingErr> {
        Ok(LlmState {
            llm: args.llm,
            report_to: args.report_to,
            running: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<LlmMsg>,
        msg: LlmMsg,
        state: &mut LlmState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            LlmMsg::Generate { turn, request } => {
                let work = generate(state.llm.clone(), turn, request, state.report_to.clone());
                let task = ActorTask::spawn(work, move |panic| {
                    let _ = myself.send_message(LlmMsg::TaskPanicked(panic));
                });
                // Replacing the running task drops, and so aborts, the one before.
                state.running = Some((turn, task));
            }
            LlmMsg::Cancel { turn } => {
                if state.running.as_ref().is_some_and(|(t, _)| *t == turn) {
                    state.running = None;
                }
            }
            LlmMsg::TaskPanicked(panic) => {
                return Err(format!("the model stream panicked: {panic}").into())
            }
        }
        Ok(())
    }
}

/// Streams one reply and reports it; runs as a task so the actor's mailbox stays free.
async fn generate(
    llm: Arc<dyn LanguageModel>,
    turn: u64,
    request: LlmRequest,
    report_to: DerivedActorRef<LlmReport>,
) {
    let report = |r: LlmReport| {
        let _ = report_to.send_message(r);
    };
    let mut stream = match llm.stream(request).await {
        Ok(stream) => stream,
        Err(error) => return report(LlmReport::Failed { turn, error }),
    };
    let mut splitter = SentenceSplitter::default();
    let mut text = String::new();
    let mut calls = Vec::new();
    let mut first = true;
    while let Some(delta) = stream.next().await {
        if first {
            first = false;
            report(LlmReport::FirstToken { turn });
        }
        match delta {
            Ok(LlmDelta::Text(piece)) => {
                text.push_str(&piece);
                for sentence in splitter.push(&piece) {
                    report(LlmReport::Sentence {
                        turn,
                        text: sentence,
                    });
                }
            }
            Ok(LlmDelta::ToolCall(call)) => calls.push(call),
            Ok(LlmDelta::Usage {
                prompt_tokens,
                completion_tokens,
            }) => report(LlmReport::Usage {
                turn,
                prompt_tokens,
                completion_tokens,
            }),
            Err(error) => return report(LlmReport::Failed { turn, error }),
        }
    }
    if let Some(rest) = splitter.finish() {
        report(LlmReport::Sentence { turn, text: rest });
    }
    let text = text.trim().to_owned();
    if calls.is_empty() {
        report(LlmReport::Done { turn });
    } else {
        report(LlmReport::ToolCalls { turn, text, calls });
    }
}
