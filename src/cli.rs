//! The command line: `switchboard serve`, `switchboard demo`, `switchboard migrate`,
//! `switchboard emulate`, `switchboard call`, `switchboard loadtest`, `switchboard --version`.

use clap::{Parser, Subcommand};

use crate::settings::SettingsArgs;

/// switchboard: AI voice and SMS agents for many businesses on one runtime.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about)]
pub struct Cli {
    /// Settings shared by every command (each also read from its environment variable).
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: migrate the database, then serve HTTP until SIGINT or SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Run the provider emulator: a local stand-in for OpenAI and ElevenLabs speaking their
    /// wire protocols, for demos, tests and load benchmarks (never a production provider).
    Emulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        emulator_listen: std::net::SocketAddr,
        /// JSON script of transcripts, replies, latencies and faults; the defaults without.
        #[arg(long)]
        script: Option<std::path::PathBuf>,
    },
    /// The whole product in one command, with no accounts anywhere: the provider emulator,
    /// the server on a fresh SQLite file, a demo tenant, and a scripted three-turn call with
    /// one barge-in; prints the transcript and a per-turn latency table.
    Demo {
        /// Leave the server running after the call, on SWITCHBOARD_LISTEN, and print how to
        /// sign in.
        #[arg(long)]
        keep: bool,
    },
    /// Place a simulated call to a switchboard server, behaving toward it exactly as Twilio
    /// does (a test double, never a real call): signed webhook, TwiML, Media Stream with the
    /// script's caller audio in real time, status callback. Prints per turn the caller's line,
    /// how long the agent spoke and the voice-to-voice latency. Signs with TWILIO_AUTH_TOKEN.
    Call(CallArgs),
    /// Load-test a server: many simulated Twilio calls at once (each slot places the script's
    /// call again and again), then a table (or JSON) of calls completed and failed,
    /// voice-to-voice and runtime-overhead percentiles, audio lag and gaps, and the server's
    /// CPU and memory per call from its /metrics. Signs with TWILIO_AUTH_TOKEN.
    Loadtest(LoadtestArgs),
}

/// The flags of `switchboard loadtest`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadtestArgs {
    /// Base URL of the server to load, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub server: String,
    /// The number called (E.164): the tenant's number that routes to its agent. Callers are
    /// +15552000000, +15552000001 … one per concurrent call.
    #[arg(long)]
    pub to: String,
    /// Concurrent calls at full load.
    #[arg(long, default_value_t = 100)]
    pub calls: usize,
    /// Time over which the calls are started, evenly (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub ramp: std::time::Duration,
    /// Time full load is held after the ramp; calls in flight then finish.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// JSON call script every call follows (as for `switchboard call`); without one each
    /// call only hears the greeting.
    #[arg(long)]
    pub script: Option<std::path::PathBuf>,
    /// What the providers and endpointing add to every reply, in ms: the endpointing silence
    /// plus the emulated STT, LLM first-sentence and TTS first-byte latencies. Subtracted
    /// from voice-to-voice to give the runtime's own overhead.
    #[arg(long, default_value_t = 0)]
    pub baseline_ms: u64,
    /// The server's Prometheus metrics (CPU, memory, live calls, inbound lag); default
    /// SERVER/metrics.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Print the whole report as JSON (with the per-second samples) instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The flags of `switchboard call`. Named so as not to collide with the global settings'
/// flags (`--listen`, `--twilio-account-sid` …).
#[derive(Debug, Clone, clap::Args)]
pub struct CallArgs {
    /// Base URL of the server to call, e.g. http://127.0.0.1:8080; the webhook is
    /// SERVER/twilio/voice and the status callback SERVER/twilio/voice/status.
    #[arg(long)]
    pub server: String,
    /// The caller's number (E.164, e.g. +15551230000); with the provider emulator it also
    /// picks the scripted transcripts.
    #[arg(long)]
    pub from: String,
    /// The number called (E.164): the tenant's number that routes to its agent.
    #[arg(long)]
    pub to: String,
    /// JSON call script (caller lines, audio files, timings); without one the caller listens
    /// to the greeting and hangs up.
    #[arg(long)]
    pub script: Option<std::path::PathBuf>,
    /// Print the whole report as JSON, for scripts, instead of text.
    #[arg(long)]
    pub json: bool,
    /// CallSid to send (CA + 32 hex); random by default.
    #[arg(long)]
    pub call_sid: Option<String>,
    /// AccountSid to send (AC + 32 hex); random by default.
    #[arg(long)]
    pub account_sid: Option<String>,
    /// Voice webhook URL when it is not SERVER/twilio/voice; it is the URL signed, so give it
    /// exactly as the server's public URL spells it.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Status callback URL when it is not SERVER/twilio/voice/status.
    #[arg(long, conflicts_with = "no_status_callback")]
    pub status_callback_url: Option<String>,
    /// Post no status callback at the end, as for a number configured without one.
    #[arg(long)]
    pub no_status_callback: bool,
}
