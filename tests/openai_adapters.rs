//! The OpenAI adapters against the provider emulator over loopback: streamed replies, tool
//! calls and their follow-up request in the wire format, usage, faults, per-utterance
//! transcription of real audio, and embeddings.

use std::time::Duration;

use actors::audio::{mulaw, FRAME_SAMPLES};
use actors::domain::{AgentId, CallId, TenantId, E164};
use actors::ports::{
    CallInfo, ChatMessage, Embedder, LanguageModel, LlmDelta, LlmRequest, PcmFrame, PortError,
    SpeechToText, SttEvent, SttInput, SttSession, ToolCall, ToolSpec,
};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use switchboard::emulator::{Emulator, EmulatorHandle, EmulatorScript, Family, Fault, Latencies};
use switchboard::providers::openai::{
    OpenAiClient, OpenAiConfig, OpenAiEmbedder, OpenAiLlm, OpenAiStt,
};
use tokio::net::TcpListener;

const KEY: &str = "sk-test-adapter-key-never-shown";
const CUSTOMER: &str = "+15551230001";

async fn start(script: Value) -> EmulatorHandle {
    let mut script = EmulatorScript::from_json(&script.to_string()).expect("a valid script");
    script.latency = Latencies::none();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn client(emu: &EmulatorHandle) -> OpenAiClient {
    let mut config = OpenAiConfig::new(SecretString::from(KEY));
    config.base_url = emu.openai_base_url();
    config.timeout = Duration::from_secs(5);
    config.embedding_dimensions = Some(256);
    OpenAiClient::new(config).unwrap()
}

fn script() -> Value {
    json!({
        "transcripts": {
            "lines": ["not for this caller"],
            "by_prompt": {CUSTOMER: ["I'd like to book a table", "At three please"]}
        },
        "replies": {
            "rules": [
                {"user_contains": "book", "tool_calls": [
                    {"name": "book_slot", "arguments": {"time": "15:00", "note": "window seat"}}
                ]},
                {"after_tool": "book_slot", "text": "Done: {tool_result}"},
                {"user_contains": "hours", "text": "We are open from nine to five, Monday to Friday."}
            ]
        }
    })
}

fn book_slot() -> ToolSpec {
    ToolSpec {
        name: "book_slot".into(),
        description: "Book an appointment".into(),
        parameters: json!({"type": "object", "properties": {"time": {"type": "string"}}}),
    }
}

fn request(messages: Vec<ChatMessage>) -> LlmRequest {
    LlmRequest {
        model: "gpt-4o-mini".into(),
        messages,
        tools: vec![book_slot()],
    }
}

async fn collect(llm: &OpenAiLlm, request: LlmRequest) -> Vec<Result<LlmDelta, PortError>> {
    llm.stream(request)
        .await
        .expect("the stream starts")
        .collect()
        .await
}

fn text_of(items: &[Result<LlmDelta, PortError>]) -> String {
    items
        .iter()
        .filter_map(|item| match item {
            Ok(LlmDelta::Text(text)) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_streamed_reply_arrives_as_text_deltas_then_usage() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    let items = collect(
        &llm,
        request(vec![
            ChatMessage::System("You are a phone agent.".into()),
            ChatMessage::User("What are your hours?".into()),
        ]),
    )
    .await;
    let texts = items
        .iter()
        .filter(|i| matches!(i, Ok(LlmDelta::Text(_))))
        .count();
    assert!(texts > 3, "streamed in pieces: {items:?}");
    assert_eq!(
        text_of(&items),
        "We are open from nine to five, Monday to Friday."
    );
    match items.last() {
        Some(Ok(LlmDelta::Usage {
            prompt_tokens,
            completion_tokens,
        })) => assert!(*prompt_tokens > 0 && *completion_tokens > 0),
        other => panic!("usage comes last, got {other:?}"),
    }

    let recorded = emu.requests_for(Family::Llm);
    assert_eq!(recorded.len(), 1);
    let body = &recorded[0].body;
    assert!(recorded[0].authorization);
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["tool_choice"], "auto");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "You are a phone agent."},
            {"role": "user", "content": "What are your hours?"}
        ])
    );
    assert_eq!(
        body["tools"][0],
        json!({"type": "function", "function": {
            "name": "book_slot", "description": "Book an appointment",
            "parameters": {"type": "object", "properties": {"time": {"type": "string"}}},
            "strict": false
        }})
    );
}

#[tokio::test]
async fn a_tool_call_arrives_whole_and_its_result_is_answered() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    let mut messages = vec![
        ChatMessage::System("You are a phone agent.".into()),
        ChatMessage::User("Can I book for three?".into()),
    ];
    let items = collect(&llm, request(messages.clone())).await;
    let calls: Vec<&ToolCall> = items
        .iter()
        .filter_map(|i| match i {
            Ok(LlmDelta::ToolCall(call)) => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 1, "{items:?}");
    let call = calls[0].clone();
    assert_eq!(call.name, "book_slot");
    assert!(!call.id.is_empty());
    let args: Value = serde_json::from_str(&call.arguments).expect("valid JSON arguments");
    assert_eq!(args, json!({"time": "15:00", "note": "window seat"}));
    assert!(items.iter().all(Result::is_ok));
    assert!(matches!(items.last(), Some(Ok(LlmDelta::Usage { .. }))));

    messages.push(ChatMessage::Assistant {
        text: String::new(),
        tool_calls: vec![call.clone()],
    });
    messages.push(ChatMessage::Tool {
        call_id: call.id.clone(),
        content: r#"{"ok":true}"#.into(),
    });
    let items = collect(&llm, request(messages)).await;
    assert_eq!(text_of(&items), r#"Done: {"ok":true}"#);

    let recorded = emu.requests_for(Family::Llm);
    assert_eq!(recorded.len(), 2);
    let wire = &recorded[1].body["messages"];
    assert_eq!(
        wire[2],
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": "book_slot", "arguments": call.arguments}}
        ]})
    );
    assert_eq!(
        wire[3],
        json!({"role": "tool", "tool_call_id": call.id, "content": "{\"ok\":true}"})
    );
}

#[tokio::test]
async fn a_server_error_fails_the_start_of_the_stream_without_the_key() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    emu.set_fault(Family::Llm, Some(Fault::status(503).times(1)));
    let error = match llm
        .stream(request(vec![ChatMessage::User("hours?".into())]))
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("a 503 must fail stream()"),
    };
    match &error {
        PortError::Unavailable(message) => {
            assert!(message.contains("overloaded"), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // The fault was for one request: the next one works.
    let items = collect(&llm, request(vec![ChatMessage::User("hours?".into())])).await;
    assert!(text_of(&items).starts_with("We are open"));

    emu.set_fault(Family::Llm, Some(Fault::status(400)));
    let refused = llm
        .stream(request(vec![ChatMessage::User("hours?".into())]))
        .await;
    assert!(matches!(refused, Err(PortError::Refused(_))));
}

#[tokio::test]
async fn a_stream_cut_midway_ends_with_an_error_item() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    emu.set_fault(Family::Llm, Some(Fault::cut_after(3)));
    let items = collect(&llm, request(vec![ChatMessage::User("hours?".into())])).await;
    let (last, before) = items.split_last().expect("some items");
    assert!(matches!(last, Err(PortError::Unavailable(_))), "{items:?}");
    assert!(before.iter().all(Result::is_ok));
    assert!(
        !text_of(before).is_empty(),
        "the words before the cut arrive"
    );
}

// ---------------------------------------------------------------- speech-to-text

fn call_info() -> CallInfo {
    CallInfo {
        call_id: CallId::new(),
        tenant: TenantId::new(),
        agent: AgentId::new(),
        customer: CUSTOMER.into(),
        business_number: E164::parse("+15559870000").unwrap(),
    }
}

/// The fixture sentence as 20 ms PCM frames (the partial last frame dropped).
fn sentence_frames() -> Vec<PcmFrame> {
    let ulaw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/actors/tests/fixtures/sentence.ulaw"
    ))
    .unwrap();
    ulaw.chunks_exact(FRAME_SAMPLES)
        .map(|chunk| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (sample, byte) in frame.iter_mut().zip(chunk) {
                *sample = mulaw::decode(*byte);
            }
            frame
        })
        .collect()
}

fn say(session: &mut SttSession, frames: &[PcmFrame]) {
    for frame in frames {
        session.feed.push(SttInput::Audio(*frame)).unwrap();
    }
    session.feed.push(SttInput::UtteranceEnded).unwrap();
}

async fn next_event(session: &mut SttSession) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(10), session.events.recv())
        .await
        .expect("an event in time")
        .expect("the session is alive")
}

#[tokio::test]
async fn an_utterance_is_transcribed_as_the_line_scripted_for_its_caller() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), "en-US");
    let frames = sentence_frames();
    say(&mut session, &frames);
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final("I'd like to book a table".into())
    );

    let recorded = emu.requests_for(Family::Stt);
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert!(request.authorization);
    assert_eq!(request.path, "/v1/audio/transcriptions");
    assert!(request.headers["content-type"].starts_with("multipart/form-data; boundary="));
    let samples = frames.len() * FRAME_SAMPLES;
    assert_eq!(request.body["file"]["bytes"], json!(44 + 2 * samples));
    assert_eq!(request.body["file"]["content_type"], "audio/wav");
    assert_eq!(request.body["model"], "gpt-4o-mini-transcribe");
    assert_eq!(request.body["language"], "en");
    assert_eq!(request.body["prompt"], CUSTOMER);
}

#[tokio::test]
async fn a_failed_transcription_loses_one_utterance_and_the_session_goes_on() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), "en");
    emu.set_fault(Family::Stt, Some(Fault::status(500).times(1)));
    let frames = sentence_frames();
    say(&mut session, &frames);
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final(String::new())
    );
    say(&mut session, &frames);
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final("I'd like to book a table".into())
    );
    assert_eq!(emu.requests_for(Family::Stt).len(), 2);

    // Dropping the feed ends the session once pending transcripts are delivered.
    say(&mut session, &frames);
    drop(session.feed);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), session.events.recv())
            .await
            .unwrap(),
        Some(SttEvent::Final("At three please".into()))
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), session.events.recv())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn an_utterance_too_short_to_transcribe_is_empty_without_a_request() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), "en");
    say(&mut session, &sentence_frames()[..2]);
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final(String::new())
    );
    assert!(emu.requests_for(Family::Stt).is_empty());
}

// ---------------------------------------------------------------- embeddings

#[tokio::test]
async fn embeddings_come_back_in_input_order_with_the_requested_dimension() {
    let emu = start(script()).await;
    let embedder = OpenAiEmbedder::new(client(&emu));
    let texts = vec![
        "opening hours on Sunday".to_owned(),
        "refund my parking ticket".to_owned(),
        "where do I park".to_owned(),
    ];
    let vectors = embedder.embed(texts.clone()).await.unwrap();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 256));

    let reversed: Vec<String> = texts.iter().rev().cloned().collect();
    let mut back = embedder.embed(reversed).await.unwrap();
    back.reverse();
    assert_eq!(back, vectors, "each vector belongs to its own input");
    assert_ne!(vectors[0], vectors[1]);

    let recorded = emu.requests_for(Family::Embeddings);
    assert_eq!(recorded[0].body["model"], "text-embedding-3-small");
    assert_eq!(recorded[0].body["dimensions"], 256);
    assert_eq!(recorded[0].body["input"], json!(texts));

    assert_eq!(
        embedder.embed(Vec::new()).await.unwrap(),
        Vec::<Vec<f32>>::new()
    );
    emu.set_fault(Family::Embeddings, Some(Fault::status(500)));
    assert!(matches!(
        embedder.embed(vec!["x".into()]).await,
        Err(PortError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_rejected_key_ends_the_transcription_session_with_a_refusal() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), "en");
    emu.set_fault(Family::Stt, Some(Fault::status(401)));
    say(&mut session, &sentence_frames());
    match next_event(&mut session).await {
        SttEvent::Failed(PortError::Refused(message)) => assert!(!message.contains(KEY)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), session.events.recv())
            .await
            .unwrap(),
        None
    );
}
