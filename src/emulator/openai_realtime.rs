//! The OpenAI Realtime **transcription session** of the emulator: `GET /v1/realtime?intent=
//! transcription` upgraded to a WebSocket, speaking the GA event protocol the adapter
//! (`providers::openai_realtime`) documents: `session.update` with `session.type:
//! "transcription"`, `input_audio_buffer.append` / `commit` / `clear`, and back
//! `session.created`, `session.updated`, `input_audio_buffer.committed`, then per commit
//! `conversation.item.input_audio_transcription.delta` events (a word each) and `.completed`,
//! with `error` events shaped as OpenAI's.
//!
//! It cannot understand audio, so each commit is answered with the next scripted transcript,
//! chosen exactly as for `POST /v1/audio/transcriptions`: by the session's
//! `audio.input.transcription.prompt` (see [`super::script::Transcripts`]). A session counts
//! as one STT request for faults: a status fault refuses the handshake with OpenAI's error
//! body; a stall or cut applies to the transcription messages (deltas and completions,
//! counted across the session), after which the connection is dropped. Latency: the STT
//! family's `first_byte_ms` before each transcription's first delta, `per_chunk_ms` between
//! its later messages.
//!
//! It has no voice activity detection, so turning detection on is answered with an `error`
//! event rather than a session that silently never transcribes. \[U\] marks the server's own
//! default session and exact error texts, which are modelled on OpenAI's documentation.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::openai::{
    bad_request, error_response, estimate_tokens, fault_response, refuse_without_key, split_words,
};
use super::pacing::{self, Delivery, Gate};
use super::record;
use super::script::{Family, FaultKind};
use super::{Incoming, Shared};

/// How long a finished session waits for the client's half of the closing handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// Least audio a commit needs, as OpenAI requires. \[U: the documented error text\]
const MIN_COMMIT_MS: u64 = 100;

/// `GET /v1/realtime?intent=transcription`: checks the key, the intent and the STT fault
/// before upgrading, then runs the session.
pub(super) async fn realtime(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let incoming = Incoming::new(&method, &uri, &headers);
    let authorization = incoming.authorization;
    let intent = incoming.query.get("intent").cloned();
    let seq = shared.record(Some(Family::Stt), incoming, Value::Null);
    if let Some(refused) = refuse_without_key(&shared, authorization) {
        return refused;
    }
    let Ok(upgrade) = upgrade else {
        return error_response(
            StatusCode::UPGRADE_REQUIRED,
            "The Realtime API is a WebSocket; connect with an Upgrade request.",
            "invalid_request_error",
            None,
            None,
        );
    };
    if intent.as_deref() != Some("transcription") {
        return bad_request(
            "The provider emulator serves Realtime transcription sessions only: connect with \
             ?intent=transcription.",
            Some("intent"),
            None,
        );
    }
    let fault = shared.fault_for(Family::Stt);
    if let Some(FaultKind::Status { status }) = fault {
        return fault_response(status);
    }
    upgrade
        .read_buffer_size(crate::websocket::READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run_session(shared, socket, seq, fault))
}

/// What the reader asks the writer to do, in order.
#[derive(Debug, PartialEq)]
enum Job {
    /// Send this server event now.
    Send(Value),
    /// Transcribe a committed item: deltas, then `completed`.
    Transcribe {
        /// The item the commit created.
        item_id: String,
        /// The session's transcription prompt at commit time, which picks the script queue.
        prompt: Option<String>,
        /// The transcription model, which decides the shape of `usage`.
        model: String,
        /// Audio committed, for `usage`.
        audio_ms: u64,
    },
}

/// How the writer ended, which decides how the socket is left.
enum Ending {
    /// The client closed: wait briefly for the closing handshake to finish.
    Closed,
    /// Drop the connection now (a cut, a stop, or the client already gone).
    Dropped,
}

/// One session: the reader turns client events into jobs while the writer works through
/// them, both in this task so a writer that cuts the connection ends the reader too.
async fn run_session(shared: Arc<Shared>, socket: WebSocket, seq: u64, fault: Option<FaultKind>) {
    let (sink, mut stream) = socket.split();
    let (jobs, job_rx) = mpsc::unbounded_channel();
    let delivery = Delivery::new(
        shared.script.latency.stt.per_chunk_ms,
        fault.as_ref(),
        shared.shutdown.clone(),
    );
    let mut protocol = TranscriptionProtocol::new(seq);
    let _ = jobs.send(Job::Send(protocol.session_event("session.created")));
    let writer = write_events(&shared, sink, job_rx, delivery);
    tokio::pin!(writer);
    let mut shutdown = shared.shutdown.clone();
    let ending = loop {
        tokio::select! {
            ending = &mut writer => break ending,
            _ = shutdown.wait_for(|stop| *stop) => break Ending::Dropped,
            next = stream.next() => match next {
                None | Some(Err(_)) => break Ending::Dropped,
                // The client closed: reading on lets the library send the closing reply.
                Some(Ok(Message::Close(_))) => break Ending::Closed,
                Some(Ok(Message::Text(text))) => {
                    let (recorded, new_jobs) = protocol.on_message(text.as_str());
                    shared.record_message(seq, recorded, false);
                    for job in new_jobs {
                        let _ = jobs.send(job);
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let error = protocol.error(
                        "invalid_request_error",
                        Some("invalid_json"),
                        "Binary messages are not supported; send JSON text events.",
                        None,
                    );
                    let _ = jobs.send(Job::Send(error));
                }
                Some(Ok(_ping_or_pong)) => {}
            },
        }
    };
    if let Ending::Closed = ending {
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
    shared.record_ended(seq);
}

/// The writer: sends protocol events at once and transcriptions paced by the STT latency,
/// applying the session's fault to the transcription messages.
async fn write_events(
    shared: &Shared,
    mut sink: futures::stream::SplitSink<WebSocket, Message>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    delivery: Delivery,
) -> Ending {
    let first_byte = Duration::from_millis(shared.script.latency.stt.first_byte_ms);
    let mut sent = 0usize;
    let mut events = 0u64;
    let mut event = |mut value: Value| {
        events += 1;
        value["event_id"] = Value::from(format!("event_emu{events}"));
        Message::Text(value.to_string().into())
    };
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Send(value) => {
                if sink.send(event(value)).await.is_err() {
                    return Ending::Dropped;
                }
            }
            Job::Transcribe {
                item_id,
                prompt,
                model,
                audio_ms,
            } => {
                if !pacing::pause(&shared.shutdown, first_byte).await {
                    return Ending::Dropped;
                }
                let text = shared.transcript(prompt.as_deref(), !delivery.is_faulty());
                for (i, piece) in split_words(&text).into_iter().enumerate() {
                    if delivery.gate(sent, i > 0).await == Gate::Cut {
                        return Ending::Dropped;
                    }
                    let delta = json!({
                        "type": "conversation.item.input_audio_transcription.delta",
                        "item_id": item_id, "content_index": 0, "delta": piece,
                    });
                    if sink.send(event(delta)).await.is_err() {
                        return Ending::Dropped;
                    }
                    sent += 1;
                }
                if delivery.gate(sent, !text.is_empty()).await == Gate::Cut {
                    return Ending::Dropped;
                }
                let completed = json!({
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id, "content_index": 0, "transcript": text,
                    "usage": usage(&model, audio_ms, &text),
                });
                if sink.send(event(completed)).await.is_err() {
                    return Ending::Dropped;
                }
                sent += 1;
            }
        }
    }
    Ending::Dropped
}

/// A transcription's `usage`: seconds of audio for `whisper-1`, tokens for the gpt-4o
/// models (about ten audio tokens a second). \[U: the audio token rate\]
fn usage(model: &str, audio_ms: u64, text: &str) -> Value {
    if model == "whisper-1" {
        return json!({"type": "duration", "seconds": audio_ms as f64 / 1000.0});
    }
    let audio_tokens = audio_ms.div_ceil(100);
    let output_tokens = estimate_tokens(text);
    json!({
        "type": "tokens",
        "input_tokens": audio_tokens,
        "output_tokens": output_tokens,
        "total_tokens": audio_tokens + output_tokens,
        "input_token_details": {"audio_tokens": audio_tokens, "text_tokens": 0},
    })
}

/// The input audio formats a transcription session takes, by bytes per millisecond.
fn bytes_per_ms(format: &Value) -> Result<u64, String> {
    match format["type"].as_str() {
        Some("audio/pcmu" | "audio/pcma") => Ok(8),
        Some("audio/pcm") if matches!(format.get("rate"), None | Some(Value::Null)) => Ok(48),
        Some("audio/pcm") if format["rate"].as_u64() == Some(24_000) => Ok(48),
        Some("audio/pcm") => Err("Only a 24kHz sample rate is supported for audio/pcm.".into()),
        _ => Err(format!(
            "Invalid value: {}. Supported values are: 'audio/pcm', 'audio/pcmu' and \
             'audio/pcma'.",
            format["type"]
        )),
    }
}

/// The client side of the session as the server tracks it: its configuration and the
/// audio buffer since the last commit.
struct TranscriptionProtocol {
    /// The handshake's record number, which names the session and its items.
    seq: u64,
    /// `audio.input.format`; OpenAI's default is 24 kHz PCM. \[U\]
    format: Value,
    /// `audio.input.transcription`: `null` until configured (nothing is transcribed).
    transcription: Value,
    /// `audio.input.turn_detection`: server VAD until the client turns it off. \[U\]
    turn_detection: Value,
    /// Bytes appended since the last commit or clear.
    buffered: u64,
    /// Items created, for ids.
    items: u32,
    /// The last item created, which the next one follows.
    previous_item: Option<String>,
}

impl TranscriptionProtocol {
    fn new(seq: u64) -> Self {
        Self {
            seq,
            format: json!({"type": "audio/pcm", "rate": 24_000}),
            transcription: Value::Null,
            turn_detection: json!({"type": "server_vad", "threshold": 0.5,
                                   "prefix_padding_ms": 300, "silence_duration_ms": 500}),
            buffered: 0,
            items: 0,
            previous_item: None,
        }
    }

    /// `session.created` or `session.updated` with the effective configuration.
    fn session_event(&self, kind: &str) -> Value {
        json!({"type": kind, "session": {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "id": format!("sess_emu{}", self.seq),
            "audio": {"input": {
                "format": self.format,
                "transcription": self.transcription,
                "turn_detection": self.turn_detection,
                "noise_reduction": null,
            }},
        }})
    }

    /// An `error` event; `about` is the client event's `event_id`, when it had one.
    fn error(&self, kind: &str, code: Option<&str>, message: &str, about: Option<&str>) -> Value {
        json!({"type": "error", "error": {
            "type": kind, "code": code, "message": message, "param": null, "event_id": about,
        }})
    }

    /// Handles one text message: returns it as recorded (audio reduced to its size, keys
    /// redacted) and the jobs it causes.
    fn on_message(&mut self, text: &str) -> (Value, Vec<Job>) {
        let Ok(mut message) = serde_json::from_str::<Value>(text) else {
            let error = self.error(
                "invalid_request_error",
                Some("invalid_json"),
                "The event could not be parsed as JSON.",
                None,
            );
            return (Value::String(text.to_owned()), vec![Job::Send(error)]);
        };
        record::redact_message(&mut message);
        let about = message["event_id"].as_str().map(str::to_owned);
        let about = about.as_deref();
        let jobs = match message["type"].as_str().unwrap_or("") {
            "session.update" => self.update(&message["session"], about),
            "input_audio_buffer.append" => {
                let decoded = message["audio"]
                    .as_str()
                    .map(|a| base64::engine::general_purpose::STANDARD.decode(a));
                match decoded {
                    Some(Ok(bytes)) => {
                        self.buffered += bytes.len() as u64;
                        message["audio"] = json!({"bytes": bytes.len()});
                        Vec::new()
                    }
                    _ => vec![Job::Send(self.error(
                        "invalid_request_error",
                        Some("invalid_value"),
                        "Invalid 'audio': expected base64-encoded audio bytes.",
                        about,
                    ))],
                }
            }
            "input_audio_buffer.commit" => self.commit(about),
            "input_audio_buffer.clear" => {
                self.buffered = 0;
                vec![Job::Send(json!({"type": "input_audio_buffer.cleared"}))]
            }
            other => vec![Job::Send(self.error(
                "invalid_request_error",
                Some("invalid_value"),
                &format!(
                    "Invalid value: '{other}'. The provider emulator's transcription sessions \
                     accept session.update, input_audio_buffer.append, \
                     input_audio_buffer.commit and input_audio_buffer.clear."
                ),
                about,
            ))],
        };
        (message, jobs)
    }

    fn update(&mut self, session: &Value, about: Option<&str>) -> Vec<Job> {
        let invalid = |this: &Self, message: &str| {
            vec![Job::Send(this.error(
                "invalid_request_error",
                Some("invalid_value"),
                message,
                about,
            ))]
        };
        if session["type"].as_str() != Some("transcription") {
            return invalid(
                self,
                "The provider emulator serves transcription sessions only: session.type must \
                 be 'transcription'.",
            );
        }
        let input = &session["audio"]["input"];
        if let Some(format) = input.get("format") {
            if let Err(message) = bytes_per_ms(format) {
                return invalid(self, &message);
            }
        }
        if let Some(transcription) = input.get("transcription") {
            if !transcription.is_null() && transcription["model"].as_str().is_none_or(str::is_empty)
            {
                return invalid(
                    self,
                    "Missing required parameter: 'session.audio.input.transcription.model'.",
                );
            }
        }
        if let Some(turn_detection) = input.get("turn_detection") {
            if !turn_detection.is_null() {
                return invalid(
                    self,
                    "The provider emulator has no voice activity detection: set \
                     audio.input.turn_detection to null and commit the buffer yourself.",
                );
            }
        }
        if let Some(format) = input.get("format") {
            self.format = format.clone();
        }
        if let Some(transcription) = input.get("transcription") {
            self.transcription = transcription.clone();
        }
        if let Some(turn_detection) = input.get("turn_detection") {
            self.turn_detection = turn_detection.clone();
        }
        vec![Job::Send(self.session_event("session.updated"))]
    }

    fn commit(&mut self, about: Option<&str>) -> Vec<Job> {
        let per_ms = bytes_per_ms(&self.format).unwrap_or(48);
        let audio_ms = self.buffered / per_ms;
        if audio_ms < MIN_COMMIT_MS {
            return vec![Job::Send(self.error(
                "invalid_request_error",
                Some("input_audio_buffer_commit_empty"),
                &format!(
                    "Error committing input audio buffer: buffer too small. Expected at least \
                     {MIN_COMMIT_MS}ms of audio, but buffer only has {audio_ms}ms of audio."
                ),
                about,
            ))];
        }
        self.buffered = 0;
        self.items += 1;
        let item_id = format!("item_emu{}_{}", self.seq, self.items);
        let committed = json!({
            "type": "input_audio_buffer.committed",
            "previous_item_id": self.previous_item,
            "item_id": item_id,
        });
        self.previous_item = Some(item_id.clone());
        let mut jobs = vec![Job::Send(committed)];
        if let Some(model) = self.transcription["model"].as_str() {
            jobs.push(Job::Transcribe {
                item_id,
                prompt: self.transcription["prompt"].as_str().map(str::to_owned),
                model: model.to_owned(),
                audio_ms,
            });
        }
        jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(p: &mut TranscriptionProtocol, message: Value) -> Vec<Job> {
        p.on_message(&message.to_string()).1
    }

    fn configured() -> TranscriptionProtocol {
        let mut p = TranscriptionProtocol::new(7);
        let update = json!({"type": "session.update", "session": {"type": "transcription",
            "audio": {"input": {"format": {"type": "audio/pcmu"},
                                "transcription": {"model": "gpt-4o-mini-transcribe", "prompt": "+1555"},
                                "turn_detection": null}}}});
        let answer = jobs(&mut p, update);
        assert!(
            matches!(&answer[..], [Job::Send(v)] if v["type"] == "session.updated"),
            "{answer:?}"
        );
        p
    }

    fn append(bytes: usize) -> Value {
        json!({"type": "input_audio_buffer.append",
               "audio": base64::engine::general_purpose::STANDARD.encode(vec![0xFFu8; bytes])})
    }

    #[test]
    fn a_commit_is_acknowledged_then_transcribed_with_the_sessions_prompt() {
        let mut p = configured();
        let (recorded, none) = p.on_message(&append(1600).to_string());
        assert!(none.is_empty());
        assert_eq!(
            recorded["audio"],
            json!({"bytes": 1600}),
            "audio is not kept"
        );
        let answer = jobs(&mut p, json!({"type": "input_audio_buffer.commit"}));
        assert_eq!(
            answer,
            [
                Job::Send(json!({"type": "input_audio_buffer.committed",
                                 "previous_item_id": null, "item_id": "item_emu7_1"})),
                Job::Transcribe {
                    item_id: "item_emu7_1".into(),
                    prompt: Some("+1555".into()),
                    model: "gpt-4o-mini-transcribe".into(),
                    audio_ms: 200,
                }
            ]
        );
    }

    #[test]
    fn a_commit_of_under_100_ms_is_an_error_naming_the_event() {
        let mut p = configured();
        jobs(&mut p, append(400));
        let answer = jobs(
            &mut p,
            json!({"type": "input_audio_buffer.commit", "event_id": "commit_1"}),
        );
        let [Job::Send(error)] = &answer[..] else {
            panic!("{answer:?}")
        };
        assert_eq!(error["error"]["code"], "input_audio_buffer_commit_empty");
        assert_eq!(error["error"]["event_id"], "commit_1");
    }

    #[test]
    fn server_vad_other_session_types_and_unknown_events_are_refused() {
        let mut p = TranscriptionProtocol::new(1);
        for message in [
            json!({"type": "session.update", "session": {"type": "realtime"}}),
            json!({"type": "session.update", "session": {"type": "transcription",
                   "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}}),
            json!({"type": "session.update", "session": {"type": "transcription",
                   "audio": {"input": {"format": {"type": "audio/pcm", "rate": 8000}}}}}),
            json!({"type": "response.create"}),
        ] {
            let answer = jobs(&mut p, message.clone());
            assert!(
                matches!(&answer[..], [Job::Send(v)] if v["type"] == "error"),
                "{message}: {answer:?}"
            );
        }
    }
}
