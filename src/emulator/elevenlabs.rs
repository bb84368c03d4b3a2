//! The ElevenLabs side of the emulator (`PROTOCOLS.md` §5.1–5.2): streaming text-to-speech
//! over HTTP and the single-context WebSocket stream-input API, producing `ulaw_8000` or
//! `pcm_8000` from [`super::audio`], with ElevenLabs-shaped errors.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::audio::{self, MS_PER_CHAR};
use super::pacing::{self, Delivery, Gate};
use super::record::{self, body_value};
use super::script::{Family, FaultKind};
use super::{lock, Incoming, Shared};

/// Audio per HTTP chunk: 100 ms, a size in the range the real stream sends.
const HTTP_CHUNK_MS: usize = 100;

/// Characters of text per WebSocket audio message (650 ms of audio each).
const WS_MESSAGE_CHARS: usize = 10;

/// ElevenLabs' default `chunk_length_schedule`: audio is generated once the buffered text
/// reaches the next threshold (the last repeats).
const DEFAULT_SCHEDULE: [usize; 4] = [120, 160, 250, 290];

/// The WebSocket's default `inactivity_timeout` and its ceiling, in seconds.
const INACTIVITY_DEFAULT_S: u64 = 20;
const INACTIVITY_MAX_S: u64 = 180;

/// How long a finished session waits for the client's half of the closing handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// The audio encodings the emulator can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Format {
    /// `ulaw_8000`: one μ-law byte per sample, ready for a Twilio media payload.
    Ulaw,
    /// `pcm_8000`: signed 16-bit little-endian samples.
    Pcm16,
}

impl Format {
    /// The format an `output_format` names; ElevenLabs' default (`mp3_44100_128`) and every
    /// other value are refused, since the emulator cannot encode them and an adapter that
    /// forgot to ask for telephony audio should find out here.
    fn parse(output_format: Option<&str>) -> Result<Self, String> {
        match output_format.unwrap_or("mp3_44100_128") {
            "ulaw_8000" => Ok(Self::Ulaw),
            "pcm_8000" => Ok(Self::Pcm16),
            other => Err(format!(
                "output_format {other} is not produced by the provider emulator; \
                 ask for ulaw_8000 or pcm_8000"
            )),
        }
    }

    /// The text's speech in this format. Synthesis is most of the emulator's CPU under load
    /// and agents repeat their sentences, so recent ones are kept (a load test would
    /// otherwise measure the test double).
    fn speech(self, text: &str) -> Bytes {
        static RECENT: LazyLock<Mutex<HashMap<(Format, String), Bytes>>> =
            LazyLock::new(Mutex::default);
        const KEPT: usize = 256;
        let key = (self, text.to_owned());
        if let Some(hit) = lock(&RECENT).get(&key) {
            return hit.clone();
        }
        let speech = Bytes::from(match self {
            Self::Ulaw => audio::speech_ulaw(text),
            Self::Pcm16 => audio::speech_pcm16le(text),
        });
        let mut recent = lock(&RECENT);
        if recent.len() >= KEPT {
            recent.clear();
        }
        recent.insert(key, speech.clone());
        speech
    }

    fn bytes_per_sample(self) -> usize {
        match self {
            Self::Ulaw => 1,
            Self::Pcm16 => 2,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Ulaw => "audio/basic",
            Self::Pcm16 => "application/octet-stream",
        }
    }
}

/// `{"detail":{"status","message"}}`, the shape of ElevenLabs errors.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"detail": {"status": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// The error body ElevenLabs sends with an injected status.
fn fault_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (name, message) = match status {
        401 => ("invalid_api_key", "Invalid API key"),
        429 => (
            "too_many_concurrent_requests",
            "Too many concurrent requests for your subscription.",
        ),
        504 => ("timeout", "The request timed out."),
        500..=599 => (
            "internal_server_error",
            "An internal server error occurred.",
        ),
        _ => ("invalid_request", "Invalid request."),
    };
    error_response(code, name, message)
}

fn missing_key() -> Response {
    error_response(
        StatusCode::UNAUTHORIZED,
        "invalid_api_key",
        "Invalid API key",
    )
}

// ---------------------------------------------------------------- HTTP streaming (§5.1)

/// `POST /v1/text-to-speech/{voice_id}/stream?output_format=…`: the text's speech as a
/// chunked body of raw audio, 100 ms a chunk, the first chunk after the TTS first-byte
/// latency and the rest `per_chunk_ms` apart.
pub(super) async fn stream(
    State(shared): State<Arc<Shared>>,
    Path(_voice_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = Incoming::new(&method, &uri, &headers);
    let has_key = incoming.xi_api_key;
    let output_format = incoming.query.get("output_format").cloned();
    shared.record(Some(Family::Tts), incoming, body_value(&body));
    if shared.script.require_keys && !has_key {
        return missing_key();
    }
    let format = match Format::parse(output_format.as_deref()) {
        Ok(format) => format,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_output_format", &message)
        }
    };
    let text = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["text"].as_str().map(str::to_owned))
        .filter(|t| !t.trim().is_empty());
    let Some(text) = text else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The body must be JSON with a non-empty text field.",
        );
    };
    let delivery = match shared.before_first_byte(Family::Tts, fault_response).await {
        Ok(delivery) => delivery,
        Err(answer) => return answer,
    };
    let speech = format.speech(&text);
    let chunk_len =
        audio::SAMPLES_PER_CHAR * HTTP_CHUNK_MS / MS_PER_CHAR as usize * format.bytes_per_sample();
    let chunks: Vec<Bytes> = (0..speech.len())
        .step_by(chunk_len)
        .map(|start| speech.slice(start..(start + chunk_len).min(speech.len())))
        .collect();
    (
        [(header::CONTENT_TYPE, format.content_type())],
        delivery.body(chunks),
    )
        .into_response()
}

// ---------------------------------------------------------------- WebSocket (§5.2)

/// `GET /v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=…`: the
/// single-context input-streaming protocol. The handshake is refused (with an HTTP error)
/// for an unsupported format or a status fault; a session counts as one TTS request for
/// faults.
pub(super) async fn stream_input(
    State(shared): State<Arc<Shared>>,
    Path(_voice_id): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let incoming = Incoming::new(&method, &uri, &headers);
    let key_in_header = incoming.xi_api_key;
    let query = incoming.query.clone();
    let seq = shared.record(Some(Family::Tts), incoming, Value::Null);
    let Ok(upgrade) = upgrade else {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            "invalid_request",
            "This endpoint is a WebSocket; connect with an Upgrade request.",
        );
    };
    let format = match Format::parse(query.get("output_format").map(String::as_str)) {
        Ok(format) => format,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_output_format", &message)
        }
    };
    let fault = shared.fault_for(Family::Tts);
    if let Some(FaultKind::Status { status }) = fault {
        return fault_response(status);
    }
    let inactivity = query
        .get("inactivity_timeout")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(INACTIVITY_DEFAULT_S)
        .clamp(1, INACTIVITY_MAX_S);
    let session = SessionConfig {
        seq,
        format,
        fault,
        inactivity: Duration::from_secs(inactivity),
        authenticated: key_in_header || !shared.script.require_keys,
    };
    upgrade
        .read_buffer_size(crate::websocket::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run_session(shared, socket, session))
}

/// What a session was opened with.
struct SessionConfig {
    /// The handshake's record, which the client's messages are added to.
    seq: u64,
    format: Format,
    fault: Option<FaultKind>,
    inactivity: Duration,
    /// Whether the key came with the handshake (else the first message must carry it).
    authenticated: bool,
}

/// What the reader asks the writer to do, in order.
#[derive(Debug, PartialEq)]
enum Job {
    /// Generate and send audio for this text.
    Speak(String),
    /// Send `{"isFinal":true}` and close normally.
    Final,
    /// Send an error message and close with a policy-violation code.
    Error(String),
    /// Close with this code and reason, no message.
    Close(u16, &'static str),
}

/// How the writer ended, which decides how the socket is left.
enum Ending {
    /// A close frame was sent: wait briefly for the client's reply.
    Closed,
    /// Drop the connection now (a cut, a stop, or the client already gone).
    Dropped,
}

/// One session: the reader turns client messages into jobs while the writer works through
/// them, both in this task so a writer that finishes (or cuts) ends the reader too.
async fn run_session(shared: Arc<Shared>, socket: WebSocket, config: SessionConfig) {
    let (sink, mut stream) = socket.split();
    let (jobs, job_rx) = mpsc::unbounded_channel();
    let delivery = Delivery::new(
        shared.script.latency.tts.per_chunk_ms,
        config.fault.as_ref(),
        shared.shutdown.clone(),
    );
    let writer = write_audio(&shared, sink, job_rx, &config, delivery);
    tokio::pin!(writer);
    let mut protocol = InputProtocol::new(config.authenticated);
    let mut shutdown = shared.shutdown.clone();
    let ending = loop {
        tokio::select! {
            ending = &mut writer => break ending,
            _ = shutdown.wait_for(|stop| *stop) => break Ending::Dropped,
            next = tokio::time::timeout(config.inactivity, stream.next()) => match next {
                Err(_idle) => {
                    if !protocol.closing {
                        protocol.closing = true;
                        let _ = jobs.send(Job::Close(1008, "inactivity timeout"));
                    }
                }
                Ok(None) | Ok(Some(Err(_))) => break Ending::Dropped,
                // The client closed: reading on lets the library send the closing reply.
                Ok(Some(Ok(Message::Close(_)))) => break Ending::Closed,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let (recorded, carried_key, new_jobs) = protocol.on_message(text.as_str());
                    shared.record_message(config.seq, recorded, carried_key);
                    for job in new_jobs {
                        let _ = jobs.send(job);
                    }
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    protocol.closing = true;
                    let _ = jobs.send(Job::Error("Binary messages are not supported; send JSON text.".into()));
                }
                Ok(Some(Ok(_ping_or_pong))) => {}
            },
        }
    };
    if let Ending::Closed = ending {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
    shared.record_ended(config.seq);
}

/// The writer: generates audio for each job after the first-byte latency and sends it as
/// `{"audio","isFinal":null,"normalizedAlignment","alignment"}` messages, applying the
/// session's fault.
async fn write_audio(
    shared: &Shared,
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    config: &SessionConfig,
    delivery: Delivery,
) -> Ending {
    let first_byte = Duration::from_millis(shared.script.latency.tts.first_byte_ms);
    let mut sent = 0usize;
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Speak(text) => {
                if !pacing::pause(&shared.shutdown, first_byte).await {
                    return Ending::Dropped;
                }
                let chars: Vec<char> = text.chars().collect();
                for (i, piece) in chars.chunks(WS_MESSAGE_CHARS).enumerate() {
                    if delivery.gate(sent, i > 0).await == Gate::Cut {
                        return Ending::Dropped;
                    }
                    let piece: String = piece.iter().collect();
                    let message = audio_message(&piece, config.format);
                    if sink.send(Message::Text(message.into())).await.is_err() {
                        return Ending::Dropped;
                    }
                    sent += 1;
                }
            }
            Job::Final => {
                if delivery.break_at_end(sent).await == Gate::Cut {
                    return Ending::Dropped;
                }
                let done = json!({"isFinal": true}).to_string();
                if sink.send(Message::Text(done.into())).await.is_err() {
                    return Ending::Dropped;
                }
                return close(&mut sink, 1000, "").await;
            }
            Job::Error(message) => {
                let error = json!({"message": message, "error": "invalid_request"}).to_string();
                if sink.send(Message::Text(error.into())).await.is_err() {
                    return Ending::Dropped;
                }
                return close(&mut sink, 1008, "invalid request").await;
            }
            Job::Close(code, reason) => return close(&mut sink, code, reason).await,
        }
    }
    Ending::Dropped
}

async fn close(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: &'static str,
) -> Ending {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    match sink.send(Message::Close(Some(frame))).await {
        Ok(()) => Ending::Closed,
        Err(_) => Ending::Dropped,
    }
}

/// Per-character timings of one message, relative to its own start (§5.2).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Alignment {
    chars: Vec<String>,
    char_start_times_ms: Vec<u64>,
    char_durations_ms: Vec<u64>,
}

/// An audio message, fields in the order of `PROTOCOLS.md` §5.2.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AudioOutput {
    audio: String,
    is_final: Option<bool>,
    normalized_alignment: Alignment,
    alignment: Alignment,
}

fn audio_message(text: &str, format: Format) -> String {
    let alignment = || Alignment {
        chars: text.chars().map(String::from).collect(),
        char_start_times_ms: (0..text.chars().count() as u64)
            .map(|i| i * MS_PER_CHAR)
            .collect(),
        char_durations_ms: vec![MS_PER_CHAR; text.chars().count()],
    };
    let output = AudioOutput {
        audio: base64::engine::general_purpose::STANDARD.encode(format.speech(text)),
        is_final: None,
        normalized_alignment: alignment(),
        alignment: alignment(),
    };
    serde_json::to_string(&output).expect("an audio message serializes")
}

/// The client side of the protocol as the server tracks it: the mandatory `" "` opening
/// (carrying the key when the handshake did not), text buffered until the
/// `chunk_length_schedule` threshold, a `flush`, or the closing `""`.
struct InputProtocol {
    started: bool,
    authenticated: bool,
    /// Once closing, further messages are recorded but ignored.
    closing: bool,
    buffer: String,
    schedule: Vec<usize>,
    /// Which schedule threshold applies next; a flush starts the schedule over.
    step: usize,
}

impl InputProtocol {
    fn new(authenticated: bool) -> Self {
        Self {
            started: false,
            authenticated,
            closing: false,
            buffer: String::new(),
            schedule: DEFAULT_SCHEDULE.to_vec(),
            step: 0,
        }
    }

    /// Handles one text message: returns it as recorded (keys redacted), whether it carried
    /// a key, and the jobs it causes.
    fn on_message(&mut self, text: &str) -> (Value, bool, Vec<Job>) {
        let Ok(mut message) = serde_json::from_str::<Value>(text) else {
            return self.fail(
                Value::String(text.to_owned()),
                false,
                "Messages must be JSON objects.",
            );
        };
        let carried_key = record::redact_message(&mut message);
        if self.closing {
            return (message, carried_key, Vec::new());
        }
        let Some(fields) = message.as_object() else {
            return self.fail(message, carried_key, "Messages must be JSON objects.");
        };
        let text = fields.get("text").and_then(Value::as_str);
        if !self.started {
            if text != Some(" ") {
                return self.fail(
                    message,
                    carried_key,
                    "The first message must be {\"text\": \" \"} (a single space), optionally \
                     with voice_settings and generation_config.",
                );
            }
            self.authenticated |= carried_key;
            if !self.authenticated {
                return self.fail(message, carried_key, "Invalid API key");
            }
            if let Some(schedule) = message["generation_config"]["chunk_length_schedule"]
                .as_array()
                .map(|s| {
                    s.iter()
                        .filter_map(Value::as_u64)
                        .map(|n| n.clamp(50, 500) as usize)
                        .collect::<Vec<_>>()
                })
                .filter(|s| !s.is_empty())
            {
                self.schedule = schedule;
            }
            self.started = true;
            return (message, carried_key, Vec::new());
        }
        let mut jobs = Vec::new();
        if text == Some("") {
            self.closing = true;
            jobs.extend(self.take_buffer());
            jobs.push(Job::Final);
            return (message, carried_key, jobs);
        }
        if let Some(text) = text {
            self.buffer.push_str(text);
        }
        let flag = |name: &str| fields.get(name).and_then(Value::as_bool) == Some(true);
        if flag("flush") {
            jobs.extend(self.take_buffer());
            self.step = 0;
        } else {
            let threshold = self.schedule[self.step.min(self.schedule.len() - 1)];
            if flag("try_trigger_generation") || self.buffer.chars().count() >= threshold {
                jobs.extend(self.take_buffer());
                self.step += 1;
            }
        }
        (message, carried_key, jobs)
    }

    /// The buffered text as a job, unless it is only whitespace.
    fn take_buffer(&mut self) -> Option<Job> {
        let text = std::mem::take(&mut self.buffer);
        (!text.trim().is_empty()).then_some(Job::Speak(text))
    }

    fn fail(&mut self, recorded: Value, carried_key: bool, why: &str) -> (Value, bool, Vec<Job>) {
        self.closing = true;
        (recorded, carried_key, vec![Job::Error(why.to_owned())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(p: &mut InputProtocol, message: Value) -> Vec<Job> {
        p.on_message(&message.to_string()).2
    }

    #[test]
    fn text_waits_for_a_flush_under_the_schedule() {
        let mut p = InputProtocol::new(true);
        assert!(jobs(&mut p, json!({"text": " "})).is_empty());
        assert!(jobs(&mut p, json!({"text": "Hello there. "})).is_empty());
        assert_eq!(
            jobs(&mut p, json!({"text": " ", "flush": true})),
            [Job::Speak("Hello there.  ".into())]
        );
        assert_eq!(jobs(&mut p, json!({"text": "Bye. "})), Vec::<Job>::new());
        assert_eq!(
            jobs(&mut p, json!({"text": ""})),
            [Job::Speak("Bye. ".into()), Job::Final]
        );
    }

    #[test]
    fn the_schedule_triggers_generation_and_can_be_set_in_the_first_message() {
        let mut p = InputProtocol::new(true);
        jobs(
            &mut p,
            json!({"text": " ", "generation_config": {"chunk_length_schedule": [50, 500]}}),
        );
        let long = "x".repeat(60);
        assert_eq!(jobs(&mut p, json!({"text": long})), [Job::Speak(long)]);
        assert!(jobs(&mut p, json!({"text": "y".repeat(60)})).is_empty());
    }

    #[test]
    fn the_first_message_must_be_a_space_and_carry_a_key_when_the_handshake_did_not() {
        let mut p = InputProtocol::new(true);
        assert!(matches!(
            jobs(&mut p, json!({"text": "Hi"}))[..],
            [Job::Error(_)]
        ));
        let mut p = InputProtocol::new(false);
        assert!(matches!(
            jobs(&mut p, json!({"text": " "}))[..],
            [Job::Error(_)]
        ));
        let mut p = InputProtocol::new(false);
        let (recorded, carried, j) = p.on_message(r#"{"text":" ","xi_api_key":"sk-1"}"#);
        assert!(carried && j.is_empty());
        assert_eq!(recorded["xi_api_key"], record::REDACTED);
    }

    #[test]
    fn audio_messages_carry_alignment_per_character() {
        let m: Value = serde_json::from_str(&audio_message("Sure", Format::Ulaw)).unwrap();
        assert_eq!(m["isFinal"], Value::Null);
        assert_eq!(m["alignment"]["chars"], json!(["S", "u", "r", "e"]));
        assert_eq!(m["alignment"]["charStartTimesMs"], json!([0, 65, 130, 195]));
        let audio = base64::engine::general_purpose::STANDARD
            .decode(m["audio"].as_str().unwrap())
            .unwrap();
        assert_eq!(audio.len(), 4 * audio::SAMPLES_PER_CHAR);
    }
}
