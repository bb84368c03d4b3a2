//! `GET /twilio/media`: the Media Streams WebSocket (PROTOCOLS.md §3). Twilio opens it after
//! the voice webhook's `<Connect><Stream>`; the socket is accepted only when `start` carries
//! a valid stream token for the same CallSid, and is then the call's phone line: caller audio
//! in 20 ms frames, marks and key presses go to the call's actor, and the actor's audio,
//! marks and `clear`s go back out.
//!
//! Refusals close the socket with a code and a reason: 1008 for a missing, wrong or
//! expired token or a call that is not waiting, 1009 for a message over 64 KiB, 1003 for a
//! binary frame, 1007 for a first message that is not a Media Streams message.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use supervisors::call::CallMsg;

use super::error::{ApiError, Problem};
use super::AppState;
use crate::calls::leg::{LegCommand, PendingLeg};
use crate::calls::listen::Tap;
use crate::calls::token::STREAM_TOKEN_PARAMETER;
use crate::calls::CallService;
use crate::twilio::media::{
    encode_clear, encode_mark, encode_media, parse_inbound, peek_media, FrameAssembler, Inbound,
    Track,
};

/// Largest message accepted; Twilio's are under 1 KiB.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// What the socket layer itself will read of one message: larger than [`MAX_MESSAGE_BYTES`]
/// so an oversized message is read whole and refused with 1009 by [`checked_size`]. Were the
/// socket layer to refuse it at its header, the rest would still be unread when the socket
/// closes, and the kernel would reset the connection instead of delivering the close frame.
const READ_LIMIT_BYTES: usize = 1024 * 1024;
/// How long a call may take to hand over its audio inlet (it answers at once unless stopping).
const INLET_TIMEOUT_MS: u64 = 5_000;
/// How long Twilio has to send `start` after opening the socket.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a call's media stream.
#[utoipa::path(get, path = "/twilio/media", tag = "twilio",
    responses((status = 101, description = "WebSocket carrying Twilio Media Streams messages"),
        (status = 400, description = "not a WebSocket upgrade", body = Problem),
        (status = 503, description = "phone calls are not configured on this server", body = Problem)))]
pub async fn media(
    State(state): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Some(calls) = state.calls.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "phone calls are not configured here: set OPENAI_API_KEY and ELEVENLABS_API_KEY",
        ));
    };
    Ok(upgrade
        .read_buffer_size(crate::websocket::READ_BUFFER_BYTES)
        .max_message_size(READ_LIMIT_BYTES)
        .max_frame_size(READ_LIMIT_BYTES)
        .on_upgrade(move |socket| stream(socket, calls)))
}

/// Why a socket is being closed.
struct Close(u16, String);

impl Close {
    fn policy(reason: impl Into<String>) -> Self {
        Self(close_code::POLICY, reason.into())
    }
}

async fn close(mut socket: WebSocket, Close(code, reason): Close) {
    tracing::info!(code, %reason, "closing a media stream");
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

/// Refuses a text message over [`MAX_MESSAGE_BYTES`] with 1009.
fn checked_size(text: axum::extract::ws::Utf8Bytes) -> Result<axum::extract::ws::Utf8Bytes, Close> {
    if text.len() > MAX_MESSAGE_BYTES {
        Err(Close(
            close_code::SIZE,
            "a message is larger than 64 KiB".into(),
        ))
    } else {
        Ok(text)
    }
}

/// A receive error: a message over the limit gets its own code; anything else means the
/// connection is gone.
fn receive_error(error: &axum::Error) -> Close {
    let text = error.to_string();
    if text.contains("too long") || text.contains("Space limit") {
        Close(close_code::SIZE, "a message is larger than 64 KiB".into())
    } else {
        Close(close_code::PROTOCOL, "the connection failed".into())
    }
}

async fn stream(mut socket: WebSocket, calls: Arc<CallService>) {
    let started = tokio::time::timeout(START_TIMEOUT, handshake(&mut socket, &calls)).await;
    let (stream_sid, leg) = match started {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(refusal)) => return close(socket, refusal).await,
        Err(_) => return close(socket, Close::policy("no `start` message within 10 s")).await,
    };
    let tap = calls.listeners().tap(leg.call_id);
    // Every line logged while the call streams names it (and, in JSON logs, as fields).
    let span = tracing::info_span!("call", call_id = %leg.call_id, tenant_id = %leg.tenant, stream_sid = %stream_sid);
    let carried = carry(&mut socket, &stream_sid, leg, &tap);
    if let Some(refusal) = tracing::Instrument::instrument(carried, span).await {
        close(socket, refusal).await;
    }
}

/// Reads `connected` and `start`, checks the token and claims the call.
async fn handshake(
    socket: &mut WebSocket,
    calls: &CallService,
) -> Result<(String, PendingLeg), Close> {
    loop {
        let text = match socket.recv().await {
            Some(Ok(Message::Text(text))) => checked_size(text)?,
            Some(Ok(Message::Binary(_))) => {
                return Err(Close(
                    close_code::UNSUPPORTED,
                    "Media Streams messages are text".into(),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(receive_error(&error)),
            None => return Err(Close(close_code::NORMAL, "closed before `start`".into())),
        };
        match parse_inbound(&text) {
            Ok(Inbound::Connected(_)) => {}
            Ok(Inbound::Start(start)) => {
                let meta = start.start;
                let token = meta
                    .custom_parameters
                    .get(STREAM_TOKEN_PARAMETER)
                    .map(String::as_str);
                let grant = calls
                    .tokens()
                    .verify(token, &meta.call_sid)
                    .map_err(|e| Close::policy(e.to_string()))?;
                let leg = calls
                    .claim_leg(&meta.call_sid, grant.call_id)
                    .ok_or_else(|| Close::policy("this call is not waiting for a media stream"))?;
                tracing::info!(call_sid = %meta.call_sid, stream_sid = %start.stream_sid, "media stream connected");
                return Ok((start.stream_sid, leg));
            }
            Ok(other) => {
                return Err(Close::policy(format!(
                    "expected `start`, got `{}`",
                    event_name(&other)
                )))
            }
            Err(error) => return Err(Close(close_code::INVALID, error.to_string())),
        }
    }
}

fn event_name(message: &Inbound) -> &'static str {
    match message {
        Inbound::Connected(_) => "connected",
        Inbound::Start(_) => "start",
        Inbound::Media(_) => "media",
        Inbound::Dtmf(_) => "dtmf",
        Inbound::Mark(_) => "mark",
        Inbound::Stop(_) => "stop",
    }
}

/// How late the caller's audio arrives: against the stream's own clock (each media message's
/// `timestamp`, milliseconds since the stream began), the largest lag of every second of
/// audio goes to `switchboard_audio_inbound_lag_seconds`. One sample a second keeps the
/// histogram's cost flat however many calls run.
#[derive(Default)]
struct LagMeter {
    /// When the stream's time zero was, as seen from here (from the earliest-arriving frame).
    origin: Option<tokio::time::Instant>,
    /// The largest lag since the last sample, and the frames counted towards it.
    worst: std::time::Duration,
    frames: u32,
}

impl LagMeter {
    /// Frames per sample: one second of 20 ms frames.
    const EVERY: u32 = 50;

    fn arrived(&mut self, timestamp_ms: u64) {
        let now = tokio::time::Instant::now();
        let sent_at = std::time::Duration::from_millis(timestamp_ms);
        let origin = *self
            .origin
            .get_or_insert_with(|| now.checked_sub(sent_at).unwrap_or(now));
        let due = origin + sent_at;
        if due > now {
            // Earlier than the clock said: the origin was late, so move it.
            self.origin = Some(now.checked_sub(sent_at).unwrap_or(now));
        }
        self.worst = self.worst.max(now.saturating_duration_since(due));
        self.frames += 1;
        if self.frames >= Self::EVERY {
            metrics::histogram!("switchboard_audio_inbound_lag_seconds")
                .record(self.worst.as_secs_f64());
            self.frames = 0;
            self.worst = std::time::Duration::ZERO;
        }
    }
}

/// Carries the call until one side ends it. Returns how to close the socket when this side
/// must close it.
async fn carry(
    socket: &mut WebSocket,
    stream_sid: &str,
    leg: PendingLeg,
    tap: &Tap,
) -> Option<Close> {
    let PendingLeg {
        call, mut commands, ..
    } = leg;
    // The call may have ended while Twilio connected (a hang-up during the greeting).
    let Ok(audio) = ractor::call_t!(call, CallMsg::AudioInlet, INLET_TIMEOUT_MS) else {
        return Some(Close(close_code::NORMAL, "the call has ended".into()));
    };
    let mut frames = FrameAssembler::new();
    let mut lag = LagMeter::default();
    let refusal = loop {
        tokio::select! {
            inbound = socket.recv() => {
                let text = match inbound {
                    Some(Ok(Message::Text(text))) => match checked_size(text) {
                        Ok(text) => text,
                        Err(close) => break Some(close),
                    },
                    Some(Ok(Message::Binary(_))) => {
                        break Some(Close(close_code::UNSUPPORTED, "Media Streams messages are text".into()))
                    }
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => break Some(receive_error(&error)),
                };
                if let Some(media) = peek_media(&text) {
                    if media.track == Track::Inbound {
                        lag.arrived(media.timestamp);
                        tap.caller(&media.payload);
                        match frames.push_base64(&media.payload) {
                            Ok(ready) => {
                                for frame in ready {
                                    audio.push(*frame);
                                }
                            }
                            Err(error) => tracing::warn!(%error, "skipped a media message"),
                        }
                    }
                    continue;
                }
                match parse_inbound(&text) {
                    Ok(Inbound::Mark(mark)) => {
                        let _ = call.send_message(CallMsg::Marked(mark.mark.name));
                    }
                    Ok(Inbound::Dtmf(dtmf)) => {
                        if let Some(digit) = dtmf.dtmf.digit.chars().next() {
                            let _ = call.send_message(CallMsg::Dtmf(digit));
                        }
                    }
                    Ok(Inbound::Stop(_)) => break None,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "ignored a media stream message"),
                }
            }
            command = commands.recv() => {
                let text = match command {
                    Some(LegCommand::Audio(audio)) => {
                        tap.agent(&audio);
                        encode_media(stream_sid, &audio)
                    }
                    Some(LegCommand::Mark(name)) => encode_mark(stream_sid, &name),
                    Some(LegCommand::Clear) => encode_clear(stream_sid),
                    // The call ended itself: no hang-up to report back.
                    Some(LegCommand::HangUp) | None => {
                        return Some(Close(close_code::NORMAL, "the call has ended".into()))
                    }
                };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break None;
                }
            }
        }
    };
    let _ = call.send_message(CallMsg::CallerHungUp);
    refusal
}
