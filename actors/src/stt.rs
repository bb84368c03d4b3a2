//! `SttActor`: one per call. Its hearing takes every 20 ms frame of the caller, finds
//! utterances with the endpointer, feeds their audio (with the speech onset that came before
//! the endpointer was sure) to the speech-to-text session, and tells the call when the caller
//! starts talking over the agent and when they stop (with how much audio went to the
//! provider, for usage); the actor tells it what they said.
//!
//! The per-frame work is decode, VAD and a hand-over to the session: no allocation and no
//! waiting, so hundreds of calls share a core. It runs in the task that read the frame,
//! through the call's [`AudioInlet`], not in the actor's mailbox: a message and a task wake-up
//! for each of 50 frames a second was a tenth of the server's work under load. A frame that
//! the hearing fails on (the session refused it, or its adapter panicked) fails the actor, so
//! the call's restart policy applies as before.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};

use crate::audio::endpoint::{EndpointConfig, EndpointEvent, Endpointer};
use crate::audio::{mulaw, FRAME_MS, FRAME_SAMPLES};
use crate::ports::{MulawFrame, PcmFrame, PortError, PortResult, SttEvent, SttInput, SttSession};
use crate::task::{panic_message, ActorTask};

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
    /// From the session's task, or a frame the hearing failed on.
    Event(SttEvent),
}

/// Where the caller's audio goes: straight into the hearing of the call's current STT actor,
/// in the caller's task. Each STT actor the call (re)starts installs its hearing here; a
/// frame the hearing fails on takes it out and fails its actor, and the call closes the
/// inlet when it ends, so frames sent meanwhile are dropped, as a dead line would drop them.
#[derive(Clone, Default)]
pub struct AudioInlet(Arc<Mutex<Option<Ear>>>);

/// An STT actor's hearing, with the actor to fail when it cannot go on.
struct Ear {
    hearing: Hearing,
    actor: ActorRef<SttMsg>,
}

impl std::fmt::Debug for AudioInlet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioInlet")
            .field("hearing", &self.lock().is_some())
            .finish()
    }
}

impl AudioInlet {
    /// Hears 20 ms of the caller; no wait, no allocation.
    pub fn push(&self, frame: MulawFrame) {
        let mut slot = self.lock();
        let Some(ear) = slot.as_mut() else {
            return;
        };
        let error = match std::panic::catch_unwind(AssertUnwindSafe(|| ear.hearing.hear(&frame))) {
            Ok(Ok(())) => return,
            Ok(Err(error)) => error,
            Err(panic) => PortError::Unavailable(panic_message(panic.as_ref())),
        };
        if let Some(ear) = slot.take() {
            drop(slot);
            let _ = ear
                .actor
                .send_message(SttMsg::Event(SttEvent::Failed(error)));
        }
    }

    /// Drops the hearing: the call has ended, and frames from now on go nowhere.
    pub fn close(&self) {
        *self.lock() = None;
    }

    fn install(&self, ear: Ear) {
        *self.lock() = Some(ear);
    }

    fn lock(&self) -> MutexGuard<'_, Option<Ear>> {
        // A panic while hearing is caught inside the lock and the hearing taken out, so a
        // poisoned lock holds nothing torn.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the STT actor is started with.
pub struct SttArgs {
    /// A freshly opened session.
    pub session: SttSession,
    /// Thresholds.
    pub settings: EndpointSettings,
    /// Where reports go: the call.
    pub report_to: DerivedActorRef<SttReport>,
    /// Where the call's audio arrives; the actor installs its hearing there.
    pub inlet: AudioInlet,
}

/// The STT actor's state: the task forwarding the session's transcripts. The hearing lives
/// in the inlet.
pub struct SttState {
    report_to: DerivedActorRef<SttReport>,
    /// Forwards the session's events to the mailbox; aborted with the actor.
    _events: ActorTask,
}

/// The per-frame side of speech recognition: the endpointer and the session's feed.
struct Hearing {
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
        let on_panic = myself.clone();
        let events_task = ActorTask::spawn(
            async move {
                while let Some(event) = events.recv().await {
                    if forward_to.send_message(SttMsg::Event(event)).is_err() {
                        break;
                    }
                }
            },
            move |panic| {
                let failed = SttEvent::Failed(PortError::Unavailable(panic));
                let _ = on_panic.send_message(SttMsg::Event(failed));
            },
        );
        let config = EndpointConfig {
            trailing_silence_ms: args.settings.trailing_silence_ms,
            min_speech_ms: args.settings.min_speech_ms,
            ..EndpointConfig::default()
        };
        args.inlet.install(Ear {
            hearing: Hearing {
                feed,
                endpointer: Endpointer::new(config),
                settings: args.settings,
                report_to: args.report_to.clone(),
                recent: VecDeque::with_capacity(RING_FRAMES),
                pcm: [0; FRAME_SAMPLES],
                in_utterance: false,
                barge_in_reported: false,
                fed_frames: 0,
            },
            actor: myself,
        });
        Ok(SttState {
            report_to: args.report_to,
            _events: events_task,
        })
    }

    async fn handle(
        &self,
        _: ActorRef<SttMsg>,
        msg: SttMsg,
        state: &mut SttState,
    ) -> Result<(), ActorProcessingErr> {
        let SttMsg::Event(event) = msg;
        let report = match event {
            SttEvent::Partial(text) => SttReport::Partial(text),
            SttEvent::Final(text) => SttReport::Final(text),
            SttEvent::Failed(error) => return Err(Box::new(error)),
        };
        let _ = state.report_to.send_message(report);
        Ok(())
    }
}

impl Hearing {
    fn report(&self, report: SttReport) {
        let _ = self.report_to.send_message(report);
    }

    /// One frame of the caller: endpoint it, feed the session, report barge-in and ends.
    fn hear(&mut self, frame: &MulawFrame) -> PortResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::SttFeed;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// Real speech (espeak-ng): the endpointer starts an utterance within it.
    const SPEECH: &[u8] = include_bytes!("../tests/fixtures/sentence.ulaw");

    /// A session whose backlog is always full, counting what it was offered.
    struct Refusing(Arc<AtomicUsize>);

    impl SttFeed for Refusing {
        fn push(&mut self, _: SttInput) -> PortResult<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(PortError::Unavailable(
                "speech-to-text (backlog full)".into(),
            ))
        }
    }

    /// Stands in for the call: takes the reports.
    struct Call;

    impl Actor for Call {
        type Msg = SttReport;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<SttReport>,
            (): (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_frame_the_session_refuses_fails_the_actor_and_later_frames_go_nowhere() {
        let (call, _) = Call::spawn(None, Call, ()).await.unwrap();
        let offered = Arc::new(AtomicUsize::new(0));
        let (_events_tx, events) = mpsc::channel(1);
        let inlet = AudioInlet::default();
        let args = SttArgs {
            session: SttSession {
                feed: Box::new(Refusing(offered.clone())),
                events,
            },
            settings: EndpointSettings::default(),
            report_to: call.get_derived(),
            inlet: inlet.clone(),
        };
        let (_stt, stopped) = SttActor::spawn(None, SttActor, args).await.unwrap();
        for frame in SPEECH.chunks_exact(FRAME_SAMPLES) {
            inlet.push(frame.try_into().unwrap());
        }
        assert_eq!(
            offered.load(Ordering::SeqCst),
            1,
            "the first refused frame ends the hearing"
        );
        tokio::time::timeout(Duration::from_secs(2), stopped)
            .await
            .expect("the STT actor failed, so its supervisor can restart it")
            .unwrap();
        for frame in SPEECH.chunks_exact(FRAME_SAMPLES) {
            inlet.push(frame.try_into().unwrap());
        }
        assert_eq!(
            offered.load(Ordering::SeqCst),
            1,
            "nothing hears a failed actor's frames"
        );
        call.stop(None);
    }
}
