//! Buffer sizes for every WebSocket switchboard opens or accepts: Twilio Media Streams, the
//! OpenAI and ElevenLabs sessions, and their test doubles.
//!
//! tungstenite reads into a buffer of `read_buffer_size` bytes (128 KiB by default) that it
//! zero-fills before every read and keeps for the socket's life. A live call holds two or three
//! sockets, so at that size the buffers were most of a call's memory, and the zero-filling a
//! fifth of the server's CPU at 500 calls (a read per 20 ms frame). The messages on these
//! sockets are a few hundred bytes (media frames, transcription events) to tens of KiB (a
//! synthesized sentence); the buffer grows for a larger frame when one comes. Even at 4 KiB the
//! zero-filling (before every read, the ones that find nothing included) was 8 % of the
//! server's instructions; a Twilio media message fits in 1 KiB.

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Bytes read from a socket at a time.
pub const READ_BUFFER_BYTES: usize = 1024;

/// The configuration of the WebSockets switchboard opens (clients).
pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}
