//! The real provider adapters: the vendor implementations of the runtime's ports
//! (`actors::ports`). Each module speaks one vendor's wire format (`PROTOCOLS.md`) and turns
//! its answers and failures into port values, so the engine never learns which vendor is
//! behind a port. They are tested against the provider emulator (`crate::emulator`) over
//! loopback, never against the live services.

pub mod elevenlabs;
mod elevenlabs_ws;
pub mod fallback;
pub mod openai;
pub mod openai_realtime;
pub mod retry;
pub mod stt_router;
