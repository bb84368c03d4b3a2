//! `SttActor`: one per call. Hears every 20 ms frame of the caller, finds utterances with
//! the endpointer, feeds their audio (with the speech onset that came before the endpointer
//! was sure) to the speech-to-text session, and tells the call when the caller starts
//! talking over the agent, when they stop (with how much audio went to the provider, for
//! usage), and what they said.
//!
//! The per-frame work is decode, VAD and a hand-over to the session: no allocation and no
//! waiting, so hundreds of calls share a core.

use std::collections::VecDeque;

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use crate::audio::endpoint::{EndpointConfig, EndpointEvent, Endpointer};
use crate::audio::{mulaw, FRAME_MS, FRAME_SAMPLES};
use crate::ports::{MulawFrame, PcmFrame, SttEvent, SttInput, SttSession};
use crate::task::ActorTask;

/// Frames kept from before the endpointer confirms speech, so the transcription hears the
/// whole first word: the minimum speech plus this much lead-in.
const LEAD_IN_FRAMES: usize = 3;
/// Frames of recent audio kept for that purpose (1.28 s covers any sane minimum speech).
const RING_FRAMES: usize = 64;

/// Endpointing and barge-in thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointSettings {
    /// Silence that ends the caller's turn (default 600 ms).
    pub trailing_silence_ms: u32,
    /// Speech an utterance needs to count (default 200 ms).
    pub min_speech_ms: u32,
    /// Speech over the agent that interrupts it (default 500 ms, so a cough or an "mm-hm"
    /// does not).
    pub barge_in_min_ms: u32,
}

impl Default for EndpointSettings {
    fn default() -> Self {
        Self {
            trailing_silence_ms: 600,
            min_speech_ms: 200,
            barge_in_min_ms: 500,
        }
    }
}

/// What the STT actor tells its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttReport {
    /// The caller has been speaking for at least the barge-in minimum.
    CallerSpeaking,
    /// The caller's utterance ended (the trailing silence has passed).
    SpeechEnded {
        /// The silence waited for, which is part of the voice-to-voice latency.
        trailing_ms: u32,
        /// Audio of this utterance sent to speech-to-text, lead-in included: what the
        /// provider bills.
        audio_ms: u32,
    },
    /// A guess at the words so far.
    Partial(String),
    /// The words of the utterance.
    Final(String),
}

/// Messages to the STT actor.
#[derive(Debug)]
pub enum SttMsg {
    /// 20 ms of the caller.
    Audio(MulawFrame),
    /// From the session's task.
    Event(SttEvent),
}

/// What the STT actor is started with.
pub struct SttArgs {
    /// A freshly opened session.
    pub session: SttSession,
    /// Thresholds.
    pub settings: EndpointSettings,
    /// Where reports go: the call.
    pub report_to: DerivedActorRef<SttReport>,
}

/// The STT actor's state.
pub struct SttState {
    feed: Box<dyn crate::ports::SttFeed>,
    endpointer: Endpointer,
    settings: EndpointSettings,
    report_to: DerivedActorRef<SttReport>,
    /// The caller's latest frames, mu-law as heard (half the memory of PCM).
    recent: VecDeque<MulawFrame>,
    /// The current frame decoded, for the endpointer.
    pcm: PcmFrame,
    in_utterance: bool,
    barge_in_reported: bool,
    /// Frames of the current utterance sent to the session, for usage.
    fed_frames: u32,
    /// Forwards the session's events to the mailbox; aborted with the actor.
    _events: ActorTask,
}

/// The STT actor.
pub struct SttActor;

impl Actor for SttActor {
    type Msg = SttMsg;
    type State = SttState;
    type Arguments = SttArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SttMsg>,
        args: SttArgs,
    ) -> Result<SttState, ActorProcessingErr> {
        let SttSession { feed, mut events } = args.session;
        let forward_to = myself.clone();
        let events_task = ActorTask::spawn(
            async move {
                while let Some(event) = events.recv().await {
                    if forward_to.send_message(SttMsg::Event(event)).is_err() {
                        break;
                    }
                }
            },
            move |panic| {
                let _ = myself.send_message(SttMsg::Event(SttEvent::Failed(
                    crate::ports::PortError::Unavailable(panic),
                )));
            },
        );
        let config = EndpointConfig {
            trailing_silence_ms: args.settings.trailing_silence_ms,
            min_speech_ms: args.settings.min_speech_ms,
            ..EndpointConfig::default()
        };
        Ok(SttState {
            feed,
            endpointer: Endpointer::new(config),
            settings: args.settings,
            report_to: args.report_to,
            recent: VecDeque::with_capacity(RING_FRAMES),
            pcm: [0; FRAME_SAMPLES],
            in_utterance: false,
            barge_in_reported: false,
            fed_frames: 0,
            _events: events_task,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<SttMsg>,
        msg: SttMsg,
        state: &mut SttState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SttMsg::Audio(frame) => state.hear(&frame)?,
            SttMsg::Event(SttEvent::Partial(text)) => state.report(SttReport::Partial(text)),
            SttMsg::Event(SttEvent::Final(text)) => state.report(SttReport::Final(text)),
            SttMsg::Event(SttEvent::Failed(error)) => return Err(Box::new(error)),
        }
        Ok(())
    }
}

impl SttState {
    fn report(&self, report: SttReport) {
        let _ = self.report_to.send_message(report);
    }

    /// One frame of the caller: endpoint it, feed the session, report barge-in and ends.
    fn hear(&mut self, frame: &MulawFrame) -> Result<(), ActorProcessingErr> {
        mulaw::decode_into(frame, &mut self.pcm);
        if self.recent.len() == RING_FRAMES {
            self.recent.pop_front();
        }
        self.recent.push_back(*frame);
        match self.endpointer.push(&self.pcm) {
            Some(EndpointEvent::SpeechStarted { at_ms }) => {
                self.in_utterance = true;
                let heard_frames = self
                    .endpointer
                    .vad()
                    .frames()
                    .saturating_sub(at_ms / FRAME_MS) as usize;
                let back = (heard_frames + LEAD_IN_FRAMES).min(self.recent.len());
                for earlier in self.recent.iter().skip(self.recent.len() - back) {
                    self.feed.push(SttInput::Audio(*earlier))?;
                }
                self.fed_frames = back as u32;
            }
            Some(EndpointEvent::UtteranceEnded { .. }) => {
                self.in_utterance = false;
                self.feed.push(SttInput::UtteranceEnded)?;
                let fed = std::mem::take(&mut self.fed_frames);
                self.report(SttReport::SpeechEnded {
                    trailing_ms: self.settings.trailing_silence_ms,
                    audio_ms: fed.saturating_mul(FRAME_MS as u32),
                });
            }
            None if self.in_utterance => {
                self.feed.push(SttInput::Audio(*frame))?;
                self.fed_frames = self.fed_frames.saturating_add(1);
            }
            None => {}
        }
        if self.endpointer.speech_ms() == 0 {
            self.barge_in_reported = false;
        } else if !self.barge_in_reported
            && self
                .endpointer
                .has_speech_for(u64::from(self.settings.barge_in_min_ms))
        {
            self.barge_in_reported = true;
            self.report(SttReport::CallerSpeaking);
        }
        Ok(())
    }
}
