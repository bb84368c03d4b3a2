//! Voice activity detection for one direction of a call: is the caller talking in this 20 ms
//! frame?
//!
//! An energy detector, not a model: it runs in well under a microsecond per frame, needs no
//! weights and is deterministic, which is what the per-frame audio path needs. It decides in
//! three steps:
//!
//! 1. **Level.** The frame's power in dBFS after removing its mean (DC offset from cheap
//!    line cards would otherwise read as loudness).
//! 2. **Threshold.** A frame is *loud* when its level is above both an absolute gate and an
//!    adaptive noise floor plus a margin, so hiss and hum on a bad line do not count as speech
//!    while a quiet talker on a clean line still does. Once in speech the threshold drops a
//!    little, so the quieter ends of words stay in.
//! 3. **Hysteresis.** Speech starts only after a run of loud frames and stops only after a run
//!    of quiet ones (states Quiet → Starting → Speaking → Stopping, as in pipecat's
//!    `VADAnalyzer`), so a click does not start speech and the gap before a plosive does not
//!    end it.
//!
//! Turning speech runs into utterances (trailing silence, minimum length) is the job of
//! [`super::endpoint`].

use std::ops::Range;

/// Level reported for a frame with no energy at all (digital silence), instead of −∞.
pub const MIN_DBFS: f32 = -96.0;

/// Absolute gate: a frame quieter than this is never speech, however clean the line. Speech
/// at telephone level sits around −25 dBFS and weak consonants reach about −45; pipecat's
/// onset detector gates at −40 dBFS. −45 keeps soft talkers while rejecting the residual
/// noise of a digital line.
pub const GATE_DBFS: f32 = -45.0;

/// How far above the noise floor a frame must be to count as speech. PROTOCOLS.md §7.3
/// suggests 10–15 dB; the frame-to-frame spread of stationary line noise is about ±3 dB, so
/// 12 dB leaves a wide safety margin while still catching voiced speech on a noisy line.
pub const MARGIN_DB: f32 = 12.0;

/// How much lower the threshold is once speech has started. Word endings and weak
/// consonants are quieter than the onsets that start speech; on a noisy line they fall
/// between the noise and the start threshold. 4 dB keeps them in speech (more accurate ends,
/// fewer utterances split by the endpointer) and still leaves stationary noise, whose peaks
/// sit about 4 dB over the floor, 4 dB below the lowered threshold.
pub const HOLD_DB: f32 = 4.0;

/// Lowest value the noise floor may take. Below `GATE_DBFS - MARGIN_DB` the floor no longer
/// moves the threshold, and a floor sitting far lower would need many seconds to climb back
/// after one frame of digital silence (a dropout) on a noisy line.
pub const FLOOR_MIN_DBFS: f32 = GATE_DBFS - MARGIN_DB - 3.0;

/// Highest level the first frame may set the floor to. The first frame is taken as noise so
/// that a line noisy from the start is not heard as speech while the floor climbs; the cap
/// keeps a stream that opens mid-word (a caller saying "hello?" as it connects) from setting
/// the floor at speech level. −40 dBFS is already a very noisy phone line.
pub const FLOOR_INITIAL_MAX_DBFS: f32 = -40.0;

/// How fast the floor rises towards a louder frame: 0.1 dB per frame, 5 dB a second. Slow, so
/// a few seconds of continuous speech do not become "noise"; yet a line that gets noisier by
/// 15 dB is absorbed in about 3 s.
pub const FLOOR_RISE_DB_PER_FRAME: f32 = 0.1;

/// Fraction of the distance to a quieter frame the floor moves each frame: time constant of
/// about 100 ms, so the floor finds the quiet between words quickly, yet one dropout frame
/// does not drag it all the way down.
pub const FLOOR_FALL: f32 = 0.2;

/// Tunable timing of the hysteresis, in 20 ms frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VadConfig {
    /// Loud frames in a row before speech starts. 3 (60 ms) rejects clicks and line pops but
    /// costs little latency; pipecat's onset detector asks for 50 ms.
    pub start_frames: u32,
    /// Quiet frames in a row before speech stops. 10 (200 ms, pipecat's `stop_secs`) bridges
    /// stop closures and short gaps between words; end of turn waits longer, in the endpointer.
    pub stop_frames: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            start_frames: 3,
            stop_frames: 10,
        }
    }
}

/// Where the hysteresis stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadState {
    /// No speech.
    Quiet,
    /// Some loud frames, not yet enough to call it speech.
    Starting,
    /// Speech, and the last frame was loud.
    Speaking,
    /// Speech, but the last frames were quiet; not yet enough of them to stop.
    Stopping,
}

/// What one frame changed. Frame numbers count the frames pushed since the detector was
/// made, from 0, so time is `frame × 20 ms` with no clock involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// No change of speech/no speech.
    None,
    /// Speech confirmed. It began at `onset_frame`, the first loud frame of the run that
    /// confirmed it, which is `start_frames - 1` frames before the current one.
    SpeechStarted {
        /// First loud frame of the speech.
        onset_frame: u64,
    },
    /// Speech ended, `stop_frames` of quiet after its last loud frame.
    SpeechStopped {
        /// First loud frame of the speech.
        onset_frame: u64,
        /// One past the last loud frame, so the speech covered `onset_frame..end_frame`.
        end_frame: u64,
    },
}

/// The measurements behind the last decision, for logs, metrics and tuning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadLevels {
    /// Power of the last frame in dBFS (a full-scale sine is −3), [`MIN_DBFS`] if silent.
    pub energy_dbfs: f32,
    /// The noise floor after the last frame.
    pub floor_dbfs: f32,
    /// The threshold the last frame was compared with (lower by [`HOLD_DB`] in speech).
    pub threshold_dbfs: f32,
}

/// An energy voice activity detector for one audio stream. Push every 20 ms frame in order;
/// it holds a few numbers of state and never allocates.
#[derive(Debug, Clone)]
pub struct Vad {
    /// Timing of the hysteresis.
    config: VadConfig,
    /// Where the hysteresis stands.
    state: VadState,
    /// Frames pushed so far; the number of the next frame.
    frames: u64,
    /// Length of the current run of loud (in `Starting`) or quiet (in `Stopping`) frames.
    run: u32,
    /// First loud frame of the current speech, or of the run in `Starting`.
    onset: u64,
    /// One past the last loud frame of the current speech.
    last_loud_end: u64,
    /// Noise floor in dBFS; `None` until the first frame sets it (see
    /// [`FLOOR_INITIAL_MAX_DBFS`]).
    floor: Option<f32>,
    /// Measurements of the last frame.
    levels: VadLevels,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new(VadConfig::default())
    }
}

impl Vad {
    /// A detector in the `Quiet` state, with no noise floor yet.
    pub fn new(config: VadConfig) -> Self {
        Self {
            config,
            state: VadState::Quiet,
            frames: 0,
            run: 0,
            onset: 0,
            last_loud_end: 0,
            floor: None,
            levels: VadLevels {
                energy_dbfs: MIN_DBFS,
                floor_dbfs: MIN_DBFS,
                threshold_dbfs: GATE_DBFS,
            },
        }
    }

    /// Feeds one frame (meant to be [`super::FRAME_SAMPLES`] samples; any length is measured
    /// as it is and still counts as one frame) and says what changed.
    pub fn push(&mut self, frame: &[i16]) -> VadEvent {
        let index = self.frames;
        self.frames += 1;

        let energy = frame_dbfs(frame);
        let floor = self.update_floor(energy);
        let mut threshold = (floor + MARGIN_DB).max(GATE_DBFS);
        if self.in_speech() {
            threshold -= HOLD_DB;
        }
        self.levels = VadLevels {
            energy_dbfs: energy,
            floor_dbfs: floor,
            threshold_dbfs: threshold,
        };
        let loud = energy > threshold;
        // A config of 0 frames means "at once"; treat it as 1 so the runs below make sense.
        let start_frames = self.config.start_frames.max(1);
        let stop_frames = self.config.stop_frames.max(1);

        match (self.state, loud) {
            (VadState::Quiet, false) => VadEvent::None,
            (VadState::Quiet, true) => {
                self.onset = index;
                self.run = 0;
                self.state = VadState::Starting;
                self.count_loud(index, start_frames)
            }
            (VadState::Starting, true) => self.count_loud(index, start_frames),
            (VadState::Starting, false) => {
                self.state = VadState::Quiet;
                VadEvent::None
            }
            (VadState::Speaking | VadState::Stopping, true) => {
                self.state = VadState::Speaking;
                self.last_loud_end = index + 1;
                VadEvent::None
            }
            (VadState::Speaking, false) => {
                self.state = VadState::Stopping;
                self.run = 0;
                self.count_quiet(stop_frames)
            }
            (VadState::Stopping, false) => self.count_quiet(stop_frames),
        }
    }

    /// Where the hysteresis stands.
    pub fn state(&self) -> VadState {
        self.state
    }

    /// True while in speech (`Speaking` or `Stopping`), i.e. between `SpeechStarted` and
    /// `SpeechStopped`.
    pub fn in_speech(&self) -> bool {
        matches!(self.state, VadState::Speaking | VadState::Stopping)
    }

    /// Frames pushed so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The speech in progress as frame numbers, from its onset to one past its last loud
    /// frame; `None` when not in speech. Lets the endpointer count speech that has not
    /// stopped yet.
    pub fn speech_span(&self) -> Option<Range<u64>> {
        self.in_speech().then_some(self.onset..self.last_loud_end)
    }

    /// The measurements behind the last decision.
    pub fn levels(&self) -> VadLevels {
        self.levels
    }

    /// One more loud frame while `Starting`; confirms speech once the run is long enough.
    fn count_loud(&mut self, index: u64, start_frames: u32) -> VadEvent {
        self.run += 1;
        if self.run < start_frames {
            return VadEvent::None;
        }
        self.state = VadState::Speaking;
        self.last_loud_end = index + 1;
        VadEvent::SpeechStarted {
            onset_frame: self.onset,
        }
    }

    /// One more quiet frame while `Stopping`; ends speech once the run is long enough.
    fn count_quiet(&mut self, stop_frames: u32) -> VadEvent {
        self.run += 1;
        if self.run < stop_frames {
            return VadEvent::None;
        }
        self.state = VadState::Quiet;
        VadEvent::SpeechStopped {
            onset_frame: self.onset,
            end_frame: self.last_loud_end,
        }
    }

    /// Moves the noise floor towards this frame's level (slowly up, quickly down) and returns
    /// it. The floor follows every frame, speech included: speech is far above it and rarely
    /// holds for long without a dip, while noise is steady and is absorbed.
    fn update_floor(&mut self, energy: f32) -> f32 {
        let energy = energy.max(FLOOR_MIN_DBFS);
        let floor = match self.floor {
            None => energy.min(FLOOR_INITIAL_MAX_DBFS),
            Some(floor) if energy < floor => floor + (energy - floor) * FLOOR_FALL,
            Some(floor) => floor + (energy - floor).min(FLOOR_RISE_DB_PER_FRAME),
        };
        self.floor = Some(floor);
        floor
    }
}

/// Power of a frame in dBFS after removing its mean: `10·log10(variance / 32768²)`, so a
/// full-scale square wave is 0 dBFS and a full-scale sine −3. [`MIN_DBFS`] for an empty or
/// constant frame.
pub fn frame_dbfs(frame: &[i16]) -> f32 {
    // Integer sums are exact and vectorise; chunking keeps the i64 sums far from overflow for
    // any slice length (a chunk's sum of squares is at most 2^12 · 2^30).
    let (mut sum, mut sum_sq) = (0i128, 0i128);
    for chunk in frame.chunks(4096) {
        let (mut s, mut q) = (0i64, 0i64);
        for &x in chunk {
            let x = i64::from(x);
            s += x;
            q += x * x;
        }
        sum += i128::from(s);
        sum_sq += i128::from(q);
    }
    let n = frame.len() as i128;
    // n² · variance = n · Σx² − (Σx)², which is never negative and exact in integers.
    let scaled = n * sum_sq - sum * sum;
    if n == 0 || scaled <= 0 {
        return MIN_DBFS;
    }
    let variance = scaled as f64 / (n * n) as f64;
    let dbfs = 10.0 * (variance / (32768.0 * 32768.0)).log10();
    (dbfs as f32).max(MIN_DBFS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::FRAME_SAMPLES;

    /// A 20 ms sine frame at `dbfs` (RMS), continuing the phase of frame number `k`.
    fn tone(dbfs: f32, k: u64) -> [i16; FRAME_SAMPLES] {
        let amp = 32768.0 * 2f32.sqrt() * 10f32.powf(dbfs / 20.0);
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            let t = (k as f32 * FRAME_SAMPLES as f32 + i as f32) / 8000.0;
            *s = (amp * (2.0 * std::f32::consts::PI * 440.0 * t).sin()) as i16;
        }
        f
    }

    #[test]
    fn levels_are_measured_in_dbfs_without_dc() {
        assert_eq!(frame_dbfs(&[]), MIN_DBFS);
        assert_eq!(frame_dbfs(&[0; FRAME_SAMPLES]), MIN_DBFS);
        assert_eq!(frame_dbfs(&[12345; FRAME_SAMPLES]), MIN_DBFS);
        let square: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(frame_dbfs(&square).abs() < 0.01);
        assert!((frame_dbfs(&tone(-20.0, 0)) + 20.0).abs() < 0.2);
        let with_dc: Vec<i16> = tone(-20.0, 0).iter().map(|s| s + 3000).collect();
        assert!((frame_dbfs(&with_dc) + 20.0).abs() < 0.2);
    }

    #[test]
    fn speech_needs_sixty_ms_of_loud_frames_to_start() {
        let mut vad = Vad::default();
        assert_eq!(vad.push(&[0; FRAME_SAMPLES]), VadEvent::None);
        assert_eq!(vad.push(&tone(-20.0, 1)), VadEvent::None);
        assert_eq!(vad.state(), VadState::Starting);
        assert_eq!(vad.push(&tone(-20.0, 2)), VadEvent::None);
        assert_eq!(
            vad.push(&tone(-20.0, 3)),
            VadEvent::SpeechStarted { onset_frame: 1 }
        );
        assert!(vad.in_speech());
        assert_eq!(vad.speech_span(), Some(1..4));
    }

    #[test]
    fn a_forty_ms_click_does_not_start_speech() {
        let mut vad = Vad::default();
        let mut events = Vec::new();
        for k in 0..20 {
            let frame = if k == 5 || k == 6 {
                tone(-10.0, k)
            } else {
                [0; FRAME_SAMPLES]
            };
            events.push(vad.push(&frame));
        }
        assert!(events.iter().all(|e| *e == VadEvent::None));
        assert_eq!(vad.state(), VadState::Quiet);
    }

    #[test]
    fn speech_stops_after_two_hundred_ms_of_quiet_and_reports_its_true_span() {
        let mut vad = Vad::default();
        let mut stopped = None;
        for k in 0..40 {
            let frame = if (5..15).contains(&k) {
                tone(-20.0, k)
            } else {
                [0; FRAME_SAMPLES]
            };
            if let VadEvent::SpeechStopped {
                onset_frame,
                end_frame,
            } = vad.push(&frame)
            {
                stopped = Some((k, onset_frame, end_frame));
            }
        }
        // Quiet from frame 15; the tenth quiet frame is 24.
        assert_eq!(stopped, Some((24, 5, 15)));
    }

    #[test]
    fn a_short_gap_inside_speech_does_not_stop_it() {
        let mut vad = Vad::default();
        for k in 0..60 {
            let frame = if (5..20).contains(&k) || (25..40).contains(&k) {
                tone(-20.0, k)
            } else {
                [0; FRAME_SAMPLES]
            };
            let event = vad.push(&frame);
            if k < 49 {
                assert!(!matches!(event, VadEvent::SpeechStopped { .. }), "{k}");
            } else if k == 49 {
                assert_eq!(
                    event,
                    VadEvent::SpeechStopped {
                        onset_frame: 5,
                        end_frame: 40
                    }
                );
            }
        }
    }

    #[test]
    fn steady_noise_above_the_gate_is_not_speech() {
        // A -35 dBFS hum from the first frame: above the gate, but it sets the floor.
        let mut vad = Vad::default();
        for k in 0..200 {
            assert_eq!(vad.push(&tone(-35.0, k)), VadEvent::None, "frame {k}");
        }
        let levels = vad.levels();
        assert!(levels.threshold_dbfs > -25.0, "{levels:?}");
    }

    #[test]
    fn speech_is_heard_over_steady_noise() {
        let mut vad = Vad::default();
        for k in 0..50 {
            vad.push(&tone(-45.0, k));
        }
        let mut started = false;
        for k in 50..60 {
            let loud: Vec<i16> = tone(-45.0, k)
                .iter()
                .zip(tone(-20.0, k + 7).iter())
                .map(|(a, b)| a.saturating_add(*b))
                .collect();
            started |= matches!(vad.push(&loud), VadEvent::SpeechStarted { .. });
        }
        assert!(started);
    }

    #[test]
    fn odd_frames_and_a_zero_config_do_not_panic() {
        let mut vad = Vad::new(VadConfig {
            start_frames: 0,
            stop_frames: 0,
        });
        assert_eq!(
            vad.push(&[i16::MAX, i16::MIN, i16::MAX]),
            VadEvent::SpeechStarted { onset_frame: 0 }
        );
        assert_eq!(
            vad.push(&[]),
            VadEvent::SpeechStopped {
                onset_frame: 0,
                end_frame: 1
            }
        );
        let long = vec![i16::MIN; 100_000];
        assert!(frame_dbfs(&long) == MIN_DBFS);
    }
}
