//! ElevenLabs text-to-speech over the HTTP streaming endpoint (`PROTOCOLS.md` §5.1): the
//! adapter behind the engine's [`TextToSpeech`] port.
//!
//! One `synthesize` is one `POST {base}/v1/text-to-speech/{voice_id}/stream?output_format=
//! ulaw_8000`. The audio comes back as raw 8 kHz μ-law, which Twilio takes as it is, so the
//! body's chunks are passed on as they arrive: no decoding, no re-chunking, no buffering.
//!
//! Why HTTP per sentence rather than the stream-input WebSocket (§5.2): the engine already
//! splits the model's reply into sentences, a request per sentence is independently
//! cancellable (drop the stream on barge-in and the connection goes with it), and a failure
//! costs one sentence rather than a session's state.
//!
//! Errors, as the actors decide about them:
//! - a bad voice id is refused before anything is sent;
//! - 5xx and transport failures are [`PortError::Unavailable`] (a retry may help);
//! - 4xx is [`PortError::Refused`] with ElevenLabs' own message (bad key, quota, bad
//!   voice), never the key;
//! - no audio within [`ElevenLabsConfig::first_byte_timeout`] is [`PortError::TimedOut`],
//!   from `synthesize` itself, so a caller learns it before it starts to play anything;
//! - once audio flows, a body cut short or a gap between chunks longer than that same
//!   timeout ends the stream with one `Err` item.

use std::time::Duration;

use actors::ports::{AudioStream, PortError, PortResult, TextToSpeech, TtsRequest};
use async_trait::async_trait;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

/// Where the real API lives.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";

/// The model used unless configured otherwise: ElevenLabs' lowest-latency model (~75 ms),
/// multilingual, and the one it recommends for conversational agents.
pub const DEFAULT_MODEL_ID: &str = "eleven_flash_v2_5";

/// How long a sentence may take to produce its first audio unless configured otherwise.
/// Flash answers in well under a second from a nearby region; a caller hearing nothing for
/// longer than this is better served by the engine's fallback than by more waiting.
pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(5);

/// Models that take `language_code`. ElevenLabs documents language enforcement for Turbo
/// v2.5 and Flash v2.5 only, and answers an error when another model is sent the field, so
/// for every other model it is left out and the model infers the language from the text.
const MODELS_WITH_LANGUAGE_CODE: &[&str] = &["eleven_flash_v2_5", "eleven_turbo_v2_5"];

/// Longest voice id accepted. Real ids are 20 characters; the bound only keeps a garbage
/// value out of a URL and a log line.
const MAX_VOICE_ID_LEN: usize = 64;

/// Longest vendor error message passed on in a [`PortError`], so an odd error body cannot
/// flood logs and transcripts.
const MAX_ERROR_MESSAGE_LEN: usize = 300;

/// How to reach ElevenLabs. Secrets stay secret: `Debug` prints the key redacted.
#[derive(Clone, Debug)]
pub struct ElevenLabsConfig {
    /// Scheme, host and optional path prefix, without a trailing slash or query:
    /// [`DEFAULT_BASE_URL`] in production, a local server or the emulator in tests and demos.
    pub base_url: String,
    /// Sent as the `xi-api-key` header, and nowhere else.
    pub api_key: SecretString,
    /// The model (`eleven_flash_v2_5`, `eleven_turbo_v2_5`, `eleven_multilingual_v2`, …).
    /// Decides whether `language_code` is sent (see the module docs).
    pub model_id: String,
    /// Longest wait from sending a request to its first audio bytes (connection, headers and
    /// first chunk together), and also the longest gap allowed between later chunks: a
    /// stream that goes silent for that long has stalled, and the caller is told so rather
    /// than left waiting.
    pub first_byte_timeout: Duration,
}

impl ElevenLabsConfig {
    /// The real API with the default model and timeout.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            model_id: DEFAULT_MODEL_ID.to_owned(),
            first_byte_timeout: DEFAULT_FIRST_BYTE_TIMEOUT,
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

/// The ElevenLabs text-to-speech adapter. Cheap to clone: clones share one connection pool,
/// so sentence after sentence reuses a warm TLS connection.
#[derive(Clone, Debug)]
pub struct ElevenLabsTts {
    /// Connection pool. It has a connect timeout but no overall one: a sentence's audio may
    /// rightly take longer to stream than to start, so the first-byte and gap timeouts are
    /// applied around each read instead.
    http: reqwest::Client,
    /// As configured, trailing slash removed.
    base_url: String,
    api_key: SecretString,
    model_id: String,
    first_byte_timeout: Duration,
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
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ElevenLabsSetupError::Client)?;
        Ok(Self {
            http,
            base_url: base_url.to_owned(),
            api_key: config.api_key,
            model_id: config.model_id,
            first_byte_timeout: config.first_byte_timeout,
        })
    }

    /// The JSON body for one request.
    fn body<'a>(&'a self, request: &'a TtsRequest) -> RequestBody<'a> {
        let language_code = MODELS_WITH_LANGUAGE_CODE
            .contains(&self.model_id.as_str())
            .then(|| primary_language(&request.language))
            .flatten();
        RequestBody {
            text: &request.text,
            model_id: &self.model_id,
            language_code,
            voice_settings: VoiceSettings {
                stability: 0.5,
                similarity_boost: 0.75,
                speed: 1.0,
            },
        }
    }

    /// Sends the request and waits for a success status and the first audio chunk (`None`
    /// when the body is empty).
    async fn start(
        &self,
        request: &TtsRequest,
    ) -> PortResult<(reqwest::Response, Option<Vec<u8>>)> {
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
            .query(&[("output_format", "ulaw_8000")])
            .header("xi-api-key", self.api_key.expose_secret())
            .json(&self.body(request))
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            return Err(status_error(status, &body));
        }
        let mut response = response;
        let first = next_chunk(&mut response).await?;
        Ok((response, first))
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
            chars = request.text.chars().count(),
            "ElevenLabs synthesis"
        );
        let timeout = self.first_byte_timeout;
        let (response, first) = tokio::time::timeout(timeout, self.start(&request))
            .await
            .map_err(|_| PortError::TimedOut(timeout))??;
        let Some(first) = first else {
            return Ok(futures::stream::empty().boxed());
        };
        let rest = futures::stream::unfold(Some(response), move |state| async move {
            let mut response = state?;
            match tokio::time::timeout(timeout, next_chunk(&mut response)).await {
                Ok(Ok(Some(chunk))) => Some((Ok(chunk), Some(response))),
                Ok(Ok(None)) => None,
                // One error item, then the stream ends (the response is dropped with it).
                Ok(Err(error)) => Some((Err(error), None)),
                Err(_) => Some((Err(PortError::TimedOut(timeout)), None)),
            }
        });
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
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

/// ElevenLabs' own defaults for a steady conversational voice at normal speed.
#[derive(Serialize)]
struct VoiceSettings {
    stability: f32,
    similarity_boost: f32,
    speed: f32,
}

/// The next non-empty chunk of the body, `None` at its clean end.
async fn next_chunk(response: &mut reqwest::Response) -> PortResult<Option<Vec<u8>>> {
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) if bytes.is_empty() => continue,
            Ok(Some(bytes)) => return Ok(Some(bytes.to_vec())),
            Ok(None) => return Ok(None),
            Err(error) => {
                return Err(PortError::Unavailable(format!(
                    "ElevenLabs (audio stream broke: {})",
                    error.without_url()
                )))
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

fn transport_error(error: reqwest::Error) -> PortError {
    // `without_url`: the URL holds no secret, but keeping errors short and uniform helps.
    PortError::Unavailable(format!("ElevenLabs ({})", error.without_url()))
}

/// The port error for a non-2xx answer: 5xx may pass, 4xx will not.
fn status_error(status: reqwest::StatusCode, body: &[u8]) -> PortError {
    let message = error_message(body).unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("no error message")
            .to_owned()
    });
    if status.is_server_error() {
        PortError::Unavailable(format!("ElevenLabs ({} {message})", status.as_u16()))
    } else {
        PortError::Refused(format!("ElevenLabs {}: {message}", status.as_u16()))
    }
}

/// The message of an ElevenLabs error body, in the shapes it sends:
/// `{"detail":{"status","message"}}`, `{"detail":"…"}`, or a validation list
/// `{"detail":[{"msg":"…"}]}`. Cut to [`MAX_ERROR_MESSAGE_LEN`] characters.
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
    (!message.is_empty()).then(|| message.chars().take(MAX_ERROR_MESSAGE_LEN).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let status = reqwest::StatusCode::BAD_GATEWAY;
        assert!(
            matches!(status_error(status, b""), PortError::Unavailable(m) if m.contains("502"))
        );
    }

    #[test]
    fn language_code_is_sent_only_to_models_that_take_it() {
        let request = TtsRequest {
            text: "Hi".into(),
            voice: "v".into(),
            language: "de-DE".into(),
        };
        let mut config = ElevenLabsConfig::new(SecretString::from("k"));
        let tts = ElevenLabsTts::new(config.clone()).unwrap();
        let body = serde_json::to_value(tts.body(&request)).unwrap();
        assert_eq!(body["language_code"], "de");
        config.model_id = "eleven_multilingual_v2".into();
        let tts = ElevenLabsTts::new(config).unwrap();
        let body = serde_json::to_value(tts.body(&request)).unwrap();
        assert!(body.get("language_code").is_none());
    }
}
