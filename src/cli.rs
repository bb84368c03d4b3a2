//! The command line: `switchboard serve`, `switchboard demo`, `switchboard migrate`,
//! `switchboard emulate`, `switchboard call`, `switchboard --version`.

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
