//! OpenAI adapters (`PROTOCOLS.md` §6): per-utterance speech-to-text over
//! `/audio/transcriptions`, streamed chat completions over `/chat/completions` and
//! embeddings over `/embeddings`, implementing the ports [`SpeechToText`], [`LanguageModel`]
//! and [`Embedder`].
//!
//! All three share one [`OpenAiClient`] (one connection pool, one key, one set of
//! timeouts). Failures become [`PortError`]s: a 5xx, 408, 429 or a network error is
//! `Unavailable` (retrying may help), another 4xx is `Refused`, and silence past the timeout
//! is `TimedOut`. Error texts carry OpenAI's message but never the key.
//!
//! Retries ([`RetryPolicy`]) happen inside the adapters, in one place
//! (`OpenAiClient::with_retries`), and only where a repeat cannot do harm: after a
//! connection failure, a 5xx, a 429 (waiting for its `Retry-After` when it fits) or a 408.
//! Transcriptions and embeddings are idempotent, so any such failure may be retried; a
//! chat completion only until the first byte of its stream arrived, since a repeat after
//! that would speak the same words twice. Every retry stays within the one configured
//! timeout: it bounds the whole operation, backoffs included, not each attempt.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actors::audio::{mulaw, SAMPLE_RATE};
use actors::ports::{
    CallInfo, ChatMessage, Embedder, LanguageModel, LlmDelta, LlmRequest, LlmStream, MulawFrame,
    PortError, PortResult, SpeechToText, SttEvent, SttInput, SttSession, ToolCall,
};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::Future;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::retry::RetryPolicy;

/// OpenAI's public API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The transcription model used unless configured: fast and cheap enough for phone turns.
pub const DEFAULT_STT_MODEL: &str = "gpt-4o-mini-transcribe";
/// The embedding model used unless configured (1536 dimensions natively).
pub const DEFAULT_EMBEDDING_MODEL: &str = "text-embedding-3-small";
/// The request timeout used unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for a TCP/TLS connection, whatever the request timeout: a provider that
/// cannot be reached in this long is down, and a caller is waiting.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest utterance buffered for transcription (30 s of 8 kHz audio, 480 KB): memory per
/// call stays bounded if the endpointer never ends an utterance. Audio past it is dropped.
const MAX_UTTERANCE_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// OpenAI refuses audio shorter than 0.1 s; such an utterance is answered `Final("")`
/// without a request.
const MIN_UTTERANCE_SAMPLES: usize = SAMPLE_RATE as usize / 10;

/// Frames the STT feed holds (10 s of audio). The session task reads the feed while
/// transcriptions run, so this only absorbs scheduling hiccups.
pub(super) const FEED_CAPACITY: usize = 500;

/// Transcripts waiting for the engine to read them.
pub(super) const EVENT_CAPACITY: usize = 16;

/// Where and how to reach OpenAI. Build it with [`OpenAiConfig::new`] and change the fields
/// that differ from the defaults.
#[derive(Debug, Clone)]
pub struct OpenAiConfig {
    /// API root including `/v1` (default [`DEFAULT_BASE_URL`]); the emulator's
    /// `openai_base_url()` in tests and the demo.
    pub base_url: String,
    /// Sent as `Authorization: Bearer`; never logged or put in an error.
    pub api_key: SecretString,
    /// Transcription model (default [`DEFAULT_STT_MODEL`]).
    pub stt_model: String,
    /// Embedding model (default [`DEFAULT_EMBEDDING_MODEL`]); changing it invalidates every
    /// stored vector.
    pub embedding_model: String,
    /// Vector length asked of the embedding model; `None` keeps the model's own (1536 for
    /// text-embedding-3-small). Must match the vector store's collection.
    pub embedding_dimensions: Option<u32>,
    /// How long a transcription or embedding may take in all, and how long a chat
    /// completion may take to send its first byte, retries and their backoffs included;
    /// also the longest silence within a completion's stream.
    pub timeout: Duration,
    /// How failed requests are retried within `timeout` (default [`RetryPolicy::DEFAULT`]).
    pub retry: RetryPolicy,
}

impl OpenAiConfig {
    /// The defaults for OpenAI's public API with this key.
    pub fn new(api_key: SecretString) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            api_key,
            stt_model: DEFAULT_STT_MODEL.to_owned(),
            embedding_model: DEFAULT_EMBEDDING_MODEL.to_owned(),
            embedding_dimensions: None,
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy::DEFAULT,
        }
    }
}

/// The HTTP client could not be built (the TLS backend failed to initialise).
#[derive(Debug, thiserror::Error)]
#[error("building the OpenAI HTTP client")]
pub struct OpenAiClientError(#[source] reqwest::Error);

/// The connection pool and configuration the OpenAI adapters share. Cheap to clone.
#[derive(Clone)]
pub struct OpenAiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: OpenAiConfig,
}

impl OpenAiClient {
    /// Builds the shared client. The connect timeout is set on the client; the configured
    /// timeout is applied per operation (all its attempts together), because a streamed
    /// completion may rightly last longer than it in total (it is bounded by its gaps
    /// instead).
    pub fn new(config: OpenAiConfig) -> Result<Self, OpenAiClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .user_agent(crate::USER_AGENT)
            .build()
            .map_err(OpenAiClientError)?;
        Ok(Self {
            inner: Arc::new(Inner { http, config }),
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &OpenAiConfig {
        &self.inner.config
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let base = self.inner.config.base_url.trim_end_matches('/');
        self.inner
            .http
            .post(format!("{base}{path}"))
            .bearer_auth(self.inner.config.api_key.expose_secret())
    }

    fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// Runs `attempt` until it succeeds, fails in a way no repeat can cure, or the retry
    /// policy or the timeout says stop. The timeout bounds the whole run: each attempt gets
    /// what is left of it, and a backoff is only slept if an attempt still fits after it.
    /// This is the one place retries happen; whether a failure may be retried is decided
    /// where it is made (its [`Retry`]), because only the caller knows what was already
    /// delivered.
    async fn with_retries<T, F, Fut>(&self, what: &str, mut attempt: F) -> Result<T, RequestError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RequestError>>,
    {
        let timeout = self.timeout();
        let policy = self.inner.config.retry;
        let deadline = Instant::now() + timeout;
        let mut retries = 0;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let started = std::time::Instant::now();
            let error = match tokio::time::timeout(remaining, attempt()).await {
                Ok(Ok(value)) => {
                    super::observe_attempt("openai", what, started, super::Attempt::Ok);
                    return Ok(value);
                }
                Ok(Err(error)) => {
                    let attempt = error
                        .status
                        .map_or(super::Attempt::Transport, super::Attempt::Status);
                    super::observe_attempt("openai", what, started, attempt);
                    error
                }
                Err(_) => {
                    super::observe_attempt("openai", what, started, super::Attempt::Timeout);
                    return Err(RequestError::timed_out(timeout));
                }
            };
            let Retry::Allowed { after } = error.retry else {
                return Err(error);
            };
            retries += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Some(delay) = policy.delay(retries, after, remaining, rand::random::<f64>()) else {
                tracing::debug!(
                    what,
                    attempts = retries,
                    reason = %error.port,
                    "openai request failed; no retry left within the timeout"
                );
                return Err(error);
            };
            // The reason is a scrubbed port error: OpenAI's message, never the key.
            tracing::info!(
                what,
                attempt = retries + 1,
                max_attempts = policy.max_retries + 1,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                retry_after = after.is_some(),
                reason = %error.port,
                "retrying openai request"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Sends an idempotent request whose whole answer must come within the timeout, retrying
    /// as the policy allows, and returns its body.
    async fn send_for_body(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, RequestError> {
        self.with_retries(what, || {
            let request = request
                .try_clone()
                .expect("OpenAI request bodies are buffered, so they can be sent again");
            self.attempt_for_body(what, request)
        })
        .await
    }

    /// One attempt of [`Self::send_for_body`]. Any failure may be retried: the request is
    /// idempotent, so even an answer lost halfway costs nothing but the repeat.
    async fn attempt_for_body(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, RequestError> {
        let response = request
            .send()
            .await
            .map_err(|e| RequestError::transport(what, self.timeout(), e))?;
        if !response.status().is_success() {
            return Err(self.status_error(what, response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| RequestError::transport(what, self.timeout(), e))?;
        Ok(body.to_vec())
    }

    /// The failure for a non-2xx answer, with OpenAI's message (never the key). A 5xx, 429
    /// or 408 may be retried, after the `Retry-After` it carries if any; another 4xx never.
    async fn status_error(&self, what: &str, response: reqwest::Response) -> RequestError {
        let status = response.status();
        let after = retry_after(response.headers());
        let body = tokio::time::timeout(self.timeout(), response.bytes())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let message = if status == reqwest::StatusCode::UNAUTHORIZED {
            // OpenAI echoes part of a wrong key in this message: say less.
            "the API key was rejected".to_owned()
        } else {
            serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned())
        };
        let message = self.scrub(&message);
        let text = format!("openai {what} ({})", status.as_u16());
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        let (port, retry) = if retryable {
            (
                PortError::Unavailable(format!("{text}: {message}")),
                Retry::Allowed { after },
            )
        } else {
            (
                PortError::Refused(format!("{text}: {message}")),
                Retry::Never,
            )
        };
        RequestError {
            port,
            status: Some(status.as_u16()),
            retry,
        }
    }

    /// A provider message, cut short and with the key removed should it appear.
    fn scrub(&self, message: &str) -> String {
        super::scrub(message, &self.inner.config.api_key)
    }
}

/// A failed attempt: the port error it becomes, the HTTP status behind it if any, and
/// whether another attempt may help.
#[derive(Debug, thiserror::Error)]
#[error("{port}")]
struct RequestError {
    port: PortError,
    status: Option<u16>,
    retry: Retry,
}

/// Whether a failed attempt may be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A repeat would fail the same way (a refusal, a malformed answer), could do harm (a
    /// stream already under way), or cannot fit (the timeout is spent).
    Never,
    /// A repeat may succeed; not before `after` when the server said so.
    Allowed {
        /// The server's `Retry-After`.
        after: Option<Duration>,
    },
}

impl RequestError {
    /// The timeout ran out; nothing is left for another attempt.
    fn timed_out(timeout: Duration) -> Self {
        Self {
            port: PortError::TimedOut(timeout),
            status: None,
            retry: Retry::Never,
        }
    }

    /// A failure that no repeat of the request can cure.
    fn final_failure(port: PortError) -> Self {
        Self {
            port,
            status: None,
            retry: Retry::Never,
        }
    }

    /// A failure to reach OpenAI or to read its answer. Retryable unless the request could
    /// not even be built: the caller decides whether a repeat is safe before calling this.
    fn transport(what: &str, timeout: Duration, error: reqwest::Error) -> Self {
        let retry = if error.is_builder() {
            Retry::Never
        } else {
            Retry::Allowed { after: None }
        };
        Self {
            port: transport_error(what, timeout, error),
            status: None,
            retry,
        }
    }
}

/// The wait the server asked for before a retry: OpenAI's `retry-after-ms`, else the
/// standard `Retry-After` in seconds (fractions accepted) or as an HTTP date. `None` when
/// absent or unreadable, and the backoff applies.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        if let Ok(wait) = Duration::try_from_secs_f64(ms / 1000.0) {
            return Some(wait);
        }
    }
    let value = header(reqwest::header::RETRY_AFTER.as_str())?;
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = date.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A failure before or while reading an answer, as a port error.
fn transport_error(what: &str, timeout: Duration, error: reqwest::Error) -> PortError {
    if error.is_timeout() {
        PortError::TimedOut(timeout)
    } else if error.is_connect() {
        PortError::Unavailable(format!("openai {what} (cannot connect)"))
    } else {
        // reqwest errors carry the URL, never headers: no key can leak here.
        PortError::Unavailable(format!("openai {what} ({})", error.without_url()))
    }
}

// ---------------------------------------------------------------- speech-to-text (§6.1)

/// Speech-to-text by transcribing each utterance whole: the engine's endpointer decides
/// where an utterance ends, then the buffered audio goes to `/audio/transcriptions` as a
/// WAV and the answer comes back as one [`SttEvent::Final`] (no partials).
///
/// A failed transcription (provider error, timeout) loses that one utterance: the session
/// reports `Final("")` and logs, rather than `Failed`, because `Failed` makes the call's STT
/// actor fail and restart, and a provider blip should not cost more than the words it
/// dropped. Only a rejected key or an unknown model or URL (401, 403, 404), which no later
/// utterance would survive either, ends the session with `Failed`.
#[derive(Clone)]
pub struct OpenAiStt {
    client: OpenAiClient,
}

impl OpenAiStt {
    /// The adapter over a shared client.
    pub fn new(client: OpenAiClient) -> Self {
        Self { client }
    }
}

impl SpeechToText for OpenAiStt {
    /// Spawns the session's task; must be called inside a tokio runtime.
    fn open(&self, call: &CallInfo, options: &actors::ports::SttOptions) -> SttSession {
        let language = options.language.as_str();
        let (feed, inputs) = mpsc::channel(FEED_CAPACITY);
        let (events_tx, events) = mpsc::channel(EVENT_CAPACITY);
        let request = TranscriptionRequest {
            client: self.client.clone(),
            language: iso_639_1(language),
            prompt: call.customer.clone(),
        };
        tokio::spawn(run_stt_session(request, inputs, events_tx));
        SttSession {
            feed: Box::new(feed),
            events,
        }
    }
}

/// What every transcription of one session sends besides the audio.
#[derive(Clone)]
struct TranscriptionRequest {
    client: OpenAiClient,
    /// The call language's primary subtag, when it is a two-letter ISO 639-1 code (OpenAI
    /// accepts nothing else; without it the model detects the language).
    language: Option<String>,
    /// The `prompt` field: the customer's number. It gives the model context about the
    /// call, and it is what the provider emulator keys scripted transcripts by, so tests
    /// with several concurrent callers each hear their own lines.
    prompt: String,
}

/// What became of one utterance's transcription.
enum Transcript {
    /// The words (empty when nothing was heard or the request failed).
    Text(String),
    /// The session cannot go on.
    Fatal(PortError),
}

/// The session task: buffers frames, starts a transcription at each utterance end while it
/// keeps reading the feed (so audio never backs up behind a slow request), and reports the
/// transcripts in utterance order. Ends when the feed is dropped (after reporting the
/// utterances already ended) or when the engine drops the events receiver.
async fn run_stt_session(
    request: TranscriptionRequest,
    mut inputs: mpsc::Receiver<SttInput>,
    events: mpsc::Sender<SttEvent>,
) {
    let mut buffer: Vec<i16> = Vec::new();
    let mut overflowed = false;
    let mut pending: FuturesOrdered<BoxFuture<'static, Transcript>> = FuturesOrdered::new();
    let mut feed_open = true;
    loop {
        tokio::select! {
            input = inputs.recv(), if feed_open => match input {
                Some(SttInput::Audio(frame)) => {
                    overflowed |= !push_frame(&mut buffer, &frame);
                }
                Some(SttInput::UtteranceEnded) => {
                    if overflowed {
                        tracing::warn!(
                            max_seconds = MAX_UTTERANCE_SAMPLES / SAMPLE_RATE as usize,
                            "utterance too long for one transcription; its end was dropped"
                        );
                        overflowed = false;
                    }
                    let samples = std::mem::take(&mut buffer);
                    if samples.len() < MIN_UTTERANCE_SAMPLES {
                        pending.push_back(Box::pin(async { Transcript::Text(String::new()) }));
                    } else {
                        pending.push_back(Box::pin(transcribe_utterance(request.clone(), samples)));
                    }
                }
                None => feed_open = false,
            },
            Some(transcript) = pending.next(), if !pending.is_empty() => {
                let event = match transcript {
                    Transcript::Text(text) => SttEvent::Final(text),
                    Transcript::Fatal(error) => {
                        let _ = events.send(SttEvent::Failed(error)).await;
                        return;
                    }
                };
                if events.send(event).await.is_err() {
                    return;
                }
            }
            _ = events.closed() => return,
            else => return,
        }
        if !feed_open && pending.is_empty() {
            return;
        }
    }
}

/// Appends a frame, decoded to PCM for the WAV, unless the utterance is full; `false` when
/// it was dropped.
fn push_frame(buffer: &mut Vec<i16>, frame: &MulawFrame) -> bool {
    if buffer.len() + frame.len() > MAX_UTTERANCE_SAMPLES {
        return false;
    }
    buffer.extend(frame.iter().map(|&byte| mulaw::decode(byte)));
    true
}

/// Transcribes one utterance; a failure that only concerns it becomes empty text.
async fn transcribe_utterance(request: TranscriptionRequest, samples: Vec<i16>) -> Transcript {
    match transcribe(&request, &samples).await {
        Ok(text) => Transcript::Text(text),
        Err(error) if is_fatal_for_session(&error) => {
            tracing::error!(%error, "speech-to-text refused the session's requests");
            Transcript::Fatal(error.port)
        }
        Err(error) => {
            tracing::warn!(%error, samples = samples.len(), "transcription failed; utterance dropped");
            Transcript::Text(String::new())
        }
    }
}

/// Whether no later utterance can succeed either: the key, the permission or the model or
/// URL is wrong.
fn is_fatal_for_session(error: &RequestError) -> bool {
    matches!(error.status, Some(401 | 403 | 404))
}

/// One utterance's transcription, retried as the policy allows (it is idempotent).
async fn transcribe(
    request: &TranscriptionRequest,
    samples: &[i16],
) -> Result<String, RequestError> {
    let client = &request.client;
    let boundary = format!("switchboard-{}", uuid::Uuid::new_v4().simple());
    let mut form = MultipartBody::new(&boundary);
    form.file("file", "utterance.wav", "audio/wav", &wav_pcm16(samples));
    form.text("model", &client.config().stt_model);
    if let Some(language) = &request.language {
        form.text("language", language);
    }
    if !request.prompt.is_empty() {
        form.text("prompt", &request.prompt);
    }
    form.text("response_format", "json");
    let builder = client
        .post("/audio/transcriptions")
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form.finish());
    let body = client.send_for_body("transcription", builder).await?;
    #[derive(Deserialize)]
    struct Transcription {
        text: String,
    }
    serde_json::from_slice::<Transcription>(&body)
        .map(|t| t.text.trim().to_owned())
        .map_err(|_| {
            RequestError::final_failure(PortError::Unavailable(
                "openai transcription (malformed answer)".to_owned(),
            ))
        })
}

/// The ISO 639-1 code of a BCP 47 tag (`en-US` → `en`), if its primary subtag is one.
pub(super) fn iso_639_1(language: &str) -> Option<String> {
    let primary = language.split(['-', '_']).next()?;
    (primary.len() == 2 && primary.chars().all(|c| c.is_ascii_alphabetic()))
        .then(|| primary.to_ascii_lowercase())
}

/// 8 kHz mono PCM16 as a WAV file with the canonical 44-byte header (`PROTOCOLS.md` §6.1):
/// OpenAI accepts no raw PCM or mu-law.
pub fn wav_pcm16(samples: &[i16]) -> Vec<u8> {
    let data_len = u32::try_from(samples.len() * 2).unwrap_or(u32::MAX);
    let mut wav = Vec::with_capacity(44 + samples.len() * 2);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVE");
    wav.extend_from_slice(b"fmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
    wav.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in samples {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

/// A `multipart/form-data` body built by hand (the workspace's reqwest has no `multipart`
/// feature), also what tests upload documents with. The boundary is random, so it cannot
/// occur in the content by more than chance.
pub struct MultipartBody<'a> {
    boundary: &'a str,
    body: Vec<u8>,
}

impl<'a> MultipartBody<'a> {
    /// An empty body with this boundary.
    pub fn new(boundary: &'a str) -> Self {
        Self {
            boundary,
            body: Vec::new(),
        }
    }

    /// Adds a text field.
    pub fn text(&mut self, name: &str, value: &str) {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
    }

    /// Adds a file field.
    pub fn file(&mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
    }

    /// The body, closed.
    pub fn finish(mut self) -> Vec<u8> {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body
    }
}

// ---------------------------------------------------------------- chat completions (§6.2)

/// The language model over streamed chat completions: text arrives word by word as
/// [`LlmDelta::Text`], tool calls are joined from their fragments and arrive whole, and
/// token usage comes last.
#[derive(Clone)]
pub struct OpenAiLlm {
    client: OpenAiClient,
}

impl OpenAiLlm {
    /// The adapter over a shared client.
    pub fn new(client: OpenAiClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl LanguageModel for OpenAiLlm {
    /// Returns once the first bytes of the answer arrived (within the timeout, retries
    /// included): a refusal, or a provider error the retries did not cure, is an `Err` here.
    /// A stream broken later, or silent for longer than the timeout, ends with an `Err` item
    /// and is never retried: the words before the break were delivered, and a repeat would
    /// say them twice.
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
        let client = &self.client;
        let http_request = client
            .post("/chat/completions")
            .json(&chat_request_body(&request));
        let state = client
            .with_retries("chat completion", || {
                let attempt = http_request
                    .try_clone()
                    .expect("a JSON request body is buffered, so it can be sent again");
                start_stream(client, attempt)
            })
            .await
            .map_err(|e| e.port)?;
        Ok(futures::stream::unfold(state, SseState::next).boxed())
    }
}

/// One attempt to start a completion: sends the request and waits for the stream's first
/// bytes. Any failure up to then may be retried, because nothing has been delivered yet;
/// after it, [`SseState`] reports failures as stream items and nothing is retried.
async fn start_stream(
    client: &OpenAiClient,
    request: reqwest::RequestBuilder,
) -> Result<SseState, RequestError> {
    const WHAT: &str = "chat completion";
    let timeout = client.timeout();
    let mut response = request
        .send()
        .await
        .map_err(|e| RequestError::transport(WHAT, timeout, e))?;
    if !response.status().is_success() {
        return Err(client.status_error(WHAT, response).await);
    }
    let mut parser = ChunkParser::default();
    loop {
        match response.chunk().await {
            Ok(Some(bytes)) if bytes.is_empty() => continue,
            Ok(Some(bytes)) => {
                parser.feed(&bytes);
                break;
            }
            Ok(None) => {
                return Err(RequestError {
                    port: PortError::Unavailable(
                        "openai chat completion (stream ended before its first byte)".to_owned(),
                    ),
                    status: None,
                    retry: Retry::Allowed { after: None },
                })
            }
            Err(error) => return Err(RequestError::transport(WHAT, timeout, error)),
        }
    }
    Ok(SseState {
        response: Some(response),
        timeout,
        parser,
    })
}

/// The request body of §6.2 for a port request.
fn chat_request_body(request: &LlmRequest) -> Value {
    let messages: Vec<Value> = request.messages.iter().map(wire_message).collect();
    let mut body = json!({
        "model": request.model,
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": messages,
    });
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|tool| {
                json!({"type": "function", "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                    "strict": false,
                }})
            })
            .collect();
        body["tools"] = Value::Array(tools);
        body["tool_choice"] = Value::from("auto");
    }
    body
}

/// One message in OpenAI's wire format.
fn wire_message(message: &ChatMessage) -> Value {
    match message {
        ChatMessage::System(text) => json!({"role": "system", "content": text}),
        ChatMessage::User(text) => json!({"role": "user", "content": text}),
        ChatMessage::Assistant { text, tool_calls } if tool_calls.is_empty() => {
            json!({"role": "assistant", "content": text})
        }
        ChatMessage::Assistant { text, tool_calls } => {
            let calls: Vec<Value> = tool_calls
                .iter()
                .map(|call| {
                    json!({"id": call.id, "type": "function",
                           "function": {"name": call.name, "arguments": call.arguments}})
                })
                .collect();
            let content = if text.is_empty() {
                Value::Null
            } else {
                Value::from(text.as_str())
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        ChatMessage::Tool { call_id, content } => {
            json!({"role": "tool", "tool_call_id": call_id, "content": content})
        }
    }
}

/// Reading state of one streamed completion.
struct SseState {
    /// `None` once the stream has ended (cleanly or not).
    response: Option<reqwest::Response>,
    /// Longest silence between two reads.
    timeout: Duration,
    parser: ChunkParser,
}

impl SseState {
    /// The next item: a parsed delta, or more bytes read until one is ready.
    async fn next(mut self) -> Option<(PortResult<LlmDelta>, Self)> {
        loop {
            if let Some(item) = self.parser.ready.pop_front() {
                if item.is_err() {
                    self.response = None;
                    self.parser.ready.clear();
                }
                return Some((item, self));
            }
            if self.parser.done {
                return None;
            }
            let response = self.response.as_mut()?;
            let chunk = tokio::time::timeout(self.timeout, response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.parser.feed(&bytes),
                Ok(Ok(None)) => self.parser.fail(PortError::Unavailable(
                    "openai chat completion (stream ended before [DONE])".to_owned(),
                )),
                Ok(Err(error)) => self.parser.fail(transport_error(
                    "chat completion stream",
                    self.timeout,
                    error,
                )),
                Err(_) => self.parser.fail(PortError::TimedOut(self.timeout)),
            }
        }
    }
}

/// A tool call being assembled from its fragments.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The incremental SSE parser: bytes in, deltas out. Pure, so it is unit-tested without a
/// socket.
#[derive(Default)]
struct ChunkParser {
    /// Bytes of a line not yet complete.
    line: Vec<u8>,
    /// The `data` lines of the event being read.
    data: String,
    /// Tool calls by `index`, until the finish reason or the end says they are complete.
    calls: BTreeMap<u32, PartialCall>,
    /// Deltas parsed and not yet handed out.
    ready: VecDeque<PortResult<LlmDelta>>,
    /// `[DONE]` was read, or the stream failed.
    done: bool,
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    delta: WireDelta,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireDelta {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
}

#[derive(Deserialize)]
struct WireToolCall {
    index: u32,
    id: Option<String>,
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl ChunkParser {
    /// Reads more bytes of the body.
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if self.done {
                return;
            }
            if byte == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line_done(&String::from_utf8_lossy(&line));
            } else {
                self.line.push(byte);
            }
        }
    }

    /// Ends the stream with an error.
    fn fail(&mut self, error: PortError) {
        self.ready.push_back(Err(error));
        self.done = true;
    }

    fn line_done(&mut self, line: &str) {
        if line.is_empty() {
            let data = std::mem::take(&mut self.data);
            if !data.is_empty() {
                self.event(&data);
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            if !self.data.is_empty() {
                self.data.push('\n');
            }
            self.data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
        // Comments (`:`) and other fields (`event:`, `id:`) carry nothing we use.
    }

    fn event(&mut self, data: &str) {
        if data == "[DONE]" {
            self.flush_calls();
            self.done = true;
            return;
        }
        let chunk: WireChunk = match serde_json::from_str(data) {
            Ok(chunk) => chunk,
            Err(_) => {
                return self.fail(PortError::Unavailable(
                    "openai chat completion (malformed stream chunk)".to_owned(),
                ))
            }
        };
        if let Some(error) = chunk.error {
            let message = error["message"].as_str().unwrap_or("error in stream");
            let message: String = message.chars().take(super::MAX_ERROR_CHARS).collect();
            return self.fail(PortError::Unavailable(format!(
                "openai chat completion: {message}"
            )));
        }
        for choice in chunk.choices {
            if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                self.ready.push_back(Ok(LlmDelta::Text(text)));
            }
            for fragment in choice.delta.tool_calls {
                let call = self.calls.entry(fragment.index).or_default();
                if let Some(id) = fragment.id {
                    call.id = id;
                }
                if let Some(function) = fragment.function {
                    if let Some(name) = function.name {
                        call.name.push_str(&name);
                    }
                    if let Some(arguments) = function.arguments {
                        call.arguments.push_str(&arguments);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.flush_calls();
            }
        }
        if let Some(usage) = chunk.usage {
            self.ready.push_back(Ok(LlmDelta::Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: usage.completion_tokens,
            }));
        }
    }

    /// Hands out the assembled tool calls, in index order.
    fn flush_calls(&mut self) {
        for (_, call) in std::mem::take(&mut self.calls) {
            let arguments = if call.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                call.arguments
            };
            self.ready.push_back(Ok(LlmDelta::ToolCall(ToolCall {
                id: call.id,
                name: call.name,
                arguments,
            })));
        }
    }
}

// ---------------------------------------------------------------- embeddings (§6.3)

/// Embeddings over `/embeddings`: one request per batch as given (the caller keeps batches
/// within OpenAI's 2048 inputs), vectors returned in input order.
#[derive(Clone)]
pub struct OpenAiEmbedder {
    client: OpenAiClient,
}

impl OpenAiEmbedder {
    /// The adapter over a shared client.
    pub fn new(client: OpenAiClient) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    async fn embed(&self, texts: Vec<String>) -> PortResult<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let config = self.client.config();
        let mut body = json!({
            "model": config.embedding_model,
            "input": texts,
            "encoding_format": "float",
        });
        if let Some(dimensions) = config.embedding_dimensions {
            body["dimensions"] = Value::from(dimensions);
        }
        let request = self.client.post("/embeddings").json(&body);
        let answer = self
            .client
            .send_for_body("embeddings", request)
            .await
            .map_err(|e| e.port)?;

        #[derive(Deserialize)]
        struct Embeddings {
            data: Vec<Embedding>,
        }
        #[derive(Deserialize)]
        struct Embedding {
            index: usize,
            embedding: Vec<f32>,
        }
        let malformed = |why: &str| PortError::Unavailable(format!("openai embeddings ({why})"));
        let mut data = serde_json::from_slice::<Embeddings>(&answer)
            .map_err(|_| malformed("malformed answer"))?
            .data;
        data.sort_by_key(|e| e.index);
        let in_order = data.iter().enumerate().all(|(i, e)| e.index == i);
        if data.len() != texts.len() || !in_order {
            return Err(malformed(&format!(
                "{} vectors for {} inputs",
                data.len(),
                texts.len()
            )));
        }
        Ok(data.into_iter().map(|e| e.embedding).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Vec<PortResult<LlmDelta>> {
        let mut parser = ChunkParser::default();
        // Byte by byte: events split anywhere must still parse.
        for byte in body.as_bytes() {
            parser.feed(std::slice::from_ref(byte));
        }
        parser.ready.into_iter().collect()
    }

    #[test]
    fn the_protocol_example_tool_call_is_joined_from_its_fragments() {
        let body = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_A1\",\"type\":\"function\",\"function\":{\"name\":\"book_slot\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"time\\\":\\\"15\"}}]},\"finish_reason\":null}]}\r\n\r\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":00\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
            ": keep-alive\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n",
        );
        assert_eq!(
            parse(body),
            vec![
                Ok(LlmDelta::ToolCall(ToolCall {
                    id: "call_A1".into(),
                    name: "book_slot".into(),
                    arguments: r#"{"time":"15:00"}"#.into(),
                })),
                Ok(LlmDelta::Usage {
                    prompt_tokens: 9,
                    completion_tokens: 4
                }),
            ]
        );
    }

    #[test]
    fn a_malformed_chunk_ends_the_stream_with_an_error() {
        let items = parse("data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {oops\n\ndata: [DONE]\n\n");
        assert_eq!(items[0], Ok(LlmDelta::Text("Hi".into())));
        assert!(matches!(items[1], Err(PortError::Unavailable(_))));
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn retry_after_is_read_in_milliseconds_seconds_or_as_a_date() {
        use reqwest::header::{HeaderMap, HeaderValue};
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_str(value).unwrap());
            }
            map
        };
        let ms = Duration::from_millis;
        assert_eq!(retry_after(&headers(&[])), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "2")])),
            Some(ms(2000))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0.5")])),
            Some(ms(500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "150"), ("retry-after", "2")])),
            Some(ms(150))
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")])), None);
        assert_eq!(
            retry_after(&headers(&[(
                "retry-after",
                "Wed, 21 Oct 2015 07:28:00 GMT"
            )])),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(30)).to_rfc2822();
        let wait = retry_after(&headers(&[("retry-after", &soon)])).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
    }

    fn test_client(timeout: Duration) -> OpenAiClient {
        let mut config = OpenAiConfig::new(SecretString::from("sk-unit"));
        config.base_url = "http://127.0.0.1:9/v1".to_owned();
        config.timeout = timeout;
        OpenAiClient::new(config).unwrap()
    }

    fn retryable(after: Option<Duration>) -> RequestError {
        RequestError {
            port: PortError::Unavailable("openai test (503): overloaded".into()),
            status: Some(503),
            retry: Retry::Allowed { after },
        }
    }

    // Real time, with bounds far from the numbers involved: the root package's tokio has no
    // `test-util` feature for paused time.

    #[tokio::test]
    async fn retryable_failures_are_retried_as_often_as_the_policy_allows() {
        let timeout = Duration::from_secs(5);
        let client = test_client(timeout);
        let started = Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> = client
            .with_retries("test", || {
                attempts += 1;
                async { Err(retryable(None)) }
            })
            .await;
        assert_eq!(attempts, 1 + RetryPolicy::DEFAULT.max_retries);
        assert!(matches!(result, Err(e) if e.status == Some(503)));
        assert!(started.elapsed() < timeout, "only backoffs were waited");
    }

    #[tokio::test]
    async fn a_success_after_a_failure_is_returned() {
        let client = test_client(Duration::from_secs(5));
        let mut attempts = 0;
        let result = client
            .with_retries("test", || {
                attempts += 1;
                let n = attempts;
                async move {
                    if n == 1 {
                        Err(retryable(None))
                    } else {
                        Ok(n)
                    }
                }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_final_failure_is_not_retried() {
        let client = test_client(Duration::from_secs(5));
        let mut attempts = 0;
        let result: Result<(), _> = client
            .with_retries("test", || {
                attempts += 1;
                async { Err(RequestError::final_failure(PortError::Refused("no".into()))) }
            })
            .await;
        assert_eq!(attempts, 1);
        assert!(matches!(result, Err(e) if matches!(e.port, PortError::Refused(_))));
    }

    #[tokio::test]
    async fn an_attempt_that_never_answers_spends_the_timeout_once() {
        let timeout = Duration::from_millis(300);
        let client = test_client(timeout);
        let started = Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> = client
            .with_retries("test", || {
                attempts += 1;
                futures::future::pending()
            })
            .await;
        assert_eq!(attempts, 1);
        assert!(matches!(result, Err(e) if e.port == PortError::TimedOut(timeout)));
        let elapsed = started.elapsed();
        assert!(elapsed >= timeout && elapsed < timeout + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn slow_failing_attempts_end_within_the_timeout() {
        let timeout = Duration::from_millis(800);
        // Enough retries that, were the timeout ignored, they would take over 3 s.
        let mut config = OpenAiConfig::new(SecretString::from("sk-unit"));
        config.base_url = "http://127.0.0.1:9/v1".to_owned();
        config.timeout = timeout;
        config.retry = RetryPolicy {
            max_retries: 10,
            ..RetryPolicy::DEFAULT
        };
        let client = OpenAiClient::new(config).unwrap();
        let started = Instant::now();
        let result: Result<(), _> = client
            .with_retries("test", || async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(retryable(None))
            })
            .await;
        assert!(result.is_err());
        assert!(started.elapsed() < timeout + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_retry_after_beyond_the_timeout_ends_the_retries_at_once() {
        let client = test_client(Duration::from_secs(5));
        let mut attempts = 0;
        let result: Result<(), _> = client
            .with_retries("test", || {
                attempts += 1;
                async { Err(retryable(Some(Duration::from_secs(30)))) }
            })
            .await;
        assert_eq!(attempts, 1);
        assert!(matches!(result, Err(e) if matches!(e.port, PortError::Unavailable(_))));
    }

    #[test]
    fn the_wav_header_is_canonical_pcm16_mono_8k() {
        let wav = wav_pcm16(&[0, 1, -1]);
        assert_eq!(wav.len(), 44 + 6);
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(wav[4..8].try_into().unwrap()), 36 + 6);
        assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 8000);
        assert_eq!(u32::from_le_bytes(wav[28..32].try_into().unwrap()), 16000);
        assert_eq!(u32::from_le_bytes(wav[40..44].try_into().unwrap()), 6);
    }

    #[test]
    fn only_two_letter_primary_subtags_are_sent_as_the_language() {
        assert_eq!(iso_639_1("en-US").as_deref(), Some("en"));
        assert_eq!(iso_639_1("DE").as_deref(), Some("de"));
        assert_eq!(iso_639_1("yue-HK"), None);
        assert_eq!(iso_639_1(""), None);
    }

    #[test]
    fn an_assistant_tool_call_and_its_result_map_to_the_wire_format() {
        let call = ToolCall {
            id: "call_A1".into(),
            name: "book_slot".into(),
            arguments: r#"{"time":"15:00"}"#.into(),
        };
        assert_eq!(
            wire_message(&ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![call]
            }),
            json!({"role":"assistant","content":null,"tool_calls":[{"id":"call_A1","type":"function","function":{"name":"book_slot","arguments":"{\"time\":\"15:00\"}"}}]})
        );
        assert_eq!(
            wire_message(&ChatMessage::Tool {
                call_id: "call_A1".into(),
                content: "{\"ok\":true}".into()
            }),
            json!({"role":"tool","tool_call_id":"call_A1","content":"{\"ok\":true}"})
        );
    }
}
