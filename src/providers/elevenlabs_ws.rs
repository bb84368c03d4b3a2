//! The ElevenLabs stream-input WebSocket (`PROTOCOLS.md` §5.2), single context, one
//! sentence per socket: the transport [`super::elevenlabs`] prefers, with the HTTP
//! streaming endpoint as its fallback.
//!
//! A session is: the handshake with the key in the `xi-api-key` header (the page prefers
//! the header to a key in the first message, whose spelling is uncertain, and it keeps the
//! key out of every message); the opening `{"text":" "}` with the voice settings; the
//! sentence, ending with a single space; a `flush`; and the closing `{"text":""}`, all sent
//! at once. ElevenLabs then answers base64 `audio` messages and `{"isFinal":true}`, and
//! closes. Audio is decoded and passed on message by message; alignment is not used.
//!
//! Dropping a [`WsSession`] closes its socket with a close frame (in the background, since
//! `Drop` cannot wait): that is how a sentence is cancelled on barge-in, and it tells
//! ElevenLabs to stop generating rather than leaving it to notice a dead connection.

use std::time::Duration;

use actors::ports::PortError;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::elevenlabs::{status_failure, Failure, VoiceSettings};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a dropped session may spend closing politely (sending its close frame and
/// reading what is still in flight) before its connection is simply dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// ElevenLabs' default `chunk_length_schedule`, sent explicitly as the page's opening
/// message does. With a flush after every sentence it decides nothing, but it keeps the
/// session's behaviour from depending on a server default.
const CHUNK_LENGTH_SCHEDULE: [u16; 4] = [120, 160, 250, 290];

/// The client messages of a one-sentence session, serialized, in order: open, text, flush,
/// end of input.
pub(super) fn client_messages(text: &str, voice: &VoiceSettings) -> [String; 4] {
    #[derive(Serialize)]
    struct Open<'a> {
        text: &'static str,
        voice_settings: &'a VoiceSettings,
        generation_config: GenerationConfig,
    }
    #[derive(Serialize)]
    struct GenerationConfig {
        chunk_length_schedule: [u16; 4],
    }
    #[derive(Serialize)]
    struct Text<'a> {
        text: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        flush: bool,
    }
    // Each chunk ends with a single space (§5.2); the opening and the flush are a single
    // space, and only the closing message is empty, since `""` ends the input.
    let sentence = format!("{} ", text.trim());
    [
        json(&Open {
            text: " ",
            voice_settings: voice,
            generation_config: GenerationConfig {
                chunk_length_schedule: CHUNK_LENGTH_SCHEDULE,
            },
        }),
        json(&Text {
            text: &sentence,
            flush: false,
        }),
        json(&Text {
            text: " ",
            flush: true,
        }),
        json(&Text {
            text: "",
            flush: false,
        }),
    ]
}

/// A client message as sent.
fn json<T: Serialize>(message: &T) -> String {
    serde_json::to_string(message).expect("client messages serialize")
}

/// Opens a session at `url` (query included), sends `messages` and waits for the first
/// audio: `None` when the sentence ended without any. Every failure before the first audio
/// comes back classified, so the caller can retry or fall back to HTTP.
pub(super) async fn open(
    url: &str,
    api_key: &SecretString,
    messages: &[String],
) -> Result<(WsSession, Option<Vec<u8>>), Failure> {
    let mut request = url.into_client_request().map_err(|e| {
        Failure::other_transport(PortError::Unavailable(format!(
            "ElevenLabs WebSocket (bad URL: {e})"
        )))
    })?;
    let mut key = HeaderValue::from_str(api_key.expose_secret()).map_err(|_| {
        Failure::never(PortError::Refused(
            "the ElevenLabs API key is not a valid header value".to_owned(),
        ))
    })?;
    key.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert("xi-api-key", key);
    headers.insert(
        header::USER_AGENT,
        HeaderValue::from_static(crate::USER_AGENT),
    );
    // No Nagle: the messages are small and each is waited for.
    let (socket, _response) = tokio_tungstenite::connect_async_with_config(
        request,
        Some(crate::websocket::client_config()),
        true,
    )
    .await
    .map_err(handshake_failure)?;
    let mut session = WsSession {
        socket: Some(socket),
        finished: false,
    };
    if let Err(error) = session.send_all(messages).await {
        // The server may have refused the session and closed it: its reason, if it sent
        // one, says more than the failed write.
        return Err(match session.next_chunk().await {
            Err(failure) => failure,
            Ok(_) => Failure::safe(broke(&error)),
        });
    }
    let first = session.next_chunk().await?;
    Ok((session, first))
}

/// One sentence's open stream-input session.
pub(super) struct WsSession {
    /// `None` once handed to the background close.
    socket: Option<Socket>,
    /// Whether the server has said all it will (`isFinal`, a close, an error): reading on
    /// would only wait.
    finished: bool,
}

impl WsSession {
    /// Sends the client messages, flushing once at the end.
    async fn send_all(&mut self, messages: &[String]) -> Result<(), tungstenite::Error> {
        let socket = self
            .socket
            .as_mut()
            .ok_or(tungstenite::Error::AlreadyClosed)?;
        for message in messages {
            socket.feed(Message::text(message.as_str())).await?;
        }
        socket.flush().await
    }

    /// The next non-empty chunk of audio, decoded; `None` once the server has sent
    /// `isFinal` or closed normally. A failure is classified as [`open`]'s are; once audio
    /// has been passed on, only its error matters.
    pub(super) async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, Failure> {
        if self.finished {
            return Ok(None);
        }
        let Some(socket) = self.socket.as_mut() else {
            return Ok(None);
        };
        // An error message from the server, held until its close frame says what kind.
        let mut refusal: Option<String> = None;
        loop {
            let message = match socket.next().await {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    self.finished = true;
                    return Err(match refusal {
                        Some(message) => refused(message),
                        None => Failure::safe(broke(&error)),
                    });
                }
                None => {
                    self.finished = true;
                    return Err(match refusal {
                        Some(message) => refused(message),
                        None => Failure::safe(PortError::Unavailable(
                            "ElevenLabs WebSocket (closed before isFinal)".to_owned(),
                        )),
                    });
                }
            };
            match message {
                Message::Text(text) => match read_server_message(text.as_str()) {
                    Ok(ServerEvent::Audio { audio, is_final }) => {
                        self.finished = is_final;
                        if !audio.is_empty() {
                            return Ok(Some(audio));
                        }
                        if is_final {
                            return Ok(None);
                        }
                    }
                    Ok(ServerEvent::Error(message)) => refusal = Some(message),
                    Ok(ServerEvent::Other) => {}
                    Err(failure) => {
                        self.finished = true;
                        return Err(failure);
                    }
                },
                Message::Close(frame) => {
                    self.finished = true;
                    return closed(frame, refusal);
                }
                // Not part of the protocol; tungstenite answers pings itself.
                Message::Binary(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        let Some(mut socket) = self.socket.take() else {
            return;
        };
        // Outside a runtime there is nothing to close with; the connection just drops.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(CLOSE_GRACE, async {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = socket.close(Some(frame)).await;
                // Reads what is still in flight until the server's close frame ends it.
                while let Some(Ok(_)) = socket.next().await {}
            })
            .await;
        });
    }
}

/// What one server message means to the reader.
#[derive(Debug, PartialEq)]
enum ServerEvent {
    /// Audio (possibly none) and whether it is the last message.
    Audio { audio: Vec<u8>, is_final: bool },
    /// ElevenLabs' error message, sent before it closes the socket.
    Error(String),
    /// Anything else, ignored.
    Other,
}

/// The fields of a server message the adapter reads (§5.2). Alignment is left out.
#[derive(Deserialize)]
struct ServerMessage {
    audio: Option<String>,
    #[serde(rename = "isFinal")]
    is_final: Option<bool>,
    message: Option<String>,
}

/// Reads one server text message. Undecodable JSON or base64 fails the stream: a server
/// saying things the adapter cannot understand is not speaking this protocol.
fn read_server_message(text: &str) -> Result<ServerEvent, Failure> {
    let unreadable = |what: &str| {
        Failure::safe(PortError::Unavailable(format!(
            "ElevenLabs WebSocket (unreadable {what})"
        )))
    };
    let message: ServerMessage = serde_json::from_str(text).map_err(|_| unreadable("message"))?;
    let is_final = message.is_final == Some(true);
    // `audio` may be null or absent, notably on the final message: check before decoding.
    let audio = match message.audio.as_deref().filter(|a| !a.is_empty()) {
        Some(encoded) => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| unreadable("audio"))?,
        None => Vec::new(),
    };
    if !audio.is_empty() || is_final {
        return Ok(ServerEvent::Audio { audio, is_final });
    }
    match message.message.map(|m| m.trim().to_owned()) {
        Some(m) if !m.is_empty() => Ok(ServerEvent::Error(
            m.chars().take(super::MAX_ERROR_CHARS).collect(),
        )),
        _ => Ok(ServerEvent::Other),
    }
}

/// What a close from the server before `isFinal` means: a normal close is the end of the
/// audio; any other code is a failure, a refusal when the server said why (its error
/// message) unless the code says the server itself is in trouble.
fn closed(frame: Option<CloseFrame>, refusal: Option<String>) -> Result<Option<Vec<u8>>, Failure> {
    let code = frame.as_ref().map(|f| f.code);
    let reason = frame
        .as_ref()
        .map(|f| f.reason.as_str().trim().to_owned())
        .filter(|r| !r.is_empty());
    let server_trouble = matches!(
        code,
        Some(CloseCode::Error | CloseCode::Restart | CloseCode::Again | CloseCode::Away)
    );
    match (refusal, code) {
        (None, Some(CloseCode::Normal)) => Ok(None),
        (Some(message), _) if !server_trouble => Err(refused(message)),
        (message, code) => {
            let why = message
                .or(reason)
                .unwrap_or_else(|| "no reason given".to_owned());
            let code = code.map_or_else(|| "no code".to_owned(), |c| u16::from(c).to_string());
            Err(Failure::safe(PortError::Unavailable(format!(
                "ElevenLabs WebSocket (closed with {code}: {why})"
            ))))
        }
    }
}

/// ElevenLabs refused the session and said why.
fn refused(message: String) -> Failure {
    Failure::never(PortError::Refused(format!(
        "ElevenLabs WebSocket: {message}"
    )))
}

/// A connection that failed under a session.
fn broke(error: &tungstenite::Error) -> PortError {
    PortError::Unavailable(format!("ElevenLabs WebSocket (connection broke: {error})"))
}

/// Classifies a failed handshake. A refusal with an error status is read as the HTTP
/// endpoint's would be; a status that says there is no WebSocket here (404, 405, 426, 501,
/// or a success that is not an upgrade) and a server that does not speak the protocol send
/// the sentence to HTTP; a connection that could not be made may be tried again.
fn handshake_failure(error: tungstenite::Error) -> Failure {
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_deref().unwrap_or_default();
            if matches!(status, 404 | 405 | 426 | 501) || status < 400 {
                Failure::other_transport(PortError::Unavailable(format!(
                    "ElevenLabs WebSocket (handshake answered {status}, no upgrade)"
                )))
            } else {
                status_failure(status, body)
            }
        }
        tungstenite::Error::Io(_) | tungstenite::Error::Tls(_) => Failure::safe(
            PortError::Unavailable(format!("ElevenLabs WebSocket (connecting: {error})")),
        ),
        other => Failure::other_transport(PortError::Unavailable(format!(
            "ElevenLabs WebSocket (handshake: {other})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::elevenlabs::Retry;
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn a_sentence_is_opened_sent_flushed_and_ended() {
        let messages = client_messages("  Hello there.\n", &VoiceSettings::CONVERSATIONAL);
        let values: Vec<Value> = messages
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect();
        assert_eq!(
            values,
            [
                json!({"text": " ",
                       "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0},
                       "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}}),
                json!({"text": "Hello there. "}),
                json!({"text": " ", "flush": true}),
                json!({"text": ""}),
            ]
        );
    }

    #[test]
    fn server_messages_are_audio_final_errors_or_ignored() {
        assert_eq!(
            read_server_message(r#"{"audio":"AAEC","isFinal":null,"alignment":{}}"#).unwrap(),
            ServerEvent::Audio {
                audio: vec![0, 1, 2],
                is_final: false
            }
        );
        assert_eq!(
            read_server_message(r#"{"isFinal":true}"#).unwrap(),
            ServerEvent::Audio {
                audio: vec![],
                is_final: true
            }
        );
        assert_eq!(
            read_server_message(r#"{"audio":null,"isFinal":true}"#).unwrap(),
            ServerEvent::Audio {
                audio: vec![],
                is_final: true
            }
        );
        assert_eq!(
            read_server_message(r#"{"message":"Invalid API key","error":"invalid_request"}"#)
                .unwrap(),
            ServerEvent::Error("Invalid API key".into())
        );
        assert_eq!(
            read_server_message(r#"{"audio":"","isFinal":null}"#).unwrap(),
            ServerEvent::Other
        );
        for bad in ["not json", r#"{"audio":"***"}"#] {
            let failure = read_server_message(bad).unwrap_err();
            assert_eq!(failure.retry, Retry::Safe, "{bad}");
        }
    }

    #[test]
    fn a_close_is_an_end_a_refusal_or_a_server_failure() {
        let frame = |code: u16| {
            Some(CloseFrame {
                code: CloseCode::from(code),
                reason: "why".into(),
            })
        };
        assert_eq!(closed(frame(1000), None), Ok(None));
        let refusal = closed(frame(1008), Some("Invalid API key".into())).unwrap_err();
        assert_eq!(refusal.retry, Retry::Never);
        assert_eq!(
            refusal.error,
            PortError::Refused("ElevenLabs WebSocket: Invalid API key".into())
        );
        let trouble = closed(frame(1011), Some("internal error".into())).unwrap_err();
        assert_eq!(trouble.retry, Retry::Safe);
        assert!(matches!(trouble.error, PortError::Unavailable(m) if m.contains("1011")));
        let silent = closed(frame(1008), None).unwrap_err();
        assert_eq!(silent.retry, Retry::Safe);
        assert!(matches!(silent.error, PortError::Unavailable(m) if m.contains("why")));
        assert_eq!(closed(None, None).unwrap_err().retry, Retry::Safe);
    }

    #[test]
    fn handshake_refusals_are_classified_like_http_answers() {
        let http = |status: u16, body: &str| {
            let response = tungstenite::http::Response::builder()
                .status(status)
                .body(Some(body.as_bytes().to_vec()))
                .unwrap();
            handshake_failure(tungstenite::Error::Http(Box::new(response)))
        };
        let bad_key = http(
            401,
            r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
        );
        assert_eq!(bad_key.retry, Retry::Never);
        assert_eq!(
            bad_key.error,
            PortError::Refused("ElevenLabs 401: Invalid API key".into())
        );
        assert_eq!(http(503, "").retry, Retry::Safe);
        assert_eq!(http(429, "").retry, Retry::Safe);
        for no_socket_here in [200, 404, 405, 426, 501] {
            assert_eq!(
                http(no_socket_here, "").retry,
                Retry::OtherTransport,
                "{no_socket_here}"
            );
        }
        let refused_connection = handshake_failure(tungstenite::Error::Io(
            std::io::ErrorKind::ConnectionRefused.into(),
        ));
        assert_eq!(refused_connection.retry, Retry::Safe);
    }
}
