//! The call simulator: a **test double of Twilio** that places a call to a switchboard server
//! and behaves toward it exactly as Twilio does, so the whole phone path can be tested and
//! benchmarked without a phone, an account or a network (`switchboard call`, the end-to-end
//! tests, the load benchmark).
//!
//! One call, as Twilio makes it (PROTOCOLS.md §1–§3):
//! 1. POST the voice webhook (`server + /twilio/voice`), form-encoded and signed with
//!    `X-Twilio-Signature`, with the parameters Twilio sends (`CallSid`, `From`,
//!    `CallStatus=ringing`, …) — see [`webhook`];
//! 2. follow the TwiML answer ([`twiml`]): `<Say>` and `<Hangup/>` end the call (the report
//!    says `refused` and quotes the sentences), `<Dial>` reports the number dialled,
//!    `<Connect><Stream>` opens the Media Stream;
//! 3. on the stream ([`stream`]): `connected`, `start` with the `<Parameter>`s, then a 20 ms
//!    `media` frame in real time — the script's caller audio ([`script`]) or the silence of
//!    an open line — while what the server sends is played out by a model of the phone
//!    ([`playback`]): marks echoed once the audio before them would have played, `clear`
//!    honoured; turn-taking (listen, pause, speak, barge in) is the [`dialogue`];
//! 4. hang up with `stop` after the script's last line has been answered, or note that the
//!    server closed the stream first;
//! 5. POST the signed `completed` status callback (`server + /twilio/voice/status`).
//!
//! The result is a [`CallReport`]: per turn, the agent's audio length and the voice-to-voice
//! latency (caller stops speaking → first agent audio). Everything a misbehaving server can
//! cause is a [`SimulatorError`] naming what went wrong, never a panic.
//!
//! It reuses the server's own wire code ([`crate::twilio`]) for signatures and Media Streams
//! messages, so the two sides cannot drift apart silently; the TwiML parser is its own, since
//! the server only ever writes TwiML.

pub mod command;
mod dialogue;
pub mod load;
mod playback;
pub mod report;
pub mod script;
mod stream;
pub mod twiml;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::time::Instant;

pub use report::{AgentReply, CallReport, Outcome, Party, StreamReport, TurnReport};
pub use script::{CallScript, CallerTurn, ScriptError};
pub use twiml::TwimlParseError;

use dialogue::Timing;
use script::PreparedTurn;
use twiml::Verb;

/// Path of the voice webhook on a switchboard server.
pub const VOICE_WEBHOOK_PATH: &str = "/twilio/voice";
/// Path of the call status callback on a switchboard server.
pub const STATUS_CALLBACK_PATH: &str = "/twilio/voice/status";

/// Twilio gives a webhook 15 seconds to answer before it fails the call.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest status callback answer read (it is only quoted in errors).
const CALLBACK_BODY_LIMIT: usize = 16 * 1024;

/// Who is calling whom, and where: everything about the call that is not the conversation.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The voice webhook URL; the signature covers exactly this string.
    pub webhook_url: String,
    /// Where to post the `completed` status callback; `None` for a number configured
    /// without one.
    pub status_callback_url: Option<String>,
    /// The Twilio auth token the server checks signatures with.
    pub auth_token: SecretString,
    /// The caller's number (`From`), E.164 as Twilio sends it.
    pub from: String,
    /// The number called (`To`): it picks the tenant and agent.
    pub to: String,
    /// `CA` + 32 hex.
    pub call_sid: String,
    /// `AC` + 32 hex.
    pub account_sid: String,
    /// Where the 20 ms grid of the caller's media frames is anchored; `None` starts it at the
    /// stream's `start`. Calls that share an anchor send their frames at the same moments,
    /// so the load generator wakes once per frame for a group of calls rather than per call.
    pub frame_clock: Option<tokio::time::Instant>,
}

impl SimulatorConfig {
    /// A call from `from` to `to` through the server at `server` (its base URL, e.g.
    /// `http://127.0.0.1:8080`): webhook and status callback at switchboard's paths, fresh
    /// random CallSid and AccountSid.
    pub fn new(
        server: &str,
        auth_token: SecretString,
        from: impl Into<String>,
        to: impl Into<String>,
    ) -> Self {
        let base = server.trim_end_matches('/');
        Self {
            webhook_url: format!("{base}{VOICE_WEBHOOK_PATH}"),
            status_callback_url: Some(format!("{base}{STATUS_CALLBACK_PATH}")),
            auth_token,
            from: from.into(),
            to: to.into(),
            call_sid: new_sid("CA"),
            account_sid: new_sid("AC"),
            frame_clock: None,
        }
    }
}

/// A fresh Twilio SID: the two-letter prefix and 32 random hex digits (`CA…`, `AC…`, `MZ…`).
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{:032x}", rand::random::<u128>())
}

/// Why a simulated call failed. Each message names the step, the URL and what the server
/// did.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// The script, or one of its audio files, is unusable.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// A URL in the configuration is not an http(s) URL.
    #[error("the {what} `{url}` is not an http:// or https:// URL")]
    BadUrl {
        /// Which URL.
        what: &'static str,
        /// The value given.
        url: String,
    },
    /// The HTTP client could not be set up (TLS roots, for instance).
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// The voice webhook could not be reached or did not answer in time.
    #[error("the voice webhook {url} could not be reached: {source}")]
    WebhookUnreachable {
        /// The webhook URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The voice webhook answered with an error status.
    #[error("the voice webhook {url} answered HTTP {status}: {body}")]
    WebhookStatus {
        /// The webhook URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The webhook answered with something Twilio could not run.
    #[error("the voice webhook's answer is not usable TwiML: {0}")]
    Twiml(#[from] TwimlParseError),
    /// The Media Stream could not be opened (bad URL, nothing listening, handshake failed).
    #[error("the Media Stream {url} could not be opened: {problem}")]
    StreamConnect {
        /// The `<Stream url>`.
        url: String,
        /// What failed.
        problem: String,
    },
    /// The server refused the WebSocket upgrade (a bad signature gets 403, say).
    #[error("the Media Stream upgrade to {url} was refused with HTTP {status}: {body}")]
    StreamRefused {
        /// The `<Stream url>`.
        url: String,
        /// The HTTP status of the refusal.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The server closed the stream with a close code other than normal (1008 for a bad
    /// stream token, 1011 for an internal error …).
    #[error("the server closed the Media Stream with code {code}: {reason}")]
    StreamClosed {
        /// The WebSocket close code.
        code: u16,
        /// The server's reason text (may be empty).
        reason: String,
    },
    /// The stream broke in some other way.
    #[error("the Media Stream failed: {0}")]
    StreamFailed(String),
    /// The server sent something Twilio would reject: not JSON, an unknown event, a binary
    /// frame, another stream's SID, a payload that is not base64.
    #[error("the server broke the Media Streams protocol: {0}")]
    Protocol(String),
    /// The call ran past the script's `call_timeout_ms`; the caller hung up.
    #[error("the call did not finish within {0} ms (the script's call_timeout_ms)")]
    Timeout(u64),
    /// The status callback could not be reached.
    #[error("the status callback {url} could not be reached: {source}")]
    StatusCallbackUnreachable {
        /// The callback URL.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The status callback answered with an error status.
    #[error("the status callback {url} answered HTTP {status}: {body}")]
    StatusCallbackStatus {
        /// The callback URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// Places one simulated call and reports on it. Audio files are loaded and checked before
/// anything is sent; the status callback is posted however the call ends, failures included.
pub async fn run_call(
    config: &SimulatorConfig,
    script: &CallScript,
) -> Result<CallReport, SimulatorError> {
    let turns = script.prepare()?;
    place_call(&http_client()?, config, script, turns.into()).await
}

/// The HTTP client Twilio's side posts webhooks with; many calls may share one (the load
/// generator does, so a thousand calls do not mean a thousand connection pools).
pub(crate) fn http_client() -> Result<reqwest::Client, SimulatorError> {
    reqwest::Client::builder()
        .timeout(WEBHOOK_TIMEOUT)
        .user_agent(webhook::USER_AGENT)
        .build()
        .map_err(SimulatorError::Client)
}

/// [`run_call`] with the script's audio already prepared (shared, not copied, between calls)
/// and a given HTTP client.
pub(crate) async fn place_call(
    client: &reqwest::Client,
    config: &SimulatorConfig,
    script: &CallScript,
    turns: Arc<[PreparedTurn]>,
) -> Result<CallReport, SimulatorError> {
    check_url("voice webhook URL", &config.webhook_url)?;
    if let Some(url) = &config.status_callback_url {
        check_url("status callback URL", url)?;
    }
    let client = client.clone();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(script.call_timeout_ms);

    let verbs = ring(&client, config, deadline, script.call_timeout_ms).await?;
    let mut report = CallReport {
        call_sid: config.call_sid.clone(),
        account_sid: config.account_sid.clone(),
        from: config.from.clone(),
        to: config.to.clone(),
        outcome: Outcome::Refused,
        ended_by: Party::Agent,
        said: Vec::new(),
        dialed: None,
        skipped_verbs: Vec::new(),
        stream: None,
        greeting: None,
        turns: Vec::new(),
        script_turns: script.turns.len(),
        clears: 0,
        marks_echoed: 0,
        duration_ms: 0,
        status_callback_status: None,
    };
    let timing = Timing {
        wait_for_greeting: script.wait_for_greeting,
        agent_quiet: Duration::from_millis(script.agent_quiet_ms),
        reply_timeout: Duration::from_millis(script.reply_timeout_ms),
    };
    let mut turns = Some(turns);
    let mut failure = None;
    for verb in verbs {
        match verb {
            Verb::Say(sentence) => report.said.push(sentence),
            Verb::Hangup => break,
            Verb::Dial(number) => {
                // Twilio bridges the caller to the number; the simulated conversation ends.
                if report.stream.is_none() {
                    report.outcome = Outcome::Dialed;
                }
                report.dialed = Some(number);
                break;
            }
            Verb::Connect(target) => {
                let Some(turns) = turns.take() else {
                    report
                        .skipped_verbs
                        .push("Connect (a second stream)".into());
                    continue;
                };
                report.outcome = Outcome::Streamed;
                let run = stream::run_stream(
                    config,
                    &target,
                    turns,
                    timing,
                    deadline,
                    script.call_timeout_ms,
                )
                .await;
                match run {
                    Ok(end) => {
                        report.ended_by = end.ended_by;
                        report.stream = Some(end.report);
                        report.greeting = Some(end.dialogue.greeting);
                        report.turns = end.dialogue.turns;
                        report.clears = end.dialogue.clears;
                        report.marks_echoed = end.dialogue.marks_echoed;
                        if end.ended_by == Party::Caller {
                            break;
                        }
                        // The server closed the stream: Twilio goes on with the next verb.
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
            }
            Verb::Other(name) => report.skipped_verbs.push(name),
        }
    }
    report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);

    let callback = match &config.status_callback_url {
        Some(url) => Some(post_completed(&client, config, url, started.elapsed()).await),
        None => None,
    };
    if let Some(error) = failure {
        return Err(error);
    }
    report.status_callback_status = callback.transpose()?;
    Ok(report)
}

/// Posts the voice webhook and reads the TwiML answer.
async fn ring(
    client: &reqwest::Client,
    config: &SimulatorConfig,
    deadline: Instant,
    call_timeout_ms: u64,
) -> Result<Vec<Verb>, SimulatorError> {
    let url = &config.webhook_url;
    let params = webhook::call_params(config, "ringing");
    // One byte over Twilio's limit, so an oversized document is reported as such.
    let post = webhook::post_signed(
        client,
        &config.auth_token,
        url,
        &params,
        twiml::MAX_TWIML_BYTES + 1,
    );
    let answer = tokio::time::timeout_at(deadline, post)
        .await
        .map_err(|_| SimulatorError::Timeout(call_timeout_ms))?
        .map_err(|source| SimulatorError::WebhookUnreachable {
            url: url.clone(),
            source,
        })?;
    if !answer.is_success() {
        return Err(SimulatorError::WebhookStatus {
            url: url.clone(),
            status: answer.status,
            body: answer.quoted_body(),
        });
    }
    if answer.truncated {
        return Err(TwimlParseError::TooLarge(answer.body.len()).into());
    }
    Ok(twiml::parse(&answer.body)?)
}

/// Posts the signed `completed` status callback; its HTTP status, or why it failed.
async fn post_completed(
    client: &reqwest::Client,
    config: &SimulatorConfig,
    url: &str,
    elapsed: Duration,
) -> Result<u16, SimulatorError> {
    let params = webhook::completed_params(config, elapsed);
    let answer = webhook::post_signed(
        client,
        &config.auth_token,
        url,
        &params,
        CALLBACK_BODY_LIMIT,
    )
    .await
    .map_err(|source| SimulatorError::StatusCallbackUnreachable {
        url: url.to_owned(),
        source,
    })?;
    if !answer.is_success() {
        return Err(SimulatorError::StatusCallbackStatus {
            url: url.to_owned(),
            status: answer.status,
            body: answer.quoted_body(),
        });
    }
    Ok(answer.status)
}

fn check_url(what: &'static str, url: &str) -> Result<(), SimulatorError> {
    match reqwest::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(()),
        _ => Err(SimulatorError::BadUrl {
            what,
            url: url.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_have_twilios_shape() {
        for prefix in ["CA", "AC", "MZ"] {
            let sid = new_sid(prefix);
            assert_eq!(sid.len(), 34, "{sid}");
            assert!(sid.starts_with(prefix));
            assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(new_sid("CA"), new_sid("CA"));
    }

    #[test]
    fn the_config_points_at_switchboards_twilio_paths() {
        let config = SimulatorConfig::new(
            "http://127.0.0.1:8080/",
            SecretString::from("t"),
            "+15550001111",
            "+15550002222",
        );
        assert_eq!(config.webhook_url, "http://127.0.0.1:8080/twilio/voice");
        assert_eq!(
            config.status_callback_url.as_deref(),
            Some("http://127.0.0.1:8080/twilio/voice/status")
        );
        assert!(config.call_sid.starts_with("CA"));
        assert!(config.account_sid.starts_with("AC"));
    }

    #[tokio::test]
    async fn a_bad_server_url_fails_before_anything_is_sent() {
        let config = SimulatorConfig::new("localhost:8080", SecretString::from("t"), "+1", "+2");
        let err = run_call(&config, &CallScript::default()).await.unwrap_err();
        assert!(
            matches!(&err, SimulatorError::BadUrl { url, .. } if url == "localhost:8080/twilio/voice"),
            "{err:?}"
        );
    }
}
