//! Endpointing: turns the VAD's speech runs into caller utterances, the unit the
//! conversation works in (one utterance, one transcription, one reply).
//!
//! An utterance starts with speech and ends after a stretch of trailing silence long enough
//! to mean "your turn" (default 600 ms; PROTOCOLS.md §7.3 notes telephony uses 0.5–0.8 s).
//! Pauses shorter than that stay inside the utterance. Speech that adds up to less than a
//! minimum (default 200 ms) is a cough, a click or a "hm" and is dropped silently.
//!
//! Time is counted in frames (20 ms each) from the first frame pushed, never read from a
//! clock, so the same audio always gives the same events and tests need no timers.

use super::vad::{Vad, VadConfig, VadEvent};
use super::FRAME_MS;

/// Tuning of the endpointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Silence after the last speech that ends the utterance. Longer waits less often cut a
    /// caller who is thinking; shorter answers sooner. Rounded up to whole frames.
    pub trailing_silence_ms: u32,
    /// Speech an utterance needs in all before it counts (and before `SpeechStarted` is
    /// emitted). Rounded up to whole frames.
    pub min_speech_ms: u32,
    /// Hysteresis of the underlying VAD.
    pub vad: VadConfig,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            trailing_silence_ms: 600,
            min_speech_ms: 200,
            vad: VadConfig::default(),
        }
    }
}

/// What the endpointer saw, in milliseconds from the first frame pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// The caller has spoken for at least the minimum: an utterance is under way. Emitted
    /// `min_speech_ms` or a little more after `at_ms`, which is when the speech began.
    SpeechStarted {
        /// When the speech began.
        at_ms: u64,
    },
    /// The utterance is over: the trailing silence has passed. Follows exactly one
    /// `SpeechStarted`.
    UtteranceEnded {
        /// When the speech began (the `at_ms` of its `SpeechStarted`).
        started_at_ms: u64,
        /// When the last speech ended; the event itself comes `trailing_silence_ms` later.
        ended_at_ms: u64,
        /// Time the VAD judged to be speech; pauses longer than its stop time are left out,
        /// so this is at most `ended_at_ms - started_at_ms`.
        speech_ms: u64,
    },
}

/// An utterance being heard; not yet long enough to count while `announced` is false.
#[derive(Debug, Clone, Copy)]
struct Utterance {
    /// First frame of its speech.
    start_frame: u64,
    /// One past the last frame of its most recent finished speech run.
    last_end_frame: u64,
    /// Frames of its finished speech runs.
    closed_speech_frames: u64,
    /// Whether `SpeechStarted` has been emitted for it.
    announced: bool,
}

/// Finds utterances in one audio stream (the caller's leg of a call). Push every 20 ms frame
/// in order; at most one event comes out per frame, and nothing is allocated.
#[derive(Debug, Clone)]
pub struct Endpointer {
    /// Tuning, converted to frames once.
    trailing_frames: u64,
    /// Tuning, converted to frames once.
    min_speech_frames: u64,
    /// The detector underneath.
    vad: Vad,
    /// The utterance in progress, if any.
    current: Option<Utterance>,
}

impl Default for Endpointer {
    fn default() -> Self {
        Self::new(EndpointConfig::default())
    }
}

/// Milliseconds to whole frames, rounding up (so 10 ms still means one frame).
fn ms_to_frames(ms: u32) -> u64 {
    u64::from(ms).div_ceil(FRAME_MS)
}

impl Endpointer {
    /// An endpointer with a fresh VAD.
    pub fn new(config: EndpointConfig) -> Self {
        Self {
            trailing_frames: ms_to_frames(config.trailing_silence_ms).max(1),
            min_speech_frames: ms_to_frames(config.min_speech_ms),
            vad: Vad::new(config.vad),
            current: None,
        }
    }

    /// Feeds one frame (meant to be [`super::FRAME_SAMPLES`] samples) and returns the event it
    /// caused, if any.
    pub fn push(&mut self, frame: &[i16]) -> Option<EndpointEvent> {
        match self.vad.push(frame) {
            VadEvent::None => {}
            VadEvent::SpeechStarted { onset_frame } => {
                if self.current.is_none() {
                    self.current = Some(Utterance {
                        start_frame: onset_frame,
                        last_end_frame: onset_frame,
                        closed_speech_frames: 0,
                        announced: false,
                    });
                }
            }
            VadEvent::SpeechStopped {
                onset_frame,
                end_frame,
            } => {
                if let Some(u) = self.current.as_mut() {
                    u.closed_speech_frames += end_frame.saturating_sub(onset_frame);
                    u.last_end_frame = end_frame;
                }
            }
        }

        let speech_frames = self.speech_frames();
        let now = self.vad.frames();
        let in_speech = self.vad.in_speech();
        let u = self.current.as_mut()?;
        if !u.announced && speech_frames >= self.min_speech_frames && speech_frames > 0 {
            u.announced = true;
            return Some(EndpointEvent::SpeechStarted {
                at_ms: u.start_frame * FRAME_MS,
            });
        }
        if !in_speech && now.saturating_sub(u.last_end_frame) >= self.trailing_frames {
            return self.close();
        }
        None
    }

    /// Ends the stream (hang-up, stream stop): closes an utterance in progress at once if it
    /// counts, so the caller's last words are not lost for want of trailing silence. Speech
    /// still going ends where the audio ends. Meant to be the last call; frames pushed after
    /// it are taken as new audio, and the rest of a speech run already reported is ignored.
    pub fn finish(&mut self) -> Option<EndpointEvent> {
        if let Some(u) = self.current.as_mut() {
            if let Some(run) = self.vad.speech_span() {
                u.closed_speech_frames += run.end - run.start;
                u.last_end_frame = run.end;
            }
        }
        self.close()
    }

    /// Speech heard so far in the utterance in progress, in milliseconds (0 between
    /// utterances), counting speech not yet confirmed as an utterance.
    pub fn speech_ms(&self) -> u64 {
        self.speech_frames() * FRAME_MS
    }

    /// Whether the caller has spoken for at least `ms` in the current utterance: the barge-in
    /// test while the agent talks, where a higher bar than `min_speech_ms` keeps echo and
    /// back-channel "mm-hm"s from interrupting.
    pub fn has_speech_for(&self, ms: u64) -> bool {
        self.current.is_some() && self.speech_ms() >= ms
    }

    /// Whether an utterance has been announced with `SpeechStarted` and not yet ended.
    pub fn in_utterance(&self) -> bool {
        self.current.is_some_and(|u| u.announced)
    }

    /// The detector underneath, for its state and levels.
    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    /// Frames of speech in the current utterance: finished runs plus the run in progress.
    fn speech_frames(&self) -> u64 {
        let running = self.vad.speech_span().map_or(0, |run| run.end - run.start);
        self.current.map_or(0, |u| u.closed_speech_frames + running)
    }

    /// Ends the utterance in progress; reports it if it had been announced.
    fn close(&mut self) -> Option<EndpointEvent> {
        let u = self.current.take()?;
        u.announced.then(|| EndpointEvent::UtteranceEnded {
            started_at_ms: u.start_frame * FRAME_MS,
            ended_at_ms: u.last_end_frame * FRAME_MS,
            speech_ms: u.closed_speech_frames * FRAME_MS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::FRAME_SAMPLES;

    /// A loud 20 ms frame (a -20 dBFS square-ish buzz) or digital silence.
    fn frame(loud: bool) -> [i16; FRAME_SAMPLES] {
        let mut f = [0i16; FRAME_SAMPLES];
        if loud {
            for (i, s) in f.iter_mut().enumerate() {
                *s = if i % 8 < 4 { 3277 } else { -3277 };
            }
        }
        f
    }

    /// Runs a script of (loud, milliseconds) pieces through a default endpointer, then
    /// finishes it, and returns every event with the frame number it came out at.
    fn run(script: &[(bool, u64)]) -> Vec<(u64, EndpointEvent)> {
        let mut ep = Endpointer::default();
        let mut events = Vec::new();
        let mut k = 0;
        for &(loud, ms) in script {
            for _ in 0..ms / FRAME_MS {
                if let Some(e) = ep.push(&frame(loud)) {
                    events.push((k, e));
                }
                k += 1;
            }
        }
        if let Some(e) = ep.finish() {
            events.push((k, e));
        }
        events
    }

    #[test]
    fn one_second_of_speech_is_one_utterance_with_its_true_span() {
        let events = run(&[(false, 500), (true, 1000), (false, 1000)]);
        assert_eq!(
            events,
            vec![
                // 200 ms of speech confirmed at frame 25 + 10 - 1.
                (34, EndpointEvent::SpeechStarted { at_ms: 500 }),
                // 600 ms of silence after frame 75 ends it at frame 75 + 30 - 1.
                (
                    104,
                    EndpointEvent::UtteranceEnded {
                        started_at_ms: 500,
                        ended_at_ms: 1500,
                        speech_ms: 1000
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_hundred_ms_burst_is_not_an_utterance() {
        assert_eq!(run(&[(false, 500), (true, 100), (false, 2000)]), vec![]);
    }

    #[test]
    fn a_pause_shorter_than_the_trailing_silence_stays_inside_the_utterance() {
        let events = run(&[
            (false, 200),
            (true, 600),
            (false, 400),
            (true, 600),
            (false, 1000),
        ]);
        assert_eq!(events.len(), 2, "{events:?}");
        assert_eq!(
            events[1].1,
            EndpointEvent::UtteranceEnded {
                started_at_ms: 200,
                ended_at_ms: 1800,
                speech_ms: 1200
            }
        );
    }

    #[test]
    fn a_pause_longer_than_the_trailing_silence_splits_two_utterances() {
        let events = run(&[
            (false, 200),
            (true, 600),
            (false, 800),
            (true, 600),
            (false, 1000),
        ]);
        let ends: Vec<_> = events
            .iter()
            .filter(|(_, e)| matches!(e, EndpointEvent::UtteranceEnded { .. }))
            .collect();
        assert_eq!(ends.len(), 2, "{events:?}");
    }

    #[test]
    fn speech_cut_off_by_the_end_of_the_stream_is_still_reported() {
        let events = run(&[(false, 200), (true, 600)]);
        assert_eq!(
            events.last().map(|(_, e)| *e),
            Some(EndpointEvent::UtteranceEnded {
                started_at_ms: 200,
                ended_at_ms: 800,
                speech_ms: 600
            })
        );
    }

    #[test]
    fn barge_in_can_ask_how_long_the_caller_has_spoken() {
        let mut ep = Endpointer::default();
        assert!(!ep.has_speech_for(0));
        for _ in 0..10 {
            ep.push(&frame(false));
        }
        for _ in 0..14 {
            ep.push(&frame(true));
        }
        assert_eq!(ep.speech_ms(), 280);
        assert!(ep.has_speech_for(250));
        assert!(!ep.has_speech_for(300));
        assert!(ep.in_utterance());
    }

    #[test]
    fn short_settings_round_up_to_whole_frames() {
        let mut ep = Endpointer::new(EndpointConfig {
            trailing_silence_ms: 0,
            min_speech_ms: 1,
            vad: VadConfig {
                start_frames: 1,
                stop_frames: 1,
            },
        });
        assert_eq!(
            ep.push(&frame(true)),
            Some(EndpointEvent::SpeechStarted { at_ms: 0 })
        );
        assert_eq!(
            ep.push(&frame(false)),
            Some(EndpointEvent::UtteranceEnded {
                started_at_ms: 0,
                ended_at_ms: 20,
                speech_ms: 20
            })
        );
    }
}
