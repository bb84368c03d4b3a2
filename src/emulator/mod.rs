//! The provider emulator: a **test double** of OpenAI and ElevenLabs, speaking their real
//! wire formats (`PROTOCOLS.md` §5 and §6) on a local port.
//!
//! It stands in for the real services in the demo (`switchboard demo`), the end-to-end
//! tests and the load benchmark, so none of them needs an account, a network or money, and
//! every run gets the same answers. The server (`serve`) never uses it unless its provider
//! base URLs are pointed at it; nothing here is reachable from production wiring.
//!
//! What it serves:
//! - OpenAI `POST /v1/audio/transcriptions` (WAV only, scripted transcripts), the Realtime
//!   transcription session `GET /v1/realtime?intent=transcription` (WebSocket, the same
//!   scripted transcripts word by word),
//!   `POST /v1/chat/completions` (streamed SSE or not, scripted text and tool calls) and
//!   `POST /v1/embeddings` (deterministic vectors from hashed words);
//! - ElevenLabs `POST /v1/text-to-speech/{voice_id}/stream` and the WebSocket
//!   `GET /v1/text-to-speech/{voice_id}/stream-input`, in `ulaw_8000` or `pcm_8000`, with real
//!   audio whose length grows with the text ([`audio`]).
//!
//! How it behaves is data, an [`EmulatorScript`] ([`script`]): latency per family (first
//! byte, per chunk), scripted transcripts and replies, and injected faults (HTTP errors with
//! the vendor's error body, stalls, streams cut short). Faults can also be changed while it
//! runs, and set for one chat model alone (a primary model down while its fallback answers). It records every request ([`RecordedRequest`]) so a test can assert on what the
//! runtime sent — the prompt the LLM got, the text it spoke — but never stores a credential,
//! only whether one was present.
//!
//! ```no_run
//! # async fn example() {
//! use switchboard::emulator::{Emulator, EmulatorScript, Family, Fault};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let emulator = Emulator::start(listener, EmulatorScript::instant());
//! // Point the OpenAI adapter at `emulator.openai_base_url()`, ElevenLabs at `base_url()`.
//! emulator.set_fault(Family::Llm, Some(Fault::status(503).times(1)));
//! // … run a call …
//! let prompts = emulator.requests_for(Family::Llm);
//! emulator.stop().await;
//! # }
//! ```

pub mod audio;
mod elevenlabs;
mod openai;
mod openai_realtime;
mod pacing;
mod record;
pub mod script;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use record::RecordedRequest;
pub use script::{
    EmulatorScript, Family, Fault, FaultKind, Latencies, Latency, Replies, ReplyRule, ScriptError,
    ScriptedToolCall, Transcripts,
};

use pacing::Delivery;

/// OpenAI's upload limit for transcriptions is 25 MB; larger bodies are refused as there.
const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// How long `stop` waits for open connections to finish before abandoning them.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Starts emulators. A namespace rather than a value: everything a running emulator offers
/// is on its [`EmulatorHandle`].
pub struct Emulator;

impl Emulator {
    /// Serves the emulator on `listener` (bind port 0 in tests) until the handle is stopped
    /// or dropped. Must be called inside a tokio runtime; the script is taken as given (call
    /// [`EmulatorScript::validate`] on untrusted input, as `from_file` does).
    pub fn start(listener: TcpListener, script: EmulatorScript) -> EmulatorHandle {
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared::new(script, stop_rx.clone()));
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            let mut stop_rx = stop_rx;
            let stopped = async move {
                // Err means the handle was dropped: stop as well.
                let _ = stop_rx.wait_for(|stop| *stop).await;
            };
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::warn!(%error, "provider emulator stopped with an error");
            }
        });
        tracing::info!(%addr, "provider emulator (test double of OpenAI and ElevenLabs) listening");
        EmulatorHandle {
            addr,
            shared,
            stop,
            task: Some(task),
        }
    }
}

/// A running emulator: its address, what it has received, and run-time fault control.
/// Dropping it stops the emulator (without waiting); [`EmulatorHandle::stop`] waits.
pub struct EmulatorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port`, the ElevenLabs base URL (an unspecified bind address such as
    /// `0.0.0.0` is given as loopback, which is where local clients reach it).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}")
    }

    /// `http://host:port/v1`, the OpenAI base URL as OpenAI clients take it.
    pub fn openai_base_url(&self) -> String {
        format!("{}/v1", self.base_url())
    }

    /// `ws://host:port`, the base for the ElevenLabs stream-input WebSocket.
    pub fn ws_base_url(&self) -> String {
        self.base_url().replacen("http://", "ws://", 1)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// The requests of one family, in arrival order.
    pub fn requests_for(&self, family: Family) -> Vec<RecordedRequest> {
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.family == Some(family))
            .cloned()
            .collect()
    }

    /// Forgets the requests received so far (a long benchmark run would otherwise keep
    /// them all).
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Replaces the fault of one family (`None` clears it). Its request count restarts, so
    /// `skip` and `times` count from now.
    pub fn set_fault(&self, family: Family, fault: Option<Fault>) {
        lock(&self.shared.faults).insert(family, fault.map(|fault| (fault, 0)));
    }

    /// Replaces the fault of chat completions naming `model` (`None` clears it), which
    /// comes before the LLM family's: so a test can take one model down and let its
    /// fallback answer. Its request count restarts, as with [`Self::set_fault`].
    pub fn set_model_fault(&self, model: &str, fault: Option<Fault>) {
        let mut faults = lock(&self.shared.model_faults);
        match fault {
            Some(fault) => faults.insert(model.to_owned(), (fault, 0)),
            None => faults.remove(model),
        };
    }

    /// Clears every fault, those of single models included.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
        lock(&self.shared.model_faults).clear();
    }

    /// Stops accepting, ends stalls and streams in progress, and waits (a few seconds at
    /// most) for the server to finish.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// State shared by every handler.
pub(crate) struct Shared {
    /// The script; faults live apart because they change at run time.
    script: EmulatorScript,
    /// The fault of each family and how many of its requests it has seen.
    faults: Mutex<HashMap<Family, Option<(Fault, u32)>>>,
    /// Faults of single chat models, with their request counts.
    model_faults: Mutex<HashMap<String, (Fault, u32)>>,
    /// How far each transcript queue has been read (`None`: the shared `lines`).
    transcript_cursors: Mutex<HashMap<Option<String>, usize>>,
    requests: Mutex<Vec<RecordedRequest>>,
    next_seq: AtomicU64,
    /// Turns true when the emulator stops; every wait watches it.
    shutdown: watch::Receiver<bool>,
}

/// Locks a mutex, taking the data even if a panicking handler poisoned it: the emulator's
/// bookkeeping stays usable, and the panic has already failed its test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn new(script: EmulatorScript, shutdown: watch::Receiver<bool>) -> Self {
        let faults = Family::ALL
            .into_iter()
            .map(|family| (family, script.faults.get(family).cloned().map(|f| (f, 0))))
            .collect();
        Self {
            script,
            faults: Mutex::new(faults),
            model_faults: Mutex::new(HashMap::new()),
            transcript_cursors: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(1),
            shutdown,
        }
    }

    /// Stores a request and returns its sequence number.
    fn record(&self, family: Option<Family>, incoming: Incoming, body: Value) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(seq, method = %incoming.method, path = %incoming.path, "provider emulator request");
        lock(&self.requests).push(RecordedRequest {
            seq,
            family,
            method: incoming.method,
            path: incoming.path,
            query: incoming.query,
            headers: incoming.headers,
            authorization: incoming.authorization,
            xi_api_key: incoming.xi_api_key,
            body,
            messages: Vec::new(),
            ended: false,
        });
        seq
    }

    /// Marks a WebSocket session's record as over.
    fn record_ended(&self, seq: u64) {
        if let Some(request) = lock(&self.requests).iter_mut().rev().find(|r| r.seq == seq) {
            request.ended = true;
        }
    }

    /// Adds a WebSocket client message to its session's record.
    fn record_message(&self, seq: u64, message: Value, carried_key: bool) {
        let mut requests = lock(&self.requests);
        if let Some(request) = requests.iter_mut().rev().find(|r| r.seq == seq) {
            request.messages.push(message);
            request.xi_api_key |= carried_key;
        }
    }

    /// Counts a request of `family` against its fault and returns the fault if it hits.
    fn fault_for(&self, family: Family) -> Option<FaultKind> {
        let mut faults = lock(&self.faults);
        let (fault, seen) = faults.get_mut(&family)?.as_mut()?;
        let n = *seen;
        *seen = seen.saturating_add(1);
        fault.hits(n).then(|| fault.kind.clone())
    }

    /// Counts a chat completion for `model` against that model's fault, if it has one, and
    /// returns the fault if it hits.
    fn model_fault(&self, model: &str) -> Option<FaultKind> {
        let mut faults = lock(&self.model_faults);
        let (fault, seen) = faults.get_mut(model)?;
        let n = *seen;
        *seen = seen.saturating_add(1);
        fault.hits(n).then(|| fault.kind.clone())
    }

    /// The next scripted transcript for a request with this `prompt`; `advance: false`
    /// reads it without consuming it (for answers a fault will break, so a retry hears the
    /// same line).
    fn transcript(&self, prompt: Option<&str>, advance: bool) -> String {
        let transcripts = &self.script.transcripts;
        let queue = transcripts.queue_for(prompt);
        let mut cursors = lock(&self.transcript_cursors);
        let cursor = cursors.entry(queue.map(str::to_owned)).or_insert(0);
        let line = transcripts.line(queue, *cursor).to_owned();
        if advance {
            *cursor += 1;
        }
        line
    }

    /// Handles what happens before the first byte of an answer: a status fault answers at
    /// once (through `error`, which shapes the vendor's body), a stall before the headers
    /// waits and then answers 504, anything else waits the first-byte latency and returns
    /// how to deliver the rest.
    async fn before_first_byte(
        &self,
        family: Family,
        error: fn(u16) -> Response,
    ) -> Result<Delivery, Response> {
        let fault = self.fault_for(family);
        self.deliver(family, fault, error).await
    }

    /// [`Self::before_first_byte`] for a fault already drawn.
    async fn deliver(
        &self,
        family: Family,
        fault: Option<FaultKind>,
        error: fn(u16) -> Response,
    ) -> Result<Delivery, Response> {
        match &fault {
            Some(FaultKind::Status { status }) => return Err(error(*status)),
            Some(FaultKind::Stall {
                ms,
                after_chunks: 0,
            }) => {
                pacing::pause(&self.shutdown, Duration::from_millis(*ms)).await;
                return Err(error(504));
            }
            _ => {}
        }
        let latency = self.script.latency.get(family);
        pacing::pause(&self.shutdown, Duration::from_millis(latency.first_byte_ms)).await;
        Ok(Delivery::new(
            latency.per_chunk_ms,
            fault.as_ref(),
            self.shutdown.clone(),
        ))
    }
}

/// The request line and headers as recorded, credentials reduced to presence.
pub(crate) struct Incoming {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    authorization: bool,
    xi_api_key: bool,
}

impl Incoming {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap) -> Self {
        let query = Query::<BTreeMap<String, String>>::try_from_uri(uri)
            .map(|Query(q)| q)
            .unwrap_or_default();
        let (headers, authorization, xi_api_key) = record::headers_of_interest(headers);
        Self {
            method: method.to_string(),
            path: uri.path().to_owned(),
            query: record::redact_query(query),
            headers,
            authorization,
            xi_api_key,
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/audio/transcriptions", post(openai::transcriptions))
        .route("/v1/realtime", get(openai_realtime::realtime))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/embeddings", post(openai::embeddings))
        .route(
            "/v1/text-to-speech/{voice_id}/stream",
            post(elevenlabs::stream),
        )
        .route(
            "/v1/text-to-speech/{voice_id}/stream-input",
            get(elevenlabs::stream_input),
        )
        .fallback(unknown)
        .method_not_allowed_fallback(unknown)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared)
}

/// Any other path or method: recorded (a wrong URL is a bug the test wants to see) and
/// answered 404 as OpenAI answers unknown URLs.
async fn unknown(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let message = format!(
        "Unknown request URL: {method} {}. The provider emulator serves OpenAI transcriptions \
         (and Realtime transcription sessions), chat completions and embeddings and \
         ElevenLabs text-to-speech only.",
        uri.path()
    );
    shared.record(
        None,
        Incoming::new(&method, &uri, &headers),
        record::body_value(&body),
    );
    openai::error_response(
        axum::http::StatusCode::NOT_FOUND,
        &message,
        "invalid_request_error",
        None,
        Some("unknown_url"),
    )
}
