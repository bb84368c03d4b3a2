//! The command line: `switchboard serve`, `switchboard migrate`, `switchboard --version`.

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
}
