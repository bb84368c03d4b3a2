//! Streaming speech-to-text: the OpenAI Realtime transcription adapter against the provider
//! emulator over loopback (the wire format, partials then finals, what a dropped session does
//! to its socket, and how faults surface), then a whole phone call of an agent in
//! `stt_mode: streaming` through the server's own wiring.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actors::audio::{mulaw, FRAME_SAMPLES};
use actors::domain::{AgentId, CallId, TenantId, E164};
use actors::ports::{
    CallInfo, MulawFrame, PortError, SpeechToText, SttEvent, SttInput, SttMode, SttOptions,
    SttSession,
};
use common::{spawn_voice_app, unique_number};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use switchboard::emulator::script::ReplyRule;
use switchboard::emulator::{
    Emulator, EmulatorHandle, EmulatorScript, Family, Fault, RecordedRequest,
};
use switchboard::providers::openai::{OpenAiClient, OpenAiConfig};
use switchboard::providers::openai_realtime::{OpenAiRealtimeStt, BATCH_FRAMES};
use switchboard::simulator::CallerTurn;
use tokio::net::TcpListener;

const KEY: &str = "sk-test-realtime-key-never-shown";
const CUSTOMER: &str = "+15551230077";

async fn start() -> EmulatorHandle {
    let mut script = EmulatorScript::instant();
    script.transcripts.lines = vec!["not for this caller".to_owned()];
    script.transcripts.by_prompt = BTreeMap::from([(
        CUSTOMER.to_owned(),
        vec![
            "I'd like to book a table".to_owned(),
            "At three please".to_owned(),
        ],
    )]);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn adapter(emu: &EmulatorHandle, timeout: Duration) -> OpenAiRealtimeStt {
    let mut config = OpenAiConfig::new(SecretString::from(KEY));
    config.base_url = emu.openai_base_url();
    config.timeout = timeout;
    OpenAiRealtimeStt::new(OpenAiClient::new(config).unwrap())
}

fn call_info() -> CallInfo {
    CallInfo {
        call_id: CallId::new(),
        tenant: TenantId::new(),
        agent: AgentId::new(),
        customer: CUSTOMER.into(),
        business_number: E164::parse("+15559870000").unwrap(),
    }
}

/// `n` frames of a quiet tone: the emulator only measures audio, it cannot hear it.
fn frames(n: usize) -> Vec<MulawFrame> {
    let mut frame = [0u8; FRAME_SAMPLES];
    for (i, sample) in frame.iter_mut().enumerate() {
        *sample = mulaw::encode(if i % 2 == 0 { 800 } else { -800 });
    }
    vec![frame; n]
}

fn say(session: &mut SttSession, frame_count: usize) {
    for frame in frames(frame_count) {
        session.feed.push(SttInput::Audio(frame)).unwrap();
    }
    session.feed.push(SttInput::UtteranceEnded).unwrap();
}

async fn next_event(session: &mut SttSession) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(10), session.events.recv())
        .await
        .expect("an event in time")
        .expect("the session is alive")
}

/// The partials up to the next final, and that final.
async fn utterance(session: &mut SttSession) -> (Vec<String>, String) {
    let mut partials = Vec::new();
    loop {
        match next_event(session).await {
            SttEvent::Partial(words) => partials.push(words),
            SttEvent::Final(text) => return (partials, text),
            SttEvent::Failed(error) => panic!("the session failed: {error}"),
        }
    }
}

/// The emulator's records of Realtime sessions, once `n` of them exist and the last has
/// seen `messages` client messages (the emulator records as it reads, a little after the
/// client sent).
async fn sessions(emu: &EmulatorHandle, n: usize, messages: usize) -> Vec<RecordedRequest> {
    for _ in 0..200 {
        let found: Vec<RecordedRequest> = emu
            .requests_for(Family::Stt)
            .into_iter()
            .filter(|r| r.path == "/v1/realtime")
            .collect();
        if found.len() >= n && found.last().is_some_and(|r| r.messages.len() >= messages) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the emulator never saw {n} sessions with {messages} messages");
}

/// Waits until the record of session `seq` says its connection is over.
async fn ended(emu: &EmulatorHandle, seq: u64) {
    for _ in 0..200 {
        if emu.requests().iter().any(|r| r.seq == seq && r.ended) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("session {seq} was never closed");
}

fn kinds(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("?"))
        .collect()
}

#[tokio::test]
async fn utterances_stream_partials_then_their_finals_in_the_realtime_wire_format() {
    let emu = start().await;
    let stt = adapter(&emu, Duration::from_secs(5));
    let mut session = stt.open(&call_info(), &SttOptions::new("en-US", SttMode::Streaming));

    say(&mut session, 3);
    assert_eq!(
        utterance(&mut session).await,
        (vec![], String::new()),
        "a blip too short to commit is answered empty at once"
    );
    say(&mut session, 52);
    let (partials, text) = utterance(&mut session).await;
    assert_eq!(text, "I'd like to book a table");
    assert_eq!(
        partials,
        [
            "I'd",
            "I'd like",
            "I'd like to",
            "I'd like to book",
            "I'd like to book a",
            "I'd like to book a table"
        ],
        "each delta adds to the words so far"
    );
    say(&mut session, 20);
    assert_eq!(utterance(&mut session).await.1, "At three please");

    let records = sessions(&emu, 1, 1 + 11 + 1 + 4 + 1).await;
    assert_eq!(records.len(), 1, "one connection serves the whole call");
    let record = &records[0];
    assert_eq!(record.method, "GET");
    assert_eq!(
        record.query,
        BTreeMap::from([("intent".to_owned(), "transcription".to_owned())])
    );
    assert!(record.authorization, "the key goes in the handshake");
    assert!(
        !record.headers.contains_key("openai-beta"),
        "the GA protocol, not the beta"
    );
    assert_eq!(
        record.messages[0],
        json!({"type": "session.update", "event_id": "session_update", "session": {
            "type": "transcription",
            "audio": {"input": {
                "format": {"type": "audio/pcmu"},
                "transcription": {"model": "gpt-4o-mini-transcribe", "language": "en",
                                  "prompt": CUSTOMER},
                "turn_detection": null}}}})
    );
    let kinds = kinds(&record.messages[1..]);
    let appends = |n| vec!["input_audio_buffer.append"; n];
    let expected: Vec<&str> = [
        appends(11),
        vec!["input_audio_buffer.commit"],
        appends(4),
        vec!["input_audio_buffer.commit"],
    ]
    .concat();
    assert_eq!(
        kinds, expected,
        "the blip sent nothing; audio goes in batches"
    );
    let sizes: Vec<u64> = record.messages[1..12]
        .iter()
        .map(|m| m["audio"]["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 52 * FRAME_SAMPLES as u64);
    assert!(sizes[..10]
        .iter()
        .all(|&s| s == (BATCH_FRAMES * FRAME_SAMPLES) as u64));
    assert_eq!(record.messages[12]["event_id"], "commit_1");
    assert!(
        !serde_json::to_string(&emu.requests())
            .unwrap()
            .contains(KEY),
        "the key is never recorded"
    );
    drop(session);
    ended(&emu, record.seq).await;
}

#[tokio::test]
async fn dropping_the_session_closes_its_socket() {
    let emu = start().await;
    let stt = adapter(&emu, Duration::from_secs(5));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    for frame in frames(10) {
        session.feed.push(SttInput::Audio(frame)).unwrap();
    }
    let record = sessions(&emu, 1, 3).await.remove(0);
    assert!(!record.ended);
    drop(session);
    ended(&emu, record.seq).await;
}

#[tokio::test]
async fn a_dropped_feed_still_hears_its_last_utterance_then_closes() {
    let emu = start().await;
    let stt = adapter(&emu, Duration::from_secs(5));
    let SttSession {
        mut feed,
        mut events,
    } = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    for frame in frames(20) {
        feed.push(SttInput::Audio(frame)).unwrap();
    }
    feed.push(SttInput::UtteranceEnded).unwrap();
    drop(feed);
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("the session ends in time")
    {
        last = Some(event);
    }
    assert_eq!(
        last,
        Some(SttEvent::Final("I'd like to book a table".into()))
    );
    let record = sessions(&emu, 1, 6).await.remove(0);
    ended(&emu, record.seq).await;
}

#[tokio::test]
async fn a_refused_key_fails_the_session_without_showing_the_key() {
    let emu = start().await;
    emu.set_fault(Family::Stt, Some(Fault::status(401)));
    let stt = adapter(&emu, Duration::from_secs(5));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    match next_event(&mut session).await {
        SttEvent::Failed(PortError::Refused(message)) => {
            assert!(message.contains("401"), "{message}");
            assert!(!message.contains(KEY), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(session.events.recv().await, None, "nothing follows Failed");
}

#[tokio::test]
async fn an_unavailable_service_costs_the_utterance_and_the_next_one_reconnects() {
    let emu = start().await;
    emu.set_fault(Family::Stt, Some(Fault::status(503)));
    let stt = adapter(&emu, Duration::from_secs(5));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    say(&mut session, 20);
    assert_eq!(utterance(&mut session).await, (vec![], String::new()));

    emu.clear_faults();
    say(&mut session, 20);
    assert_eq!(
        utterance(&mut session).await.1,
        "I'd like to book a table",
        "the line was never heard, so it is still next"
    );
}

#[tokio::test]
async fn a_connection_cut_mid_transcript_loses_that_utterance_only() {
    let emu = start().await;
    emu.set_fault(Family::Stt, Some(Fault::cut_after(2).times(1)));
    let stt = adapter(&emu, Duration::from_secs(5));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    say(&mut session, 20);
    assert_eq!(
        utterance(&mut session).await,
        (vec!["I'd".to_owned(), "I'd like".to_owned()], String::new()),
        "the words before the cut were only a guess"
    );
    say(&mut session, 20);
    assert_eq!(utterance(&mut session).await.1, "I'd like to book a table");
    let records = sessions(&emu, 2, 1).await;
    assert_eq!(records.len(), 2, "the second utterance reconnected");
    ended(&emu, records[0].seq).await;
}

#[tokio::test]
async fn a_transcript_overdue_past_the_timeout_is_given_up() {
    let emu = start().await;
    emu.set_fault(Family::Stt, Some(Fault::stall().times(1)));
    let stt = adapter(&emu, Duration::from_millis(400));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Streaming));
    let started = tokio::time::Instant::now();
    say(&mut session, 20);
    assert_eq!(utterance(&mut session).await, (vec![], String::new()));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert!(started.elapsed() < Duration::from_secs(5));
    say(&mut session, 20);
    assert_eq!(utterance(&mut session).await.1, "I'd like to book a table");
}

#[tokio::test]
async fn an_agent_in_streaming_mode_hears_its_callers_over_the_realtime_session() {
    let from = "+14155550177";
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = BTreeMap::from([(
        from.to_owned(),
        vec!["What are your opening hours?".to_owned()],
    )]);
    script.replies.rules = vec![ReplyRule {
        user_contains: Some("opening hours".to_owned()),
        text: Some("We open at nine.".to_owned()),
        ..ReplyRule::default()
    }];
    let (app, emulator) = spawn_voice_app(script, &[]).await;
    let owner = app.register("Acme Motors").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{agent}"),
            &owner.access,
            json!({"stt_mode": "streaming", "first_message": "Hello."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let number = unique_number();
    app.create_number(&owner, &number, &agent).await;

    let report = common::simulate_call(
        &app.base,
        from,
        &number,
        vec![CallerTurn::say("What are your opening hours?")],
    )
    .await;
    assert_eq!(report.turns.len(), 1, "{}", report.to_text());
    assert!(report.turns[0].reply.audio_ms > 300, "{}", report.to_text());

    let stt = emulator.requests_for(Family::Stt);
    assert!(
        stt.iter().all(|r| r.path == "/v1/realtime"),
        "no per-utterance upload for a streaming agent: {stt:?}"
    );
    assert!(stt.iter().any(|r| r
        .messages
        .iter()
        .any(|m| m["type"] == "input_audio_buffer.commit")));
    let heard = emulator
        .requests_for(Family::Llm)
        .iter()
        .any(|r| r.body.to_string().contains("What are your opening hours?"));
    assert!(heard, "the model was given the streamed transcript");
}
