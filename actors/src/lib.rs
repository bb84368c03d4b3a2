//! The engine of switchboard: domain types, the ports (traits the server's adapters
//! implement) and, from the runtime issue on, the leaf actors (STT, LLM, TTS, knowledge,
//! conversation, event hub).
//!
//! This crate knows no HTTP, no SQL and no vendor SDK. Everything that crosses its edge is a
//! parsed type from [`domain`]: a raw string from a webhook or a JSON body is turned into a
//! [`domain::E164`] or an id newtype by the server before it reaches an actor.
//!
//! Dependencies point one way: `switchboard` → `supervisors` → `actors`.

pub mod audio;
pub mod conversation;
pub mod domain;
pub mod event_hub;
pub mod knowledge;
pub mod llm;
pub mod ports;
pub mod sentences;
pub mod stt;
pub mod task;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tts;
