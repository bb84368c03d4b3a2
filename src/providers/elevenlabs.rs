//! ElevenLabs text-to-speech (`PROTOCOLS.md` §5.1–5.2): the adapter behind the engine's
//! [`TextToSpeech`] port.
//!
//! One `synthesize` speaks one sentence, by default over the stream-input WebSocket
//! (`GET {base}/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=
//! ulaw_8000`, see [`super::elevenlabs_ws`]) with the HTTP streaming endpoint
//! (`POST …/stream?output_format=ulaw_8000`) as its fallback ([`TtsTransport`]). Either
//! way the audio is raw 8 kHz μ-law, which Twilio takes as it is, so chunks are passed on
//! as they arrive: no re-encoding, no re-chunking, no buffering.
//!
//! Why a connection per sentence, on either transport: the engine already splits the
//! model's reply into sentences, a sentence is then independently cancellable (drop its
//! stream on barge-in and its connection goes with it: the WebSocket with a close frame, so
//! ElevenLabs stops generating), and a failure costs one sentence rather than a session's
//! state. Each sentence's input is flushed and ended as soon as it is sent, which is what
//! "flush at the end of a turn" amounts to when a socket carries one sentence.
//!
//! Why the WebSocket first: it is the API ElevenLabs builds for conversational agents, and
//! the HTTP endpoint stays as the fallback for when the socket cannot be opened (a proxy
//! without WebSocket support, a handshake refused with a server error) or breaks before its
//! first audio. Once audio has been passed on, nothing is repeated on any transport: the
//! caller would hear the start of the sentence twice.
//!
//! Retries ([`RetryPolicy`]) happen only before the first audio, and only after a failure a
//! repeat may cure: a connection failure, a 5xx, a 408 or a 429, or a stream that broke
//! before its first audio. Each waits a "full jitter" backoff, so calls that failed together
//! do not come back together. A 4xx (bad key, bad voice, quota) is never retried. All of it,
//! backoffs included, stays within [`ElevenLabsConfig::first_byte_timeout`].
//!
//! Errors, as the actors decide about them:
//! - a bad voice id is refused before anything is sent;
//! - 5xx, 408, 429 and transport failures are [`PortError::Unavailable`] (a retry, later,
//!   may help);
//! - another 4xx is [`PortError::Refused`] with ElevenLabs' own message, never the key;
//! - no audio within [`ElevenLabsConfig::first_byte_timeout`] is [`PortError::TimedOut`],
//!   from `synthesize` itself, so a caller learns it before it starts to play anything;
//! - once audio flows, a stream cut short or a gap between chunks longer than that same
//!   timeout ends the stream with one `Err` item.

use std::time::Duration;

use actors::ports::{AudioStream, PortError, PortResult, TextToSpeech, TtsRequest};
use async_trait::async_trait;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use super::retry::RetryPolicy;

use super::elevenlabs_ws::{self, WsSession};

/// Where the real API lives.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";

/// The model used unless configured otherwise: ElevenLabs' lowest-latency model (~75 ms),
/// multilingual, and the one it recommends for conversational agents.
pub const DEFAULT_MODEL_ID: &str = "eleven_flash_v2_5";

/// How long a sentence may take to produce its first audio unless configured otherwise.
/// Flash answers in well under a second from a nearby region; a caller hearing nothing for
/// longer than this is better served by the engine's fallback than by more waiting.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);

/// The audio format asked for: what a Twilio media payload carries.
pub(super) const OUTPUT_FORMAT: &str = "ulaw_8000";

/// Models that take `language_code`. ElevenLabs documents language enforcement for Turbo
/// v2.5 and Flash v2.5 only, and answers an error when another model is sent the field, so
/// for every other model it is left out and the model infers the language from the text.
const MODELS_WITH_LANGUAGE_CODE: &[&str] = &["eleven_flash_v2_5", "eleven_turbo_v2_5"];

/// Longest voice id accepted. Real ids are 20 characters; the bound only keeps a garbage
/// value out of a URL and a log line.
const MAX_VOICE_ID_LEN: usize = 64;

/// How to reach ElevenLabs. Secrets stay secret: `Debug` prints the key redacted.
#[derive(Clone, Debug)]
pub struct ElevenLabsConfig {
    /// Scheme, host and optional path prefix, without a trailing slash or query:
    /// [`DEFAULT_BASE_URL`] in production, a local server or the emulator in tests and demos.
    /// Always `http(s)`; the WebSocket URL is derived from it (`https` → `wss`).
    pub base_url: String,
    /// Sent as the `xi-api-key` header (of the request, or of the WebSocket handshake), and
    /// nowhere else.
    pub api_key: SecretString,
    /// The model (`eleven_flash_v2_5`, `eleven_turbo_v2_5`, `eleven_multilingual_v2`, …).
    /// Decides whether `language_code` is sent (see the module docs).
    pub model_id: String,
    /// Longest wait from starting a sentence to its first audio bytes (connection,
    /// handshake, retries, backoffs and first chunk together), and also the longest gap
    /// allowed between later chunks: a stream that goes silent for that long has stalled,
    /// and the caller is told so rather than left waiting.
    pub first_byte_timeout: Duration,
    /// Which endpoint speaks (default [`TtsTransport::WebSocketWithHttpFallback`]).
    pub transport: TtsTransport,
    /// How a sentence that failed before its first audio is retried (default
    /// [`RetryPolicy::DEFAULT`]).
    pub retry: RetryPolicy,
}

impl ElevenLabsConfig {
    /// The real API with the default model, timeout, transport and retries.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            model_id: DEFAULT_MODEL_ID.to_owned(),
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
            transport: TtsTransport::default(),
            retry: RetryPolicy::DEFAULT,
        }
    }

    /// The same configuration pointed at another server (a proxy, the emulator).
    pub fn with_base_url(self, base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..self
        }
    }
}

/// Which ElevenLabs endpoint a sentence is spoken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TtsTransport {
    /// The stream-input WebSocket; when it cannot be opened, or fails before its first
    /// audio, the sentence is spoken over HTTP instead (once per sentence, without waiting:
    /// it is another endpoint, and the caller is waiting). The default: the WebSocket is
    /// what ElevenLabs builds for agents, and the fallback keeps a call talking through a
    /// proxy or an outage that breaks only the socket.
    #[default]
    WebSocketWithHttpFallback,
    /// The stream-input WebSocket only (to measure it, or where HTTP is not wanted).
    WebSocket,
    /// The HTTP streaming endpoint only: one `POST` per sentence, nothing to upgrade.
    Http,
}

/// Why an [`ElevenLabsTts`] could not be built: a configuration mistake, found at start.
#[derive(Debug, thiserror::Error)]
pub enum ElevenLabsSetupError {
    /// A configuration value is unusable; the text says which and why.
    #[error("ElevenLabs configuration: {0}")]
    Invalid(String),
    /// The HTTP client could not be built (its TLS backend failed to start).
    #[error("ElevenLabs HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// The ElevenLabs text-to-speech adapter. Cheap to clone: clones share one HTTP connection
/// pool, so sentence after sentence on the HTTP path reuses a warm TLS connection.
#[derive(Clone, Debug)]
pub struct ElevenLabsTts {
    /// Connection pool. It has a connect timeout but no overall one: a sentence's audio may
    /// rightly take longer to stream than to start, so the first-byte and gap timeouts are
    /// applied around each read instead.
    http: reqwest::Client,
    /// As configured, trailing slash removed.
    base_url: String,
    /// `base_url` with its scheme made `ws`/`wss`, for the stream-input socket.
    ws_base_url: String,
    api_key: SecretString,
    model_id: String,
    first_byte_timeout: Duration,
    transport: TtsTransport,
    retry: RetryPolicy,
}

impl ElevenLabsTts {
    /// Checks the configuration and builds the client.
    pub fn new(config: ElevenLabsConfig) -> Result<Self, ElevenLabsSetupError> {
        let base_url = config.base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base_url)
            .map_err(|e| ElevenLabsSetupError::Invalid(format!("base URL `{base_url}`: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(ElevenLabsSetupError::Invalid(format!(
                "base URL `{base_url}` must be http(s) without a query"
            )));
        }
        let ws_base_url = super::websocket_base(parsed.as_str()).ok_or_else(|| {
            ElevenLabsSetupError::Invalid(format!(
                "base URL `{base_url}` has no WebSocket equivalent"
            ))
        })?;
        if config.api_key.expose_secret().trim().is_empty() {
            return Err(ElevenLabsSetupError::Invalid("the API key is empty".into()));
        }
        if config.model_id.trim().is_empty() {
            return Err(ElevenLabsSetupError::Invalid(
                "the model id is empty".into(),
            ));
        }
        if config.first_byte_timeout.is_zero() {
            return Err(ElevenLabsSetupError::Invalid(
                "the first-byte timeout is zero".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.first_byte_timeout)
            .user_agent(crate::USER_AGENT)
            .build()
            .map_err(ElevenLabsSetupError::Client)?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
            ws_base_url,
            api_key: config.api_key,
            model_id: config.model_id,
            first_byte_timeout: config.first_byte_timeout,
            transport: config.transport,
            retry: config.retry,
        })
    }

    /// The `language_code` to send for `request`, if this model takes one.
    fn language_code(&self, request: &TtsRequest) -> Option<String> {
        MODELS_WITH_LANGUAGE_CODE
            .contains(&self.model_id.as_str())
            .then(|| primary_language(&request.language))
            .flatten()
    }

    /// The JSON body for one HTTP request.
    fn body<'a>(&'a self, request: &'a TtsRequest) -> RequestBody<'a> {
        RequestBody {
            text: &request.text,
            model_id: &self.model_id,
            language_code: self.language_code(request),
            voice_settings: VoiceSettings::CONVERSATIONAL,
        }
    }

    /// The stream-input URL for one sentence, query included.
    fn ws_url(&self, request: &TtsRequest) -> String {
        let mut url = reqwest::Url::parse(&format!(
            "{}/v1/text-to-speech/{}/stream-input",
            self.ws_base_url, request.voice
        ))
        .expect("a checked base URL and a checked voice id make a valid URL");
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("model_id", &self.model_id)
                .append_pair("output_format", OUTPUT_FORMAT);
            if let Some(language) = self.language_code(request) {
                query.append_pair("language_code", &language);
            }
        }
        url.into()
    }

    /// One attempt over HTTP: sends the request and waits for a success status and the
    /// first audio chunk (`None` when the body is empty).
    async fn start_http(&self, request: &TtsRequest) -> Result<(Audio, Option<Vec<u8>>), Failure> {
        let url = format!(
            "{}/v1/text-to-speech/{}/stream",
            self.base_url, request.voice
        );
        // `optimize_streaming_latency` is left out: ElevenLabs has deprecated it, Flash is
        // already its fastest model, and level 4 turns the text normalizer off, which makes
        // numbers and dates read badly on the phone.
        let response = self
            .http
            .post(url)
            .query(&[("output_format", OUTPUT_FORMAT)])
            .header("xi-api-key", self.api_key.expose_secret())
            .json(&self.body(request))
            .send()
            .await
            .map_err(transport_failure)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_failure(status.as_u16(), &body));
        }
        let mut response = response;
        let first = next_http_chunk(&mut response).await?;
        Ok((Audio::Http(response), first))
    }

    /// One attempt over the stream-input WebSocket: opens it, sends the sentence and waits
    /// for the first audio (`None` when the sentence ended without any).
    async fn start_ws(&self, request: &TtsRequest) -> Result<(Audio, Option<Vec<u8>>), Failure> {
        let url = self.ws_url(request);
        let messages =
            elevenlabs_ws::client_messages(&request.text, &VoiceSettings::CONVERSATIONAL);
        let (session, first) = elevenlabs_ws::open(&url, &self.api_key, &messages).await?;
        Ok((Audio::Ws(Box::new(session)), first))
    }

    /// Runs attempts until one yields its first audio, fails in a way nothing can cure, or
    /// the retries or the time before `deadline` run out; falls back from the WebSocket to
    /// HTTP as the transport says. Nothing has been passed on while this runs, so repeating
    /// a sentence here can never make the caller hear it twice.
    async fn start(
        &self,
        request: &TtsRequest,
        deadline: Instant,
    ) -> PortResult<(Audio, Option<Vec<u8>>)> {
        let mut on_ws = self.transport != TtsTransport::Http;
        let mut retries = 0;
        loop {
            let started = std::time::Instant::now();
            let attempt = match (on_ws, self.transport) {
                // A socket that stalls gets half of what is left, so HTTP still has time.
                (true, TtsTransport::WebSocketWithHttpFallback) => {
                    let share = deadline.saturating_duration_since(Instant::now()) / 2;
                    tokio::time::timeout(share, self.start_ws(request))
                        .await
                        .unwrap_or_else(|_| {
                            Err(Failure {
                                error: PortError::TimedOut(share),
                                retry: Retry::OtherTransport,
                            })
                        })
                }
                (true, _) => self.start_ws(request).await,
                (false, _) => self.start_http(request).await,
            };
            let transport = if on_ws { "websocket" } else { "http" };
            let operation = format!("speech over {transport}");
            let failure = match attempt {
                Ok(audio) => {
                    super::observe_attempt("elevenlabs", &operation, started, super::Attempt::Ok);
                    return Ok(audio);
                }
                Err(failure) => {
                    let attempt = match &failure.error {
                        PortError::TimedOut(_) => super::Attempt::Timeout,
                        PortError::Refused(_) => super::Attempt::Refused,
                        _ => super::Attempt::Unavailable,
                    };
                    super::observe_attempt("elevenlabs", &operation, started, attempt);
                    failure
                }
            };
            if failure.retry == Retry::Never {
                return Err(failure.error);
            }
            if on_ws && self.transport == TtsTransport::WebSocketWithHttpFallback {
                // The reason is a scrubbed port error: ElevenLabs' message, never the key.
                tracing::info!(
                    reason = %failure.error,
                    "ElevenLabs WebSocket failed before audio; falling back to HTTP"
                );
                on_ws = false;
                continue;
            }
            if failure.retry == Retry::OtherTransport {
                return Err(failure.error);
            }
            retries += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(delay) = self
                .retry
                .delay(retries, None, remaining, rand::random::<f64>())
            else {
                tracing::debug!(
                    transport,
                    attempts = retries,
                    reason = %failure.error,
                    "ElevenLabs synthesis failed; no retry left within the timeout"
                );
                return Err(failure.error);
            };
            tracing::info!(
                transport,
                attempt = retries + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                reason = %failure.error,
                "retrying ElevenLabs synthesis"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl TextToSpeech for ElevenLabsTts {
    async fn synthesize(&self, request: TtsRequest) -> PortResult<AudioStream> {
        check_voice_id(&request.voice)?;
        if request.text.trim().is_empty() {
            // Nothing to say is not an error (a reply may split into an empty sentence),
            // and ElevenLabs would answer 400: skip the round trip.
            return Ok(futures::stream::empty().boxed());
        }
        tracing::debug!(
            voice = %request.voice,
            model = %self.model_id,
            transport = ?self.transport,
            chars = request.text.chars().count(),
            "ElevenLabs synthesis"
        );
        let timeout = self.first_byte_timeout;
        let deadline = Instant::now() + timeout;
        let (audio, first) = tokio::time::timeout_at(deadline, self.start(&request, deadline))
            .await
            .map_err(|_| PortError::TimedOut(timeout))??;
        let Some(first) = first else {
            return Ok(futures::stream::empty().boxed());
        };
        let rest = futures::stream::unfold(Some(audio), move |state| async move {
            let mut audio = state?;
            match tokio::time::timeout(timeout, audio.next_chunk()).await {
                Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(audio))),
                Ok(Ok(None)) => None,
                // One error item, then the stream ends (the connection is dropped with it).
                Ok(Err(failure)) => Some((Err(failure.error), None)),
                Err(_) => Some((Err(PortError::TimedOut(timeout)), None)),
            }
        });
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
    }
}

/// Where a sentence's audio is coming from once it has started. Dropping it drops the
/// connection, which is how a sentence is cancelled.
enum Audio {
    /// The body of an HTTP streaming response.
    Http(reqwest::Response),
    /// A stream-input WebSocket session (which closes itself when dropped), boxed: its
    /// buffers make it ten times the size of a response.
    Ws(Box<WsSession>),
}

impl Audio {
    /// The next non-empty chunk of μ-law, `None` at the clean end.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        match self {
            Audio::Http(response) => next_http_chunk(response).await,
            Audio::Ws(session) => session.next_chunk().await,
        }
    }
}

/// A failed attempt: the error the port will report if it is the last, and whether another
/// attempt may cure it. Made where the failure is seen, since only there is it known what
/// kind of failure it was.
#[derive(Debug, PartialEq)]
pub(super) struct Failure {
    /// What the caller is told if nothing else is tried.
    pub(super) error: PortError,
    /// What may be tried next.
    pub(super) retry: Retry,
}

/// What may follow a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Retry {
    /// Nothing: the request itself was refused (4xx), and would be again on any endpoint.
    Never,
    /// A repeat, after a backoff, may succeed (a connection failure, 5xx, 408, 429, a
    /// stream that broke before its first audio).
    Safe,
    /// The WebSocket is not usable here (no such endpoint, no upgrade): HTTP may work, but
    /// the same socket again will not.
    OtherTransport,
}

impl Failure {
    /// A failure a repeat may cure.
    pub(super) fn safe(error: PortError) -> Self {
        Self {
            error,
            retry: Retry::Safe,
        }
    }

    /// A failure nothing will cure.
    pub(super) fn never(error: PortError) -> Self {
        Self {
            error,
            retry: Retry::Never,
        }
    }

    /// A failure of the WebSocket that the HTTP endpoint may not share.
    pub(super) fn other_transport(error: PortError) -> Self {
        Self {
            error,
            retry: Retry::OtherTransport,
        }
    }
}

/// The body of a streaming request, fields as in `PROTOCOLS.md` §5.1.
#[derive(Serialize)]
struct RequestBody<'a> {
    text: &'a str,
    model_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    language_code: Option<String>,
    voice_settings: VoiceSettings,
}

/// How the voice sounds; the same on both transports, so a sentence that falls back to
/// HTTP sounds like the one before it.
#[derive(Clone, Copy, Debug, Serialize)]
pub(super) struct VoiceSettings {
    stability: f32,
    similarity_boost: f32,
    speed: f32,
}

impl VoiceSettings {
    /// ElevenLabs' own defaults for a steady conversational voice at normal speed.
    pub(super) const CONVERSATIONAL: Self = Self {
        stability: 0.5,
        similarity_boost: 0.75,
        speed: 1.0,
    };
}

/// The next non-empty chunk of an HTTP body, `None` at its clean end.
async fn next_http_chunk(response: &mut reqwest::Response) -> Result<Option<Vec<u8>>, Failure> {
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) if bytes.is_empty() => continue,
            Ok(Some(bytes)) => return Ok(Some(bytes.to_vec())),
            Ok(None) => return Ok(None),
            Err(error) => {
                return Err(Failure::safe(PortError::Unavailable(format!(
                    "ElevenLabs (audio stream broke: {})",
                    error.without_url()
                ))))
            }
        }
    }
}

/// Refuses voice ids that are empty or not safe as one URL path segment. ElevenLabs ids are
/// alphanumeric; `-` and `_` are allowed too, for proxies and custom deployments.
fn check_voice_id(voice: &str) -> PortResult<()> {
    if voice.is_empty() {
        return Err(PortError::Refused(
            "no ElevenLabs voice id: the agent has no voice configured, and the account's \
             default voice is not known to the runtime; set the agent's voice"
                .to_owned(),
        ));
    }
    let safe = voice.len() <= MAX_VOICE_ID_LEN
        && voice
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !safe {
        let shown: String = voice.chars().take(MAX_VOICE_ID_LEN).collect();
        return Err(PortError::Refused(format!(
            "invalid ElevenLabs voice id {shown:?}: expected up to {MAX_VOICE_ID_LEN} letters, \
             digits, '-' or '_'"
        )));
    }
    Ok(())
}

/// The primary subtag of a BCP 47 tag, lower case (`en-US` → `en`, `fil` → `fil`); `None`
/// when there is none worth sending (empty, `und`, or not 2–3 letters), so the model infers
/// the language rather than being refused for a bad code.
fn primary_language(tag: &str) -> Option<String> {
    let primary = tag.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    let valid = (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_lowercase());
    (valid && primary != "und").then_some(primary)
}

fn transport_failure(error: reqwest::Error) -> Failure {
    // `without_url`: the URL holds no secret, but keeping errors short and uniform helps.
    let builder = error.is_builder();
    let port = PortError::Unavailable(format!("ElevenLabs ({})", error.without_url()));
    if builder {
        // The request could not even be built (say, a key that is not a header value):
        // sending it again changes nothing.
        Failure::never(port)
    } else {
        Failure::safe(port)
    }
}

/// The failure for a non-2xx answer (of the HTTP endpoint or of the WebSocket handshake):
/// 5xx, 408 and 429 may pass, another 4xx will not.
pub(super) fn status_failure(status: u16, body: &[u8]) -> Failure {
    let message = error_message(body).unwrap_or_else(|| {
        reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no error message")
            .to_owned()
    });
    if status >= 500 || status == 408 || status == 429 {
        Failure::safe(PortError::Unavailable(format!(
            "ElevenLabs ({status} {message})"
        )))
    } else {
        Failure::never(PortError::Refused(format!(
            "ElevenLabs {status}: {message}"
        )))
    }
}

/// The message of an ElevenLabs error body, in the shapes it sends:
/// `{"detail":{"status","message"}}`, `{"detail":"…"}`, or a validation list
/// `{"detail":[{"msg":"…"}]}`. Cut to [`super::MAX_ERROR_CHARS`] characters.
fn error_message(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let detail = &value["detail"];
    let message = match detail {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => detail["message"].as_str().map(str::to_owned),
        Value::Array(items) => items
            .first()
            .and_then(|i| i["msg"].as_str())
            .map(str::to_owned),
        _ => None,
    }?;
    let message = message.trim();
    (!message.is_empty()).then(|| message.chars().take(super::MAX_ERROR_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> TtsRequest {
        TtsRequest {
            text: text.into(),
            voice: "v".into(),
            language: "de-DE".into(),
        }
    }

    #[test]
    fn the_language_code_is_the_primary_subtag() {
        assert_eq!(primary_language("en-US").as_deref(), Some("en"));
        assert_eq!(primary_language("PT_br").as_deref(), Some("pt"));
        assert_eq!(primary_language("fil").as_deref(), Some("fil"));
        assert_eq!(primary_language(""), None);
        assert_eq!(primary_language("und"), None);
        assert_eq!(primary_language("english"), None);
    }

    #[test]
    fn voice_ids_must_be_one_safe_path_segment() {
        assert!(check_voice_id("21m00Tcm4TlvDq8ikWAM").is_ok());
        assert!(check_voice_id("voice_1-a").is_ok());
        for bad in ["", "../admin", "a/b", "a?b", "a b", "é", &"x".repeat(65)] {
            assert!(
                matches!(check_voice_id(bad), Err(PortError::Refused(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn error_messages_are_read_from_each_body_shape() {
        let m = |s: &str| error_message(s.as_bytes());
        assert_eq!(
            m(r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#).as_deref(),
            Some("Invalid API key")
        );
        assert_eq!(m(r#"{"detail":"Not found"}"#).as_deref(), Some("Not found"));
        assert_eq!(
            m(r#"{"detail":[{"loc":["body","text"],"msg":"field required"}]}"#).as_deref(),
            Some("field required")
        );
        assert_eq!(m("<html>"), None);
    }

    #[test]
    fn server_errors_and_throttling_may_be_retried_and_other_client_errors_never() {
        for status in [500, 502, 503, 504, 408, 429] {
            let failure = status_failure(status, b"");
            assert_eq!(failure.retry, Retry::Safe, "{status}");
            assert!(
                matches!(&failure.error, PortError::Unavailable(m) if m.contains(&status.to_string())),
                "{failure:?}"
            );
        }
        for status in [400, 401, 403, 404, 422] {
            let failure = status_failure(status, b"");
            assert_eq!(failure.retry, Retry::Never, "{status}");
            assert!(
                matches!(failure.error, PortError::Refused(_)),
                "{failure:?}"
            );
        }
        let failure = status_failure(
            401,
            br#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
        );
        assert_eq!(
            failure.error,
            PortError::Refused("ElevenLabs 401: Invalid API key".into())
        );
    }

    #[test]
    fn language_code_is_sent_only_to_models_that_take_it() {
        let request = request("Hi");
        let mut config = ElevenLabsConfig::new(SecretString::from("k"));
        let tts = ElevenLabsTts::new(config.clone()).unwrap();
        let body = serde_json::to_value(tts.body(&request)).unwrap();
        assert_eq!(body["language_code"], "de");
        assert!(tts.ws_url(&request).ends_with("&language_code=de"));
        config.model_id = "eleven_multilingual_v2".into();
        let tts = ElevenLabsTts::new(config).unwrap();
        let body = serde_json::to_value(tts.body(&request)).unwrap();
        assert!(body.get("language_code").is_none());
        assert!(!tts.ws_url(&request).contains("language_code"));
    }

    #[test]
    fn the_websocket_url_follows_the_base_url_scheme_and_prefix() {
        let tts = ElevenLabsTts::new(ElevenLabsConfig::new(SecretString::from("k"))).unwrap();
        assert_eq!(
            tts.ws_url(&request("Hi")),
            "wss://api.elevenlabs.io/v1/text-to-speech/v/stream-input\
             ?model_id=eleven_flash_v2_5&output_format=ulaw_8000&language_code=de"
        );
        let config = ElevenLabsConfig::new(SecretString::from("k"))
            .with_base_url("http://127.0.0.1:8080/proxy/");
        let tts = ElevenLabsTts::new(config).unwrap();
        assert!(tts
            .ws_url(&request("Hi"))
            .starts_with("ws://127.0.0.1:8080/proxy/v1/text-to-speech/v/stream-input?"));
    }

    #[test]
    fn unusable_configurations_are_refused_at_start() {
        let base = |url: &str| {
            ElevenLabsTts::new(ElevenLabsConfig::new(SecretString::from("k")).with_base_url(url))
        };
        assert!(base("ftp://example.com").is_err());
        assert!(base("https://example.com?x=1").is_err());
        assert!(base("not a url").is_err());
        assert!(ElevenLabsTts::new(ElevenLabsConfig::new(SecretString::from(" "))).is_err());
        let mut config = ElevenLabsConfig::new(SecretString::from("k"));
        config.first_byte_timeout = Duration::ZERO;
        assert!(ElevenLabsTts::new(config).is_err());
    }
}
