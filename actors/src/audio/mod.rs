//! Audio for the phone leg of a call: G.711 μ-law on the wire, and the voice activity
//! detection and endpointing that decide when the caller has finished (or is interrupting).
//!
//! Everything here is plain synchronous code over caller-owned buffers: no allocation, no
//! clock, no I/O, so an actor can run it inside `handle` for every 20 ms frame (the audio
//! path budget is about 1 µs a frame) and tests get the same answers every time.
//!
//! - [`mulaw`]: encode and decode, bit-exact with Python's `audioop`.
//! - [`vad`]: per-frame speech/no speech with an adaptive noise floor and hysteresis.
//! - [`endpoint`]: utterances (start, end after trailing silence) on top of the VAD.

pub mod endpoint;
pub mod mulaw;
pub mod vad;

/// Twilio Media Streams carry 8 kHz audio, always.
pub const SAMPLE_RATE: u32 = 8000;

/// Duration of one frame: Twilio sends a media message every 20 ms, and the VAD and the
/// endpointer count time in these frames.
pub const FRAME_MS: u64 = 20;

/// Samples (and μ-law bytes) in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 160;
