//! Logging: `tracing` with `RUST_LOG` filtering (default `info`), as text for people or JSON
//! for collectors (`SWITCHBOARD_LOG_FORMAT`).

use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

/// The filter when `RUST_LOG` is unset, for the server.
pub const SERVER_LOG_FILTER: &str = "info,sqlx=warn";
/// The filter when `RUST_LOG` is unset, for commands whose output is their report (`demo`,
/// `call`): only problems are logged beside it.
pub const REPORT_LOG_FILTER: &str = "warn";

/// Installs the global subscriber; call once, first thing. `default_filter` applies when
/// `RUST_LOG` is unset.
pub fn init(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
