//! `switchboard call` and `switchboard loadtest`: the simulator behind the command line.
//! Turns the flags into a [`SimulatorConfig`] or [`LoadPlan`] (checking the numbers and
//! SIDs), runs the call or the load and renders the report; `main.rs` only prints the result
//! and picks the exit code.

use secrecy::SecretString;

use super::load::{self, LoadError, LoadPlan};
use super::{run_call, CallScript, SimulatorConfig, SimulatorError};
use crate::cli::{CallArgs, LoadtestArgs};
use actors::domain::E164;

/// Why `switchboard call` failed, split by exit code: 2 when the command was given something
/// unusable (a flag, the script, a missing auth token), 1 when the call itself failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A flag or setting is missing or malformed.
    #[error("{0}")]
    Usage(String),
    /// The call was placed and went wrong (or the script could not be used).
    #[error(transparent)]
    Call(#[from] SimulatorError),
    /// The report could not be written as JSON.
    #[error("cannot write the report as JSON: {0}")]
    Report(#[source] serde_json::Error),
    /// The load run could not start.
    #[error(transparent)]
    Load(LoadError),
}

impl From<LoadError> for CommandError {
    fn from(error: LoadError) -> Self {
        match error {
            LoadError::Simulator(e) => CommandError::Call(e),
            LoadError::NoCalls => CommandError::Usage(error.to_string()),
            other => CommandError::Load(other),
        }
    }
}

impl CommandError {
    /// The process exit code: 2 for bad input, as for a configuration error; 1 for a failed
    /// call.
    pub fn exit_code(&self) -> u8 {
        match self {
            CommandError::Usage(_)
            | CommandError::Call(SimulatorError::Script(_) | SimulatorError::BadUrl { .. }) => 2,
            CommandError::Call(_) | CommandError::Report(_) | CommandError::Load(_) => 1,
        }
    }
}

/// Runs `switchboard call` and returns what to print: the report as text, or as pretty JSON
/// with `--json`. `auth_token` is the `TWILIO_AUTH_TOKEN` setting.
pub async fn run(
    args: &CallArgs,
    auth_token: Option<&SecretString>,
) -> Result<String, CommandError> {
    let config = config(args, auth_token)?;
    let script = match &args.script {
        Some(path) => CallScript::from_file(path).map_err(SimulatorError::from)?,
        None => CallScript::default(),
    };
    let report = run_call(&config, &script).await?;
    if args.json {
        serde_json::to_string_pretty(&report).map_err(CommandError::Report)
    } else {
        Ok(report.to_text())
    }
}

/// Runs `switchboard loadtest`: what to print (the table, or JSON with `--json`) and whether
/// any call failed. `progress` gets a line every few seconds.
pub async fn load(
    args: &LoadtestArgs,
    auth_token: Option<&SecretString>,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<(String, bool), CommandError> {
    let auth_token = required_token(auth_token)?;
    let to = E164::parse(&args.to)
        .map_err(|e| CommandError::Usage(format!("--to `{}`: {e}", args.to)))?;
    let server = args.server.trim_end_matches('/');
    let plan = LoadPlan {
        server: server.to_owned(),
        to: to.as_str().to_owned(),
        calls: args.calls,
        ramp: args.ramp,
        duration: args.duration,
        baseline_ms: args.baseline_ms,
        metrics_url: args
            .metrics_url
            .clone()
            .unwrap_or_else(|| format!("{server}/metrics")),
        auth_token,
    };
    let script = match &args.script {
        Some(path) => CallScript::from_file(path).map_err(SimulatorError::from)?,
        None => CallScript::default(),
    };
    let report = load::run(&plan, &script, progress).await?;
    let failed = report.failed > 0;
    let text = if args.json {
        serde_json::to_string_pretty(&report).map_err(CommandError::Report)?
    } else {
        report.to_table()
    };
    Ok((text, failed))
}

fn required_token(auth_token: Option<&SecretString>) -> Result<SecretString, CommandError> {
    auth_token.cloned().ok_or_else(|| {
        CommandError::Usage(
            "TWILIO_AUTH_TOKEN (--twilio-auth-token) is not set: the simulator signs every \
             request with it, and the server must have the same token"
                .into(),
        )
    })
}

/// The call's configuration from the flags.
pub fn config(
    args: &CallArgs,
    auth_token: Option<&SecretString>,
) -> Result<SimulatorConfig, CommandError> {
    let auth_token = required_token(auth_token)?;
    let number = |flag: &str, value: &str| {
        E164::parse(value)
            .map(|n| n.as_str().to_owned())
            .map_err(|e| CommandError::Usage(format!("--{flag} `{value}`: {e}")))
    };
    let mut config = SimulatorConfig::new(
        &args.server,
        auth_token,
        number("from", &args.from)?,
        number("to", &args.to)?,
    );
    if let Some(sid) = &args.call_sid {
        config.call_sid = sid_flag("call-sid", "CA", sid)?;
    }
    if let Some(sid) = &args.account_sid {
        config.account_sid = sid_flag("account-sid", "AC", sid)?;
    }
    if let Some(url) = &args.webhook_url {
        config.webhook_url = url.clone();
    }
    if args.no_status_callback {
        config.status_callback_url = None;
    } else if let Some(url) = &args.status_callback_url {
        config.status_callback_url = Some(url.clone());
    }
    Ok(config)
}

/// Checks a SID flag: the prefix and 32 hex digits, as Twilio's own.
fn sid_flag(flag: &str, prefix: &str, value: &str) -> Result<String, CommandError> {
    let valid = value.len() == 34
        && value.starts_with(prefix)
        && value[2..].bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(value.to_owned())
    } else {
        Err(CommandError::Usage(format!(
            "--{flag} `{value}` is not a Twilio SID: {prefix} followed by 32 hex digits"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        call: CallArgs,
    }

    fn args(extra: &[&str]) -> CallArgs {
        let mut argv = vec![
            "call",
            "--server",
            "http://127.0.0.1:9",
            "--from",
            "+15550001111",
            "--to",
            "+15550002222",
        ];
        argv.extend_from_slice(extra);
        Args::parse_from(argv).call
    }

    fn token() -> SecretString {
        SecretString::from("secret")
    }

    #[test]
    fn flags_become_the_config() {
        let sid = format!("CA{}", "ab".repeat(16));
        let config = config(
            &args(&["--call-sid", &sid, "--no-status-callback"]),
            Some(&token()),
        )
        .unwrap();
        assert_eq!(config.call_sid, sid);
        assert_eq!(config.webhook_url, "http://127.0.0.1:9/twilio/voice");
        assert_eq!(config.status_callback_url, None);
        assert_eq!(config.from, "+15550001111");
    }

    #[test]
    fn a_missing_token_or_bad_flag_is_a_usage_error_naming_it() {
        let err = config(&args(&[]), None).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("TWILIO_AUTH_TOKEN"), "{err}");
        for (flags, named) in [
            (&["--call-sid", "CA123"][..], "--call-sid"),
            (
                &["--account-sid", "CA0123456789abcdef0123456789abcdef"][..],
                "--account-sid",
            ),
        ] {
            let err = config(&args(flags), Some(&token())).unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
        let mut bad = args(&[]);
        bad.from = "5550001111".into();
        let err = config(&bad, Some(&token())).unwrap_err();
        assert!(err.to_string().contains("--from"), "{err}");
    }
}
