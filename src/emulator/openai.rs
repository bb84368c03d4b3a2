//! The OpenAI side of the emulator (`PROTOCOLS.md` §6.1–6.3): transcriptions, chat
//! completions (streamed as SSE exactly as §6.2 shows, or whole) and embeddings, with
//! OpenAI-shaped error bodies, which the Realtime transcription session
//! ([`super::openai_realtime`]) shares.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::audio::parse_wav;
use super::pacing::{self, halves, Delivery};
use super::record::body_value;
use super::script::{ConversationView, Family};
use super::{Incoming, Shared};

/// The file formats OpenAI lists in its "invalid file format" error.
const SUPPORTED_FORMATS: &str =
    "['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm']";

/// Characters of a tool call's arguments per streamed fragment: small enough that every
/// realistic argument object arrives in several pieces, as from the real API.
const ARGUMENT_PIECE_CHARS: usize = 8;

/// `{"error":{"message","type","param","code"}}`, the shape of every OpenAI error.
pub(super) fn error_response(
    status: StatusCode,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    (status, axum::Json(body)).into_response()
}

pub(super) fn bad_request(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        message,
        "invalid_request_error",
        param,
        code,
    )
}

/// The error body OpenAI sends with an injected status.
pub(super) fn fault_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (message, kind, err_code) = match status {
        401 => (
            "Incorrect API key provided.",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
        429 => (
            "Rate limit reached for requests. Please try again later.",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        503 => (
            "The engine is currently overloaded, please try again later.",
            "server_error",
            None,
        ),
        504 => ("Request timed out.", "server_error", None),
        500..=599 => (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        ),
        _ => ("Invalid request.", "invalid_request_error", None),
    };
    error_response(code, message, kind, None, err_code)
}

/// OpenAI refuses a request without a key before looking at it: the refusal, if any.
pub(super) fn refuse_without_key(shared: &Shared, authorization: bool) -> Option<Response> {
    if shared.script.require_keys && !authorization {
        return Some(error_response(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            None,
        ));
    }
    None
}

/// A whole JSON answer, delivered intact or, under a cut or stall fault, broken halfway.
fn json_answer(body: &Value, delivery: Delivery) -> Response {
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    if !delivery.is_faulty() {
        return ([(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        delivery.body(halves(bytes)),
    )
        .into_response()
}

/// A rough token count (four characters a token), enough for usage fields to be plausible
/// and grow with the text.
pub(super) fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// ---------------------------------------------------------------- transcriptions (§6.1)

/// `POST /v1/audio/transcriptions`: multipart with `file` (a WAV, checked by its RIFF
/// header), `model`, and optional `language`, `prompt`, `response_format`. Answers the next
/// scripted line (see [`super::script::Transcripts`] for how `prompt` picks the queue) as
/// `{"text"}` or, for `response_format=text`, as a plain-text body.
pub(super) async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    let incoming = Incoming::new(request.method(), request.uri(), request.headers());
    let authorization = incoming.authorization;
    let mut fields = BTreeMap::<String, Value>::new();
    let mut file: Option<Bytes> = None;
    let parsed = read_form(request, &mut fields, &mut file).await;
    let recorded = Value::Object(fields.clone().into_iter().collect());
    shared.record(Some(Family::Stt), incoming, recorded);
    if let Some(refused) = refuse_without_key(&shared, authorization) {
        return refused;
    }
    if let Err(message) = parsed {
        return bad_request(&message, None, None);
    }
    let delivery = match shared.before_first_byte(Family::Stt, fault_response).await {
        Ok(delivery) => delivery,
        Err(answer) => return answer,
    };
    let text_field = |name: &str| fields.get(name).and_then(Value::as_str);
    if text_field("model").is_none_or(str::is_empty) {
        return bad_request("you must provide a model parameter", Some("model"), None);
    }
    let Some(file) = file else {
        return bad_request("Missing required parameter: 'file'.", Some("file"), None);
    };
    let wav = match parse_wav(&file) {
        Ok(wav) => wav,
        Err(_) => {
            return bad_request(
                &format!("Invalid file format. Supported formats: {SUPPORTED_FORMATS}"),
                Some("file"),
                Some("invalid_value"),
            )
        }
    };
    if wav.duration_ms() < 100 {
        return bad_request(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
            Some("audio_too_short"),
        );
    }
    let format = text_field("response_format").unwrap_or("json");
    if !matches!(format, "json" | "text") {
        return bad_request(
            &format!(
                "response_format '{format}' is not supported by the provider emulator \
                 (json and text are)"
            ),
            Some("response_format"),
            None,
        );
    }
    let text = shared.transcript(text_field("prompt"), !delivery.is_faulty());
    if format == "text" {
        let body = format!("{text}\n").into_bytes();
        let body = if delivery.is_faulty() {
            delivery.body(halves(body))
        } else {
            Body::from(body)
        };
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    }
    json_answer(&json!({ "text": text }), delivery)
}

/// Reads the multipart form into text fields and the file; the file is described in the
/// record by name, type and size, never kept whole.
async fn read_form(
    request: Request,
    fields: &mut BTreeMap<String, Value>,
    file: &mut Option<Bytes>,
) -> Result<(), String> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|e| format!("Invalid multipart/form-data request: {}", e.body_text()))?;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(format!(
                    "Invalid multipart/form-data body: {}",
                    e.body_text()
                ))
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let filename = field.file_name().map(str::to_owned);
            let content_type = field.content_type().map(str::to_owned);
            let bytes = field
                .bytes()
                .await
                .map_err(|e| format!("Reading the file part: {}", e.body_text()))?;
            fields.insert(
                name,
                json!({"filename": filename, "content_type": content_type, "bytes": bytes.len()}),
            );
            *file = Some(bytes);
        } else {
            let text = field
                .text()
                .await
                .map_err(|e| format!("Reading the {name} part: {}", e.body_text()))?;
            fields.insert(name, Value::String(text));
        }
    }
}

// ---------------------------------------------------------------- chat completions (§6.2)

/// One SSE chunk. A struct rather than `json!` so fields go out in the order the real API
/// and `PROTOCOLS.md` use (id, object, created, model, choices, usage).
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent unless `include_usage`; then `null` on every chunk but the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// What every chunk of one completion repeats.
struct Head<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

impl Head<'_> {
    /// One `data: {chunk}` event, blank line included.
    fn event(&self, choices: Vec<ChunkChoice<'_>>, usage: Option<Option<Usage>>) -> Bytes {
        let chunk = Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            choices,
            usage,
        };
        let json = serde_json::to_string(&chunk).expect("a chunk serializes");
        Bytes::from(format!("data: {json}\n\n"))
    }
}

fn choice<'a>(delta: Delta<'a>, finish_reason: Option<&'static str>) -> ChunkChoice<'a> {
    ChunkChoice {
        index: 0,
        delta,
        finish_reason,
    }
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// `Some(None)` is the explicit `"content":null` of a tool-call opening chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallChunk<'a>>>,
}

#[derive(Serialize)]
struct ToolCallChunk<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionChunk<'a>,
}

#[derive(Serialize)]
struct FunctionChunk<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

#[derive(Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// `POST /v1/chat/completions`: the scripted reply to the conversation, streamed word by
/// word (tool-call arguments in fragments) when `stream` is true, else one
/// `chat.completion` object.
pub(super) async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = Incoming::new(&method, &uri, &headers);
    let authorization = incoming.authorization;
    let seq = shared.record(Some(Family::Llm), incoming, body_value(&body));
    if let Some(refused) = refuse_without_key(&shared, authorization) {
        return refused;
    }
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means \
                 you aren't using your HTTP library correctly.)",
                None,
                None,
            )
        }
    };
    let Some(model) = request["model"].as_str().filter(|m| !m.is_empty()) else {
        return bad_request("you must provide a model parameter", Some("model"), None);
    };
    if request["messages"].as_array().is_none_or(Vec::is_empty) {
        return bad_request(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            None,
        );
    }
    // A fault set for this model (a primary that is down while its fallback answers) comes
    // before the family's.
    let fault = shared
        .model_fault(model)
        .or_else(|| shared.fault_for(Family::Llm));
    let delivery = match shared.deliver(Family::Llm, fault, fault_response).await {
        Ok(delivery) => delivery,
        Err(answer) => return answer,
    };
    let reply = shared
        .script
        .replies
        .choose(&ConversationView::from_request(&request));
    let id = format!("chatcmpl-emu{seq}");
    let created = unix_now();
    let text_pieces = split_words(&reply.text);
    let calls: Vec<(String, &str, Vec<&str>)> = reply
        .tool_calls
        .iter()
        .enumerate()
        .map(|(i, (name, args))| {
            let pieces = split_chars(args, ARGUMENT_PIECE_CHARS);
            (format!("call_emu{seq}_{i}"), name.as_str(), pieces)
        })
        .collect();
    let prompt_tokens = estimate_tokens(&request["messages"].to_string())
        + estimate_tokens(&request["tools"].to_string());
    let completion_tokens = text_pieces.len() as u64
        + calls
            .iter()
            .map(|(_, _, pieces)| 1 + pieces.len() as u64)
            .sum::<u64>();
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };

    if request["stream"].as_bool() != Some(true) {
        // The whole answer arrives when generation would have finished.
        let generation = Duration::from_millis(
            shared.script.latency.llm.per_chunk_ms * completion_tokens.saturating_sub(1),
        );
        pacing::pause(&shared.shutdown, generation).await;
        let tool_calls: Vec<Value> = calls
            .iter()
            .map(|(id, name, pieces)| {
                json!({"id": id, "type": "function",
                       "function": {"name": name, "arguments": pieces.concat()}})
            })
            .collect();
        let mut message = json!({
            "role": "assistant",
            "content": if reply.text.is_empty() { Value::Null } else { reply.text.clone().into() },
            "refusal": null,
        });
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
        }
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
            "usage": usage,
        });
        return json_answer(&body, delivery);
    }

    let include_usage = request["stream_options"]["include_usage"].as_bool() == Some(true);
    let usage_field = include_usage.then_some(None);
    let head = Head {
        id: &id,
        created,
        model,
    };
    let mut events = Vec::new();
    if !reply.text.is_empty() || calls.is_empty() {
        // Text: the role with empty content first, as the real API does, then the words.
        let opening = Delta {
            role: Some("assistant"),
            content: Some(Some("")),
            ..Delta::default()
        };
        events.push(head.event(vec![choice(opening, None)], usage_field));
        for piece in &text_pieces {
            let delta = Delta {
                content: Some(Some(piece)),
                ..Delta::default()
            };
            events.push(head.event(vec![choice(delta, None)], usage_field));
        }
    }
    for (index, (call_id, name, pieces)) in calls.iter().enumerate() {
        // The first fragment names the call; the role rides on it when no text came first
        // (PROTOCOLS.md §6.2's example, byte for byte).
        let opening_role = index == 0 && reply.text.is_empty();
        let first = Delta {
            role: opening_role.then_some("assistant"),
            content: opening_role.then_some(None),
            tool_calls: Some(vec![ToolCallChunk {
                index,
                id: Some(call_id.clone()),
                kind: Some("function"),
                function: FunctionChunk {
                    name: Some(name),
                    arguments: "",
                },
            }]),
        };
        events.push(head.event(vec![choice(first, None)], usage_field));
        for piece in pieces {
            let delta = Delta {
                tool_calls: Some(vec![ToolCallChunk {
                    index,
                    id: None,
                    kind: None,
                    function: FunctionChunk {
                        name: None,
                        arguments: piece,
                    },
                }]),
                ..Delta::default()
            };
            events.push(head.event(vec![choice(delta, None)], usage_field));
        }
    }
    // The finish chunk, the usage chunk and [DONE] go out together: they are the end of
    // one generation step, and a cut fault that spares everything else still loses them.
    let mut tail = head
        .event(vec![choice(Delta::default(), Some(finish))], usage_field)
        .to_vec();
    if include_usage {
        tail.extend_from_slice(&head.event(Vec::new(), Some(Some(usage))));
    }
    tail.extend_from_slice(b"data: [DONE]\n\n");
    events.push(Bytes::from(tail));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        delivery.body(events),
    )
        .into_response()
}

/// Splits text into word pieces that concatenate back to it exactly, each word carrying the
/// whitespace before it (`"Hi there"` → `["Hi", " there"]`), as tokens usually do.
pub(super) fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space && i > start {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// Splits text into pieces of at most `n` characters (never inside a character).
fn split_chars(text: &str, n: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in text.char_indices().enumerate() {
        if count > 0 && count % n == 0 {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

// ---------------------------------------------------------------- embeddings (§6.3)

/// `POST /v1/embeddings`: one deterministic unit vector per input, the sum of a
/// pseudo-random vector per lower-cased word, so texts sharing words are close (retrieval
/// tests rank sensibly) and the same text always gets the same vector. `dimensions` is
/// honoured (text-embedding-3 models only, as at OpenAI); `encoding_format` may be `float`
/// or `base64`.
pub(super) async fn embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let incoming = Incoming::new(&method, &uri, &headers);
    let authorization = incoming.authorization;
    shared.record(Some(Family::Embeddings), incoming, body_value(&body));
    if let Some(refused) = refuse_without_key(&shared, authorization) {
        return refused;
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad_request(
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    };
    let Some(model) = request["model"].as_str().filter(|m| !m.is_empty()) else {
        return bad_request("you must provide a model parameter", Some("model"), None);
    };
    let Some(inputs) = embedding_inputs(&request["input"]) else {
        return bad_request(
            "'$.input' is invalid. Please check the API reference: \
             https://platform.openai.com/docs/api-reference.",
            Some("input"),
            None,
        );
    };
    let native = if model.contains("3-large") {
        3072
    } else {
        1536
    };
    let dimensions = match &request["dimensions"] {
        Value::Null => native,
        v => match v.as_u64() {
            Some(_) if !model.starts_with("text-embedding-3") => {
                return bad_request(
                    "This model does not support specifying dimensions.",
                    Some("dimensions"),
                    None,
                )
            }
            Some(d) if (1..=native as u64).contains(&d) => d as usize,
            _ => {
                return bad_request(
                    &format!("dimensions must be between 1 and {native}"),
                    Some("dimensions"),
                    None,
                )
            }
        },
    };
    let base64 = match request["encoding_format"].as_str() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return bad_request(
                &format!("encoding_format '{other}' is invalid: use float or base64"),
                Some("encoding_format"),
                None,
            )
        }
    };
    let delivery = match shared
        .before_first_byte(Family::Embeddings, fault_response)
        .await
    {
        Ok(delivery) => delivery,
        Err(answer) => return answer,
    };
    let tokens: u64 = inputs.iter().map(|t| estimate_tokens(t)).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let body = json!({
        "object": "list", "model": model, "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_answer(&body, delivery)
}

/// The inputs as texts: a string, an array of strings, or token arrays (rendered as their
/// numbers). `None` for anything empty or of another shape, as OpenAI refuses those.
fn embedding_inputs(input: &Value) -> Option<Vec<String>> {
    let tokens = |v: &Value| -> Option<String> {
        let ids = v.as_array()?;
        let words: Option<Vec<String>> = ids
            .iter()
            .map(|t| t.as_u64().map(|t| format!("t{t}")))
            .collect();
        words.filter(|w| !w.is_empty()).map(|w| w.join(" "))
    };
    let texts = match input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_owned())
            .collect(),
        Value::Array(items) if items.iter().all(Value::is_number) => vec![tokens(input)?],
        Value::Array(items) => items.iter().map(tokens).collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    (!texts.is_empty() && texts.iter().all(|t| !t.is_empty())).then_some(texts)
}

/// The deterministic embedding of a text (see [`embeddings`]).
fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    let lower = text.to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        words.push(lower.as_str()); // punctuation only: still a stable vector
    }
    let mut vector = vec![0f32; dimensions];
    for word in words {
        let digest = Sha256::digest(word.as_bytes());
        let mut state = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
        for x in vector.iter_mut() {
            // splitmix64: fast, and good enough to spread a word over every dimension.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            *x += (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
        }
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|x| *x /= norm);
    }
    vector
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_pieces_rebuild_the_text() {
        for text in [
            "Hello there, friend.",
            "  lead and trail  ",
            "one",
            "",
            "a  b",
        ] {
            assert_eq!(split_words(text).concat(), text);
        }
        assert_eq!(split_words("Hi there"), ["Hi", " there"]);
    }

    #[test]
    fn argument_pieces_rebuild_the_text_without_splitting_characters() {
        let args = r#"{"city":"Zürich","n":12345678}"#;
        let pieces = split_chars(args, 8);
        assert!(pieces.len() > 2);
        assert_eq!(pieces.concat(), args);
    }

    #[test]
    fn embeddings_are_unit_length_deterministic_and_close_for_shared_words() {
        let a = embed("opening hours on Sunday", 256);
        let b = embed("What are your opening hours?", 256);
        let c = embed("refund my parking ticket", 256);
        assert_eq!(a, embed("opening hours on Sunday", 256));
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-4);
        assert!(
            dot(&a, &b) > dot(&a, &c) + 0.2,
            "{} vs {}",
            dot(&a, &b),
            dot(&a, &c)
        );
    }

    #[test]
    fn embedding_inputs_take_every_documented_shape_and_refuse_empties() {
        assert_eq!(embedding_inputs(&json!("a")), Some(vec!["a".into()]));
        assert_eq!(embedding_inputs(&json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(embedding_inputs(&json!([1, 2])), Some(vec!["t1 t2".into()]));
        assert_eq!(embedding_inputs(&json!([[1], [2, 3]])).unwrap().len(), 2);
        assert_eq!(embedding_inputs(&json!("")), None);
        assert_eq!(embedding_inputs(&json!([])), None);
        assert_eq!(embedding_inputs(&json!(["a", ""])), None);
        assert_eq!(embedding_inputs(&json!(7)), None);
    }
}
