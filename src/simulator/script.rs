//! The call script: what the simulated caller says, when, and how patient it is.
//!
//! A script is JSON so tests, demos and benchmarks can keep conversations as data:
//!
//! ```json
//! {
//!   "turns": [
//!     {"say": "Hi, I'd like to book a table for two."},
//!     {"say": "Tomorrow at seven.", "pause_ms": 500},
//!     {"say": "Sorry, make that eight.", "audio": "eight.wav", "barge_in_after_ms": 400}
//!   ],
//!   "agent_quiet_ms": 800,
//!   "reply_timeout_ms": 10000,
//!   "call_timeout_ms": 120000
//! }
//! ```
//!
//! Each turn's audio is a file (`.wav` PCM16 8 kHz mono, or raw 8 kHz μ-law as `.ulaw`,
//! `.mulaw`, `.ul` or `.raw`), resolved relative to the script's folder, or else speech-like
//! audio generated from `say` by the provider emulator's voice, whose length grows with the
//! text. `say` is always what the report shows the caller saying, and with the provider
//! emulator it is what the transcript should be.
//!
//! Audio is loaded and checked by [`CallScript::prepare`] before the call is placed, so a
//! missing file fails the run at once instead of in the middle of a conversation.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use actors::audio::mulaw;
use base64::Engine;
use serde::Deserialize;

use crate::emulator::audio::{parse_wav, speech_ulaw};
use crate::twilio::media::{FRAME_BYTES, MULAW_SILENCE};

/// Default silence before the caller speaks once the agent has finished: a person's usual
/// gap before answering.
pub const DEFAULT_PAUSE_MS: u64 = 300;
/// Default quiet after the agent's audio has played out before its turn counts as over:
/// longer than the gaps between sentences that TTS streaming leaves, shorter than a person
/// would wait.
pub const DEFAULT_AGENT_QUIET_MS: u64 = 800;
/// Default wait for the agent to start a reply (or the greeting) before the caller gives up
/// on it and goes on.
pub const DEFAULT_REPLY_TIMEOUT_MS: u64 = 10_000;
/// Default limit on the whole call, so a server that never replies cannot hang a test run.
pub const DEFAULT_CALL_TIMEOUT_MS: u64 = 120_000;

/// Frames whose loudest sample is below this (about -40 dBFS) count as silence when finding
/// where the caller stops speaking; phone line noise sits well below it, speech well above.
const SPEECH_PEAK: i16 = 328;

/// Longest pause or barge-in delay a script may ask for.
const MAX_TURN_DELAY_MS: u64 = 60_000;

/// What the simulated caller does on the call, and how long it waits for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallScript {
    /// The caller's lines, in order. None at all means: listen to the greeting, hang up.
    #[serde(default)]
    pub turns: Vec<CallerTurn>,
    /// Whether the caller waits for the agent to greet first (up to `reply_timeout_ms`), as
    /// callers do; false to speak first.
    #[serde(default = "yes")]
    pub wait_for_greeting: bool,
    /// How long the agent must be quiet (its audio played out and nothing new arriving)
    /// before its turn counts as finished and the caller answers.
    #[serde(default = "default_agent_quiet_ms")]
    pub agent_quiet_ms: u64,
    /// How long the caller waits for a reply to begin before going on without one.
    #[serde(default = "default_reply_timeout_ms")]
    pub reply_timeout_ms: u64,
    /// Limit on the whole call, webhook included; past it the caller hangs up and the run
    /// fails.
    #[serde(default = "default_call_timeout_ms")]
    pub call_timeout_ms: u64,
}

/// One thing the caller says.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallerTurn {
    /// The words: shown in the report, and turned into audio when `audio` is not given.
    pub say: String,
    /// A recording to send instead of generated audio: `.wav` (PCM16 or μ-law, 8 kHz mono) or
    /// raw 8 kHz μ-law (`.ulaw`, `.mulaw`, `.ul`, `.raw`). Relative to the script's folder.
    #[serde(default)]
    pub audio: Option<PathBuf>,
    /// Barge in: start speaking this long after the agent's reply starts arriving, instead
    /// of waiting for it to finish. Tests the server's `clear`.
    #[serde(default)]
    pub barge_in_after_ms: Option<u64>,
    /// Silence between the agent finishing and the caller starting.
    #[serde(default = "default_pause_ms")]
    pub pause_ms: u64,
}

fn yes() -> bool {
    true
}
fn default_pause_ms() -> u64 {
    DEFAULT_PAUSE_MS
}
fn default_agent_quiet_ms() -> u64 {
    DEFAULT_AGENT_QUIET_MS
}
fn default_reply_timeout_ms() -> u64 {
    DEFAULT_REPLY_TIMEOUT_MS
}
fn default_call_timeout_ms() -> u64 {
    DEFAULT_CALL_TIMEOUT_MS
}

/// Why a script cannot be used. Each message names the file or the field.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read.
    #[error("cannot read the call script {path}: {source}")]
    Read {
        /// The script's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or JSON of the wrong shape (serde's message names the field, line and
    /// column, and lists the known fields for a misspelt one).
    #[error("the call script {origin} is not valid: {source}")]
    Json {
        /// The script's path, or "(inline)".
        origin: String,
        /// What serde found.
        #[source]
        source: serde_json::Error,
    },
    /// A field with a value the simulator cannot use.
    #[error("call script field `{field}` {problem}")]
    Invalid {
        /// The field, e.g. `turns[2].pause_ms`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A turn's audio file could not be read.
    #[error("call script field `turns[{turn}].audio`: cannot read {path}: {source}")]
    AudioRead {
        /// The turn, from 0.
        turn: usize,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A turn's audio file is not audio the simulator can send.
    #[error("call script field `turns[{turn}].audio`: {path} {problem}")]
    Audio {
        /// The turn, from 0.
        turn: usize,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

impl Default for CallScript {
    /// No turns, default patience: listen to the greeting and hang up.
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl CallScript {
    /// A script of these turns with the default timings.
    pub fn new(turns: Vec<CallerTurn>) -> Self {
        Self {
            turns,
            wait_for_greeting: true,
            agent_quiet_ms: DEFAULT_AGENT_QUIET_MS,
            reply_timeout_ms: DEFAULT_REPLY_TIMEOUT_MS,
            call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
        }
    }

    /// Parses and checks a script given as JSON text; relative audio paths stay relative to
    /// the working directory.
    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        Self::parse(text, "(inline)")
    }

    /// Reads, parses and checks a script file; relative audio paths are taken relative to the
    /// file's folder, so a script and its recordings can move together.
    pub fn from_file(path: &Path) -> Result<Self, ScriptError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut script = Self::parse(&text, &path.display().to_string())?;
        let folder = path.parent().unwrap_or(Path::new(""));
        for turn in &mut script.turns {
            if let Some(audio) = turn.audio.as_mut() {
                if audio.is_relative() {
                    *audio = folder.join(&*audio);
                }
            }
        }
        Ok(script)
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ScriptError> {
        let script: Self = serde_json::from_str(text).map_err(|source| ScriptError::Json {
            origin: origin.to_owned(),
            source,
        })?;
        script.validate()?;
        Ok(script)
    }

    /// Checks every value; `from_json` and `from_file` call it, a script built in code should.
    pub fn validate(&self) -> Result<(), ScriptError> {
        let invalid = |field: String, problem: &str| ScriptError::Invalid {
            field,
            problem: problem.to_owned(),
        };
        if !(20..=60_000).contains(&self.agent_quiet_ms) {
            return Err(invalid(
                "agent_quiet_ms".into(),
                "must be between 20 and 60000 ms",
            ));
        }
        if !(1..=600_000).contains(&self.reply_timeout_ms) {
            return Err(invalid(
                "reply_timeout_ms".into(),
                "must be between 1 and 600000 ms",
            ));
        }
        if !(1..=3_600_000).contains(&self.call_timeout_ms) {
            return Err(invalid(
                "call_timeout_ms".into(),
                "must be between 1 and 3600000 ms (an hour)",
            ));
        }
        for (i, turn) in self.turns.iter().enumerate() {
            if turn.say.trim().is_empty() {
                return Err(invalid(
                    format!("turns[{i}].say"),
                    "is empty: give the words said, even with an audio file",
                ));
            }
            if turn.pause_ms > MAX_TURN_DELAY_MS {
                return Err(invalid(
                    format!("turns[{i}].pause_ms"),
                    "must be at most 60000 ms",
                ));
            }
            if turn
                .barge_in_after_ms
                .is_some_and(|ms| ms > MAX_TURN_DELAY_MS)
            {
                return Err(invalid(
                    format!("turns[{i}].barge_in_after_ms"),
                    "must be at most 60000 ms",
                ));
            }
        }
        Ok(())
    }

    /// Checks the script and loads (or generates) every turn's audio, ready to stream.
    pub(crate) fn prepare(&self) -> Result<Vec<PreparedTurn>, ScriptError> {
        self.validate()?;
        self.turns
            .iter()
            .enumerate()
            .map(|(i, turn)| turn.prepare(i))
            .collect()
    }
}

impl CallerTurn {
    /// A turn saying `text` with generated audio, after the default pause.
    pub fn say(text: impl Into<String>) -> Self {
        Self {
            say: text.into(),
            audio: None,
            barge_in_after_ms: None,
            pause_ms: DEFAULT_PAUSE_MS,
        }
    }

    /// Sends this recording instead of generated audio.
    pub fn audio(mut self, path: impl Into<PathBuf>) -> Self {
        self.audio = Some(path.into());
        self
    }

    /// Speaks this long after the agent's reply starts arriving, over it.
    pub fn barge_in_after_ms(mut self, ms: u64) -> Self {
        self.barge_in_after_ms = Some(ms);
        self
    }

    /// Waits this long after the agent finishes before speaking.
    pub fn pause_ms(mut self, ms: u64) -> Self {
        self.pause_ms = ms;
        self
    }

    fn prepare(&self, turn: usize) -> Result<PreparedTurn, ScriptError> {
        let audio = match &self.audio {
            None => speech_ulaw(self.say.trim()),
            Some(path) => read_audio(turn, path)?,
        };
        // The caller stops speaking at the end of its last loud frame; trailing silence in
        // a recording (or the generated pause of a final full stop) is not speech, and the
        // idle frames sent after the turn carry on the silence anyway.
        let Some(last_loud) = audio
            .chunks(FRAME_BYTES)
            .rposition(|frame| frame.iter().any(|&b| mulaw::decode(b).abs() >= SPEECH_PEAK))
        else {
            return Err(match &self.audio {
                Some(path) => ScriptError::Audio {
                    turn,
                    path: path.clone(),
                    problem: "is silent (no 20 ms frame reaches -40 dBFS)".into(),
                },
                None => ScriptError::Invalid {
                    field: format!("turns[{turn}].say"),
                    problem: "has no letters or digits to generate speech from".into(),
                },
            });
        };
        let mut mulaw = audio;
        mulaw.truncate((last_loud + 1) * FRAME_BYTES);
        Ok(PreparedTurn::new(
            self.say.trim().to_owned(),
            mulaw,
            Duration::from_millis(self.pause_ms),
            self.barge_in_after_ms.map(Duration::from_millis),
        ))
    }
}

/// Characters of one 20 ms frame in base64, as a `media` message's payload carries it.
const PAYLOAD_CHARS: usize = FRAME_BYTES.div_ceil(3) * 4;

/// The payload of a frame of the line's silence, encoded once.
pub(crate) fn silence_payload() -> &'static str {
    static SILENCE: LazyLock<String> = LazyLock::new(|| {
        base64::engine::general_purpose::STANDARD.encode([MULAW_SILENCE; FRAME_BYTES])
    });
    &SILENCE
}

/// A turn ready to stream: its μ-law audio, trimmed after the last speech, and its frames
/// already in base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PreparedTurn {
    /// The words, for the report.
    pub say: String,
    /// 8 kHz μ-law, ending with the frame in which speech ends.
    pub mulaw: Vec<u8>,
    /// Silence before speaking.
    pub pause: Duration,
    /// Barge-in delay after the agent's reply starts, if this turn interrupts.
    pub barge_in_after: Option<Duration>,
    /// The payload of every frame, one after another, [`PAYLOAD_CHARS`] each: the calls of a
    /// load test share them, so a frame is encoded once, not again by every call that sends
    /// it (per frame, the encoding was a tenth of the load generator's work).
    payloads: String,
}

impl PreparedTurn {
    /// A turn saying `say` with this audio; its last frame is padded with μ-law silence.
    pub fn new(
        say: String,
        mulaw: Vec<u8>,
        pause: Duration,
        barge_in_after: Option<Duration>,
    ) -> Self {
        let mut payloads = String::with_capacity(mulaw.len().div_ceil(FRAME_BYTES) * PAYLOAD_CHARS);
        for chunk in mulaw.chunks(FRAME_BYTES) {
            let mut frame = [MULAW_SILENCE; FRAME_BYTES];
            frame[..chunk.len()].copy_from_slice(chunk);
            base64::engine::general_purpose::STANDARD.encode_string(frame, &mut payloads);
        }
        Self {
            say,
            mulaw,
            pause,
            barge_in_after,
            payloads,
        }
    }

    /// How many 20 ms frames the audio fills (the last one padded with silence).
    pub fn frames(&self) -> usize {
        self.mulaw.len().div_ceil(FRAME_BYTES)
    }

    /// The base64 payload of frame `index`.
    pub fn payload(&self, index: usize) -> &str {
        &self.payloads[index * PAYLOAD_CHARS..(index + 1) * PAYLOAD_CHARS]
    }

    /// The audio's duration in milliseconds (whole frames).
    pub fn audio_ms(&self) -> u64 {
        self.frames() as u64 * 20
    }
}

/// Reads a recording as 8 kHz μ-law.
fn read_audio(turn: usize, path: &Path) -> Result<Vec<u8>, ScriptError> {
    let bad = |problem: String| ScriptError::Audio {
        turn,
        path: path.to_owned(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|source| ScriptError::AudioRead {
        turn,
        path: path.to_owned(),
        source,
    })?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let mulaw =
        match extension.as_str() {
            "wav" => wav_to_mulaw(&bytes).map_err(bad)?,
            "ulaw" | "mulaw" | "ul" | "raw" => bytes,
            _ => return Err(bad(
                "has an unknown extension: use .wav (PCM16 8 kHz mono) or .ulaw/.mulaw/.ul/.raw \
                 (raw 8 kHz μ-law)"
                    .into(),
            )),
        };
    if mulaw.is_empty() {
        return Err(bad("holds no audio".into()));
    }
    Ok(mulaw)
}

/// The samples of a WAV file as μ-law: PCM16 is encoded with the runtime's own codec, a
/// μ-law WAV is taken as it is. Anything else would need resampling or mixing, which the
/// simulator deliberately does not do: the file should be what a phone line carries.
fn wav_to_mulaw(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let info = parse_wav(bytes).map_err(|e| format!("is not a usable WAV file: {e}"))?;
    let data = wav_data(bytes).ok_or("is not a usable WAV file: no data chunk")?;
    let data = &data[..info.data_len.min(data.len())];
    match (
        info.format,
        info.sample_rate,
        info.channels,
        info.bits_per_sample,
    ) {
        (1, 8000, 1, 16) => Ok(data
            .chunks_exact(2)
            .map(|s| mulaw::encode(i16::from_le_bytes([s[0], s[1]])))
            .collect()),
        (7, 8000, 1, 8) => Ok(data.to_vec()),
        (format, rate, channels, bits) => Err(format!(
            "is a {bits}-bit WAV (format code {format}) at {rate} Hz with {channels} \
             channel(s); the simulator sends phone audio as is, so give it 8 kHz mono PCM16 \
             or μ-law (e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
        )),
    }
}

/// The bytes of a RIFF file's `data` chunk (to its end, or the file's if shorter).
fn wav_data(bytes: &[u8]) -> Option<&[u8]> {
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = pos + 8;
        if id == b"data" {
            return Some(&bytes[body..body.saturating_add(len).min(bytes.len())]);
        }
        pos = body.saturating_add(len).saturating_add(len & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use actors::audio::endpoint::{EndpointEvent, Endpointer};
    use actors::audio::FRAME_SAMPLES;

    /// A frame's payload decoded, as the server reads it.
    fn decoded(payload: &str) -> [u8; FRAME_BYTES] {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        bytes.try_into().unwrap()
    }

    #[test]
    fn each_payload_is_one_frame_of_the_audio_and_the_last_is_padded_with_silence() {
        let mulaw: Vec<u8> = (0..FRAME_BYTES + 10).map(|i| i as u8).collect();
        let turn = PreparedTurn::new("Hi.".into(), mulaw.clone(), Duration::ZERO, None);
        assert_eq!(turn.frames(), 2);
        assert_eq!(decoded(turn.payload(0))[..], mulaw[..FRAME_BYTES]);
        let last = decoded(turn.payload(1));
        assert_eq!(last[..10], mulaw[FRAME_BYTES..]);
        assert!(last[10..].iter().all(|&b| b == MULAW_SILENCE), "{last:?}");
        assert_eq!(decoded(silence_payload()), [MULAW_SILENCE; FRAME_BYTES]);
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sbsim-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn wav(format: u16, bits: u16, rate: u32, channels: u16, data: &[u8]) -> Vec<u8> {
        let mut w = Vec::new();
        w.extend_from_slice(b"RIFF");
        w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVEfmt ");
        w.extend_from_slice(&16u32.to_le_bytes());
        w.extend_from_slice(&format.to_le_bytes());
        w.extend_from_slice(&channels.to_le_bytes());
        w.extend_from_slice(&rate.to_le_bytes());
        let block = channels * bits / 8;
        w.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        w.extend_from_slice(&block.to_le_bytes());
        w.extend_from_slice(&bits.to_le_bytes());
        w.extend_from_slice(b"data");
        w.extend_from_slice(&(data.len() as u32).to_le_bytes());
        w.extend_from_slice(data);
        w
    }

    #[test]
    fn a_minimal_script_gets_the_defaults() {
        let script = CallScript::from_json(r#"{"turns":[{"say":"Hello there."}]}"#).unwrap();
        assert_eq!(
            script,
            CallScript::new(vec![CallerTurn::say("Hello there.")])
        );
        assert_eq!(script.turns[0].pause_ms, DEFAULT_PAUSE_MS);
        assert!(script.wait_for_greeting);
        assert_eq!(CallScript::from_json("{}").unwrap(), CallScript::default());
    }

    #[test]
    fn an_unknown_field_is_refused_naming_it() {
        let err = CallScript::from_json(r#"{"turns":[{"say":"Hi","pause":3}]}"#).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ScriptError::Json { .. }), "{err:?}");
        assert!(
            text.contains("`pause`") && text.contains("pause_ms"),
            "{text}"
        );
        let err = CallScript::from_json(r#"{"turn":[]}"#).unwrap_err();
        assert!(err.to_string().contains("`turn`"), "{err}");
        let err = CallScript::from_json("not json").unwrap_err();
        assert!(matches!(err, ScriptError::Json { .. }));
    }

    #[test]
    fn bad_values_are_refused_naming_the_field() {
        let cases = [
            (r#"{"turns":[{"say":"  "}]}"#, "turns[0].say"),
            (
                r#"{"turns":[{"say":"a"},{"say":"b","pause_ms":70000}]}"#,
                "turns[1].pause_ms",
            ),
            (
                r#"{"turns":[{"say":"a","barge_in_after_ms":999999}]}"#,
                "turns[0].barge_in_after_ms",
            ),
            (r#"{"agent_quiet_ms":0}"#, "agent_quiet_ms"),
            (r#"{"reply_timeout_ms":0}"#, "reply_timeout_ms"),
            (r#"{"call_timeout_ms":0}"#, "call_timeout_ms"),
        ];
        for (json, field) in cases {
            let err = CallScript::from_json(json).unwrap_err();
            assert!(
                matches!(&err, ScriptError::Invalid { field: f, .. } if f == field),
                "{json}: {err:?}"
            );
            assert!(err.to_string().contains(field), "{err}");
        }
        let err = CallScript::from_json(r#"{"turns":[{"say":"!!!"}]}"#)
            .unwrap()
            .prepare()
            .unwrap_err();
        assert!(err.to_string().contains("turns[0].say"), "{err}");
    }

    #[test]
    fn a_missing_script_file_says_which() {
        let err = CallScript::from_file(Path::new("/nonexistent/call.json")).unwrap_err();
        assert!(matches!(err, ScriptError::Read { .. }));
        assert!(err.to_string().contains("/nonexistent/call.json"), "{err}");
    }

    #[test]
    fn generated_audio_grows_with_the_text_and_ends_with_the_speech() {
        let turns = CallScript::new(vec![
            CallerTurn::say("Yes."),
            CallerTurn::say("Yes, a table for two tomorrow evening please."),
        ])
        .prepare()
        .unwrap();
        assert!(turns[1].mulaw.len() > 4 * turns[0].mulaw.len());
        // "Yes." is 4 characters of 65 ms; the final full stop is silent and trimmed.
        assert_eq!(turns[0].frames(), (3 * 65usize).div_ceil(20));
        // The last frame is still speech: the trimming stopped at the last sound.
        let last = decoded(turns[0].payload(turns[0].frames() - 1));
        assert!(last.iter().any(|&b| b != MULAW_SILENCE), "{last:?}");
    }

    #[test]
    fn the_generated_utterance_is_one_utterance_to_the_servers_endpointer() {
        let turn = &CallScript::new(vec![CallerTurn::say("I would like to book a table.")])
            .prepare()
            .unwrap()[0];
        // On the wire: the pause's silence, the turn's frames, then idle silence frames.
        let silence = [MULAW_SILENCE; FRAME_BYTES];
        let pause_frames = DEFAULT_PAUSE_MS as usize / 20;
        let wire = std::iter::repeat_n(silence, pause_frames)
            .chain((0..turn.frames()).map(|i| decoded(turn.payload(i))))
            .chain(std::iter::repeat_n(silence, 50));
        let mut endpointer = Endpointer::default();
        let mut pcm = [0i16; FRAME_SAMPLES];
        let mut events = Vec::new();
        for frame in wire {
            let n = mulaw::decode_into(&frame, &mut pcm);
            events.extend(endpointer.push(&pcm[..n]));
        }
        events.extend(endpointer.finish());
        let ended: Vec<_> = events
            .iter()
            .filter_map(|e| match e {
                EndpointEvent::UtteranceEnded {
                    started_at_ms,
                    ended_at_ms,
                    ..
                } => Some((*started_at_ms, *ended_at_ms)),
                EndpointEvent::SpeechStarted { .. } => None,
            })
            .collect();
        assert_eq!(ended.len(), 1, "{events:?}");
        let (start, end) = ended[0];
        let speech_end = DEFAULT_PAUSE_MS + turn.audio_ms();
        assert!(start.abs_diff(DEFAULT_PAUSE_MS) <= 100, "start {start}");
        assert!(end.abs_diff(speech_end) <= 100, "end {end} vs {speech_end}");
    }

    #[test]
    fn recordings_are_read_relative_to_the_script() {
        let dir = temp_dir();
        let loud: Vec<i16> = (0..1600)
            .map(|i| if i % 8 < 4 { 8000 } else { -8000 })
            .collect();
        let pcm: Vec<u8> = loud
            .iter()
            .chain(&[0i16; 800])
            .flat_map(|s| s.to_le_bytes())
            .collect();
        std::fs::write(dir.join("hello.wav"), wav(1, 16, 8000, 1, &pcm)).unwrap();
        let ulaw: Vec<u8> = loud.iter().map(|&s| mulaw::encode(s)).collect();
        std::fs::write(dir.join("hello.ulaw"), &ulaw).unwrap();
        std::fs::write(
            dir.join("call.json"),
            r#"{"turns":[{"say":"Hello","audio":"hello.wav"},{"say":"Hello","audio":"hello.ulaw"}]}"#,
        )
        .unwrap();
        let script = CallScript::from_file(&dir.join("call.json")).unwrap();
        assert_eq!(script.turns[0].audio, Some(dir.join("hello.wav")));
        let turns = script.prepare().unwrap();
        // 200 ms of buzz, then 100 ms of silence that is trimmed.
        assert_eq!(turns[0].mulaw, ulaw);
        assert_eq!(turns[1].mulaw, ulaw);
        assert_eq!(turns[0].audio_ms(), 200);
    }

    #[test]
    fn unusable_recordings_are_refused_naming_the_turn_and_file() {
        let dir = temp_dir();
        let loud = [0x10u8; 320];
        std::fs::write(dir.join("fast.wav"), wav(1, 16, 16000, 1, &loud)).unwrap();
        std::fs::write(dir.join("stereo.wav"), wav(1, 16, 8000, 2, &loud)).unwrap();
        std::fs::write(dir.join("song.mp3"), b"ID3").unwrap();
        std::fs::write(dir.join("quiet.ulaw"), [MULAW_SILENCE; 800]).unwrap();
        std::fs::write(dir.join("empty.raw"), b"").unwrap();
        std::fs::write(dir.join("fake.wav"), b"not a wav").unwrap();
        for (file, expect) in [
            ("fast.wav", "16000 Hz"),
            ("stereo.wav", "2 channel"),
            ("song.mp3", "unknown extension"),
            ("quiet.ulaw", "silent"),
            ("empty.raw", "no audio"),
            ("fake.wav", "not a usable WAV"),
            ("missing.wav", "cannot read"),
        ] {
            let script = CallScript::new(vec![
                CallerTurn::say("fine"),
                CallerTurn::say("x").audio(dir.join(file)),
            ]);
            let err = script.prepare().unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("turns[1].audio") && text.contains(file) && text.contains(expect),
                "{file}: {text}"
            );
        }
    }
}
