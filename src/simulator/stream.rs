//! The Media Stream leg of a simulated call: the WebSocket Twilio opens to the `<Stream url>`
//! (PROTOCOLS.md §3), played from Twilio's side.
//!
//! The simulator opens the socket with an `X-Twilio-Signature` over the URL, sends
//! `connected` and `start`, then a `media` frame every 20 ms in real time — the caller's
//! speech when the [`Dialogue`] says so, the line's silence otherwise — with counters as
//! strings, as Twilio writes them. What the server sends goes through the playback model:
//! marks are echoed once the audio before them has played, `clear` returns pending marks at
//! once. The caller hangs up with `stop` and a normal close; a server that closes first has
//! hung up (or transferred), unless its close code says something went wrong.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{interval_at, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::dialogue::{Dialogue, DialogueReport, Timing};
use super::report::{Party, StreamReport};
use super::script::PreparedTurn;
use super::twiml::StreamTarget;
use super::{new_sid, SimulatorConfig, SimulatorError};
use crate::twilio::media::{
    self, Connected, Inbound, Mark, MarkName, MediaFormat, Outbound, Start, StartMeta, Stop,
    StopMeta, Track,
};
use crate::twilio::signature::{sign, NO_PARAMS, SIGNATURE_HEADER};

/// One media frame every 20 ms, as a phone line delivers them.
const FRAME_INTERVAL: Duration = Duration::from_millis(20);
/// How long the WebSocket handshake may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the caller waits for the server to acknowledge its close after `stop`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long to look for the server's close frame after a failed send, to report its reason.
const CLOSE_LOOKUP: Duration = Duration::from_millis(500);
/// The User-Agent of Twilio's Media Streams client.
const USER_AGENT: &str = "Twilio.TmeWs/1.0";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a stream ended without error.
pub(crate) struct StreamEnd {
    /// Who closed it.
    pub ended_by: Party,
    /// The stream's identity and frame count.
    pub report: StreamReport,
    /// The conversation, measured.
    pub dialogue: DialogueReport,
}

/// Opens the stream and holds the conversation until one side hangs up or `deadline`.
pub(crate) async fn run_stream(
    config: &SimulatorConfig,
    target: &StreamTarget,
    turns: Arc<[PreparedTurn]>,
    timing: Timing,
    deadline: Instant,
    call_timeout_ms: u64,
) -> Result<StreamEnd, SimulatorError> {
    let socket = connect(config, &target.url, deadline, call_timeout_ms).await?;
    let stream_sid = new_sid("MZ");
    let mut session = Session {
        socket,
        stream_sid: stream_sid.clone(),
        sequence: 0,
        chunk: 0,
        started: Instant::now(),
        dialogue: Dialogue::new(turns, timing),
        cleared_marks: Vec::new(),
    };
    let ended_by = session
        .converse(config, target, deadline, call_timeout_ms)
        .await?;
    Ok(StreamEnd {
        ended_by,
        report: StreamReport {
            url: target.url.clone(),
            stream_sid,
            custom_parameters: target.parameters.clone(),
            frames_sent: session.chunk,
        },
        dialogue: session.dialogue.report(),
    })
}

/// Opens the WebSocket as Twilio does: signed over the URL alone (§2.4), no Nagle delay.
async fn connect(
    config: &SimulatorConfig,
    url: &str,
    deadline: Instant,
    call_timeout_ms: u64,
) -> Result<Socket, SimulatorError> {
    let failed = |problem: String| SimulatorError::StreamConnect {
        url: url.to_owned(),
        problem,
    };
    let mut request = url
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    let signature = sign(&config.auth_token, url, NO_PARAMS);
    let headers = request.headers_mut();
    headers.insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(&signature).map_err(|e| failed(e.to_string()))?,
    );
    headers.insert("user-agent", HeaderValue::from_static(USER_AGENT));
    let limit = deadline.min(Instant::now() + CONNECT_TIMEOUT);
    let handshake = tokio_tungstenite::connect_async_with_config(
        request,
        Some(crate::websocket::client_config()),
        true,
    );
    match tokio::time::timeout_at(limit, handshake).await {
        Err(_) if limit == deadline => Err(SimulatorError::Timeout(call_timeout_ms)),
        Err(_) => Err(failed("the WebSocket handshake timed out".into())),
        Ok(Err(tungstenite::Error::Http(response))) => Err(SimulatorError::StreamRefused {
            url: url.to_owned(),
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).chars().take(500).collect())
                .unwrap_or_default(),
        }),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

/// Why the conversation loop stopped early.
enum Halt {
    /// The server closed the stream normally (or dropped it): the agent hung up.
    ServerClosed,
    /// Something went wrong.
    Failed(SimulatorError),
}

impl From<SimulatorError> for Halt {
    fn from(error: SimulatorError) -> Self {
        Halt::Failed(error)
    }
}

struct Session {
    socket: Socket,
    stream_sid: String,
    /// The last `sequenceNumber` sent; every message after `connected` takes the next one.
    sequence: u64,
    /// The last media `chunk` sent, which is also the number of frames sent.
    chunk: u64,
    /// When `start` was sent: time zero of the stream and of the dialogue.
    started: Instant,
    dialogue: Dialogue,
    /// Marks a `clear` returned, to echo before anything else is sent.
    cleared_marks: Vec<String>,
}

impl Session {
    /// Runs the stream to its end: who hung up, or what went wrong.
    async fn converse(
        &mut self,
        config: &SimulatorConfig,
        target: &StreamTarget,
        deadline: Instant,
        call_timeout_ms: u64,
    ) -> Result<Party, SimulatorError> {
        match self.talk(config, target, deadline, call_timeout_ms).await {
            Ok(party) => Ok(party),
            Err(Halt::ServerClosed) => {
                // Lets tungstenite send its reply to the server's close frame, if any.
                let _ = self.socket.flush().await;
                Ok(Party::Agent)
            }
            Err(Halt::Failed(error)) => {
                let _ = self.socket.flush().await;
                Err(error)
            }
        }
    }

    async fn talk(
        &mut self,
        config: &SimulatorConfig,
        target: &StreamTarget,
        deadline: Instant,
        call_timeout_ms: u64,
    ) -> Result<Party, Halt> {
        self.send(&Inbound::Connected(Connected {
            protocol: "Call".to_owned(),
            version: "1.0.0".to_owned(),
        }))
        .await?;
        self.sequence = 1;
        self.started = Instant::now();
        self.send(&Inbound::Start(Start {
            sequence_number: self.sequence,
            stream_sid: self.stream_sid.clone(),
            start: StartMeta {
                account_sid: config.account_sid.clone(),
                stream_sid: self.stream_sid.clone(),
                call_sid: config.call_sid.clone(),
                tracks: vec![Track::Inbound],
                media_format: MediaFormat::default(),
                custom_parameters: target.parameters.clone(),
            },
        }))
        .await?;

        let first_frame = first_frame_at(self.started, config.frame_clock);
        let mut ticker = interval_at(first_frame, FRAME_INTERVAL);
        // A late tick is sent at once, so the caller's audio keeps pace with real time.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let out_of_time = sleep_until(deadline);
        tokio::pin!(out_of_time);
        // One timer for the next mark, moved only when that changes: a timer made afresh on
        // every pass of the loop (50 a second) was a tenth of the generator's work.
        let mark_timer = sleep_until(deadline);
        tokio::pin!(mark_timer);
        let mut mark_armed = None;
        loop {
            let mark_due = self.dialogue.next_mark_due().map(|due| self.started + due);
            if mark_due != mark_armed {
                if let Some(due) = mark_due {
                    mark_timer.as_mut().reset(due);
                }
                mark_armed = mark_due;
            }
            tokio::select! {
                biased;
                () = &mut out_of_time => {
                    self.hang_up(config).await;
                    return Err(Halt::Failed(SimulatorError::Timeout(call_timeout_ms)));
                }
                message = self.socket.next() => {
                    self.on_message(message)?;
                    for name in std::mem::take(&mut self.cleared_marks) {
                        self.echo_mark(name).await?;
                    }
                }
                () = &mut mark_timer, if mark_armed.is_some() => {
                    // Re-armed on the next pass, whatever is due then.
                    mark_armed = None;
                    let now = self.now();
                    for name in self.dialogue.take_due_marks(now) {
                        self.echo_mark(name).await?;
                    }
                }
                _ = ticker.tick() => {
                    let now = self.now();
                    self.chunk += 1;
                    self.sequence += 1;
                    let media = media_message(
                        self.sequence,
                        &self.stream_sid,
                        self.chunk,
                        u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
                        self.dialogue.next_frame(now),
                    );
                    self.send_text(media).await?;
                    if self.dialogue.wants_hang_up() {
                        self.hang_up(config).await;
                        return Ok(Party::Caller);
                    }
                }
            }
        }
    }

    /// Time since `start`, the dialogue's clock.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Handles one read from the socket.
    fn on_message(
        &mut self,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), Halt> {
        match message.map(read_result) {
            None => Err(Halt::ServerClosed),
            Some(Err(halt)) => Err(halt),
            Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).map_err(Halt::Failed),
            Some(Ok(Message::Binary(_))) => Err(Halt::Failed(SimulatorError::Protocol(
                "the server sent a binary frame; Twilio accepts only JSON text frames".into(),
            ))),
            Some(Ok(Message::Close(frame))) => Err(closed(frame)),
            // tungstenite answers pings itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
        }
    }

    /// Applies one JSON message from the server to the playback model.
    fn on_text(&mut self, text: &str) -> Result<(), SimulatorError> {
        let now = self.now();
        let message = media::parse_outbound(text)
            .map_err(|e| SimulatorError::Protocol(format!("{e} in {}", preview(text))))?;
        let sid = match &message {
            Outbound::Media(m) => &m.stream_sid,
            Outbound::Mark(m) => &m.stream_sid,
            Outbound::Clear(m) => &m.stream_sid,
        };
        if *sid != self.stream_sid {
            return Err(SimulatorError::Protocol(format!(
                "a message for stream `{sid}` on stream `{}`",
                self.stream_sid
            )));
        }
        match message {
            Outbound::Media(m) => {
                let audio = base64::engine::general_purpose::STANDARD
                    .decode(&m.media.payload)
                    .map_err(|e| {
                        SimulatorError::Protocol(format!("a media payload that is not base64: {e}"))
                    })?;
                self.dialogue.on_media(now, audio.len());
            }
            // Echoed by the mark timer, at once if nothing is playing.
            Outbound::Mark(m) => self.dialogue.on_mark(now, m.mark.name),
            // Twilio returns the pending marks at once.
            Outbound::Clear(_) => {
                let marks = self.dialogue.on_clear(now);
                self.cleared_marks.extend(marks);
            }
        }
        Ok(())
    }

    async fn echo_mark(&mut self, name: String) -> Result<(), Halt> {
        self.sequence += 1;
        let mark = Inbound::Mark(Mark {
            sequence_number: self.sequence,
            stream_sid: self.stream_sid.clone(),
            mark: MarkName { name },
        });
        self.send(&mark).await
    }

    /// Sends one message. When that fails because the server has gone, looks briefly for its
    /// close frame, so a close with a reason is reported as such.
    async fn send(&mut self, message: &Inbound) -> Result<(), Halt> {
        let json = serde_json::to_string(message)
            .map_err(|e| Halt::Failed(SimulatorError::StreamFailed(e.to_string())))?;
        self.send_text(json).await
    }

    /// Sends one JSON text message, as [`Session::send`] does.
    async fn send_text(&mut self, json: String) -> Result<(), Halt> {
        let Err(error) = self.socket.send(Message::text(json)).await else {
            return Ok(());
        };
        let lookup = async {
            while let Some(message) = self.socket.next().await {
                match read_result(message) {
                    Ok(Message::Close(frame)) => return closed(frame),
                    Ok(_) => {}
                    Err(halt) => return halt,
                }
            }
            Halt::ServerClosed
        };
        match timeout(CLOSE_LOOKUP, lookup).await {
            Ok(halt) => Err(halt),
            Err(_) => Err(Halt::Failed(SimulatorError::StreamFailed(
                error.to_string(),
            ))),
        }
    }

    /// The caller hangs up: `stop`, then a normal close, then a short wait for the server to
    /// acknowledge. Failures here change nothing: the call is over either way.
    async fn hang_up(&mut self, config: &SimulatorConfig) {
        self.sequence += 1;
        let stop = Inbound::Stop(Stop {
            sequence_number: self.sequence,
            stream_sid: self.stream_sid.clone(),
            stop: StopMeta {
                account_sid: Some(config.account_sid.clone()),
                call_sid: Some(config.call_sid.clone()),
            },
        });
        if self.send(&stop).await.is_err() {
            return;
        }
        let close = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        if self.socket.send(Message::Close(Some(close))).await.is_err() {
            return;
        }
        let _ = timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// When the first frame goes out: 20 ms after `start`, or with a `clock`, at the first
/// instant of its 20 ms grid after `start` (never later than 20 ms after it).
fn first_frame_at(started: Instant, clock: Option<Instant>) -> Instant {
    let Some(clock) = clock else {
        return started + FRAME_INTERVAL;
    };
    let period = FRAME_INTERVAL.as_nanos();
    let wait = if clock > started {
        match (clock - started).as_nanos() % period {
            0 => period,
            ahead => ahead,
        }
    } else {
        period - (started - clock).as_nanos() % period
    };
    started + Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

/// The caller's `media` message as Twilio writes it (counters as strings), built straight
/// into one string around the frame's base64 `payload`. Every simulated call sends 50 a
/// second; through serde they were a tenth of the load generator's work.
fn media_message(
    sequence: u64,
    stream_sid: &str,
    chunk: u64,
    timestamp: u64,
    payload: &str,
) -> String {
    let mut json = String::with_capacity(160 + stream_sid.len() + payload.len());
    let _ = write!(
        json,
        r#"{{"event":"media","sequenceNumber":"{sequence}","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"{chunk}","timestamp":"{timestamp}","payload":"{payload}"}}}}"#
    );
    json
}

/// A read from the socket, with the ways a connection ends without a close frame taken as
/// the server hanging up: a handler that returns drops the socket (axum does), and a server
/// that closes with our frames still unread makes its kernel reset the connection. Twilio
/// takes either as the end of the stream.
fn read_result(read: Result<Message, tungstenite::Error>) -> Result<Message, Halt> {
    use std::io::ErrorKind;
    use tungstenite::error::ProtocolError;
    match read {
        Ok(message) => Ok(message),
        Err(
            tungstenite::Error::ConnectionClosed
            | tungstenite::Error::AlreadyClosed
            | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake),
        ) => Err(Halt::ServerClosed),
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof
            ) =>
        {
            Err(Halt::ServerClosed)
        }
        Err(e) => Err(Halt::Failed(SimulatorError::StreamFailed(e.to_string()))),
    }
}

/// The server's close frame: a normal close (or none) is the agent hanging up; any other
/// code is an error carrying the server's reason.
fn closed(frame: Option<CloseFrame>) -> Halt {
    match frame {
        None => Halt::ServerClosed,
        Some(frame) if frame.code == CloseCode::Normal => Halt::ServerClosed,
        Some(frame) => Halt::Failed(SimulatorError::StreamClosed {
            code: u16::from(frame.code),
            reason: frame.reason.as_str().to_owned(),
        }),
    }
}

/// The start of a message, for an error about it.
fn preview(text: &str) -> String {
    let cut: String = text.chars().take(120).collect();
    if cut.len() < text.len() {
        format!("`{cut}…`")
    } else {
        format!("`{cut}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::media::{Media, MediaChunk};

    #[test]
    fn a_media_message_is_what_serde_writes_and_parses_back() {
        let frame: media::Frame = std::array::from_fn(|i| i as u8);
        let payload = base64::engine::general_purpose::STANDARD.encode(frame);
        let sid = super::super::new_sid("MZ");
        let expected = Inbound::Media(Media {
            sequence_number: 7,
            stream_sid: sid.clone(),
            media: MediaChunk {
                track: Track::Inbound,
                chunk: 6,
                timestamp: 120,
                payload: payload.clone(),
            },
        });
        let written = media_message(7, &sid, 6, 120, &payload);
        assert_eq!(written, serde_json::to_string(&expected).unwrap());
        assert_eq!(media::parse_inbound(&written).unwrap(), expected);
    }

    #[test]
    fn frames_start_on_the_shared_clock_within_one_frame_of_start() {
        let started = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(first_frame_at(started, None), started + ms(20));
        // A clock anchored in the past or the future: the next instant of its grid.
        assert_eq!(
            first_frame_at(started, Some(started - ms(47))),
            started + ms(13)
        );
        assert_eq!(
            first_frame_at(started, Some(started + ms(105))),
            started + ms(5)
        );
        // Start exactly on the grid: the first frame one period later, as without a clock.
        assert_eq!(
            first_frame_at(started, Some(started - ms(60))),
            started + ms(20)
        );
        assert_eq!(
            first_frame_at(started, Some(started + ms(40))),
            started + ms(20)
        );
    }
}
