//! The call simulator against small loopback servers that play the server's part: each
//! checks what the simulator sends as Twilio would send it (signatures, parameters, Media
//! Streams messages) and answers as a switchboard server might, and the tests check the
//! report. Timing assertions are causal lower bounds (a mark cannot come back before its
//! audio has played) with generous upper bounds, so a busy machine does not fail them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{close_code, CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use base64::Engine;
use secrecy::SecretString;
use serde_json::{json, Value};
use switchboard::simulator::{
    run_call, CallScript, CallerTurn, Outcome, Party, SimulatorConfig, SimulatorError,
};
use switchboard::twilio::signature::{self, NO_PARAMS, SIGNATURE_HEADER};
use switchboard::twilio::twiml::{Connect, Dial, Stream, VoiceResponse};
use tokio::sync::Notify;
use tokio::time::Instant;

const TOKEN: &str = "simulator-test-token";
const FROM: &str = "+15550001111";
const TO: &str = "+15550002222";

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

/// A form request the server received, with whether its signature checked out.
#[derive(Debug, Clone)]
struct Received {
    params: Vec<(String, String)>,
}

impl Received {
    fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One message on the Media Stream, from the server's side, with when it happened.
#[derive(Debug, Clone)]
enum Event {
    /// The simulator (Twilio) sent this.
    In(Instant, Value),
    /// The server sent this.
    Out(Instant, Value),
}

/// The test server's state: what it answers and everything it received.
#[derive(Clone)]
struct Shared {
    base: String,
    twiml: Arc<str>,
    webhooks: Arc<Mutex<Vec<Received>>>,
    callbacks: Arc<Mutex<Vec<Received>>>,
    upgrade_signed: Arc<Mutex<Option<bool>>>,
    events: Arc<Mutex<Vec<Event>>>,
    stream_done: Arc<Notify>,
}

impl Shared {
    fn webhooks(&self) -> Vec<Received> {
        self.webhooks.lock().unwrap().clone()
    }

    fn callbacks(&self) -> Vec<Received> {
        self.callbacks.lock().unwrap().clone()
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn inbound(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::In(_, v) => Some(v),
                Event::Out(..) => None,
            })
            .collect()
    }

    fn ws_url(&self) -> String {
        format!("{}/media", self.base.replacen("http://", "ws://", 1))
    }

    fn config(&self) -> SimulatorConfig {
        SimulatorConfig::new(&self.base, token(), FROM, TO)
    }

    /// Waits for the Media Stream handler to finish (it has seen the simulator close).
    async fn stream_finished(&self) {
        tokio::time::timeout(Duration::from_secs(5), self.stream_done.notified())
            .await
            .expect("the media handler did not finish (did one of its assertions fail?)");
    }
}

/// Serves the voice webhook (answering `twiml`, which may use the server's base URL), the
/// status callback and `media` at `/media`, all checking signatures with [`TOKEN`].
async fn spawn(twiml: impl FnOnce(&Shared) -> String, media: MethodRouter<Shared>) -> Shared {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut shared = Shared {
        base,
        twiml: Arc::from(""),
        webhooks: Arc::default(),
        callbacks: Arc::default(),
        upgrade_signed: Arc::default(),
        events: Arc::default(),
        stream_done: Arc::default(),
    };
    shared.twiml = Arc::from(twiml(&shared));
    let app = Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/voice/status", post(status))
        .route("/media", media)
        .with_state(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    shared
}

/// Checks a signed form POST as the real server does; 403 when the signature is wrong.
fn verify(shared: &Shared, uri: &Uri, headers: &HeaderMap, body: &str) -> Option<Received> {
    let url = format!("{}{}", shared.base, uri.path());
    let params: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
    let sent = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    signature::validate(&token(), &url, &params, sent).ok()?;
    Some(Received { params })
}

async fn voice(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some(form) = verify(&shared, &uri, &headers, &body) else {
        return (StatusCode::FORBIDDEN, "bad signature").into_response();
    };
    shared.webhooks.lock().unwrap().push(form);
    if let Some(status) = shared.twiml.strip_prefix("HTTP ") {
        return (StatusCode::INTERNAL_SERVER_ERROR, status.to_owned()).into_response();
    }
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml")],
        shared.twiml.to_string(),
    )
        .into_response()
}

async fn status(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let Some(form) = verify(&shared, &uri, &headers, &body) else {
        return StatusCode::FORBIDDEN;
    };
    shared.callbacks.lock().unwrap().push(form);
    StatusCode::NO_CONTENT
}

/// The route for a Media Stream handler: checks the upgrade's signature over the `ws://`
/// URL, then runs `handler` on a [`Line`] and signals when it is done.
fn media<F, Fut>(handler: F) -> MethodRouter<Shared>
where
    F: FnOnce(Line) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    get(
        move |ws: WebSocketUpgrade, headers: HeaderMap, State(shared): State<Shared>| async move {
            let sent = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
            let signed = signature::validate(&token(), &shared.ws_url(), NO_PARAMS, sent).is_ok();
            *shared.upgrade_signed.lock().unwrap() = Some(signed);
            ws.on_upgrade(move |socket| async move {
                let done = shared.stream_done.clone();
                handler(Line { socket, shared }).await;
                done.notify_one();
            })
        },
    )
}

/// The server's end of a Media Stream, logging everything both ways.
struct Line {
    socket: WebSocket,
    shared: Shared,
}

impl Line {
    /// The next JSON message from the simulator; `None` once it has closed.
    async fn recv(&mut self) -> Option<Value> {
        loop {
            match self.socket.recv().await? {
                Ok(Message::Text(text)) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    let event = Event::In(Instant::now(), value.clone());
                    self.shared.events.lock().unwrap().push(event);
                    return Some(value);
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads until a message satisfies `pred`, returning it and when it arrived.
    async fn recv_until(&mut self, pred: impl Fn(&Value) -> bool) -> (Value, Instant) {
        loop {
            let message = self.recv().await.expect("the simulator closed the stream");
            if pred(&message) {
                return (message, Instant::now());
            }
        }
    }

    /// Reads until the caller has spoken and then been silent for 200 ms (10 frames).
    async fn recv_utterance(&mut self) -> Instant {
        let (_, started) = self.recv_until(is_speech).await;
        let mut silent = 0;
        while silent < 10 {
            let message = self.recv().await.expect("closed during the utterance");
            if message["event"] == "media" {
                silent = if is_speech(&message) { 0 } else { silent + 1 };
            }
        }
        started
    }

    async fn send(&mut self, value: Value) -> Instant {
        let now = Instant::now();
        self.shared
            .events
            .lock()
            .unwrap()
            .push(Event::Out(now, value.clone()));
        self.socket
            .send(Message::Text(value.to_string().into()))
            .await
            .unwrap();
        now
    }

    async fn send_audio(&mut self, sid: &str, bytes: usize) -> Instant {
        let payload = base64::engine::general_purpose::STANDARD.encode(vec![0x10u8; bytes]);
        self.send(json!({"event":"media","streamSid":sid,"media":{"payload":payload}}))
            .await
    }

    async fn send_mark(&mut self, sid: &str, name: &str) -> Instant {
        self.send(json!({"event":"mark","streamSid":sid,"mark":{"name":name}}))
            .await
    }

    /// Reads `connected` and `start`; returns the stream SID.
    async fn handshake(&mut self) -> String {
        let connected = self.recv().await.unwrap();
        assert_eq!(connected["event"], "connected");
        let start = self.recv().await.unwrap();
        assert_eq!(start["event"], "start");
        start["streamSid"].as_str().unwrap().to_owned()
    }

    /// Closes with `code`, then waits for the simulator to close its end.
    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = self.socket.send(Message::Close(Some(frame))).await;
        while self.recv().await.is_some() {}
    }

    /// Reads everything until the simulator closes.
    async fn drain(&mut self) {
        while self.recv().await.is_some() {}
    }
}

fn decode_payload(message: &Value) -> Vec<u8> {
    let payload = message["media"]["payload"].as_str().unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap()
}

/// A media frame carrying the caller's voice rather than the line's silence.
fn is_speech(message: &Value) -> bool {
    message["event"] == "media" && decode_payload(message).iter().any(|&b| b != 0xFF)
}

fn stream_twiml(shared: &Shared) -> String {
    let stream = Stream::new(shared.ws_url())
        .unwrap()
        .parameter("tenant", "acme")
        .parameter("token", "tok-123");
    VoiceResponse::new()
        .connect(Connect::stream(stream))
        .to_xml()
}

fn quick(turns: Vec<CallerTurn>) -> CallScript {
    let mut script = CallScript::new(turns);
    script.agent_quiet_ms = 300;
    script.reply_timeout_ms = 3000;
    script.call_timeout_ms = 20_000;
    script
}

#[tokio::test]
async fn a_say_and_hangup_answer_is_reported_as_refused_with_its_sentence() {
    let sentence = "Sorry, the number you called is not in service. Goodbye.";
    let shared = spawn(
        |_| VoiceResponse::new().say(sentence).hangup().to_xml(),
        get(|| async { StatusCode::NOT_FOUND }),
    )
    .await;
    let config = shared.config();
    let report = run_call(&config, &quick(vec![CallerTurn::say("Hello?")]))
        .await
        .unwrap();
    assert_eq!(report.outcome, Outcome::Refused);
    assert_eq!(report.said, vec![sentence]);
    assert_eq!(report.ended_by, Party::Agent);
    assert!(report.stream.is_none() && report.turns.is_empty());

    // The webhook was signed (the server refuses it otherwise) and carried Twilio's fields.
    let webhooks = shared.webhooks();
    assert_eq!(webhooks.len(), 1);
    let hook = &webhooks[0];
    for (name, value) in [
        ("CallSid", config.call_sid.as_str()),
        ("AccountSid", config.account_sid.as_str()),
        ("From", FROM),
        ("To", TO),
        ("Caller", FROM),
        ("Called", TO),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("ApiVersion", "2010-04-01"),
    ] {
        assert_eq!(hook.get(name), Some(value), "{name}");
    }
    assert!(config.call_sid.starts_with("CA") && config.call_sid.len() == 34);
}

#[tokio::test]
async fn the_status_callback_is_signed_and_says_completed_with_a_duration() {
    let shared = spawn(
        |_| VoiceResponse::new().say("Bye.").hangup().to_xml(),
        get(|| async { StatusCode::NOT_FOUND }),
    )
    .await;
    let report = run_call(&shared.config(), &quick(vec![])).await.unwrap();
    assert_eq!(report.status_callback_status, Some(204));
    let callbacks = shared.callbacks();
    assert_eq!(callbacks.len(), 1, "exactly one signed status callback");
    let callback = &callbacks[0];
    assert_eq!(callback.get("CallStatus"), Some("completed"));
    assert_eq!(callback.get("CallSid"), Some(report.call_sid.as_str()));
    assert_eq!(callback.get("CallbackSource"), Some("call-progress-events"));
    let duration: u64 = callback.get("CallDuration").unwrap().parse().unwrap();
    assert!((1..=15).contains(&duration), "CallDuration {duration}");
    assert!(callback
        .get("Timestamp")
        .is_some_and(|t| t.ends_with("+0000")));
}

#[tokio::test]
async fn a_dial_answer_reports_the_number_dialled() {
    let shared = spawn(
        |_| {
            let number = actors::domain::E164::parse("+15550003333").unwrap();
            VoiceResponse::new()
                .say("Transferring you.")
                .dial(Dial::number(number))
                .to_xml()
        },
        get(|| async { StatusCode::NOT_FOUND }),
    )
    .await;
    let report = run_call(&shared.config(), &quick(vec![])).await.unwrap();
    assert_eq!(report.outcome, Outcome::Dialed);
    assert_eq!(report.dialed.as_deref(), Some("+15550003333"));
    assert_eq!(report.said, vec!["Transferring you."]);
}

#[tokio::test]
async fn a_failing_webhook_is_an_error_with_its_status_and_body() {
    let shared = spawn(
        |_| "HTTP the database is down".to_owned(),
        get(|| async { StatusCode::NOT_FOUND }),
    )
    .await;
    let err = run_call(&shared.config(), &quick(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimulatorError::WebhookStatus { status: 500, body, .. } if body.contains("database is down")),
        "{err:?}"
    );
    assert!(err.to_string().contains("500"), "{err}");

    // A server that does not know our token refuses the signature: also reported as such.
    let mut config = shared.config();
    config.auth_token = SecretString::from("another token");
    let err = run_call(&config, &quick(vec![])).await.unwrap_err();
    assert!(
        matches!(&err, SimulatorError::WebhookStatus { status: 403, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_streamed_call_speaks_twilios_protocol_and_echoes_marks_after_playback() {
    let shared = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            let sid = line.handshake().await;
            // A 400 ms greeting, then a mark: the echo must wait for the audio to play.
            line.send_audio(&sid, 3200).await;
            let sent = line.send_mark(&sid, "greeting").await;
            let (_, echoed) = line
                .recv_until(|m| m["event"] == "mark" && m["mark"]["name"] == "greeting")
                .await;
            assert!(echoed - sent >= Duration::from_millis(400));
            // The caller answers; reply with 200 ms in two pieces and a mark.
            line.recv_utterance().await;
            line.send_audio(&sid, 800).await;
            line.send_audio(&sid, 800).await;
            line.send_mark(&sid, "reply").await;
            line.recv_until(|m| m["event"] == "stop").await;
            line.drain().await;
        }),
    )
    .await;
    let config = shared.config();
    let script = quick(vec![CallerTurn::say("Hello there.").pause_ms(100)]);
    let report = run_call(&config, &script).await.unwrap();
    shared.stream_finished().await;

    assert_eq!(*shared.upgrade_signed.lock().unwrap(), Some(true));
    assert_eq!(report.outcome, Outcome::Streamed);
    assert_eq!(report.ended_by, Party::Caller);
    let stream = report.stream.as_ref().unwrap();
    assert_eq!(stream.url, shared.ws_url());
    assert_eq!(stream.custom_parameters["tenant"], "acme");

    // What the server received, in order, as Twilio writes it.
    let inbound = shared.inbound();
    assert_eq!(
        inbound[0],
        json!({"event":"connected","protocol":"Call","version":"1.0.0"})
    );
    let start = &inbound[1];
    assert_eq!(start["sequenceNumber"], "1");
    let sid = start["streamSid"].as_str().unwrap();
    assert!(sid.starts_with("MZ") && sid.len() == 34, "{sid}");
    assert_eq!(start["start"]["streamSid"], sid);
    assert_eq!(start["start"]["callSid"], config.call_sid);
    assert_eq!(start["start"]["accountSid"], config.account_sid);
    assert_eq!(start["start"]["tracks"], json!(["inbound"]));
    assert_eq!(
        start["start"]["mediaFormat"],
        json!({"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1})
    );
    assert_eq!(
        start["start"]["customParameters"],
        json!({"tenant":"acme","token":"tok-123"})
    );
    // Every message after `connected` takes the next sequence number, as strings.
    for (i, message) in inbound[1..].iter().enumerate() {
        assert_eq!(message["sequenceNumber"], (i + 1).to_string(), "{message}");
        assert_eq!(message["streamSid"], sid);
    }
    let media: Vec<&Value> = inbound.iter().filter(|m| m["event"] == "media").collect();
    let mut last_timestamp = 0;
    for (i, frame) in media.iter().enumerate() {
        assert_eq!(frame["media"]["chunk"], (i + 1).to_string());
        assert_eq!(frame["media"]["track"], "inbound");
        assert_eq!(decode_payload(frame).len(), 160);
        let timestamp: u64 = frame["media"]["timestamp"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(timestamp >= last_timestamp);
        last_timestamp = timestamp;
    }
    // The greeting, the caller's line and the reply take well over a second of frames.
    assert!(media.len() >= 50, "{} frames", media.len());
    assert_eq!(stream.frames_sent, media.len() as u64);
    let stop = inbound.last().unwrap();
    assert_eq!(stop["event"], "stop");
    assert_eq!(
        stop["stop"],
        json!({"accountSid": config.account_sid, "callSid": config.call_sid})
    );
    // Both marks came back, the reply's after its audio had played.
    let echoes: Vec<&Value> = inbound.iter().filter(|m| m["event"] == "mark").collect();
    assert_eq!(echoes.len(), 2);
    assert_eq!(echoes[1]["mark"]["name"], "reply");
    let events = shared.events();
    let reply_sent = events
        .iter()
        .find_map(|e| match e {
            Event::Out(at, v)
                if v["event"] == "media"
                    && v["media"]["payload"].as_str().unwrap().len() < 2000 =>
            {
                Some(*at)
            }
            _ => None,
        })
        .unwrap();
    let reply_echoed = events
        .iter()
        .find_map(|e| match e {
            Event::In(at, v) if v["mark"]["name"] == "reply" => Some(*at),
            _ => None,
        })
        .unwrap();
    assert!(reply_echoed - reply_sent >= Duration::from_millis(200));

    // The report: the greeting, one turn, its reply.
    let greeting = report.greeting.as_ref().unwrap();
    assert_eq!((greeting.audio_ms, greeting.played_ms), (400, 400));
    assert!(greeting.voice_to_voice_ms.is_some_and(|ms| ms < 5000));
    assert_eq!(greeting.marks, vec!["greeting"]);
    assert_eq!(report.turns.len(), 1);
    let turn = &report.turns[0];
    assert_eq!(turn.caller, "Hello there.");
    assert!(!turn.barged_in);
    assert_eq!(turn.reply.audio_ms, 200);
    assert!(!turn.reply.interrupted);
    assert!(
        turn.reply.voice_to_voice_ms.is_some_and(|ms| ms < 5000),
        "{:?}",
        turn.reply
    );
    assert_eq!((report.clears, report.marks_echoed), (0, 2));
    assert_eq!(shared.callbacks().len(), 1);
    let text = report.to_text();
    assert!(text.contains("turn 1: caller \"Hello there.\""), "{text}");
    assert!(text.contains("voice-to-voice"), "{text}");
}

#[tokio::test]
async fn a_barge_in_is_cleared_and_pending_marks_come_back_at_once() {
    let shared = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            let sid = line.handshake().await;
            // A 3 s greeting the caller will talk over.
            let greeting = line.send_audio(&sid, 24_000).await;
            line.send_mark(&sid, "greeting").await;
            let (_, barge) = line.recv_until(is_speech).await;
            assert!(barge - greeting >= Duration::from_millis(300));
            line.send(json!({"event":"clear","streamSid":sid})).await;
            let (_, echoed) = line
                .recv_until(|m| m["event"] == "mark" && m["mark"]["name"] == "greeting")
                .await;
            // Returned on the clear, long before the 3 s of audio would have played.
            assert!(echoed - greeting < Duration::from_millis(2500));
            // Wait for the caller to finish, say goodbye and hang up (a normal close).
            let mut silent = 0;
            while silent < 10 {
                let message = line.recv().await.unwrap();
                if message["event"] == "media" {
                    silent = if is_speech(&message) { 0 } else { silent + 1 };
                }
            }
            line.send_audio(&sid, 1600).await;
            line.close(close_code::NORMAL, "").await;
        }),
    )
    .await;
    let script = quick(vec![
        CallerTurn::say("Wait, one moment.").barge_in_after_ms(300)
    ]);
    let report = run_call(&shared.config(), &script).await.unwrap();
    shared.stream_finished().await;

    assert_eq!(report.ended_by, Party::Agent, "the server hung up first");
    let greeting = report.greeting.as_ref().unwrap();
    assert!(greeting.interrupted);
    assert_eq!(greeting.audio_ms, 3000);
    assert!(greeting.played_ms < 2500, "{greeting:?}");
    assert_eq!(greeting.marks, vec!["greeting"]);
    assert_eq!(report.turns.len(), 1);
    assert!(report.turns[0].barged_in);
    assert_eq!(report.turns[0].reply.audio_ms, 200);
    assert_eq!((report.clears, report.marks_echoed), (1, 1));
    // No `stop` from a caller whose call the server ended; the callback still comes.
    assert!(shared.inbound().iter().all(|m| m["event"] != "stop"));
    assert_eq!(shared.callbacks().len(), 1);
    assert!(report.to_text().contains("interrupted"));
}

#[tokio::test]
async fn a_stream_closed_with_1008_is_an_error_carrying_the_reason() {
    let shared = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            line.handshake().await;
            line.close(close_code::POLICY, "bad token").await;
        }),
    )
    .await;
    let err = run_call(&shared.config(), &quick(vec![CallerTurn::say("Hello?")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimulatorError::StreamClosed { code: 1008, reason } if reason == "bad token"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("1008") && text.contains("bad token"),
        "{text}"
    );
    // The call is over all the same: Twilio posts its status.
    assert_eq!(shared.callbacks().len(), 1);

    // A server that drops the socket right after its close frame, with the caller's frames
    // still unread (its kernel then resets the connection), is understood the same way.
    let abrupt = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            line.handshake().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let frame = CloseFrame {
                code: close_code::POLICY,
                reason: "bad token".into(),
            };
            let _ = line.socket.send(Message::Close(Some(frame))).await;
        }),
    )
    .await;
    let err = run_call(&abrupt.config(), &quick(vec![CallerTurn::say("Hello?")]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimulatorError::StreamClosed { code: 1008, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refused_upgrade_and_a_protocol_error_are_reported() {
    let refused = spawn(
        stream_twiml,
        get(|| async { (StatusCode::FORBIDDEN, "signature mismatch") }),
    )
    .await;
    let err = run_call(&refused.config(), &quick(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimulatorError::StreamRefused { status: 403, body, .. } if body.contains("signature mismatch")),
        "{err:?}"
    );

    let rude = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            line.handshake().await;
            line.send(json!({"event":"speak","streamSid":"MZ1"})).await;
            line.drain().await;
        }),
    )
    .await;
    let err = run_call(&rude.config(), &quick(vec![])).await.unwrap_err();
    assert!(
        matches!(&err, SimulatorError::Protocol(m) if m.contains("speak")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wss_stream_is_opened_over_tls() {
    // A listener that is not a TLS server: the handshake fails, and says so, rather than the
    // simulator falling back to plain text (or panicking for want of a TLS setup).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let shared = spawn(
        move |_| {
            format!(
                r#"<Response><Connect><Stream url="wss://127.0.0.1:{port}/media"/></Connect></Response>"#
            )
        },
        get(|| async { StatusCode::NOT_FOUND }),
    )
    .await;
    let err = run_call(&shared.config(), &quick(vec![]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimulatorError::StreamConnect { url, .. } if url.starts_with("wss://")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_call_past_its_timeout_hangs_up_and_fails() {
    let shared = spawn(
        stream_twiml,
        media(|mut line: Line| async move {
            // Never greets, never closes.
            line.handshake().await;
            line.drain().await;
        }),
    )
    .await;
    let mut script = quick(vec![CallerTurn::say("Hello?")]);
    script.reply_timeout_ms = 60_000;
    script.call_timeout_ms = 2_500;
    let err = run_call(&shared.config(), &script).await.unwrap_err();
    assert!(matches!(err, SimulatorError::Timeout(2_500)), "{err:?}");
    shared.stream_finished().await;
    assert_eq!(shared.inbound().last().unwrap()["event"], "stop");
    assert_eq!(shared.callbacks().len(), 1);
}

/// The binary, as a person or a CI script runs it.
mod command {
    use super::*;
    use std::process::Stdio;

    fn switchboard() -> tokio::process::Command {
        let data_dir = std::env::temp_dir().join(format!("sbsim-{}", uuid::Uuid::new_v4()));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear()
            .env("SWITCHBOARD_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        cmd
    }

    #[tokio::test]
    async fn call_prints_the_report_as_json() {
        let shared = spawn(
            |_| {
                VoiceResponse::new()
                    .say("Not in service.")
                    .hangup()
                    .to_xml()
            },
            get(|| async { StatusCode::NOT_FOUND }),
        )
        .await;
        let out = switchboard()
            .args(["call", "--json", "--server", &shared.base])
            .args(["--from", FROM, "--to", TO])
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["outcome"], "refused");
        assert_eq!(report["said"], json!(["Not in service."]));
        assert_eq!(report["from"], FROM);
    }

    #[tokio::test]
    async fn call_without_a_token_or_with_a_bad_script_exits_2_saying_why() {
        let out = switchboard()
            .args(["call", "--server", "http://127.0.0.1:9"])
            .args(["--from", FROM, "--to", TO])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("TWILIO_AUTH_TOKEN"));

        let script = std::env::temp_dir().join(format!("sbsim-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&script, r#"{"turns":[{"say":"Hi","volume":11}]}"#).unwrap();
        let out = switchboard()
            .args(["call", "--server", "http://127.0.0.1:9"])
            .args(["--from", FROM, "--to", TO, "--script"])
            .arg(&script)
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("volume"), "{stderr}");
    }

    #[tokio::test]
    async fn a_failed_call_exits_1_with_the_reason() {
        // Nothing listens on port 9 of loopback.
        let out = switchboard()
            .args(["call", "--server", "http://127.0.0.1:9"])
            .args(["--from", FROM, "--to", TO])
            .env("TWILIO_AUTH_TOKEN", TOKEN)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("could not be reached"), "{stderr}");
    }
}
