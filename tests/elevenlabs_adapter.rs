//! The ElevenLabs text-to-speech adapter over loopback: against the provider emulator for
//! the requests it sends and the audio it streams on both transports (the stream-input
//! WebSocket and HTTP streaming), each failure as the port reports it, retries and the
//! fallback from the WebSocket to HTTP; and against a small hand-written server for what the
//! emulator cannot do (a missing WebSocket endpoint, watching the client's close frame).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actors::audio::mulaw;
use actors::ports::{AudioStream, PortError, TextToSpeech, TtsRequest};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use serde_json::json;
use switchboard::emulator::{
    audio::SAMPLES_PER_CHAR, Emulator, EmulatorHandle, EmulatorScript, Family, Fault, FaultKind,
    Latencies, Latency,
};
use switchboard::providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts, TtsTransport};
use switchboard::providers::retry::RetryPolicy;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const XI_KEY: &str = "xi-test-never-recorded";
const VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

/// Bytes of μ-law in one emulator WebSocket message: 10 characters of speech.
const WS_MESSAGE_BYTES: usize = 10 * SAMPLES_PER_CHAR;
/// Bytes of μ-law in one emulator HTTP chunk: 100 ms.
const HTTP_CHUNK_BYTES: usize = 800;

const WS_PATH: &str = "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input";
const HTTP_PATH: &str = "/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream";

async fn start_emulator(tts_latency: Latency) -> EmulatorHandle {
    let mut script = EmulatorScript::instant();
    script.latency = Latencies {
        tts: tts_latency,
        ..Latencies::none()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn config(base_url: String, transport: TtsTransport) -> ElevenLabsConfig {
    let mut config = ElevenLabsConfig::new(SecretString::from(XI_KEY)).with_base_url(base_url);
    config.transport = transport;
    config
}

fn adapter(emu: &EmulatorHandle, transport: TtsTransport) -> ElevenLabsTts {
    ElevenLabsTts::new(config(emu.base_url(), transport)).unwrap()
}

fn adapter_with_timeout(
    emu: &EmulatorHandle,
    transport: TtsTransport,
    first_byte_timeout: Duration,
) -> ElevenLabsTts {
    let mut config = config(emu.base_url(), transport);
    config.first_byte_timeout = first_byte_timeout;
    ElevenLabsTts::new(config).unwrap()
}

fn request(text: &str) -> TtsRequest {
    TtsRequest {
        text: text.to_owned(),
        voice: VOICE.to_owned(),
        language: "en-US".to_owned(),
    }
}

/// The single transports, for tests that hold for both.
const BOTH: [TtsTransport; 2] = [TtsTransport::WebSocket, TtsTransport::Http];

/// What the emulator speaks for `text` on `transport`: every character it is sent, so on
/// the WebSocket also the space that ends the chunk and the space of the flush.
fn spoken(text: &str, transport: TtsTransport) -> String {
    match transport {
        TtsTransport::Http => text.to_owned(),
        _ => format!("{text}  "),
    }
}

/// The (method, path) of each TTS request the emulator received, in order.
fn tts_requests(emu: &EmulatorHandle) -> Vec<(String, String)> {
    emu.requests_for(Family::Tts)
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect()
}

fn ws_request() -> (String, String) {
    ("GET".to_owned(), WS_PATH.to_owned())
}

fn http_request() -> (String, String) {
    ("POST".to_owned(), HTTP_PATH.to_owned())
}

/// Every item of the stream: the audio before the first error, and that error.
async fn collect(mut stream: AudioStream) -> (Vec<u8>, usize, Option<PortError>) {
    let mut audio = Vec::new();
    let mut chunks = 0;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("the stream ends or fails in time")
    {
        match item {
            Ok(chunk) => {
                assert!(!chunk.is_empty(), "no empty chunks");
                audio.extend(chunk);
                chunks += 1;
            }
            Err(error) => {
                assert!(stream.next().await.is_none(), "nothing after an error");
                return (audio, chunks, Some(error));
            }
        }
    }
    (audio, chunks, None)
}

/// The whole audio of a sentence that must succeed.
async fn speak(tts: &ElevenLabsTts, text: &str) -> Vec<u8> {
    let stream = tts.synthesize(request(text)).await.expect("a stream");
    let (audio, _, error) = collect(stream).await;
    assert_eq!(error, None);
    audio
}

// ---------------------------------------------------------------- both transports

#[tokio::test]
async fn audio_is_mu_law_whose_length_grows_with_the_text() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    for transport in BOTH {
        let tts = adapter(&emu, transport);
        let short = "Hi there.";
        let long = "Hi there, thanks for calling Acme. How can I help you today?";

        let (short_audio, _, error) = collect(tts.synthesize(request(short)).await.unwrap()).await;
        assert_eq!(error, None);
        let (long_audio, chunks, error) =
            collect(tts.synthesize(request(long)).await.unwrap()).await;
        assert_eq!(error, None);
        // The emulator speaks 65 ms (520 μ-law bytes) per character, exactly.
        let expected = |text: &str| spoken(text, transport).chars().count() * SAMPLES_PER_CHAR;
        assert_eq!(short_audio.len(), expected(short), "{transport:?}");
        assert_eq!(long_audio.len(), expected(long), "{transport:?}");
        assert!(long_audio.len() > short_audio.len());
        assert!(chunks > 1, "chunks are passed on as they come");

        // Valid μ-law speech: loud over the letters of "Hi", silent in the space after it.
        let pcm: Vec<i16> = long_audio.iter().map(|&b| mulaw::decode(b)).collect();
        let word = &pcm[..2 * SAMPLES_PER_CHAR];
        let gap = &pcm[2 * SAMPLES_PER_CHAR..3 * SAMPLES_PER_CHAR];
        assert!(word.iter().map(|s| s.unsigned_abs()).max().unwrap() > 1000);
        assert!(gap.iter().all(|s| s.abs() <= 8));
    }
    let methods: Vec<_> = tts_requests(&emu).into_iter().map(|(m, _)| m).collect();
    assert_eq!(methods, ["GET", "GET", "POST", "POST"]);
}

#[tokio::test]
async fn the_websocket_session_has_the_path_query_messages_and_key_elevenlabs_expects() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    // The default transport is the WebSocket.
    let tts = ElevenLabsTts::new(
        ElevenLabsConfig::new(SecretString::from(XI_KEY)).with_base_url(emu.base_url()),
    )
    .unwrap();
    speak(&tts, "Hello.").await;

    let recorded = emu.requests_for(Family::Tts);
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.path, WS_PATH);
    assert_eq!(
        r.query,
        BTreeMap::from([
            ("model_id".to_owned(), "eleven_flash_v2_5".to_owned()),
            ("output_format".to_owned(), "ulaw_8000".to_owned()),
            ("language_code".to_owned(), "en".to_owned()),
        ])
    );
    // The key came with the handshake, and in no message.
    assert!(r.xi_api_key && !r.authorization);
    assert_eq!(
        r.messages,
        [
            json!({"text": " ",
                   "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0},
                   "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}}),
            json!({"text": "Hello. "}),
            json!({"text": " ", "flush": true}),
            json!({"text": ""}),
        ]
    );
    assert!(r
        .headers
        .get("user-agent")
        .is_some_and(|ua| ua.starts_with("switchboard/")));
    let everything = serde_json::to_string(&emu.requests()).unwrap();
    assert!(!everything.contains(XI_KEY));
}

#[tokio::test]
async fn the_http_request_has_the_path_query_key_and_body_elevenlabs_expects() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::Http);
    speak(&tts, "Hello.").await;

    let recorded = emu.requests_for(Family::Tts);
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, HTTP_PATH);
    assert_eq!(
        r.query.get("output_format").map(String::as_str),
        Some("ulaw_8000")
    );
    assert_eq!(r.query.len(), 1, "nothing else in the query: {:?}", r.query);
    assert!(r.xi_api_key && !r.authorization);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        r.body,
        json!({
            "text": "Hello.",
            "model_id": "eleven_flash_v2_5",
            "language_code": "en",
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0}
        })
    );
    let everything = serde_json::to_string(&emu.requests()).unwrap();
    assert!(!everything.contains(XI_KEY));
}

#[tokio::test]
async fn bad_or_missing_voice_ids_are_refused_before_anything_is_sent() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::default());
    for voice in ["", "../../v1/user", "a voice", "v?x=1"] {
        let mut req = request("Hello.");
        req.voice = voice.to_owned();
        match tts.synthesize(req).await {
            Err(PortError::Refused(message)) => {
                if voice.is_empty() {
                    assert!(message.contains("no ElevenLabs voice id"), "{message}");
                }
            }
            Err(other) => panic!("{voice:?}: {other:?}"),
            Ok(_) => panic!("{voice:?} was accepted"),
        }
    }
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn empty_text_is_an_empty_stream_without_a_request() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::default());
    let (audio, chunks, error) = collect(tts.synthesize(request("  ")).await.unwrap()).await;
    assert!(audio.is_empty() && chunks == 0 && error.is_none());
    assert!(emu.requests().is_empty());
}

// ---------------------------------------------------------------- retries and fallback

#[tokio::test]
async fn a_server_error_or_throttling_once_is_retried_and_the_sentence_is_spoken() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    for transport in BOTH {
        for status in [503, 429] {
            emu.clear_requests();
            emu.set_fault(Family::Tts, Some(Fault::status(status).times(1)));
            let tts = adapter(&emu, transport);
            let audio = speak(&tts, "Hello.").await;
            assert_eq!(
                audio.len(),
                spoken("Hello.", transport).chars().count() * SAMPLES_PER_CHAR
            );
            // The same endpoint twice: the refusal, then the retry.
            let requests = tts_requests(&emu);
            let one = match transport {
                TtsTransport::Http => http_request(),
                _ => ws_request(),
            };
            assert_eq!(requests, [one.clone(), one], "{transport:?} {status}");
        }
    }
}

#[tokio::test]
async fn a_client_error_is_refused_at_once_without_a_retry_a_fallback_or_the_key() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    emu.set_fault(Family::Tts, Some(Fault::status(401)));
    for transport in [
        TtsTransport::WebSocketWithHttpFallback,
        TtsTransport::WebSocket,
        TtsTransport::Http,
    ] {
        emu.clear_requests();
        let tts = adapter(&emu, transport);
        match tts.synthesize(request("Hello.")).await {
            Err(PortError::Refused(message)) => {
                assert!(message.contains("401"), "{message}");
                assert!(!message.contains(XI_KEY));
                if transport == TtsTransport::Http {
                    assert!(message.contains("Invalid API key"), "{message}");
                }
            }
            other => panic!("{transport:?}: {:?}", other.map(|_| "a stream")),
        }
        assert_eq!(
            tts_requests(&emu).len(),
            1,
            "{transport:?}: one request only"
        );
    }
}

#[tokio::test]
async fn a_persistent_server_error_is_unavailable_after_the_fallback_and_the_retries() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::default());
    emu.set_fault(Family::Tts, Some(Fault::status(503)));
    match tts.synthesize(request("Hello.")).await {
        Err(PortError::Unavailable(message)) => assert!(message.contains("503"), "{message}"),
        other => panic!("{:?}", other.map(|_| "a stream")),
    }
    // The WebSocket, HTTP in its place, then the policy's two retries: never more.
    assert_eq!(
        tts_requests(&emu),
        [ws_request(), http_request(), http_request(), http_request()]
    );

    emu.clear_faults();
    emu.clear_requests();
    speak(&tts, "Hello.").await;
    assert_eq!(
        tts_requests(&emu),
        [ws_request()],
        "the WebSocket is tried again"
    );
}

#[tokio::test]
async fn no_retries_means_one_attempt_per_transport() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let mut config = config(emu.base_url(), TtsTransport::Http);
    config.retry = RetryPolicy::NONE;
    let tts = ElevenLabsTts::new(config).unwrap();
    emu.set_fault(Family::Tts, Some(Fault::status(503)));
    assert!(matches!(
        tts.synthesize(request("Hello.")).await,
        Err(PortError::Unavailable(_))
    ));
    assert_eq!(tts_requests(&emu), [http_request()]);
}

#[tokio::test]
async fn a_websocket_refused_with_a_server_error_falls_back_to_http() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::WebSocketWithHttpFallback);
    emu.set_fault(Family::Tts, Some(Fault::status(503).times(1)));
    let audio = speak(&tts, "Hello there.").await;
    assert_eq!(audio.len(), "Hello there.".len() * SAMPLES_PER_CHAR);
    assert_eq!(tts_requests(&emu), [ws_request(), http_request()]);
}

#[tokio::test]
async fn a_websocket_that_breaks_before_its_first_audio_falls_back_to_http() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, TtsTransport::WebSocketWithHttpFallback);
    // The session opens and takes the text, then drops before any audio.
    emu.set_fault(Family::Tts, Some(Fault::cut_after(0).times(1)));
    let audio = speak(&tts, "Hello there.").await;
    assert_eq!(audio.len(), "Hello there.".len() * SAMPLES_PER_CHAR);
    assert_eq!(tts_requests(&emu), [ws_request(), http_request()]);
    // The sentence was sent (the emulator drops the session once it starts speaking, so
    // whether it read the closing message too is a race).
    let ws = &emu.requests_for(Family::Tts)[0];
    assert_eq!(ws.messages.get(1), Some(&json!({"text": "Hello there. "})));
}

#[tokio::test]
async fn a_websocket_that_stalls_before_its_first_audio_leaves_time_for_http() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let timeout = Duration::from_secs(4);
    let tts = adapter_with_timeout(&emu, TtsTransport::WebSocketWithHttpFallback, timeout);
    emu.set_fault(Family::Tts, Some(Fault::stall().times(1)));
    let started = Instant::now();
    let audio = speak(&tts, "Hello there.").await;
    assert_eq!(audio.len(), "Hello there.".len() * SAMPLES_PER_CHAR);
    assert!(started.elapsed() < timeout, "{:?}", started.elapsed());
    assert_eq!(tts_requests(&emu), [ws_request(), http_request()]);
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_after_its_audio_and_is_never_repeated() {
    let text = "A sentence long enough to need several chunks of audio.";
    for (transport, chunk) in [
        (TtsTransport::Http, HTTP_CHUNK_BYTES),
        (TtsTransport::WebSocket, WS_MESSAGE_BYTES),
        // Audio was passed on: no fallback, which would repeat the sentence's start.
        (TtsTransport::WebSocketWithHttpFallback, WS_MESSAGE_BYTES),
    ] {
        let emu = start_emulator(Latency::new(0, 0)).await;
        let tts = adapter(&emu, transport);
        emu.set_fault(Family::Tts, Some(Fault::cut_after(2)));
        let (audio, chunks, error) = collect(tts.synthesize(request(text)).await.unwrap()).await;
        // Two chunks arrive, then the connection drops.
        assert_eq!((audio.len(), chunks), (2 * chunk, 2), "{transport:?}");
        assert!(
            matches!(error, Some(PortError::Unavailable(_))),
            "{transport:?}: {error:?}"
        );
        assert_eq!(tts_requests(&emu).len(), 1, "{transport:?}");
    }
}

// ---------------------------------------------------------------- timeouts

#[tokio::test]
async fn no_first_byte_within_the_timeout_is_timed_out() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let timeout = Duration::from_millis(200);
    emu.set_fault(Family::Tts, Some(Fault::stall()));
    for transport in [TtsTransport::WebSocketWithHttpFallback, TtsTransport::Http] {
        let tts = adapter_with_timeout(&emu, transport, timeout);
        let started = Instant::now();
        match tts.synthesize(request("Hello.")).await {
            Err(error) => assert_eq!(error, PortError::TimedOut(timeout), "{transport:?}"),
            Ok(_) => panic!("{transport:?}: a stalled request gave a stream"),
        }
        let waited = started.elapsed();
        assert!(
            waited >= timeout && waited < Duration::from_secs(2),
            "{transport:?}: {waited:?}"
        );
    }
    emu.stop().await;
}

#[tokio::test]
async fn a_stream_that_stalls_midway_is_timed_out_after_its_audio() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let timeout = Duration::from_millis(200);
    emu.set_fault(
        Family::Tts,
        Some(Fault {
            kind: FaultKind::Stall {
                ms: 60_000,
                after_chunks: 1,
            },
            skip: 0,
            times: None,
        }),
    );
    let text = "A sentence long enough to need several chunks of audio.";
    for (transport, chunk) in [
        (TtsTransport::Http, HTTP_CHUNK_BYTES),
        (TtsTransport::WebSocket, WS_MESSAGE_BYTES),
    ] {
        let tts = adapter_with_timeout(&emu, transport, timeout);
        let (audio, _, error) = collect(tts.synthesize(request(text)).await.unwrap()).await;
        assert_eq!(audio.len(), chunk, "{transport:?}");
        assert_eq!(error, Some(PortError::TimedOut(timeout)), "{transport:?}");
    }
    emu.stop().await;
}

// ---------------------------------------------------------------- cancellation

#[tokio::test]
async fn dropping_the_stream_early_stops_reading() {
    // Slow chunks, so the sentence is far from over when the stream is dropped.
    let emu = start_emulator(Latency::new(0, 200)).await;
    let text = "A sentence long enough to need many chunks of audio, read slowly.";
    for (transport, chunk) in [
        (TtsTransport::Http, HTTP_CHUNK_BYTES),
        (TtsTransport::WebSocket, WS_MESSAGE_BYTES),
    ] {
        emu.clear_requests();
        let tts = adapter(&emu, transport);
        let mut stream = tts.synthesize(request(text)).await.unwrap();
        let first = stream.next().await.unwrap().unwrap();
        assert_eq!(first.len(), chunk);
        drop(stream);

        // Nothing is retried or re-sent once the stream is gone.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(tts_requests(&emu).len(), 1, "{transport:?}");
        // The adapter is still usable.
        let next = "Ok.";
        let audio = speak(&tts, next).await;
        assert_eq!(
            audio.len(),
            spoken(next, transport).chars().count() * SAMPLES_PER_CHAR
        );
    }
    emu.stop().await;
}

/// A stand-in for ElevenLabs with the behaviours the emulator lacks, recording what it saw.
#[derive(Clone, Copy)]
enum Stand {
    /// No WebSocket endpoint (a proxy without WebSocket support): the handshake gets 404.
    NoWebSocket,
    /// Audio messages every 20 ms until the client goes.
    EndlessAudio,
    /// An error message after the opening message, then a policy close.
    ErrorMessage,
}

struct StandState {
    stand: Stand,
    ws_handshakes: AtomicUsize,
    http_requests: AtomicUsize,
    /// The handshake's `xi-api-key` and `user-agent`.
    handshake_headers: Mutex<Vec<(String, String)>>,
    /// How each WebSocket session ended, as the server saw it.
    ended: mpsc::UnboundedSender<String>,
}

/// Half a second of μ-law silence: what the stand's HTTP endpoint answers.
const STAND_AUDIO: [u8; 4000] = [0xFF; 4000];

async fn start_stand(stand: Stand) -> (String, Arc<StandState>, mpsc::UnboundedReceiver<String>) {
    let (ended, ended_rx) = mpsc::unbounded_channel();
    let state = Arc::new(StandState {
        stand,
        ws_handshakes: AtomicUsize::new(0),
        http_requests: AtomicUsize::new(0),
        handshake_headers: Mutex::new(Vec::new()),
        ended,
    });
    let app = Router::new()
        .route("/v1/text-to-speech/{voice}/stream", post(stand_http))
        .route("/v1/text-to-speech/{voice}/stream-input", get(stand_ws))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base_url, state, ended_rx)
}

async fn stand_http(State(state): State<Arc<StandState>>) -> Vec<u8> {
    state.http_requests.fetch_add(1, Ordering::SeqCst);
    STAND_AUDIO.to_vec()
}

async fn stand_ws(
    State(state): State<Arc<StandState>>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    state.ws_handshakes.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    state
        .handshake_headers
        .lock()
        .unwrap()
        .push((header("xi-api-key"), header("user-agent")));
    match state.stand {
        Stand::NoWebSocket => StatusCode::NOT_FOUND.into_response(),
        Stand::EndlessAudio | Stand::ErrorMessage => {
            upgrade.on_upgrade(move |socket| stand_session(state, socket))
        }
    }
}

async fn stand_session(state: Arc<StandState>, socket: WebSocket) {
    let (mut tx, mut rx) = socket.split();
    // The opening message.
    let _ = rx.next().await;
    if let Stand::ErrorMessage = state.stand {
        let error = json!({"message": "Quota exceeded for this voice", "error": "quota_exceeded"});
        let _ = tx.send(Message::Text(error.to_string().into())).await;
        let _ = tx
            .send(Message::Close(Some(CloseFrame {
                code: 1008,
                reason: "quota".into(),
            })))
            .await;
        while let Some(Ok(_)) = rx.next().await {}
        let _ = state.ended.send("refused".to_owned());
        return;
    }
    let audio = base64::engine::general_purpose::STANDARD.encode([0xFFu8; 160]);
    let message = json!({"audio": audio, "isFinal": null}).to_string();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ending = loop {
        tokio::select! {
            _ = tick.tick() => {
                if tx.send(Message::Text(message.clone().into())).await.is_err() {
                    break "send failed".to_owned();
                }
            }
            next = rx.next() => match next {
                Some(Ok(Message::Close(frame))) => {
                    break format!("close frame {:?}", frame.map(|f| f.code));
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break "dropped without a close frame".to_owned(),
            },
        }
    };
    let _ = state.ended.send(ending);
}

#[tokio::test]
async fn dropping_a_websocket_stream_mid_sentence_closes_the_socket_with_a_close_frame() {
    let (base_url, state, mut ended) = start_stand(Stand::EndlessAudio).await;
    let tts = ElevenLabsTts::new(config(base_url, TtsTransport::WebSocket)).unwrap();
    let mut stream = tts.synthesize(request("Hello there.")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(stream.next().await.unwrap().unwrap(), [0xFF; 160]);
    }
    // Barge-in: the engine drops the sentence.
    drop(stream);
    let ending = tokio::time::timeout(Duration::from_secs(5), ended.recv())
        .await
        .expect("the server sees the session end")
        .unwrap();
    assert_eq!(ending, "close frame Some(1000)");
    // The key went in the handshake header, as PROTOCOLS.md §5.2 prefers.
    let headers = state.handshake_headers.lock().unwrap().clone();
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, XI_KEY);
    assert!(headers[0].1.starts_with("switchboard/"), "{headers:?}");
    assert_eq!(state.http_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_missing_websocket_endpoint_falls_back_to_http_even_without_retries() {
    let (base_url, state, _ended) = start_stand(Stand::NoWebSocket).await;
    let mut config = config(base_url, TtsTransport::WebSocketWithHttpFallback);
    config.retry = RetryPolicy::NONE;
    let tts = ElevenLabsTts::new(config).unwrap();
    for _ in 0..2 {
        assert_eq!(speak(&tts, "Hello there.").await, STAND_AUDIO);
    }
    assert_eq!(state.ws_handshakes.load(Ordering::SeqCst), 2);
    assert_eq!(state.http_requests.load(Ordering::SeqCst), 2);

    // Without the fallback, the sentence fails; a 404 on the socket is not retried.
    let (base_url, state, _ended) = start_stand(Stand::NoWebSocket).await;
    let tts = ElevenLabsTts::new(config_ws_only(base_url)).unwrap();
    match tts.synthesize(request("Hello there.")).await {
        Err(PortError::Unavailable(message)) => assert!(message.contains("404"), "{message}"),
        other => panic!("{:?}", other.map(|_| "a stream")),
    }
    assert_eq!(state.ws_handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(state.http_requests.load(Ordering::SeqCst), 0);
}

fn config_ws_only(base_url: String) -> ElevenLabsConfig {
    config(base_url, TtsTransport::WebSocket)
}

#[tokio::test]
async fn an_error_message_on_the_websocket_is_refused_without_a_fallback() {
    let (base_url, state, mut ended) = start_stand(Stand::ErrorMessage).await;
    let tts =
        ElevenLabsTts::new(config(base_url, TtsTransport::WebSocketWithHttpFallback)).unwrap();
    match tts.synthesize(request("Hello there.")).await {
        Err(PortError::Refused(message)) => {
            assert!(message.contains("Quota exceeded"), "{message}");
        }
        other => panic!("{:?}", other.map(|_| "a stream")),
    }
    let ending = tokio::time::timeout(Duration::from_secs(5), ended.recv())
        .await
        .unwrap();
    assert_eq!(ending.as_deref(), Some("refused"));
    assert_eq!(state.ws_handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(state.http_requests.load(Ordering::SeqCst), 0);
}
