//! The ElevenLabs text-to-speech adapter against the provider emulator over loopback: the
//! request it sends, the audio it streams, and each failure as the port reports it.

use std::time::{Duration, Instant};

use actors::audio::mulaw;
use actors::ports::{AudioStream, PortError, TextToSpeech, TtsRequest};
use futures::StreamExt;
use secrecy::SecretString;
use switchboard::emulator::{
    audio::SAMPLES_PER_CHAR, Emulator, EmulatorHandle, EmulatorScript, Family, Fault, FaultKind,
    Latencies, Latency,
};
use switchboard::providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use tokio::net::TcpListener;

const XI_KEY: &str = "xi-test-never-recorded";
const VOICE: &str = "21m00Tcm4TlvDq8ikWAM";

async fn start_emulator(tts_latency: Latency) -> EmulatorHandle {
    let mut script = EmulatorScript::instant();
    script.latency = Latencies {
        tts: tts_latency,
        ..Latencies::none()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn adapter(emu: &EmulatorHandle, first_byte_timeout: Duration) -> ElevenLabsTts {
    let mut config =
        ElevenLabsConfig::new(SecretString::from(XI_KEY)).with_base_url(emu.base_url());
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

#[tokio::test]
async fn audio_is_mu_law_whose_length_grows_with_the_text() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, Duration::from_secs(5));
    let short = "Hi there.";
    let long = "Hi there, thanks for calling Acme. How can I help you today?";

    let (short_audio, _, error) = collect(tts.synthesize(request(short)).await.unwrap()).await;
    assert_eq!(error, None);
    let (long_audio, chunks, error) = collect(tts.synthesize(request(long)).await.unwrap()).await;
    assert_eq!(error, None);
    // The emulator speaks 65 ms (520 μ-law bytes) per character, exactly.
    assert_eq!(short_audio.len(), short.chars().count() * SAMPLES_PER_CHAR);
    assert_eq!(long_audio.len(), long.chars().count() * SAMPLES_PER_CHAR);
    assert!(chunks > 1, "chunks are passed on as they come");

    // Valid μ-law speech: loud over the letters of "Hi", silent in the space after it.
    let pcm: Vec<i16> = long_audio.iter().map(|&b| mulaw::decode(b)).collect();
    let word = &pcm[..2 * SAMPLES_PER_CHAR];
    let gap = &pcm[2 * SAMPLES_PER_CHAR..3 * SAMPLES_PER_CHAR];
    assert!(word.iter().map(|s| s.unsigned_abs()).max().unwrap() > 1000);
    assert!(gap.iter().all(|s| s.abs() <= 8));
}

#[tokio::test]
async fn the_request_has_the_path_query_key_and_body_elevenlabs_expects() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, Duration::from_secs(5));
    collect(tts.synthesize(request("Hello.")).await.unwrap()).await;

    let recorded = emu.requests_for(Family::Tts);
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, format!("/v1/text-to-speech/{VOICE}/stream"));
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
        serde_json::json!({
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
    let tts = adapter(&emu, Duration::from_secs(5));
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
async fn a_server_error_is_unavailable_and_a_client_error_is_refused_without_the_key() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, Duration::from_secs(5));

    emu.set_fault(Family::Tts, Some(Fault::status(503)));
    match tts.synthesize(request("Hello.")).await {
        Err(PortError::Unavailable(message)) => assert!(message.contains("503"), "{message}"),
        other => panic!("{:?}", other.map(|_| "a stream")),
    }

    emu.set_fault(Family::Tts, Some(Fault::status(401)));
    match tts.synthesize(request("Hello.")).await {
        Err(PortError::Refused(message)) => {
            assert!(message.contains("Invalid API key"), "{message}");
            assert!(!message.contains(XI_KEY));
        }
        other => panic!("{:?}", other.map(|_| "a stream")),
    }

    emu.clear_faults();
    assert!(tts.synthesize(request("Hello.")).await.is_ok());
}

#[tokio::test]
async fn a_cut_body_ends_the_stream_with_an_error_after_some_audio() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, Duration::from_secs(5));
    emu.set_fault(Family::Tts, Some(Fault::cut_after(2)));
    let text = "A sentence long enough to need several chunks of audio.";
    let (audio, _, error) = collect(tts.synthesize(request(text)).await.unwrap()).await;
    // Two 100 ms chunks arrive, then the connection drops.
    assert_eq!(audio.len(), 2 * 800);
    assert!(
        matches!(error, Some(PortError::Unavailable(_))),
        "{error:?}"
    );
}

#[tokio::test]
async fn no_first_byte_within_the_timeout_is_timed_out() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let timeout = Duration::from_millis(200);
    let tts = adapter(&emu, timeout);
    emu.set_fault(Family::Tts, Some(Fault::stall()));
    let started = Instant::now();
    match tts.synthesize(request("Hello.")).await {
        Err(error) => assert_eq!(error, PortError::TimedOut(timeout)),
        Ok(_) => panic!("a stalled request gave a stream"),
    }
    let waited = started.elapsed();
    assert!(
        waited >= timeout && waited < Duration::from_secs(2),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_stream_that_stalls_midway_is_timed_out_after_its_audio() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let timeout = Duration::from_millis(200);
    let tts = adapter(&emu, timeout);
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
    let (audio, _, error) = collect(tts.synthesize(request(text)).await.unwrap()).await;
    assert_eq!(audio.len(), 800);
    assert_eq!(error, Some(PortError::TimedOut(timeout)));
}

#[tokio::test]
async fn dropping_the_stream_early_stops_reading() {
    // Slow chunks, so the body is far from over when the stream is dropped.
    let emu = start_emulator(Latency::new(0, 200)).await;
    let tts = adapter(&emu, Duration::from_secs(5));
    let text = "A sentence long enough to need many chunks of audio, read slowly.";
    let mut stream = tts.synthesize(request(text)).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 800);
    drop(stream);

    // Nothing is retried or re-sent once the stream is gone.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(emu.requests_for(Family::Tts).len(), 1);
    // The adapter (and its connection pool) is still usable.
    let next = "Ok.";
    let (audio, _, error) = collect(tts.synthesize(request(next)).await.unwrap()).await;
    assert_eq!(error, None);
    assert_eq!(audio.len(), next.len() * SAMPLES_PER_CHAR);
    emu.stop().await;
}

#[tokio::test]
async fn empty_text_is_an_empty_stream_without_a_request() {
    let emu = start_emulator(Latency::new(0, 0)).await;
    let tts = adapter(&emu, Duration::from_secs(5));
    let (audio, chunks, error) = collect(tts.synthesize(request("  ")).await.unwrap()).await;
    assert!(audio.is_empty() && chunks == 0 && error.is_none());
    assert!(emu.requests().is_empty());
}
