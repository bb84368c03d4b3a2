//! The `switchboard` binary: parse the command line, check settings, start logging, run.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use switchboard::app::Application;
use switchboard::cli::{CallArgs, Cli, Command, LoadtestArgs};
use switchboard::emulator::{Emulator, EmulatorScript};
use switchboard::settings::Settings;
use switchboard::store::Store;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::from_args(cli.settings) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("switchboard: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let default_filter = match cli.command {
        Command::Demo { .. } | Command::Call(_) | Command::Loadtest(_) => {
            switchboard::telemetry::REPORT_LOG_FILTER
        }
        _ => switchboard::telemetry::SERVER_LOG_FILTER,
    };
    switchboard::telemetry::init(settings.log_format, default_filter);
    let result = match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => Store::open(&settings.database_url, settings.database_kind)
            .await
            .map(|_| tracing::info!(database = %settings.database_url_for_logs(), "migrations applied"))
            .map_err(anyhow::Error::from),
        Command::Emulate {
            emulator_listen,
            script,
        } => emulate(emulator_listen, script).await,
        Command::Call(args) => return call(&args, &settings).await,
        Command::Loadtest(args) => return loadtest(&args, &settings).await,
        Command::Demo { keep } => {
            switchboard::demo::run(settings, keep, &mut std::io::stdout()).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    tracing::info!(database = %settings.database_url_for_logs(), "starting");
    let app = Application::build(settings).await?;
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}

async fn emulate(
    listen: std::net::SocketAddr,
    script: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let script = match script {
        Some(path) => EmulatorScript::from_file(&path)
            .with_context(|| format!("reading the script {}", path.display()))?,
        None => EmulatorScript::default(),
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen} (--emulator-listen)"))?;
    let emulator = Emulator::start(listener, script);
    tracing::info!(
        openai = %emulator.openai_base_url(),
        elevenlabs = %emulator.base_url(),
        "provider emulator (a test double, not a real provider) is serving"
    );
    shutdown_signal().await;
    emulator.stop().await;
    Ok(())
}

/// `switchboard call`: runs the simulated call and prints its report on stdout; errors go to
/// stderr with exit code 2 for bad input and 1 for a failed call.
async fn call(args: &CallArgs, settings: &Settings) -> ExitCode {
    match switchboard::simulator::command::run(args, settings.twilio_auth_token.as_ref()).await {
        Ok(report) => {
            // Written rather than `println!`ed: a closed pipe (`| head`) is an error, not a
            // panic.
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{}", report.trim_end()).and_then(|()| stdout.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Err(e) => {
            eprintln!("switchboard call: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// `switchboard loadtest`: progress on stderr, the report on stdout; exit code 2 for bad
/// input, 1 when the run could not start or a call failed.
async fn loadtest(args: &LoadtestArgs, settings: &Settings) -> ExitCode {
    let progress = |line: &str| eprintln!("loadtest: {line}");
    match switchboard::simulator::command::load(args, settings.twilio_auth_token.as_ref(), progress)
        .await
    {
        Ok((report, failed)) => {
            let mut stdout = std::io::stdout().lock();
            let written = writeln!(stdout, "{}", report.trim_end()).and_then(|()| stdout.flush());
            if written.is_err() || failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("switchboard loadtest: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
