//! The OpenAI adapters against the provider emulator over loopback: streamed replies, tool
//! calls and their follow-up request in the wire format, usage, faults, per-utterance
//! transcription of real audio, embeddings, and which failures are retried.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::audio::FRAME_SAMPLES;
use actors::domain::{AgentId, CallId, TenantId, E164};
use actors::ports::{
    CallInfo, ChatMessage, Embedder, LanguageModel, LlmDelta, LlmRequest, MulawFrame, PortError,
    SpeechToText, SttEvent, SttInput, SttMode, SttOptions, SttSession, ToolCall, ToolSpec,
};
use futures::StreamExt;
use secrecy::SecretString;
use serde_json::{json, Value};
use switchboard::emulator::{Emulator, EmulatorHandle, EmulatorScript, Family, Fault, Latencies};
use switchboard::providers::openai::{
    OpenAiClient, OpenAiConfig, OpenAiEmbedder, OpenAiLlm, OpenAiStt,
};
use switchboard::providers::retry::RetryPolicy;
use tokio::net::TcpListener;

const KEY: &str = "sk-test-adapter-key-never-shown";
const CUSTOMER: &str = "+15551230001";

/// Requests a failure is tried with before it surfaces, under the default policy and the
/// 5 s timeout of [`client`] (room for every backoff).
const ATTEMPTS: usize = 1 + RetryPolicy::DEFAULT.max_retries as usize;

async fn start(script: Value) -> EmulatorHandle {
    let mut script = EmulatorScript::from_json(&script.to_string()).expect("a valid script");
    script.latency = Latencies::none();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn client(emu: &EmulatorHandle) -> OpenAiClient {
    client_with_timeout(&emu.openai_base_url(), Duration::from_secs(5))
}

fn client_with_timeout(base_url: &str, timeout: Duration) -> OpenAiClient {
    let mut config = OpenAiConfig::new(SecretString::from(KEY));
    config.base_url = base_url.to_owned();
    config.timeout = timeout;
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
        fallback_models: Vec::new(),
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
async fn a_server_error_that_persists_fails_the_start_of_the_stream_without_the_key() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    emu.set_fault(Family::Llm, Some(Fault::status(503)));
    let error = match llm
        .stream(request(vec![ChatMessage::User("hours?".into())]))
        .await
    {
        Err(error) => error,
        Ok(_) => panic!("a lasting 503 must fail stream()"),
    };
    match &error {
        PortError::Unavailable(message) => {
            assert!(message.contains("overloaded"), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert_eq!(emu.requests_for(Family::Llm).len(), ATTEMPTS);

    emu.set_fault(Family::Llm, None);
    let items = collect(&llm, request(vec![ChatMessage::User("hours?".into())])).await;
    assert!(text_of(&items).starts_with("We are open"));
}

#[tokio::test]
async fn a_completion_that_fails_once_before_streaming_is_retried_and_answered() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    emu.set_fault(Family::Llm, Some(Fault::status(503).times(1)));
    let items = collect(&llm, request(vec![ChatMessage::User("hours?".into())])).await;
    assert_eq!(
        text_of(&items),
        "We are open from nine to five, Monday to Friday."
    );
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    let recorded = emu.requests_for(Family::Llm);
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].body, recorded[1].body, "the same request again");
}

#[tokio::test]
async fn a_stream_cut_before_its_first_byte_is_retried() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    emu.set_fault(Family::Llm, Some(Fault::cut_after(0).times(1)));
    let items = collect(&llm, request(vec![ChatMessage::User("hours?".into())])).await;
    assert!(items.iter().all(Result::is_ok), "{items:?}");
    assert!(text_of(&items).starts_with("We are open"));
    assert_eq!(emu.requests_for(Family::Llm).len(), 2);
}

#[tokio::test]
async fn a_refused_completion_is_not_retried() {
    let emu = start(script()).await;
    let llm = OpenAiLlm::new(client(&emu));
    for (status, requests) in [(400, 1), (401, 2)] {
        emu.set_fault(Family::Llm, Some(Fault::status(status)));
        let refused = llm
            .stream(request(vec![ChatMessage::User("hours?".into())]))
            .await;
        assert!(matches!(refused, Err(PortError::Refused(_))), "{status}");
        assert_eq!(emu.requests_for(Family::Llm).len(), requests, "{status}");
    }
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
    assert_eq!(
        emu.requests_for(Family::Llm).len(),
        1,
        "words were delivered: a retry would say them twice"
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

/// The fixture sentence as 20 ms mu-law frames (the partial last frame dropped).
fn sentence_frames() -> Vec<MulawFrame> {
    let ulaw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/actors/tests/fixtures/sentence.ulaw"
    ))
    .unwrap();
    ulaw.chunks_exact(FRAME_SAMPLES)
        .map(|chunk| chunk.try_into().unwrap())
        .collect()
}

fn say(session: &mut SttSession, frames: &[MulawFrame]) {
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
    let mut session = stt.open(&call_info(), &SttOptions::new("en-US", SttMode::Utterance));
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
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Utterance));
    // Failing every attempt of the first utterance, retries included.
    emu.set_fault(Family::Stt, Some(Fault::status(500).times(ATTEMPTS as u32)));
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
    assert_eq!(emu.requests_for(Family::Stt).len(), ATTEMPTS + 1);

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
async fn a_transcription_that_fails_once_is_retried_and_heard() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Utterance));
    emu.set_fault(Family::Stt, Some(Fault::status(503).times(1)));
    say(&mut session, &sentence_frames());
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final("I'd like to book a table".into())
    );
    let recorded = emu.requests_for(Family::Stt);
    assert_eq!(recorded.len(), 2);
    assert_eq!(recorded[0].body, recorded[1].body, "the same audio again");
}

#[tokio::test]
async fn a_refused_transcription_is_not_retried() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Utterance));
    emu.set_fault(Family::Stt, Some(Fault::status(400)));
    say(&mut session, &sentence_frames());
    assert_eq!(
        next_event(&mut session).await,
        SttEvent::Final(String::new()),
        "a 400 loses the utterance, not the session"
    );
    assert_eq!(emu.requests_for(Family::Stt).len(), 1);
}

#[tokio::test]
async fn an_utterance_too_short_to_transcribe_is_empty_without_a_request() {
    let emu = start(script()).await;
    let stt = OpenAiStt::new(client(&emu));
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Utterance));
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
    let mut session = stt.open(&call_info(), &SttOptions::new("en", SttMode::Utterance));
    emu.set_fault(Family::Stt, Some(Fault::status(401)));
    say(&mut session, &sentence_frames());
    match next_event(&mut session).await {
        SttEvent::Failed(PortError::Refused(message)) => assert!(!message.contains(KEY)),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        emu.requests_for(Family::Stt).len(),
        1,
        "a 401 is not retried"
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(10), session.events.recv())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn embeddings_that_fail_once_are_retried() {
    let emu = start(script()).await;
    let embedder = OpenAiEmbedder::new(client(&emu));
    let texts = vec!["opening hours".to_owned(), "parking".to_owned()];
    let expected = embedder.embed(texts.clone()).await.unwrap();
    emu.clear_requests();

    emu.set_fault(Family::Embeddings, Some(Fault::status(503).times(1)));
    assert_eq!(embedder.embed(texts).await.unwrap(), expected);
    assert_eq!(emu.requests_for(Family::Embeddings).len(), 2);
}

#[tokio::test]
async fn refused_embeddings_are_not_retried() {
    let emu = start(script()).await;
    let embedder = OpenAiEmbedder::new(client(&emu));
    for (status, requests) in [(400, 1), (401, 2), (404, 3)] {
        emu.set_fault(Family::Embeddings, Some(Fault::status(status)));
        let refused = embedder.embed(vec!["x".into()]).await;
        assert!(matches!(refused, Err(PortError::Refused(_))), "{status}");
        assert_eq!(
            emu.requests_for(Family::Embeddings).len(),
            requests,
            "{status}"
        );
    }
}

// ---------------------------------------------------------------- retries and the timeout

/// Generous slack on "ends within the timeout": scheduling on a busy machine, never the
/// retry policy, is what it absorbs.
const SLACK: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_lasting_server_error_is_retried_only_within_the_timeout() {
    let emu = start(script()).await;
    let timeout = Duration::from_secs(1);
    let client = client_with_timeout(&emu.openai_base_url(), timeout);
    emu.set_fault(Family::Embeddings, Some(Fault::status(503)));
    emu.set_fault(Family::Llm, Some(Fault::status(503)));

    let started = Instant::now();
    let failed = OpenAiEmbedder::new(client.clone())
        .embed(vec!["x".into()])
        .await;
    assert!(
        matches!(failed, Err(PortError::Unavailable(_))),
        "{failed:?}"
    );
    assert!(started.elapsed() < timeout + SLACK);
    let attempts = emu.requests_for(Family::Embeddings).len();
    assert!((2..=ATTEMPTS).contains(&attempts), "{attempts}");

    let started = Instant::now();
    let failed = OpenAiLlm::new(client)
        .stream(request(vec![ChatMessage::User("hours?".into())]))
        .await;
    assert!(matches!(failed, Err(PortError::Unavailable(_))));
    assert!(started.elapsed() < timeout + SLACK);
    let attempts = emu.requests_for(Family::Llm).len();
    assert!((2..=ATTEMPTS).contains(&attempts), "{attempts}");
}

#[tokio::test]
async fn a_stalled_request_spends_the_timeout_once_and_is_not_repeated() {
    let emu = start(script()).await;
    let timeout = Duration::from_millis(500);
    let client = client_with_timeout(&emu.openai_base_url(), timeout);
    emu.set_fault(Family::Embeddings, Some(Fault::stall()));
    let started = Instant::now();
    let failed = OpenAiEmbedder::new(client).embed(vec!["x".into()]).await;
    assert_eq!(failed, Err(PortError::TimedOut(timeout)));
    assert!(started.elapsed() < timeout + SLACK);
    assert_eq!(emu.requests_for(Family::Embeddings).len(), 1);
}

/// A stand-in for OpenAI's embeddings endpoint (the emulator sends no `Retry-After`): its
/// first `limited` requests are answered 429 with this `Retry-After`, later ones with a
/// vector. Returns its base URL and the count of requests it received.
async fn rate_limited_embeddings(
    retry_after: &'static str,
    limited: usize,
) -> (String, Arc<AtomicUsize>) {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::Json;

    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/v1/embeddings",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < limited {
                    let error = json!({"error": {"message": "Rate limit reached for requests.",
                                                 "type": "requests", "code": "rate_limit_exceeded"}});
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", retry_after)],
                        Json(error),
                    )
                        .into_response()
                } else {
                    Json(json!({"object": "list", "data": [
                        {"object": "embedding", "index": 0, "embedding": [0.6, 0.8]}
                    ]}))
                    .into_response()
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/v1"), received)
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_wait_it_asks_for() {
    let (base_url, received) = rate_limited_embeddings("1", 1).await;
    let embedder = OpenAiEmbedder::new(client_with_timeout(&base_url, Duration::from_secs(5)));
    let started = Instant::now();
    let vectors = embedder.embed(vec!["x".into()]).await.unwrap();
    assert_eq!(vectors, vec![vec![0.6, 0.8]]);
    assert_eq!(received.load(Ordering::SeqCst), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was honoured"
    );
}

#[tokio::test]
async fn a_rate_limit_asking_for_more_than_the_timeout_leaves_is_not_waited_for() {
    let (base_url, received) = rate_limited_embeddings("60", usize::MAX).await;
    let embedder = OpenAiEmbedder::new(client_with_timeout(&base_url, Duration::from_secs(2)));
    match embedder.embed(vec!["x".into()]).await {
        Err(PortError::Unavailable(message)) => assert!(message.contains("429"), "{message}"),
        other => panic!("expected the 429 at once, got {other:?}"),
    }
    assert_eq!(received.load(Ordering::SeqCst), 1);
}
