//! The provider emulator over real loopback sockets: each OpenAI and ElevenLabs endpoint in
//! its wire format, the injected faults as a client sees them, and what it records.

use std::time::{Duration, Instant};

use actors::audio::mulaw;
use base64::Engine;
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::emulator::{
    audio::SAMPLES_PER_CHAR, Emulator, EmulatorHandle, EmulatorScript, Family, Fault, FaultKind,
    Latencies,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const OPENAI_KEY: &str = "sk-test-never-recorded";
const XI_KEY: &str = "xi-test-never-recorded";

async fn start(script_json: Value) -> EmulatorHandle {
    let mut script = EmulatorScript::from_json(&script_json.to_string()).expect("a valid script");
    if script_json.get("latency").is_none() {
        script.latency = Latencies::none();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Emulator::start(listener, script)
}

fn booking_script() -> Value {
    json!({
        "transcripts": {
            "lines": ["I'd like to book a table", "At three please"],
            "by_prompt": {"caller-b": ["This is caller B"]},
            "fallback": "Goodbye"
        },
        "replies": {
            "rules": [
                {"user_contains": "book", "tool_calls": [
                    {"name": "book_slot", "arguments": {"time": "15:00", "party": 2, "note": "window seat, if possible"}}
                ]},
                {"after_tool": "book_slot", "text": "Done: {tool_result}"},
                {"user_contains": "hours", "text": "We are open from nine to five, Monday to Friday."}
            ],
            "default": "Sorry, could you say that again?"
        }
    })
}

fn chat_body(user: &str, stream: bool, include_usage: bool) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "stream_options": {"include_usage": include_usage},
        "messages": [
            {"role": "system", "content": "You are a phone agent."},
            {"role": "user", "content": user}
        ],
        "tools": [{"type": "function", "function": {
            "name": "book_slot", "description": "Book an appointment",
            "parameters": {"type": "object", "properties": {"time": {"type": "string"}}}
        }}],
        "tool_choice": "auto"
    })
}

async fn post_chat(emu: &EmulatorHandle, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/chat/completions", emu.openai_base_url()))
        .bearer_auth(OPENAI_KEY)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of an SSE body, checking every event is `data: …` and a blank line.
fn sse_events(body: &str) -> Vec<String> {
    assert!(body.ends_with("\n\n"), "{body:?}");
    body.trim_end_matches("\n\n")
        .split("\n\n")
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data line: {event:?}"))
                .to_owned()
        })
        .collect()
}

fn parse_chunks(events: &[String]) -> Vec<Value> {
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect()
}

#[tokio::test]
async fn a_streamed_chat_sends_the_scripted_text_word_by_word() {
    let emu = start(booking_script()).await;
    let res = post_chat(&emu, &chat_body("What are your hours?", true, false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let chunks = parse_chunks(&sse_events(&res.text().await.unwrap()));
    let id = chunks[0]["id"].as_str().unwrap();
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o-mini");
        assert!(c["created"].is_u64());
        assert!(c.get("usage").is_none(), "usage only when asked: {c}");
        assert_eq!(c["choices"][0]["index"], 0);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let pieces: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(
        pieces.concat(),
        "We are open from nine to five, Monday to Friday."
    );
    assert_eq!(pieces.len(), 10, "one piece a word: {pieces:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[tokio::test]
async fn a_streamed_tool_call_reassembles_to_valid_arguments_and_its_result_is_answered() {
    let emu = start(booking_script()).await;
    let res = post_chat(&emu, &chat_body("Can I book for tonight?", true, false)).await;
    let text = res.text().await.unwrap();
    let chunks = parse_chunks(&sse_events(&text));
    // The opening fragment, exactly as PROTOCOLS.md §6.2 shows it.
    let first = &chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant");
    assert!(first["content"].is_null() && first.get("content").is_some());
    let opening = &first["tool_calls"][0];
    assert_eq!(opening["index"], 0);
    assert_eq!(opening["type"], "function");
    assert_eq!(opening["function"]["name"], "book_slot");
    assert_eq!(opening["function"]["arguments"], "");
    let call_id = opening["id"].as_str().unwrap().to_owned();
    assert!(text.contains(
        r#""choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":""#
    ));
    // Later fragments carry only index and argument pieces.
    let mut arguments = String::new();
    let mut fragments = 0;
    for c in &chunks[1..chunks.len() - 1] {
        let call = &c["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["index"], 0);
        assert!(call.get("id").is_none() && call.get("type").is_none());
        assert!(call["function"].get("name").is_none());
        arguments.push_str(call["function"]["arguments"].as_str().unwrap());
        fragments += 1;
    }
    assert!(fragments > 3, "arguments arrive in pieces ({fragments})");
    let arguments: Value = serde_json::from_str(&arguments).expect("valid JSON arguments");
    assert_eq!(
        arguments,
        json!({"time": "15:00", "party": 2, "note": "window seat, if possible"})
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // The runtime appends the call and its result and asks again.
    let mut next = chat_body("Can I book for tonight?", true, false);
    let messages = next["messages"].as_array_mut().unwrap();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": call_id, "type": "function",
         "function": {"name": "book_slot", "arguments": arguments.to_string()}}]}));
    messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": "{\"ok\":true}"}));
    let res = post_chat(&emu, &next).await;
    let chunks = parse_chunks(&sse_events(&res.text().await.unwrap()));
    let reply: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(reply, "Done: {\"ok\":true}");
}

#[tokio::test]
async fn the_usage_chunk_comes_last_with_empty_choices_when_asked_for() {
    let emu = start(booking_script()).await;
    let res = post_chat(&emu, &chat_body("What are your hours?", true, true)).await;
    let chunks = parse_chunks(&sse_events(&res.text().await.unwrap()));
    let (usage_chunk, rest) = chunks.split_last().unwrap();
    assert!(rest
        .iter()
        .all(|c| c["usage"].is_null() && c.get("usage").is_some()));
    assert_eq!(usage_chunk["choices"], json!([]));
    let usage = &usage_chunk["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap();
    let completion = usage["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    assert_eq!(usage["total_tokens"].as_u64().unwrap(), prompt + completion);
}

#[tokio::test]
async fn a_chat_without_stream_gets_one_completion_object() {
    let emu = start(booking_script()).await;
    let res = post_chat(&emu, &chat_body("please book it", false, false)).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert!(choice["message"]["content"].is_null());
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "book_slot");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["time"], "15:00");
    assert!(body["usage"]["total_tokens"].as_u64().unwrap() > 0);
}

/// A 16-bit PCM mono 8 kHz WAV: the 44-byte header of PROTOCOLS.md §6.1 and a 300 Hz tone.
fn wav(ms: usize) -> Vec<u8> {
    let samples: Vec<i16> = (0..8 * ms)
        .map(|i| ((i as f32 * 300.0 / 8000.0 * std::f32::consts::TAU).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    assert_eq!(w.len(), 44 + data_len as usize);
    w
}

/// A multipart/form-data body by hand (the workspace's reqwest has no multipart feature).
fn multipart(fields: &[(&str, &str)], file: &[u8], filename: &str) -> (String, Vec<u8>) {
    let boundary = "emulator-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn transcribe(
    emu: &EmulatorHandle,
    fields: &[(&str, &str)],
    file: &[u8],
) -> reqwest::Response {
    let (content_type, body) = multipart(fields, file, "utterance.wav");
    reqwest::Client::new()
        .post(format!("{}/audio/transcriptions", emu.openai_base_url()))
        .bearer_auth(OPENAI_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_real_wav_is_transcribed_as_the_scripted_lines_in_order() {
    let emu = start(booking_script()).await;
    let audio = wav(800);
    let mut heard = Vec::new();
    for _ in 0..3 {
        let res = transcribe(&emu, &[("model", "whisper-1"), ("language", "en")], &audio).await;
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        heard.push(body["text"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        heard,
        ["I'd like to book a table", "At three please", "Goodbye"]
    );

    // A prompt containing a key reads that key's queue; `text` answers plain text.
    let res = transcribe(
        &emu,
        &[
            ("model", "gpt-4o-transcribe"),
            ("prompt", "call caller-b, vocabulary: Acme"),
            ("response_format", "text"),
        ],
        &audio,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(res.text().await.unwrap().trim_end(), "This is caller B");
}

#[tokio::test]
async fn a_file_that_is_not_a_wav_is_refused_with_an_openai_error() {
    let emu = start(booking_script()).await;
    let mp3ish = b"ID3\x04\x00\x00\x00\x00\x00\x00 definitely not a RIFF header".repeat(50);
    let res = transcribe(&emu, &[("model", "whisper-1")], &mp3ish).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Invalid file format."));
    assert_eq!(body["error"]["param"], "file");

    // Too short to be speech, as OpenAI says too.
    let res = transcribe(&emu, &[("model", "whisper-1")], &wav(40)).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audio_too_short");

    // Neither refusal used up a scripted line.
    let res = transcribe(&emu, &[("model", "whisper-1")], &wav(500)).await;
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["text"], "I'd like to book a table");
}

#[tokio::test]
async fn embeddings_honour_dimensions_for_a_list_or_a_single_input() {
    let emu = start(json!({})).await;
    let client = reqwest::Client::new();
    let url = format!("{}/embeddings", emu.openai_base_url());
    let body: Value = client
        .post(&url)
        .bearer_auth(OPENAI_KEY)
        .json(&json!({"model": "text-embedding-3-small",
                      "input": ["opening hours", "opening hours on Sunday", "refunds"],
                      "dimensions": 256}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "text-embedding-3-small");
    let vectors: Vec<Vec<f64>> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, d)| {
            assert_eq!(d["object"], "embedding");
            assert_eq!(d["index"], i);
            serde_json::from_value(d["embedding"].clone()).unwrap()
        })
        .collect();
    assert_eq!(vectors.len(), 3);
    assert!(vectors.iter().all(|v| v.len() == 256));
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    assert!((dot(&vectors[0], &vectors[0]) - 1.0).abs() < 1e-3);
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]));
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        body["usage"]["total_tokens"],
        body["usage"]["prompt_tokens"]
    );

    let single: Value = client
        .post(&url)
        .bearer_auth(OPENAI_KEY)
        .json(&json!({"model": "text-embedding-3-small", "input": "opening hours"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(single["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        single["data"][0]["embedding"].as_array().unwrap().len(),
        1536
    );

    let refused = client
        .post(&url)
        .bearer_auth(OPENAI_KEY)
        .json(&json!({"model": "text-embedding-ada-002", "input": "x", "dimensions": 8}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
}

async fn tts_http(emu: &EmulatorHandle, text: &str, format: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "{}/v1/text-to-speech/voice-1/stream?output_format={format}",
            emu.base_url()
        ))
        .header("xi-api-key", XI_KEY)
        .json(&json!({"text": text, "model_id": "eleven_flash_v2_5",
                      "voice_settings": {"stability": 0.5, "similarity_boost": 0.75, "speed": 1.0}}))
        .send()
        .await
        .unwrap()
}

/// Reads a streamed body chunk by chunk, returning the bytes and how many chunks came.
async fn read_chunks(mut res: reqwest::Response) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut count = 0;
    while let Some(chunk) = res.chunk().await.unwrap() {
        bytes.extend_from_slice(&chunk);
        count += 1;
    }
    (bytes, count)
}

fn dbfs(samples: &[i16]) -> f64 {
    let mean = samples.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / samples.len() as f64;
    20.0 * (mean.sqrt() / 32768.0).log10()
}

#[tokio::test]
async fn the_tts_stream_is_mu_law_whose_length_grows_with_the_text() {
    let emu = start(json!({})).await;
    let short = "Hi there.";
    let long = "Hi there, thanks for calling Acme. How can I help you today?";
    let res = tts_http(&emu, short, "ulaw_8000").await;
    assert_eq!(res.status(), StatusCode::OK);
    let (short_audio, _) = read_chunks(res).await;
    let (long_audio, chunk_count) = read_chunks(tts_http(&emu, long, "ulaw_8000").await).await;
    assert_eq!(short_audio.len(), short.len() * SAMPLES_PER_CHAR);
    assert_eq!(long_audio.len(), long.len() * SAMPLES_PER_CHAR);
    assert!(chunk_count > 1, "streamed in chunks");

    // Real μ-law speech: decoded with the runtime's codec it is loud where there are
    // letters and silent in the gaps.
    let pcm: Vec<i16> = long_audio.iter().map(|&b| mulaw::decode(b)).collect();
    let first_word = &pcm[..2 * SAMPLES_PER_CHAR]; // "Hi"
    let gap = &pcm[2 * SAMPLES_PER_CHAR..3 * SAMPLES_PER_CHAR]; // " "
    assert!(dbfs(first_word) > -30.0, "{} dBFS", dbfs(first_word));
    assert!(gap.iter().all(|&s| s.abs() <= 8));

    // pcm_8000 is the same speech as 16-bit little-endian samples.
    let (pcm_bytes, _) = read_chunks(tts_http(&emu, short, "pcm_8000").await).await;
    assert_eq!(pcm_bytes.len(), 2 * short.len() * SAMPLES_PER_CHAR);
    let samples: Vec<i16> = pcm_bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let reencoded: Vec<u8> = samples.iter().map(|&s| mulaw::encode(s)).collect();
    assert_eq!(reencoded, short_audio);
}

#[tokio::test]
async fn tts_without_a_key_or_in_an_unsupported_format_is_refused() {
    let emu = start(json!({})).await;
    let res = reqwest::Client::new()
        .post(format!(
            "{}/v1/text-to-speech/voice-1/stream?output_format=ulaw_8000",
            emu.base_url()
        ))
        .json(&json!({"text": "Hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["detail"]["status"], "invalid_api_key");

    let res = tts_http(&emu, "Hello", "mp3_44100_128").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: Value = res.json().await.unwrap();
    assert!(body["detail"]["message"]
        .as_str()
        .unwrap()
        .contains("ulaw_8000"));
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect_ws(emu: &EmulatorHandle, key: Option<&str>) -> Ws {
    let url = format!(
        "{}/v1/text-to-speech/voice-1/stream-input?model_id=eleven_flash_v2_5&output_format=ulaw_8000",
        emu.ws_base_url()
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("xi-api-key", key.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string())).await.unwrap();
}

/// Every server message until the socket closes: JSON texts, and the close code.
async fn drain(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut messages = Vec::new();
    let mut close = None;
    while let Some(message) = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the server answers")
    {
        match message {
            Ok(Message::Text(text)) => messages.push(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Message::Close(frame)) => close = frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (messages, close)
}

#[tokio::test]
async fn the_websocket_stream_input_protocol_round_trips() {
    let emu = start(json!({})).await;
    let mut ws = connect_ws(&emu, Some(XI_KEY)).await;
    send_json(
        &mut ws,
        json!({"text": " ",
        "voice_settings": {"stability": 0.5, "similarity_boost": 0.8, "speed": 1.0},
        "generation_config": {"chunk_length_schedule": [120, 160, 250, 290]}}),
    )
    .await;
    send_json(&mut ws, json!({"text": "Sure, I can help with that. "})).await;
    send_json(&mut ws, json!({"text": " ", "flush": true})).await;
    // The flush makes audio while the socket stays open.
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert!(first["audio"].is_string());
    assert!(first["isFinal"].is_null() && first.get("isFinal").is_some());
    send_json(&mut ws, json!({"text": "Goodbye. "})).await;
    send_json(&mut ws, json!({"text": ""})).await;
    let (rest, close) = drain(&mut ws).await;
    assert_eq!(close, Some(1000));
    let (last, audio_messages) = rest.split_last().unwrap();
    assert_eq!(last, &json!({"isFinal": true}));

    let mut audio = Vec::new();
    let mut spoken = String::new();
    for m in std::iter::once(&first).chain(audio_messages) {
        audio.extend(
            base64::engine::general_purpose::STANDARD
                .decode(m["audio"].as_str().unwrap())
                .unwrap(),
        );
        let chars = m["alignment"]["chars"].as_array().unwrap();
        let starts = m["alignment"]["charStartTimesMs"].as_array().unwrap();
        let durations = m["alignment"]["charDurationsMs"].as_array().unwrap();
        assert_eq!(chars.len(), starts.len());
        assert_eq!(chars.len(), durations.len());
        assert_eq!(starts[0], 0, "times are relative to each message");
        assert_eq!(m["normalizedAlignment"], m["alignment"]);
        spoken.extend(chars.iter().map(|c| c.as_str().unwrap()));
    }
    assert_eq!(spoken, "Sure, I can help with that.  Goodbye. ");
    assert_eq!(audio.len(), spoken.chars().count() * SAMPLES_PER_CHAR);
    let pcm: Vec<i16> = audio.iter().map(|&b| mulaw::decode(b)).collect();
    assert!(dbfs(&pcm) > -40.0);

    // The session is one recorded request holding every client message.
    let recorded = emu.requests_for(Family::Tts);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].method, "GET");
    assert_eq!(recorded[0].query["output_format"], "ulaw_8000");
    assert!(recorded[0].xi_api_key);
    assert_eq!(recorded[0].messages.len(), 5);
    assert_eq!(recorded[0].messages[4], json!({"text": ""}));
}

#[tokio::test]
async fn a_websocket_without_a_key_gets_an_error_message_and_a_policy_close() {
    let emu = start(json!({})).await;
    let mut ws = connect_ws(&emu, None).await;
    send_json(&mut ws, json!({"text": " "})).await;
    let (messages, close) = drain(&mut ws).await;
    assert!(messages[0]["message"].as_str().unwrap().contains("API key"));
    assert_eq!(close, Some(1008));

    // The key in the first message is accepted instead, and not recorded.
    let mut ws = connect_ws(&emu, None).await;
    send_json(&mut ws, json!({"text": " ", "xi_api_key": XI_KEY})).await;
    send_json(&mut ws, json!({"text": "Hi. "})).await;
    send_json(&mut ws, json!({"text": ""})).await;
    let (messages, close) = drain(&mut ws).await;
    assert_eq!(close, Some(1000));
    assert_eq!(messages.last().unwrap(), &json!({"isFinal": true}));
    let recorded = serde_json::to_string(&emu.requests()).unwrap();
    assert!(!recorded.contains(XI_KEY));
}

#[tokio::test]
async fn an_injected_5xx_answers_with_the_vendor_error_body_then_clears() {
    let emu = start(json!({
        "faults": {"llm": {"kind": "status", "status": 503, "times": 1}}
    }))
    .await;
    let res = post_chat(&emu, &chat_body("hours?", true, false)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert!(body["error"]["message"].is_string());
    // `times: 1`: the next turn works.
    let res = post_chat(&emu, &chat_body("hours?", true, false)).await;
    assert_eq!(res.status(), StatusCode::OK);

    // Set at run time on another family: ElevenLabs' shape.
    emu.set_fault(Family::Tts, Some(Fault::status(500)));
    let res = tts_http(&emu, "Hello", "ulaw_8000").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["detail"]["status"], "internal_server_error");
    emu.clear_faults();
    assert_eq!(
        tts_http(&emu, "Hello", "ulaw_8000").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_stall_is_seen_by_the_client_as_a_timeout_and_stop_ends_it() {
    let emu = start(json!({})).await;
    emu.set_fault(Family::Stt, Some(Fault::stall()));
    let (content_type, body) = multipart(&[("model", "whisper-1")], &wav(500), "a.wav");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let started = Instant::now();
    let error = client
        .post(format!("{}/audio/transcriptions", emu.openai_base_url()))
        .bearer_auth(OPENAI_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect_err("a stalled request never answers in time");
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A stall mid-stream: the TTS sends some audio, then nothing.
    emu.set_fault(
        Family::Tts,
        Some(Fault {
            kind: FaultKind::Stall {
                ms: 60_000,
                after_chunks: 2,
            },
            skip: 0,
            times: None,
        }),
    );
    let mut res = tts_http(
        &emu,
        "A long enough sentence to need several chunks.",
        "ulaw_8000",
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    // Two 100 ms chunks of μ-law arrive, then nothing.
    let mut got = 0;
    while let Ok(chunk) = tokio::time::timeout(Duration::from_millis(300), res.chunk()).await {
        got += chunk.unwrap().expect("no clean end").len();
    }
    assert_eq!(got, 2 * 800);

    // On the WebSocket: the session opens, takes text, and no audio ever comes.
    emu.set_fault(Family::Tts, Some(Fault::stall()));
    let mut ws = connect_ws(&emu, Some(XI_KEY)).await;
    send_json(&mut ws, json!({"text": " "})).await;
    send_json(&mut ws, json!({"text": "Hello there. ", "flush": true})).await;
    let silence = tokio::time::timeout(Duration::from_millis(300), ws.next()).await;
    assert!(silence.is_err(), "no audio during a stall: {silence:?}");

    // Stopping the emulator does not wait out the 60 s stalls.
    let stopping = Instant::now();
    emu.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_cut_stream_loses_its_end() {
    let emu = start(json!({"faults": {"llm": {"kind": "cut", "after_chunks": 3}}})).await;
    let mut res = post_chat(&emu, &chat_body("What are your hours?", true, false)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = Vec::new();
    let outcome = loop {
        match res.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(outcome.is_err(), "the body ends in an error, not cleanly");
    let body = String::from_utf8(body).unwrap();
    assert_eq!(body.matches("data: ").count(), 3);
    assert!(!body.contains("[DONE]"));

    // On the WebSocket: audio stops and the connection drops without isFinal.
    emu.set_fault(Family::Tts, Some(Fault::cut_after(1)));
    let mut ws = connect_ws(&emu, Some(XI_KEY)).await;
    send_json(&mut ws, json!({"text": " "})).await;
    send_json(
        &mut ws,
        json!({"text": "Sure, I can help with that today. "}),
    )
    .await;
    send_json(&mut ws, json!({"text": ""})).await;
    let (messages, close) = drain(&mut ws).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0]["audio"].is_string());
    assert_eq!(close, None, "no closing handshake");
}

#[tokio::test]
async fn the_first_byte_waits_for_the_scripted_latency() {
    let emu = start(json!({"latency": {
        "llm": {"first_byte_ms": 200, "per_chunk_ms": 0},
        "stt": {"first_byte_ms": 0}, "tts": {"first_byte_ms": 0}, "embeddings": {"first_byte_ms": 0}
    }}))
    .await;
    let started = Instant::now();
    let res = post_chat(&emu, &chat_body("hours?", true, false)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_are_recorded_with_their_bodies_but_never_their_keys() {
    let emu = start(booking_script()).await;
    post_chat(&emu, &chat_body("What are your hours?", true, false)).await;
    transcribe(
        &emu,
        &[("model", "whisper-1"), ("prompt", "caller-b")],
        &wav(300),
    )
    .await;
    tts_http(&emu, "Hello", "ulaw_8000").await;
    let missing = reqwest::Client::new()
        .post(format!("{}/v1/chat/completion", emu.base_url()))
        .bearer_auth(OPENAI_KEY)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let all = emu.requests();
    assert_eq!(all.len(), 4);
    assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let llm = &all[0];
    assert_eq!(llm.family, Some(Family::Llm));
    assert_eq!(llm.path, "/v1/chat/completions");
    assert!(llm.authorization && !llm.xi_api_key);
    assert_eq!(llm.headers["content-type"], "application/json");
    assert_eq!(llm.body["messages"][1]["content"], "What are your hours?");
    let stt = &all[1];
    assert_eq!(stt.body["model"], "whisper-1");
    assert_eq!(stt.body["prompt"], "caller-b");
    assert_eq!(stt.body["file"]["filename"], "utterance.wav");
    assert_eq!(stt.body["file"]["bytes"], 44 + 300 * 16);
    let tts = &all[2];
    assert!(tts.xi_api_key && !tts.authorization);
    assert_eq!(tts.body["text"], "Hello");
    assert_eq!(all[3].family, None);
    assert_eq!(all[3].path, "/v1/chat/completion");

    let everything = serde_json::to_string(&all).unwrap();
    assert!(!everything.contains(OPENAI_KEY));
    assert!(!everything.contains(XI_KEY));
    assert!(!format!("{all:?}").contains(OPENAI_KEY));

    emu.clear_requests();
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn openai_requests_without_a_key_are_refused_unless_the_script_allows_it() {
    let emu = start(json!({})).await;
    let res = reqwest::Client::new()
        .post(format!("{}/chat/completions", emu.openai_base_url()))
        .json(&chat_body("hi", false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let open = start(json!({"require_keys": false})).await;
    let res = reqwest::Client::new()
        .post(format!("{}/chat/completions", open.openai_base_url()))
        .json(&chat_body("hi", false, false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_script_file_is_loaded_and_checked() {
    let dir = std::env::temp_dir().join(format!("emulator-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.json");
    std::fs::write(&good, booking_script().to_string()).unwrap();
    let script = EmulatorScript::from_file(&good).unwrap();
    assert_eq!(script.replies.rules.len(), 3);
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"faults": {"tts": {"kind": "status", "status": 302}}}"#,
    )
    .unwrap();
    assert!(EmulatorScript::from_file(&bad).is_err());
    assert!(EmulatorScript::from_file(dir.join("missing.json")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_client_may_close_the_websocket_mid_stream_as_on_barge_in() {
    let emu = start(json!({"latency": {"tts": {"first_byte_ms": 0, "per_chunk_ms": 50}}})).await;
    let mut ws = connect_ws(&emu, Some(XI_KEY)).await;
    send_json(&mut ws, json!({"text": " "})).await;
    send_json(
        &mut ws,
        json!({"text": "A long answer the caller is about to interrupt. ", "flush": true}),
    )
    .await;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    assert!(matches!(first, Ok(Some(Ok(Message::Text(_))))));
    ws.close(None).await.unwrap();
    let started = Instant::now();
    let (_, _) = drain(&mut ws).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the server lets go at once"
    );
}

/// Opens a Realtime transcription session the way OpenAI clients do.
async fn connect_realtime(emu: &EmulatorHandle) -> Ws {
    let url = format!(
        "{}/realtime?intent=transcription",
        emu.openai_base_url().replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {OPENAI_KEY}").parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws
}

/// Server events until one of type `until` (included).
async fn events_until(ws: &mut Ws, until: &str) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server answers")
            .expect("the session is open")
            .unwrap();
        if let Message::Text(text) = message {
            let event: Value = serde_json::from_str(text.as_str()).unwrap();
            let done = event["type"] == until;
            events.push(event);
            if done {
                return events;
            }
        }
    }
}

fn append(ulaw_bytes: usize) -> Value {
    json!({"type": "input_audio_buffer.append",
           "audio": base64::engine::general_purpose::STANDARD.encode(vec![0xFFu8; ulaw_bytes])})
}

#[tokio::test]
async fn a_realtime_transcription_session_answers_each_commit_word_by_word() {
    let emu = start(booking_script()).await;
    let mut ws = connect_realtime(&emu).await;
    let created = events_until(&mut ws, "session.created").await;
    assert_eq!(created[0]["session"]["type"], "transcription");
    send_json(
        &mut ws,
        json!({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcmu"},
            "transcription": {"model": "gpt-4o-transcribe", "prompt": "caller-b"},
            "turn_detection": null}}}}),
    )
    .await;
    let updated = events_until(&mut ws, "session.updated").await;
    assert_eq!(
        updated[0]["session"]["audio"]["input"]["format"]["type"],
        "audio/pcmu"
    );

    // 50 ms is too little to commit: the error names the client event.
    send_json(&mut ws, append(400)).await;
    send_json(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "event_id": "c1"}),
    )
    .await;
    let error = events_until(&mut ws, "error").await;
    assert_eq!(error[0]["error"]["code"], "input_audio_buffer_commit_empty");
    assert_eq!(error[0]["error"]["event_id"], "c1");

    send_json(&mut ws, append(1200)).await;
    send_json(&mut ws, json!({"type": "input_audio_buffer.commit"})).await;
    let events = events_until(
        &mut ws,
        "conversation.item.input_audio_transcription.completed",
    )
    .await;
    let item = events[0]["item_id"].as_str().unwrap().to_owned();
    assert_eq!(events[0]["type"], "input_audio_buffer.committed");
    let deltas: Vec<&str> = events[1..events.len() - 1]
        .iter()
        .map(|e| {
            assert_eq!(
                e["type"],
                "conversation.item.input_audio_transcription.delta"
            );
            assert_eq!(e["item_id"], item.as_str());
            e["delta"].as_str().unwrap()
        })
        .collect();
    assert_eq!(deltas, ["This", " is", " caller", " B"]);
    let completed = events.last().unwrap();
    assert_eq!(completed["transcript"], "This is caller B");
    assert_eq!(completed["item_id"], item.as_str());
    assert_eq!(completed["usage"]["type"], "tokens");
    assert!(events.iter().all(|e| e["event_id"].is_string()));

    ws.close(None).await.unwrap();
    let _ = drain(&mut ws).await;
    let record = emu.requests_for(Family::Stt).remove(0);
    assert_eq!(record.path, "/v1/realtime");
    assert!(record.authorization);
    assert_eq!(record.messages[1]["audio"], json!({"bytes": 400}));
    for _ in 0..100 {
        if emu.requests_for(Family::Stt)[0].ended {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session's end was never recorded");
}

#[tokio::test]
async fn a_realtime_session_needs_a_key_and_takes_status_faults_at_the_handshake() {
    let emu = start(json!({})).await;
    let url = format!(
        "{}/realtime?intent=transcription",
        emu.openai_base_url().replacen("http://", "ws://", 1)
    );
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 401)
        }
        other => panic!("expected a refused handshake, got {:?}", other.map(|_| ())),
    }
    emu.set_fault(Family::Stt, Some(Fault::status(503).times(1)));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {OPENAI_KEY}").parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["type"], "server_error");
        }
        other => panic!("expected a refused handshake, got {:?}", other.map(|_| ())),
    }
    let mut ws = connect_realtime(&emu).await;
    assert_eq!(
        events_until(&mut ws, "session.created").await.len(),
        1,
        "the fault hit once"
    );
}

#[tokio::test]
async fn a_fault_set_for_one_model_spares_the_others() {
    let emu = start(booking_script()).await;
    emu.set_model_fault("gpt-4o-mini", Some(Fault::status(503)));
    let res = post_chat(&emu, &chat_body("hours?", false, false)).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut other = chat_body("hours?", false, false);
    other["model"] = json!("gpt-4.1-mini");
    let res = post_chat(&emu, &other).await;
    assert_eq!(res.status(), StatusCode::OK);
    emu.set_model_fault("gpt-4o-mini", None);
    let res = post_chat(&emu, &chat_body("hours?", false, false)).await;
    assert_eq!(res.status(), StatusCode::OK);
}
