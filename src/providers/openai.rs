//! OpenAI adapters (`PROTOCOLS.md` §6): per-utterance speech-to-text over
//! `/audio/transcriptions`, streamed chat completions over `/chat/completions` and
//! embeddings over `/embeddings`, implementing the ports [`SpeechToText`], [`LanguageModel`]
//! and [`Embedder`].
//!
//! All three share one [`OpenAiClient`] (one connection pool, one key, one set of
//! timeouts). Failures become [`PortError`]s: a 5xx, 408, 429 or a network error is
//! `Unavailable` (retrying may help), another 4xx is `Refused`, and silence past the timeout
//! is `TimedOut`. Error texts carry OpenAI's message but never the key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use actors::audio::SAMPLE_RATE;
use actors::ports::{
    CallInfo, ChatMessage, Embedder, LanguageModel, LlmDelta, LlmRequest, LlmStream, PcmFrame,
    PortError, PortResult, SpeechToText, SttEvent, SttInput, SttSession, ToolCall,
};
use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

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
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest utterance buffered for transcription (30 s of 8 kHz audio, 480 KB): memory per
/// call stays bounded if the endpointer never ends an utterance. Audio past it is dropped.
const MAX_UTTERANCE_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// OpenAI refuses audio shorter than 0.1 s; such an utterance is answered `Final("")`
/// without a request.
const MIN_UTTERANCE_SAMPLES: usize = SAMPLE_RATE as usize / 10;

/// Frames the STT feed holds (10 s of audio). The session task reads the feed while
/// transcriptions run, so this only absorbs scheduling hiccups.
const FEED_CAPACITY: usize = 500;

/// Transcripts waiting for the engine to read them.
const EVENT_CAPACITY: usize = 16;

/// Longest OpenAI error message copied into a [`PortError`].
const MAX_ERROR_CHARS: usize = 300;

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
    /// How long a transcription or embedding request may take in all, how long a chat
    /// completion may take to start answering, and the longest silence within its stream.
    pub timeout: Duration,
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
    /// Builds the shared client. The connect timeout is set on the client; the request
    /// timeout per request, because a streamed completion may rightly last longer than it
    /// in total (it is bounded by its gaps instead).
    pub fn new(config: OpenAiConfig) -> Result<Self, OpenAiClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
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

    /// Sends a request whose whole answer must come within the timeout and returns its
    /// body, or the failure as a port error.
    async fn send_for_body(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> PortResult<Vec<u8>> {
        let timeout = self.timeout();
        let response = request
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| transport_error(what, timeout, e))?;
        if !response.status().is_success() {
            return Err(self.status_error(what, response).await);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error(what, timeout, e))?;
        Ok(body.to_vec())
    }

    /// The port error for a non-2xx answer, with OpenAI's message (never the key).
    async fn status_error(&self, what: &str, response: reqwest::Response) -> PortError {
        let status = response.status();
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
        if retryable {
            PortError::Unavailable(format!("{text}: {message}"))
        } else {
            PortError::Refused(format!("{text}: {message}"))
        }
    }

    /// A provider message, cut short and with the key removed should it appear.
    fn scrub(&self, message: &str) -> String {
        let key = self.inner.config.api_key.expose_secret();
        let message = if key.is_empty() {
            message.to_owned()
        } else {
            message.replace(key, "[redacted]")
        };
        message.chars().take(MAX_ERROR_CHARS).collect()
    }
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
    fn open(&self, call: &CallInfo, language: &str) -> SttSession {
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

/// Appends a frame unless the utterance is full; `false` when it was dropped.
fn push_frame(buffer: &mut Vec<i16>, frame: &PcmFrame) -> bool {
    if buffer.len() + frame.len() > MAX_UTTERANCE_SAMPLES {
        return false;
    }
    buffer.extend_from_slice(frame);
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

/// A transcription failure and the HTTP status behind it, if any.
#[derive(Debug, thiserror::Error)]
#[error("{port}")]
struct TranscribeError {
    port: PortError,
    status: Option<u16>,
}

/// Whether no later utterance can succeed either: the key, the permission or the model or
/// URL is wrong.
fn is_fatal_for_session(error: &TranscribeError) -> bool {
    matches!(error.status, Some(401 | 403 | 404))
}

async fn transcribe(
    request: &TranscriptionRequest,
    samples: &[i16],
) -> Result<String, TranscribeError> {
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

    let timeout = client.timeout();
    let response = builder
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| TranscribeError {
            port: transport_error("transcription", timeout, e),
            status: None,
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(TranscribeError {
            port: client.status_error("transcription", response).await,
            status: Some(status.as_u16()),
        });
    }
    let body = response.bytes().await.map_err(|e| TranscribeError {
        port: transport_error("transcription", timeout, e),
        status: None,
    })?;
    #[derive(Deserialize)]
    struct Transcription {
        text: String,
    }
    serde_json::from_slice::<Transcription>(&body)
        .map(|t| t.text.trim().to_owned())
        .map_err(|_| TranscribeError {
            port: PortError::Unavailable("openai transcription (malformed answer)".to_owned()),
            status: None,
        })
}

/// The ISO 639-1 code of a BCP 47 tag (`en-US` → `en`), if its primary subtag is one.
fn iso_639_1(language: &str) -> Option<String> {
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
/// feature). The boundary is random, so it cannot occur in the audio by more than chance.
struct MultipartBody<'a> {
    boundary: &'a str,
    body: Vec<u8>,
}

impl<'a> MultipartBody<'a> {
    fn new(boundary: &'a str) -> Self {
        Self {
            boundary,
            body: Vec::new(),
        }
    }

    fn text(&mut self, name: &str, value: &str) {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(value.as_bytes());
        self.body.extend_from_slice(b"\r\n");
    }

    fn file(&mut self, name: &str, filename: &str, content_type: &str, bytes: &[u8]) {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\
             Content-Type: {content_type}\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(bytes);
        self.body.extend_from_slice(b"\r\n");
    }

    fn finish(mut self) -> Vec<u8> {
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
    /// Returns once the answer's headers arrived (within the timeout): a refusal or a
    /// provider error is an `Err` here; a stream broken later, or silent for longer than the
    /// timeout, ends with an `Err` item.
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
        let client = &self.client;
        let timeout = client.timeout();
        let send = client
            .post("/chat/completions")
            .json(&chat_request_body(&request))
            .send();
        let response = tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| PortError::TimedOut(timeout))?
            .map_err(|e| transport_error("chat completion", timeout, e))?;
        if !response.status().is_success() {
            return Err(client.status_error("chat completion", response).await);
        }
        let state = SseState {
            response: Some(response),
            timeout,
            parser: ChunkParser::default(),
        };
        Ok(futures::stream::unfold(state, SseState::next).boxed())
    }
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
            let message: String = message.chars().take(MAX_ERROR_CHARS).collect();
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
        let answer = self.client.send_for_body("embeddings", request).await?;

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
