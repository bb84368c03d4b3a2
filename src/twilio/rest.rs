//! The Twilio REST calls switchboard makes: place an outbound call, hang one up, replace a
//! live call's TwiML (transfer), send an SMS (PROTOCOLS.md §1.3–§1.5, §4.3).
//!
//! Requests are shaped as twilio-python shapes them: form-encoded bodies, list parameters as
//! repeated keys (`StatusCallbackEvent=initiated&StatusCallbackEvent=completed`), HTTP Basic
//! auth with the account SID and auth token, `Accept: application/json`. The base URL is
//! configurable so tests, the demo and the provider emulator can stand in for Twilio.
//!
//! Every request has a deadline (10 s by default): a Twilio outage must cost a turn an
//! apology, not hang a call actor. Nothing here retries: creating a call or sending an SMS
//! twice is worse than failing once, so retry policy belongs to the caller.

use std::time::Duration;

use actors::domain::E164;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where Twilio's REST API lives.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// The default deadline for one request, connection and body included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Twilio's error code for "the requested resource was not found"; on hang-up it means the
/// call had already ended.
pub const ERROR_NOT_FOUND: u32 = 20404;

const API_VERSION: &str = "2010-04-01";

/// Longest slice of a non-JSON error body kept in [`TwilioError::Api`], so a proxy's HTML
/// error page cannot flood the logs.
const MAX_RAW_ERROR: usize = 200;

/// Why a Twilio request failed. None of the variants ever carries the auth token: it only
/// travels in the `Authorization` header, which no error reports.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio answered with an error status. `code` and `message` come from Twilio's JSON
    /// error body (`{"code":21211,"message":"Invalid 'To' Phone Number",...}`); `code` is
    /// `None` when the body was not Twilio's JSON (a proxy error page, say).
    #[error("Twilio answered {status}: {message}{}", code.map(|c| format!(" (error {c})")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code, documented at `https://www.twilio.com/docs/errors/{code}`.
        code: Option<u32>,
        /// Twilio's explanation, or the start of the raw body.
        message: String,
        /// Twilio's link to the error's documentation.
        more_info: Option<String>,
    },
    /// No complete answer within the client's deadline.
    #[error("Twilio did not answer within {0:?}")]
    Timeout(Duration),
    /// The request could not be sent or the answer not received (DNS, TLS, connection).
    #[error("could not reach Twilio")]
    Transport(#[source] reqwest::Error),
    /// Twilio answered success with a body that is not the expected resource.
    #[error("Twilio's answer could not be read")]
    Decode(#[source] serde_json::Error),
    /// An argument or setting that cannot make a valid request.
    #[error("invalid Twilio request: {0}")]
    Invalid(String),
}

/// Which call progress events Twilio reports to a status callback; each one is sent as its
/// own `StatusCallbackEvent` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEvent {
    /// Twilio started dialling.
    Initiated,
    /// The callee's phone is ringing.
    Ringing,
    /// The callee answered.
    Answered,
    /// The call ended, however it ended.
    Completed,
}

impl CallEvent {
    /// Every event, for callers that track the whole life of a call.
    pub const ALL: [CallEvent; 4] = [
        CallEvent::Initiated,
        CallEvent::Ringing,
        CallEvent::Answered,
        CallEvent::Completed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CallEvent::Initiated => "initiated",
            CallEvent::Ringing => "ringing",
            CallEvent::Answered => "answered",
            CallEvent::Completed => "completed",
        }
    }
}

/// Where and for which events Twilio should post a call's status changes. Without
/// `events`, Twilio posts only the final `completed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCallback {
    /// Our status webhook (`…/twilio/voice/status`).
    pub url: String,
    /// The progress events to report.
    pub events: Vec<CallEvent>,
}

impl StatusCallback {
    /// Reports every progress event to `url`.
    pub fn all(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            events: CallEvent::ALL.to_vec(),
        }
    }
}

/// A call's status as Twilio reports it (PROTOCOLS.md §1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Waiting to be dialled.
    Queued,
    /// Ringing.
    Ringing,
    /// Answered and live.
    InProgress,
    /// Ended normally.
    Completed,
    /// The callee was busy.
    Busy,
    /// Could not be placed.
    Failed,
    /// Nobody answered.
    NoAnswer,
    /// Cancelled while queued or ringing.
    Canceled,
    /// A status this code does not know yet.
    #[serde(other)]
    Unknown,
}

/// The parts of Twilio's Call resource switchboard uses. Twilio sends more; the rest is
/// ignored. Everything but the SID may be null or absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallResource {
    /// The call's SID (`CA…`), the key of our call record.
    pub sid: String,
    /// The owning account.
    #[serde(default)]
    pub account_sid: Option<String>,
    /// Where the call goes.
    #[serde(default)]
    pub to: Option<String>,
    /// Where it comes from.
    #[serde(default)]
    pub from: Option<String>,
    /// Its status when Twilio answered (`queued` for a new call).
    #[serde(default)]
    pub status: Option<CallStatus>,
    /// `inbound`, `outbound-api` or `outbound-dial`.
    #[serde(default)]
    pub direction: Option<String>,
    /// The parent leg, for child calls.
    #[serde(default)]
    pub parent_call_sid: Option<String>,
    /// RFC 2822 timestamp.
    #[serde(default)]
    pub date_created: Option<String>,
    /// RFC 2822 timestamp.
    #[serde(default)]
    pub start_time: Option<String>,
    /// RFC 2822 timestamp.
    #[serde(default)]
    pub end_time: Option<String>,
    /// Seconds, as a string (or a number, accepted too), once the call has ended.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub duration: Option<String>,
    /// The resource's own path.
    #[serde(default)]
    pub uri: Option<String>,
}

/// A message's delivery status as Twilio reports it (PROTOCOLS.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Accepted, waiting to be sent.
    Queued,
    /// Being sent.
    Sending,
    /// Handed to the carrier.
    Sent,
    /// Could not be sent.
    Failed,
    /// The carrier confirmed delivery.
    Delivered,
    /// The carrier could not deliver it.
    Undelivered,
    /// An inbound message being received.
    Receiving,
    /// An inbound message received.
    Received,
    /// Accepted by a Messaging Service.
    Accepted,
    /// Scheduled for later.
    Scheduled,
    /// Read (channels with read receipts).
    Read,
    /// Some segments delivered.
    PartiallyDelivered,
    /// A scheduled message cancelled.
    Canceled,
    /// A status this code does not know yet.
    #[serde(other)]
    Unknown,
}

impl MessageStatus {
    /// Reads a status as Twilio writes it (`partially_delivered`); `None` when it is not one
    /// Twilio documents.
    pub fn parse(raw: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .ok()
            .filter(|s| *s != Self::Unknown)
    }

    /// The status as Twilio writes it (and as it is stored).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Delivered => "delivered",
            Self::Undelivered => "undelivered",
            Self::Receiving => "receiving",
            Self::Received => "received",
            Self::Accepted => "accepted",
            Self::Scheduled => "scheduled",
            Self::Read => "read",
            Self::PartiallyDelivered => "partially_delivered",
            Self::Canceled => "canceled",
            Self::Unknown => "unknown",
        }
    }
}

/// The parts of Twilio's Message resource switchboard uses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageResource {
    /// The message's SID (`SM…`).
    pub sid: String,
    /// Its status when Twilio answered (`queued` for a new message).
    #[serde(default)]
    pub status: Option<MessageStatus>,
    /// Recipient.
    #[serde(default)]
    pub to: Option<String>,
    /// Sender.
    #[serde(default)]
    pub from: Option<String>,
    /// The text as Twilio will send it.
    #[serde(default)]
    pub body: Option<String>,
    /// Segments billed, as a string.
    #[serde(default, deserialize_with = "opt_string_or_number")]
    pub num_segments: Option<String>,
    /// Twilio's error code when the message failed.
    #[serde(default)]
    pub error_code: Option<u32>,
    /// Twilio's explanation when the message failed.
    #[serde(default)]
    pub error_message: Option<String>,
    /// RFC 2822 timestamp.
    #[serde(default)]
    pub date_created: Option<String>,
}

/// What a hang-up found: both mean the call is over now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// Twilio ended the call on our request.
    Ended,
    /// The call had already ended (Twilio answered 404 with code 20404).
    AlreadyEnded,
}

/// A client for one Twilio account. Cheap to clone: clones share one connection pool.
#[derive(Clone, Debug)]
pub struct TwilioClient {
    /// Connection pool with the request deadline built in.
    http: reqwest::Client,
    /// Scheme, host and optional path prefix, no trailing slash: `https://api.twilio.com`
    /// in production, a local server in tests.
    base_url: String,
    /// The account (`AC…`): Basic-auth user and part of every path.
    account_sid: String,
    /// The Basic-auth password; `SecretString` so it cannot end up in logs or errors.
    auth_token: SecretString,
    /// Reported in [`TwilioError::Timeout`].
    timeout: Duration,
}

impl TwilioClient {
    /// A client for the real Twilio API with the default 10 s deadline.
    pub fn new(
        account_sid: impl Into<String>,
        auth_token: SecretString,
    ) -> Result<Self, TwilioError> {
        Self::with_options(account_sid, auth_token, DEFAULT_BASE_URL, DEFAULT_TIMEOUT)
    }

    /// A client for the API at `base_url` (with or without a path prefix) and a per-request
    /// deadline of `timeout`. Tests point this at a local server.
    pub fn with_options(
        account_sid: impl Into<String>,
        auth_token: SecretString,
        base_url: &str,
        timeout: Duration,
    ) -> Result<Self, TwilioError> {
        let account_sid = account_sid.into();
        check_sid("account SID", &account_sid)?;
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|e| TwilioError::Invalid(format!("base URL `{base_url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(TwilioError::Invalid(format!(
                "base URL `{base_url}` must be http(s) without a query"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(crate::USER_AGENT)
            .build()
            .map_err(TwilioError::Transport)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            account_sid,
            auth_token,
            timeout,
        })
    }

    /// The account this client acts for.
    pub fn account_sid(&self) -> &str {
        &self.account_sid
    }

    /// Places an outbound call from `from` (one of the account's numbers) to `to`, running
    /// `twiml` when it is answered (typically a `<Connect><Stream>`), with optional status
    /// callbacks. Returns the new call, normally `queued`.
    pub async fn create_call(
        &self,
        to: &E164,
        from: &E164,
        twiml: &str,
        status_callback: Option<&StatusCallback>,
    ) -> Result<CallResource, TwilioError> {
        let mut form = vec![
            ("To", to.as_str()),
            ("From", from.as_str()),
            ("Twiml", twiml),
        ];
        if let Some(cb) = status_callback {
            form.push(("StatusCallback", cb.url.as_str()));
            form.extend(
                cb.events
                    .iter()
                    .map(|e| ("StatusCallbackEvent", e.as_str())),
            );
        }
        let response = self.post("Calls.json", &form).await?;
        self.decode(response).await
    }

    /// Ends a live call (`Status=completed`). A call that had already ended is not an error:
    /// hanging up is what the caller wanted, and it has happened.
    pub async fn hang_up(&self, call_sid: &str) -> Result<HangUp, TwilioError> {
        check_sid("call SID", call_sid)?;
        let path = format!("Calls/{call_sid}.json");
        let response = self.post(&path, &[("Status", "completed")]).await?;
        match self.error_of(response).await? {
            None => Ok(HangUp::Ended),
            Some(TwilioError::Api {
                status: 404,
                code: Some(ERROR_NOT_FOUND),
                ..
            }) => {
                tracing::debug!(call_sid, "hang-up of a call that had already ended");
                Ok(HangUp::AlreadyEnded)
            }
            Some(other) => Err(other),
        }
    }

    /// Replaces whatever a live call is running with `twiml`: a `<Dial>` for a transfer, a
    /// `<Say>` and `<Hangup/>` to end politely. Any running `<Connect><Stream>` is torn down,
    /// so the media socket receives `stop`. Twilio caps inline TwiML at about 4000
    /// characters; keep it short.
    pub async fn redirect_twiml(
        &self,
        call_sid: &str,
        twiml: &str,
    ) -> Result<CallResource, TwilioError> {
        check_sid("call SID", call_sid)?;
        let path = format!("Calls/{call_sid}.json");
        let response = self.post(&path, &[("Twiml", twiml)]).await?;
        self.decode(response).await
    }

    /// Sends an SMS from `from` (one of the account's numbers) to `to`, with an optional
    /// delivery status callback. Returns the new message, normally `queued`.
    pub async fn send_sms(
        &self,
        to: &E164,
        from: &E164,
        body: &str,
        status_callback: Option<&str>,
    ) -> Result<MessageResource, TwilioError> {
        let mut form = vec![("To", to.as_str()), ("From", from.as_str()), ("Body", body)];
        if let Some(url) = status_callback {
            form.push(("StatusCallback", url));
        }
        let response = self.post("Messages.json", &form).await?;
        self.decode(response).await
    }

    /// POSTs `form` to `/2010-04-01/Accounts/{AC}/{resource}`.
    async fn post(
        &self,
        resource: &str,
        form: &[(&str, &str)],
    ) -> Result<reqwest::Response, TwilioError> {
        let url = format!(
            "{}/{API_VERSION}/Accounts/{}/{resource}",
            self.base_url, self.account_sid
        );
        self.http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| self.transport_error(e))
    }

    /// Reads a success body as `T`, or the error Twilio sent.
    async fn decode<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, TwilioError> {
        let status = response.status();
        let bytes = self.read_body(response).await?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes));
        }
        serde_json::from_slice(&bytes).map_err(TwilioError::Decode)
    }

    /// `None` for a success (body discarded), the API error otherwise.
    async fn error_of(
        &self,
        response: reqwest::Response,
    ) -> Result<Option<TwilioError>, TwilioError> {
        let status = response.status();
        let bytes = self.read_body(response).await?;
        Ok((!status.is_success()).then(|| api_error(status.as_u16(), &bytes)))
    }

    async fn read_body(&self, response: reqwest::Response) -> Result<Vec<u8>, TwilioError> {
        // The body counts against the same deadline as the request.
        match response.bytes().await {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(e) => Err(self.transport_error(e)),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> TwilioError {
        if e.is_timeout() {
            TwilioError::Timeout(self.timeout)
        } else {
            TwilioError::Transport(e.without_url())
        }
    }
}

/// Twilio's JSON error body (`{"code":20404,"message":"…","more_info":"…","status":404}`).
#[derive(Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
    more_info: Option<String>,
}

fn api_error(status: u16, body: &[u8]) -> TwilioError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(err) => TwilioError::Api {
            status,
            code: err.code,
            message: err.message.unwrap_or_default(),
            more_info: err.more_info,
        },
        Err(_) => TwilioError::Api {
            status,
            code: None,
            message: String::from_utf8_lossy(body)
                .chars()
                .take(MAX_RAW_ERROR)
                .collect(),
            more_info: None,
        },
    }
}

/// SIDs are interpolated into URL paths, so anything but letters and digits is refused
/// before it can change the path (`../`, `?`, `#`).
fn check_sid(what: &str, sid: &str) -> Result<(), TwilioError> {
    if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TwilioError::Invalid(format!(
            "{what} `{}` must be letters and digits",
            sid.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

fn opt_string_or_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Int(i64),
        Float(f64),
    }
    Ok(Option::<Raw>::deserialize(d)?.map(|raw| match raw {
        Raw::Text(s) => s,
        Raw::Int(n) => n.to_string(),
        Raw::Float(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_that_could_change_the_path_are_refused() {
        assert!(check_sid("call SID", "CA0123456789abcdef0123456789abcdef").is_ok());
        for bad in ["", "../Messages", "CA1?x=1", "CA1#", "CA 1", "CA1/"] {
            assert!(check_sid("call SID", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn twilio_error_bodies_keep_code_and_message() {
        let body = br#"{"code":20404,"message":"The requested resource was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#;
        let err = api_error(404, body);
        assert!(matches!(
            &err,
            TwilioError::Api { status: 404, code: Some(20404), message, more_info: Some(_) }
                if message.starts_with("The requested resource")
        ));
        assert_eq!(
            err.to_string(),
            "Twilio answered 404: The requested resource was not found (error 20404)"
        );
    }

    #[test]
    fn a_non_json_error_body_is_kept_short() {
        let body = format!("<html>{}</html>", "x".repeat(5000));
        let TwilioError::Api { code, message, .. } = api_error(502, body.as_bytes()) else {
            panic!("not an API error");
        };
        assert_eq!(code, None);
        assert_eq!(message.chars().count(), MAX_RAW_ERROR);
    }

    #[test]
    fn a_call_resource_parses_the_protocols_example() {
        let json = r#"{"sid":"CA1f...","account_sid":"AC0a...","to":"+14155550100","from":"+14155550199",
            "status":"queued","direction":"outbound-api","api_version":"2010-04-01",
            "date_created":"Tue, 01 Sep 2026 12:00:00 +0000","start_time":null,"duration":null,
            "uri":"/2010-04-01/Accounts/AC0a.../Calls/CA1f....json"}"#;
        let call: CallResource = serde_json::from_str(json).unwrap();
        assert_eq!(call.sid, "CA1f...");
        assert_eq!(call.status, Some(CallStatus::Queued));
        assert_eq!(call.duration, None);
        let ended: CallResource =
            serde_json::from_str(r#"{"sid":"CA1","status":"in-progress","duration":"42"}"#)
                .unwrap();
        assert_eq!(ended.status, Some(CallStatus::InProgress));
        assert_eq!(ended.duration.as_deref(), Some("42"));
        let odd: CallResource =
            serde_json::from_str(r#"{"sid":"CA1","status":"teleported","duration":7}"#).unwrap();
        assert_eq!(odd.status, Some(CallStatus::Unknown));
        assert_eq!(odd.duration.as_deref(), Some("7"));
    }

    #[test]
    fn message_statuses_use_twilio_spelling() {
        let msg: MessageResource = serde_json::from_str(
            r#"{"sid":"SM1","status":"partially_delivered","num_segments":"2","error_code":null}"#,
        )
        .unwrap();
        assert_eq!(msg.status, Some(MessageStatus::PartiallyDelivered));
        assert_eq!(msg.num_segments.as_deref(), Some("2"));
    }

    #[test]
    fn a_bad_base_url_or_account_is_refused_at_construction() {
        let token = || SecretString::from("t");
        assert!(TwilioClient::with_options("AC1", token(), "not a url", DEFAULT_TIMEOUT).is_err());
        assert!(TwilioClient::with_options("AC1", token(), "ftp://h", DEFAULT_TIMEOUT).is_err());
        assert!(
            TwilioClient::with_options("AC/1", token(), DEFAULT_BASE_URL, DEFAULT_TIMEOUT).is_err()
        );
        assert!(TwilioClient::new("AC1", token()).is_ok());
    }

    #[test]
    fn the_auth_token_is_not_in_debug_output() {
        let client = TwilioClient::new("AC1", SecretString::from("s3cr3t-token")).unwrap();
        assert!(!format!("{client:?}").contains("s3cr3t-token"));
    }
}
