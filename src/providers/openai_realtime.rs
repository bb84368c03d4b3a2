//! Streaming speech-to-text over an OpenAI Realtime **transcription session** (WebSocket),
//! implementing [`SpeechToText`] for agents in [`SttMode::Streaming`](actors::ports::SttMode).
//!
//! Where [`OpenAiStt`](super::openai::OpenAiStt) uploads each utterance as a WAV once it has
//! ended, this adapter streams the caller's audio while they speak, so at the end of speech
//! only the transcription itself is left to wait for. The engine's endpointer still decides
//! where an utterance ends (the session's own turn detection is off): each
//! [`SttInput::UtteranceEnded`] commits the audio buffer, and the server transcribes what was
//! committed.
//!
//! Wire format (the GA Realtime API; `PROTOCOLS.md` §6.4 covers the speech-to-speech side,
//! the facts below come from OpenAI's API reference and the openai-python types):
//! - Connect to `{base_url as ws(s)}/realtime?intent=transcription` (`wss://api.openai.com/v1/
//!   realtime?intent=transcription`) with `Authorization: Bearer`; no model in the URL and no
//!   `OpenAI-Beta` header (that header selected the deprecated beta protocol, whose
//!   `transcription_session.update` and `input_audio_format: "g711_ulaw"` this adapter does
//!   not speak). \[D\]
//! - Send `{"type":"session.update","session":{"type":"transcription","audio":{"input":{
//!   "format":{"type":"audio/pcmu"},"transcription":{"model","language","prompt"},
//!   "turn_detection":null}}}}`. `audio/pcmu` is G.711 μ-law at 8 kHz, the phone network's own
//!   audio, so frames are re-encoded as the call received them and never resampled. \[D\]
//!   `prompt` is the customer's number, as `OpenAiStt` sends it: context for the model, and
//!   the key the provider emulator picks scripted transcripts by.
//! - Send `{"type":"input_audio_buffer.append","audio":"<base64 μ-law>"}` every
//!   [`BATCH_FRAMES`] frames, then `{"type":"input_audio_buffer.commit"}` at the utterance's
//!   end. \[V\] (tw-oai for append) / \[D\]
//! - Receive `input_audio_buffer.committed` (`item_id`), then
//!   `conversation.item.input_audio_transcription.delta` (`item_id`, `delta`) any number of
//!   times, then `...completed` (`item_id`, `transcript`) or `...failed` (`item_id`,
//!   `error`). \[V\] openai-python types. Deltas become [`SttEvent::Partial`] (the words so far),
//!   `completed` becomes [`SttEvent::Final`].
//! - Errors arrive as `{"type":"error","error":{"type","code","message","param","event_id"}}`,
//!   where `event_id` names the client event that caused it when there is one. \[D\] Client
//!   events carry an `event_id` here so an error can be pinned to its utterance.
//!
//! Uncertain, and handled leniently: whether the server waits for `session.updated` before
//! taking audio (this adapter does not wait, events are processed in order) \[U\]; whether
//! completions of different utterances can arrive out of commit order (transcripts are
//! reported in commit order regardless) \[U\]; whether committing less than 100 ms of audio is
//! an error (such utterances are answered empty without a commit, as `OpenAiStt` does) \[U\];
//! whether a wrong key is refused at the handshake or by an `error` event after it (both are
//! handled) \[U\]. With turn detection off, deltas come after the commit, not while the caller
//! speaks; the gain is that the audio is already uploaded when the utterance ends. \[U\]
//!
//! Failure policy, as for `OpenAiStt`: a provider blip costs only the words it dropped. A
//! failed transcription, a broken or refused connection (5xx, 429, network) or a transcript
//! overdue past the timeout answers the utterances concerned with `Final("")` and logs; the
//! next utterance connects again. Only a refusal no later utterance could survive (a handshake
//! 4xx such as 401, 403 or 404, or a refused `session.update`, e.g. an unknown model) ends the
//! session with [`SttEvent::Failed`].

use std::collections::VecDeque;
use std::time::Duration;

use actors::audio::FRAME_SAMPLES;
use actors::ports::{
    CallInfo, MulawFrame, PortError, SpeechToText, SttEvent, SttInput, SttSession,
};
use base64::Engine;
use futures::future::BoxFuture;
use futures::{FutureExt, SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::Instrument;

use super::openai::{iso_639_1, OpenAiClient, CONNECT_TIMEOUT, EVENT_CAPACITY, FEED_CAPACITY};
use super::scrub;

/// Frames per `input_audio_buffer.append` (100 ms, 800 μ-law bytes): ten small messages a
/// second per call instead of fifty, while an utterance's last audio waits at most this long.
pub const BATCH_FRAMES: usize = 5;

/// Shortest utterance committed; a shorter one is answered `Final("")` without a request.
/// OpenAI refuses to commit less than 100 ms of audio \[U\], and such a blip holds no words.
const MIN_UTTERANCE_FRAMES: usize = 5;

// A too-short utterance has then sent nothing yet, so there is never a buffer to clear.
const _: () = assert!(BATCH_FRAMES >= MIN_UTTERANCE_FRAMES);

/// Longest utterance streamed (30 s, as `OpenAiStt` buffers): past it the rest of the
/// utterance is dropped, so memory per call stays bounded while the link is down.
const MAX_UTTERANCE_FRAMES: usize = 1_500;

/// How long the closing handshake may take before the connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The `event_id` of the session's configuration, so an `error` about it is recognised.
const SESSION_UPDATE_ID: &str = "session_update";

/// Streaming speech-to-text over the Realtime API's transcription sessions: one WebSocket per
/// call, opened when the session is (so the first utterance does not wait for the
/// handshake), and opened again at the next utterance after a failure.
#[derive(Clone)]
pub struct OpenAiRealtimeStt {
    client: OpenAiClient,
}

impl OpenAiRealtimeStt {
    /// The adapter over the shared OpenAI client: its base URL, key, timeout and
    /// transcription model (`stt_model`).
    pub fn new(client: OpenAiClient) -> Self {
        Self { client }
    }
}

impl SpeechToText for OpenAiRealtimeStt {
    /// Spawns the session's task; must be called inside a tokio runtime.
    fn open(&self, call: &CallInfo, options: &actors::ports::SttOptions) -> SttSession {
        let language = options.language.as_str();
        let (feed, inputs) = mpsc::channel(FEED_CAPACITY);
        let (events_tx, events) = mpsc::channel(EVENT_CAPACITY);
        let config = self.client.config();
        let target = realtime_url(&config.base_url).map(|url| Target {
            url,
            api_key: config.api_key.clone(),
            timeout: config.timeout,
            session_update: session_update(
                &config.stt_model,
                iso_639_1(language).as_deref(),
                &call.customer,
            ),
        });
        let span =
            tracing::info_span!("stt_realtime", call_id = %call.call_id, tenant_id = %call.tenant);
        tokio::spawn(
            async move {
                match target {
                    Ok(target) => Session::new(target, events_tx).run(inputs).await,
                    Err(error) => {
                        let _ = events_tx.send(SttEvent::Failed(error)).await;
                    }
                }
            }
            .instrument(span),
        );
        SttSession {
            feed: Box::new(feed),
            events,
        }
    }
}

/// The transcription session's WebSocket URL for an OpenAI base URL (`https://host/v1` →
/// `wss://host/v1/realtime?intent=transcription`).
fn realtime_url(base_url: &str) -> Result<String, PortError> {
    let ws = super::websocket_base(base_url).ok_or_else(|| {
        PortError::Refused(format!(
            "openai realtime transcription: the base URL {base_url} is not http(s)"
        ))
    })?;
    Ok(format!("{ws}/realtime?intent=transcription"))
}

/// The `session.update` that configures a transcription session: μ-law in, this model,
/// language and prompt, and no turn detection (the engine's endpointer commits).
fn session_update(model: &str, language: Option<&str>, prompt: &str) -> Value {
    let mut transcription = json!({ "model": model });
    if let Some(language) = language {
        transcription["language"] = Value::from(language);
    }
    if !prompt.is_empty() {
        transcription["prompt"] = Value::from(prompt);
    }
    json!({
        "type": "session.update",
        "event_id": SESSION_UPDATE_ID,
        "session": {
            "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcmu"},
                "transcription": transcription,
                "turn_detection": null,
            }},
        },
    })
}

/// Where and how one session connects.
struct Target {
    url: String,
    api_key: SecretString,
    /// Longest wait for a transcript after its commit, and for a message to go out.
    timeout: Duration,
    session_update: Value,
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why the link could not be used, and whether a later connection could do better.
#[derive(Debug)]
struct LinkError {
    port: PortError,
    /// No later connection can succeed either: the session is over.
    fatal: bool,
}

impl LinkError {
    fn retry(port: PortError) -> Self {
        Self { port, fatal: false }
    }

    fn fatal(port: PortError) -> Self {
        Self { port, fatal: true }
    }
}

/// The connection, as the session task sees it.
enum Link {
    /// None: one is opened when audio needs it.
    Down,
    /// Handshaking; audio and commits wait in the outbox meanwhile.
    Connecting(BoxFuture<'static, Result<Box<Socket>, LinkError>>),
    /// Open and configured.
    Up(Box<Socket>),
}

/// What the link did.
enum LinkEvent {
    Connected(Result<Box<Socket>, LinkError>),
    Received(Option<Result<Message, tungstenite::Error>>),
}

/// The link's next event; never ready while the link is down.
async fn link_event(link: &mut Link) -> LinkEvent {
    match link {
        Link::Down => std::future::pending().await,
        Link::Connecting(handshake) => LinkEvent::Connected(handshake.await),
        Link::Up(socket) => LinkEvent::Received(socket.next().await),
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Opens and authenticates the WebSocket.
async fn connect(url: String, api_key: SecretString) -> Result<Box<Socket>, LinkError> {
    let mut request = url.as_str().into_client_request().map_err(|e| {
        LinkError::fatal(PortError::Refused(format!(
            "openai realtime transcription (bad URL: {e})"
        )))
    })?;
    let mut bearer = HeaderValue::from_str(&format!("Bearer {}", api_key.expose_secret()))
        .map_err(|_| {
            LinkError::fatal(PortError::Refused(
                "openai realtime transcription (the API key is not a valid header value)"
                    .to_owned(),
            ))
        })?;
    bearer.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(crate::USER_AGENT),
    );
    let handshake = tokio_tungstenite::connect_async_with_config(
        request,
        Some(crate::websocket::client_config()),
        true,
    );
    let started = std::time::Instant::now();
    let observe = |attempt| {
        super::observe_attempt("openai", "realtime transcription", started, attempt);
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Err(_) => {
            observe(super::Attempt::Timeout);
            Err(LinkError::retry(PortError::TimedOut(CONNECT_TIMEOUT)))
        }
        Ok(Err(tungstenite::Error::Http(response))) => {
            observe(super::Attempt::Status(response.status().as_u16()));
            Err(handshake_refused(
                response.status().as_u16(),
                response.body().as_deref().unwrap_or_default(),
                &api_key,
            ))
        }
        // tungstenite's errors name no header, so the key cannot leak through them.
        Ok(Err(error)) => {
            observe(super::Attempt::Transport);
            Err(LinkError::retry(PortError::Unavailable(format!(
                "openai realtime transcription ({error})"
            ))))
        }
        Ok(Ok((socket, _response))) => {
            observe(super::Attempt::Ok);
            Ok(Box::new(socket))
        }
    }
}

/// A handshake answered with an HTTP error: a server error or a rate limit may pass, any
/// other refusal (key, permission, URL, parameters) will not.
fn handshake_refused(status: u16, body: &[u8], api_key: &SecretString) -> LinkError {
    let message = if status == 401 {
        // OpenAI echoes part of a wrong key in this message: say less.
        "the API key was rejected".to_owned()
    } else {
        serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"))
    };
    let text = format!(
        "openai realtime transcription ({status}): {}",
        scrub(&message, api_key)
    );
    if status >= 500 || status == 408 || status == 429 {
        LinkError::retry(PortError::Unavailable(text))
    } else {
        LinkError::fatal(PortError::Refused(text))
    }
}

/// Closes a socket politely, giving the server a moment to answer the close.
async fn close(mut socket: Socket) {
    let _ = tokio::time::timeout(CLOSE_GRACE, async move {
        if socket.close(None).await.is_ok() {
            while let Some(Ok(_)) = socket.next().await {}
        }
    })
    .await;
}

// ---------------------------------------------------------------- server events

/// The `error` object of `error` and `...failed` events; every field may be missing.
#[derive(Debug, Default, Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
    /// The client event that caused it (only on `error` events).
    #[serde(default)]
    event_id: Option<String>,
}

/// The server events this adapter acts on; the rest (`session.created`,
/// `session.updated`, rate limits, …) are read and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
enum ServerEvent {
    #[serde(rename = "input_audio_buffer.committed")]
    Committed { item_id: String },
    #[serde(rename = "conversation.item.input_audio_transcription.delta")]
    Delta {
        item_id: String,
        #[serde(default)]
        delta: String,
    },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    Completed {
        item_id: String,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "conversation.item.input_audio_transcription.failed")]
    Failed {
        item_id: String,
        #[serde(default)]
        error: WireError,
    },
    #[serde(rename = "error")]
    Error {
        #[serde(default)]
        error: WireError,
    },
    #[serde(other)]
    Other,
}

// ---------------------------------------------------------------- utterances in flight

/// One utterance the engine ended and still waits to hear about.
#[derive(Debug)]
struct Pending {
    /// The `event_id` of its commit; `None` when it was answered without one.
    commit_id: Option<String>,
    /// The conversation item the server made of it, once `committed` says so.
    item_id: Option<String>,
    /// The deltas so far.
    heard: String,
    /// Its transcript, once known (empty when it failed or was too short).
    result: Option<String>,
    /// When its transcript is overdue.
    deadline: Option<Instant>,
}

/// The utterances ended and not yet reported, in the order the engine ended them, which is
/// the order their finals are reported in whatever order the server answers. Pure, so the
/// bookkeeping is unit-tested without a socket.
#[derive(Debug, Default)]
struct Utterances {
    queue: VecDeque<Pending>,
    commits: u64,
}

impl Utterances {
    /// An utterance answered at once (too short, or lost with its connection).
    fn answered(&mut self, text: String) {
        self.queue.push_back(Pending {
            commit_id: None,
            item_id: None,
            heard: String::new(),
            result: Some(text),
            deadline: None,
        });
    }

    /// An utterance about to be committed; returns the commit's `event_id`.
    fn committed(&mut self, deadline: Instant) -> String {
        self.commits += 1;
        let id = format!("commit_{}", self.commits);
        self.queue.push_back(Pending {
            commit_id: Some(id.clone()),
            item_id: None,
            heard: String::new(),
            result: None,
            deadline: Some(deadline),
        });
        id
    }

    /// The server made an item of the oldest commit it had not yet acknowledged.
    fn on_committed(&mut self, item_id: String) {
        if let Some(pending) = self
            .queue
            .iter_mut()
            .find(|p| p.commit_id.is_some() && p.item_id.is_none() && p.result.is_none())
        {
            pending.item_id = Some(item_id);
        }
    }

    fn by_item(&mut self, item_id: &str) -> Option<&mut Pending> {
        self.queue
            .iter_mut()
            .find(|p| p.item_id.as_deref() == Some(item_id) && p.result.is_none())
    }

    /// More words of an item; the words so far when it is the utterance the engine waits
    /// for first (later ones report once they are first).
    fn on_delta(&mut self, item_id: &str, delta: &str) -> Option<String> {
        let first_waiting = self.queue.iter().position(|p| p.result.is_none());
        let index = self
            .queue
            .iter()
            .position(|p| p.item_id.as_deref() == Some(item_id) && p.result.is_none())?;
        let pending = &mut self.queue[index];
        pending.heard.push_str(delta);
        (first_waiting == Some(index)).then(|| pending.heard.trim().to_owned())
    }

    /// An item's transcript is complete (empty when it failed).
    fn on_completed(&mut self, item_id: &str, transcript: &str) {
        if let Some(pending) = self.by_item(item_id) {
            pending.result = Some(transcript.trim().to_owned());
        }
    }

    /// The commit with this `event_id` was refused: its utterance is lost.
    fn on_commit_refused(&mut self, commit_id: &str) {
        if let Some(pending) = self
            .queue
            .iter_mut()
            .find(|p| p.commit_id.as_deref() == Some(commit_id) && p.result.is_none())
        {
            pending.result = Some(String::new());
        }
    }

    /// The connection is gone: nothing still waiting will be answered. Returns how many
    /// utterances were lost.
    fn abandon_all(&mut self) -> usize {
        let mut lost = 0;
        for pending in self.queue.iter_mut().filter(|p| p.result.is_none()) {
            pending.result = Some(String::new());
            lost += 1;
        }
        lost
    }

    /// The next transcript to report, if the oldest utterance has one.
    fn pop_ready(&mut self) -> Option<String> {
        if self.queue.front()?.result.is_some() {
            self.queue.pop_front().and_then(|p| p.result)
        } else {
            None
        }
    }

    /// When the oldest unanswered utterance is overdue.
    fn first_deadline(&self) -> Option<Instant> {
        self.queue
            .iter()
            .find(|p| p.result.is_none())
            .and_then(|p| p.deadline)
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

// ---------------------------------------------------------------- the session task

/// The session must end: a fatal failure was reported, or the engine stopped listening.
struct Stop;

/// One call's transcription session.
struct Session {
    target: Target,
    link: Link,
    /// Client events waiting for the connection to open, in order.
    outbox: VecDeque<String>,
    utterances: Utterances,
    /// μ-law of the current utterance not yet appended.
    batch: Vec<u8>,
    /// Frames of the current utterance taken (sent, queued or batched).
    frames: usize,
    /// The connection failed during the current utterance: the rest of it is dropped and
    /// its end answers `Final("")`.
    lost: bool,
    /// Frames past the utterance limit were dropped.
    overflowed: bool,
    events: mpsc::Sender<SttEvent>,
}

impl Session {
    fn new(target: Target, events: mpsc::Sender<SttEvent>) -> Self {
        Self {
            target,
            link: Link::Down,
            outbox: VecDeque::new(),
            utterances: Utterances::default(),
            batch: Vec::with_capacity(BATCH_FRAMES * FRAME_SAMPLES),
            frames: 0,
            lost: false,
            overflowed: false,
            events,
        }
    }

    /// Runs until the feed is dropped and every ended utterance is reported, until the
    /// engine drops the events receiver, or until a fatal failure; then closes the socket.
    async fn run(mut self, mut inputs: mpsc::Receiver<SttInput>) {
        self.connect();
        let mut feed_open = true;
        loop {
            let deadline = self.utterances.first_deadline();
            let step = tokio::select! {
                input = inputs.recv(), if feed_open => match input {
                    Some(SttInput::Audio(frame)) => self.hear(&frame).await,
                    Some(SttInput::UtteranceEnded) => self.end_utterance().await,
                    None => {
                        feed_open = false;
                        Ok(())
                    }
                },
                event = link_event(&mut self.link) => self.on_link(event).await,
                () = sleep_until(deadline) => self.overdue().await,
                () = self.events.closed() => Err(Stop),
            };
            let reported = match step {
                Ok(()) => self.report().await,
                Err(stop) => Err(stop),
            };
            if reported.is_err() || (!feed_open && self.utterances.is_empty()) {
                break;
            }
        }
        if let Link::Up(socket) = std::mem::replace(&mut self.link, Link::Down) {
            close(*socket).await;
        }
    }

    /// Starts the handshake unless a connection is open or opening.
    fn connect(&mut self) {
        if matches!(self.link, Link::Down) {
            let handshake = connect(self.target.url.clone(), self.target.api_key.clone());
            self.link = Link::Connecting(handshake.boxed());
        }
    }

    /// One frame of the current utterance, batched as it came (the session takes G.711).
    async fn hear(&mut self, frame: &MulawFrame) -> Result<(), Stop> {
        if self.lost {
            return Ok(());
        }
        if self.frames >= MAX_UTTERANCE_FRAMES {
            self.overflowed = true;
            return Ok(());
        }
        if self.frames == 0 {
            self.connect();
        }
        self.frames += 1;
        self.batch.extend_from_slice(frame);
        if self.batch.len() >= BATCH_FRAMES * FRAME_SAMPLES {
            self.append().await?;
        }
        Ok(())
    }

    /// Sends the batched audio.
    async fn append(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let audio = base64::engine::general_purpose::STANDARD.encode(&self.batch);
        self.batch.clear();
        let event = json!({"type": "input_audio_buffer.append", "audio": audio});
        self.send(event.to_string()).await
    }

    /// The endpointer ended the utterance: commit it, or answer it at once when there is
    /// nothing worth transcribing.
    async fn end_utterance(&mut self) -> Result<(), Stop> {
        let frames = std::mem::take(&mut self.frames);
        if std::mem::take(&mut self.overflowed) {
            tracing::warn!(
                max_frames = MAX_UTTERANCE_FRAMES,
                "utterance too long for one transcription; its end was dropped"
            );
        }
        let lost = std::mem::take(&mut self.lost);
        if lost || frames < MIN_UTTERANCE_FRAMES {
            self.batch.clear();
            self.utterances.answered(String::new());
            return Ok(());
        }
        self.append().await?;
        let id = self
            .utterances
            .committed(Instant::now() + self.target.timeout);
        let commit = json!({"type": "input_audio_buffer.commit", "event_id": id});
        self.send(commit.to_string()).await
    }

    /// Sends a client event now, or queues it until the connection is open.
    async fn send(&mut self, event: String) -> Result<(), Stop> {
        match &mut self.link {
            Link::Up(socket) => {
                let sent = tokio::time::timeout(
                    self.target.timeout,
                    socket.send(Message::Text(event.into())),
                )
                .await;
                match sent {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => {
                        let error = PortError::Unavailable(format!(
                            "openai realtime transcription ({error})"
                        ));
                        self.link_failed(LinkError::retry(error)).await
                    }
                    Err(_) => {
                        let error = PortError::TimedOut(self.target.timeout);
                        self.link_failed(LinkError::retry(error)).await
                    }
                }
            }
            Link::Connecting(_) => {
                self.outbox.push_back(event);
                Ok(())
            }
            Link::Down => {
                self.outbox.push_back(event);
                self.connect();
                Ok(())
            }
        }
    }

    async fn on_link(&mut self, event: LinkEvent) -> Result<(), Stop> {
        match event {
            LinkEvent::Connected(Ok(socket)) => {
                self.link = Link::Up(socket);
                self.send(self.target.session_update.to_string()).await?;
                while let Some(event) = self.outbox.pop_front() {
                    if !matches!(self.link, Link::Up(_)) {
                        break;
                    }
                    self.send(event).await?;
                }
                Ok(())
            }
            LinkEvent::Connected(Err(error)) => self.link_failed(error).await,
            LinkEvent::Received(Some(Ok(Message::Text(text)))) => {
                self.on_server_event(text.as_str()).await
            }
            LinkEvent::Received(Some(Ok(Message::Close(frame)))) => {
                let why = frame.map_or_else(
                    || "closed by the server".to_owned(),
                    |f| format!("closed by the server: {} {}", u16::from(f.code), f.reason),
                );
                self.link_failed(LinkError::retry(PortError::Unavailable(format!(
                    "openai realtime transcription ({why})"
                ))))
                .await
            }
            LinkEvent::Received(Some(Ok(_ping_pong_or_binary))) => Ok(()),
            LinkEvent::Received(Some(Err(error))) => {
                let error =
                    PortError::Unavailable(format!("openai realtime transcription ({error})"));
                self.link_failed(LinkError::retry(error)).await
            }
            LinkEvent::Received(None) => {
                let error = PortError::Unavailable(
                    "openai realtime transcription (connection lost)".into(),
                );
                self.link_failed(LinkError::retry(error)).await
            }
        }
    }

    async fn on_server_event(&mut self, text: &str) -> Result<(), Stop> {
        let event = match serde_json::from_str::<ServerEvent>(text) {
            Ok(event) => event,
            Err(error) => {
                tracing::debug!(%error, "unreadable realtime server event ignored");
                return Ok(());
            }
        };
        match event {
            ServerEvent::Committed { item_id } => self.utterances.on_committed(item_id),
            ServerEvent::Delta { item_id, delta } => {
                if let Some(words) = self.utterances.on_delta(&item_id, &delta) {
                    if self.events.send(SttEvent::Partial(words)).await.is_err() {
                        return Err(Stop);
                    }
                }
            }
            ServerEvent::Completed {
                item_id,
                transcript,
            } => self.utterances.on_completed(&item_id, &transcript),
            ServerEvent::Failed { item_id, error } => {
                let message = scrub(error.message.as_deref().unwrap_or(""), &self.target.api_key);
                tracing::warn!(code = ?error.code, %message, "transcription failed; utterance dropped");
                self.utterances.on_completed(&item_id, "");
            }
            ServerEvent::Error { error } => return self.on_error(error).await,
            ServerEvent::Other => {}
        }
        Ok(())
    }

    /// An `error` event: fatal when it refuses the session's configuration or the key,
    /// the loss of one utterance when it refuses a commit, otherwise only logged.
    async fn on_error(&mut self, error: WireError) -> Result<(), Stop> {
        let message = scrub(
            error.message.as_deref().unwrap_or("error"),
            &self.target.api_key,
        );
        let about = error.event_id.as_deref().unwrap_or("");
        let key_refused = error.code.as_deref() == Some("invalid_api_key");
        if about == SESSION_UPDATE_ID || key_refused {
            tracing::error!(code = ?error.code, %message, "realtime transcription session refused");
            let refused = PortError::Refused(format!("openai realtime transcription: {message}"));
            let _ = self.events.send(SttEvent::Failed(refused)).await;
            return Err(Stop);
        }
        if about.starts_with("commit_") {
            tracing::warn!(code = ?error.code, %message, "commit refused; utterance dropped");
            self.utterances.on_commit_refused(about);
        } else {
            tracing::warn!(code = ?error.code, %message, event_id = about, "realtime transcription error");
        }
        Ok(())
    }

    /// The oldest utterance's transcript is overdue: the connection is taken for broken.
    async fn overdue(&mut self) -> Result<(), Stop> {
        self.link_failed(LinkError::retry(PortError::TimedOut(self.target.timeout)))
            .await
    }

    /// The connection failed or broke: what it was carrying is lost and answered empty; a
    /// fatal failure ends the session, any other waits for the next utterance to reconnect.
    async fn link_failed(&mut self, error: LinkError) -> Result<(), Stop> {
        if let Link::Up(socket) = std::mem::replace(&mut self.link, Link::Down) {
            tokio::spawn(close(*socket));
        }
        self.outbox.clear();
        let dropped = self.utterances.abandon_all();
        if self.frames > 0 {
            self.lost = true;
            self.batch.clear();
        }
        if error.fatal {
            tracing::error!(error = %error.port, "speech-to-text refused the session");
            let _ = self.events.send(SttEvent::Failed(error.port)).await;
            return Err(Stop);
        }
        tracing::warn!(error = %error.port, utterances_dropped = dropped, "realtime transcription connection failed");
        Ok(())
    }

    /// Reports the finals that are ready, in utterance order.
    async fn report(&mut self) -> Result<(), Stop> {
        while let Some(text) = self.utterances.pop_ready() {
            if self.events.send(SttEvent::Final(text)).await.is_err() {
                return Err(Stop);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_follows_the_base_urls_scheme() {
        assert_eq!(
            realtime_url("https://api.openai.com/v1").unwrap(),
            "wss://api.openai.com/v1/realtime?intent=transcription"
        );
        assert_eq!(
            realtime_url("http://127.0.0.1:9/v1/").unwrap(),
            "ws://127.0.0.1:9/v1/realtime?intent=transcription"
        );
        assert!(realtime_url("ftp://example.com").is_err());
    }

    #[test]
    fn the_session_is_mu_law_without_turn_detection() {
        let update = session_update("gpt-4o-mini-transcribe", Some("en"), "+14155550100");
        assert_eq!(
            update,
            json!({"type": "session.update", "event_id": "session_update", "session": {
                "type": "transcription",
                "audio": {"input": {
                    "format": {"type": "audio/pcmu"},
                    "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en",
                                      "prompt": "+14155550100"},
                    "turn_detection": null}}}})
        );
        let bare = session_update("m", None, "");
        assert_eq!(
            bare["session"]["audio"]["input"]["transcription"],
            json!({"model": "m"})
        );
    }

    #[test]
    fn finals_are_reported_in_commit_order_whatever_order_they_complete_in() {
        let mut u = Utterances::default();
        let later = Instant::now() + Duration::from_secs(1);
        let first = u.committed(later);
        u.answered(String::new());
        let third = u.committed(later);
        assert_eq!((first.as_str(), third.as_str()), ("commit_1", "commit_2"));
        u.on_committed("item_a".into());
        u.on_committed("item_c".into());
        assert_eq!(u.on_delta("item_c", "Later"), None, "not the first waiting");
        u.on_completed("item_c", " Later words ");
        assert_eq!(u.pop_ready(), None, "the first is still waiting");
        assert_eq!(u.on_delta("item_a", "Hello"), Some("Hello".into()));
        assert_eq!(u.on_delta("item_a", " there"), Some("Hello there".into()));
        u.on_completed("item_a", "Hello there.");
        assert_eq!(u.pop_ready(), Some("Hello there.".into()));
        assert_eq!(u.pop_ready(), Some(String::new()));
        assert_eq!(u.pop_ready(), Some("Later words".into()));
        assert!(u.is_empty());
    }

    #[test]
    fn a_refused_commit_or_a_lost_connection_answers_empty() {
        let mut u = Utterances::default();
        let later = Instant::now() + Duration::from_secs(1);
        let refused = u.committed(later);
        u.committed(later);
        u.on_commit_refused(&refused);
        // The server acknowledges the second commit only: it must not be taken for the first.
        u.on_committed("item_b".into());
        assert_eq!(u.pop_ready(), Some(String::new()));
        assert_eq!(u.first_deadline(), Some(later));
        assert_eq!(u.abandon_all(), 1);
        assert_eq!(u.pop_ready(), Some(String::new()));
        assert_eq!(u.first_deadline(), None);
    }

    #[test]
    fn server_events_are_read_leniently() {
        let delta: ServerEvent = serde_json::from_str(
            r#"{"type":"conversation.item.input_audio_transcription.delta","event_id":"e1","item_id":"i","content_index":0,"delta":"Hi"}"#,
        )
        .unwrap();
        assert!(matches!(delta, ServerEvent::Delta { ref delta, .. } if delta == "Hi"));
        let other: ServerEvent =
            serde_json::from_str(r#"{"type":"session.updated","session":{}}"#).unwrap();
        assert!(matches!(other, ServerEvent::Other));
        let error: ServerEvent = serde_json::from_str(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"no","event_id":"commit_3"}}"#,
        )
        .unwrap();
        assert!(
            matches!(error, ServerEvent::Error { error } if error.event_id.as_deref() == Some("commit_3"))
        );
    }
}
