//! `TtsActor`: one per call. Speaks sentences in order through the text-to-speech port,
//! sends the audio to the caller as it streams in, and puts a Twilio mark after each
//! sentence so the call learns what the caller has actually heard; it also reports each
//! sentence it hands to the provider, whose characters are the call's TTS usage. `Cancel`
//! drops the running synthesis and everything queued (barge-in).

use std::collections::VecDeque;
use std::sync::Arc;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use crate::ports::{PortError, Telephony, TextToSpeech, TtsRequest};
use crate::task::ActorTask;

/// One sentence to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utterance {
    /// The agent turn it belongs to.
    pub turn: u64,
    /// Its place in the turn, from 0.
    pub seq: u32,
    /// The words.
    pub text: String,
}

impl Utterance {
    /// The mark Twilio echoes when this sentence has been played.
    pub fn mark(&self) -> String {
        format!("t{}s{}", self.turn, self.seq)
    }
}

/// What the TTS actor tells its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtsReport {
    /// A sentence went to the provider (not one cancelled while queued): its characters
    /// are what synthesis is billed by.
    Synthesizing {
        /// Which turn.
        turn: u64,
        /// Which sentence.
        seq: u32,
        /// Characters of its text.
        characters: u32,
    },
    /// The first audio of a sentence went to the caller.
    FirstAudio {
        /// Which turn.
        turn: u64,
        /// Which sentence.
        seq: u32,
    },
    /// A sentence could not be spoken; the ones after it are still tried.
    Failed {
        /// Which turn.
        turn: u64,
        /// Which sentence.
        seq: u32,
        /// Why.
        error: PortError,
    },
}

/// Messages to the TTS actor.
#[derive(Debug)]
pub enum TtsMsg {
    /// Queue a sentence.
    Speak(Utterance),
    /// Stop speaking and forget the queue.
    Cancel,
    /// The running synthesis finished (sent by its task).
    Finished {
        /// The sentence's turn.
        turn: u64,
        /// The sentence.
        seq: u32,
    },
    /// The synthesis task panicked (a bug in a speech adapter): fail, so the call's restart
    /// policy applies.
    TaskPanicked(String),
}

/// What the TTS actor is started with.
pub struct TtsArgs {
    /// The speech port.
    pub tts: Arc<dyn TextToSpeech>,
    /// Where audio and marks go.
    pub telephony: Arc<dyn Telephony>,
    /// Voice id.
    pub voice: String,
    /// Language.
    pub language: String,
    /// Where reports go: the call.
    pub report_to: DerivedActorRef<TtsReport>,
}

/// The queue and the running synthesis.
pub struct TtsState {
    args: TtsArgs,
    queue: VecDeque<Utterance>,
    running: Option<(u64, u32, ActorTask)>,
}

/// The TTS actor.
pub struct TtsActor;

impl TtsState {
    fn start_next(&mut self, myself: &ActorRef<TtsMsg>) {
        if self.running.is_some() {
            return;
        }
        let Some(next) = self.queue.pop_front() else {
            return;
        };
        let (turn, seq) = (next.turn, next.seq);
        let characters = u32::try_from(next.text.chars().count()).unwrap_or(u32::MAX);
        let _ = self.args.report_to.send_message(TtsReport::Synthesizing {
            turn,
            seq,
            characters,
        });
        let work = speak(
            next,
            self.args.tts.clone(),
            self.args.telephony.clone(),
            (self.args.voice.clone(), self.args.language.clone()),
            self.args.report_to.clone(),
            myself.clone(),
        );
        let actor = myself.clone();
        let task = ActorTask::spawn(work, move |panic| {
            let _ = actor.send_message(TtsMsg::TaskPanicked(panic));
        });
        self.running = Some((turn, seq, task));
    }
}

impl Actor for TtsActor {
    type Msg = TtsMsg;
    type State = TtsState;
    type Arguments = TtsArgs;

    async fn pre_start(
        &self,
        _: ActorRef<TtsMsg>,
        args: TtsArgs,
    ) -> Result<TtsState, ActorProcessingErr> {
        Ok(TtsState {
            args,
            queue: VecDeque::new(),
            running: None,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<TtsMsg>,
        msg: TtsMsg,
        state: &mut TtsState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TtsMsg::Speak(utterance) => {
                state.queue.push_back(utterance);
                state.start_next(&myself);
            }
            TtsMsg::Cancel => {
                state.queue.clear();
                state.running = None;
            }
            TtsMsg::Finished { turn, seq } => {
                if state
                    .running
                    .as_ref()
                    .is_some_and(|(t, s, _)| (*t, *s) == (turn, seq))
                {
                    state.running = None;
                    state.start_next(&myself);
                }
            }
            TtsMsg::TaskPanicked(panic) => {
                return Err(format!("speech synthesis panicked: {panic}").into())
            }
        }
        Ok(())
    }
}

/// Synthesizes one sentence, streaming its audio to the caller, then marks it.
async fn speak(
    utterance: Utterance,
    tts: Arc<dyn TextToSpeech>,
    telephony: Arc<dyn Telephony>,
    (voice, language): (String, String),
    report_to: DerivedActorRef<TtsReport>,
    actor: ActorRef<TtsMsg>,
) {
    let (turn, seq) = (utterance.turn, utterance.seq);
    let request = TtsRequest {
        text: utterance.text.clone(),
        voice,
        language,
    };
    let outcome = async {
        let mut audio = tts.synthesize(request).await?;
        let mut first = true;
        while let Some(chunk) = audio.next().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                continue;
            }
            telephony.send_audio(&chunk);
            if first {
                first = false;
                let _ = report_to.send_message(TtsReport::FirstAudio { turn, seq });
            }
        }
        Ok::<(), PortError>(())
    }
    .await;
    match outcome {
        Ok(()) => telephony.mark(&utterance.mark()),
        Err(error) => {
            let _ = report_to.send_message(TtsReport::Failed { turn, seq, error });
        }
    }
    let _ = actor.send_message(TtsMsg::Finished { turn, seq });
}
