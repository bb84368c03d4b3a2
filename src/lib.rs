//! switchboard: a multi-tenant runtime for AI voice and SMS agents.
//!
//! This crate is the server: command line, settings, the HTTP API and the adapters that
//! implement the engine's ports (the SQL store, OpenAI and ElevenLabs in `providers`, the
//! Twilio wire layer in `twilio`; Redis events and Qdrant follow), plus the provider emulator,
//! a test double of OpenAI and ElevenLabs, and the call simulator (`simulator`), a test double
//! of Twilio. The engine lives in the `actors` and `supervisors` crates.
//! `main.rs` only parses the command line and calls into here, so tests build the server
//! exactly as production does.

/// The `User-Agent` of every request this server makes (providers, Twilio), so they and any
/// proxy can tell who calls.
pub const USER_AGENT: &str = concat!("switchboard/", env!("CARGO_PKG_VERSION"));

pub mod app;
pub mod auth;
pub mod calls;
pub mod cli;
pub mod demo;
pub mod emulator;
pub mod events;
pub mod http;
pub mod knowledge;
pub mod metrics_export;
pub mod providers;
pub mod redis_client;
pub mod settings;
pub mod simulator;
pub mod store;
pub mod telemetry;
pub mod testing;
pub mod texts;
pub mod twilio;
pub mod webhooks;
pub mod websocket;
