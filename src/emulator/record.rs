//! What the emulator remembers of each request, so a test can assert on what the runtime
//! sent its providers (the prompt the LLM was given, the text spoken, the audio's size) —
//! and what it never keeps: credentials. Of `Authorization` and `xi-api-key` only their
//! presence is stored, the same for key-like query parameters and WebSocket message fields.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde::Serialize;
use serde_json::Value;

use super::script::Family;

/// One request the emulator received.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordedRequest {
    /// Arrival order, from 1.
    pub seq: u64,
    /// Which provider family the path belongs to; `None` for unknown paths (answered 404),
    /// which usually means an adapter built a wrong URL.
    pub family: Option<Family>,
    /// The HTTP method (`GET` for a WebSocket handshake).
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query parameters, key-like ones redacted.
    pub query: BTreeMap<String, String>,
    /// The headers worth asserting on (content type, user agent, OpenAI organisation and
    /// project, …), never credentials. Names are lower case.
    pub headers: BTreeMap<String, String>,
    /// Whether an `Authorization` header was sent (its value is not kept).
    pub authorization: bool,
    /// Whether an ElevenLabs key was sent, as the `xi-api-key` header or in the first
    /// WebSocket message (its value is not kept).
    pub xi_api_key: bool,
    /// The body: parsed JSON for JSON bodies; for multipart, an object of the text fields
    /// with `file` described as `{"filename", "content_type", "bytes"}` (the audio itself is
    /// not kept); a string for other text; `null` when empty.
    pub body: Value,
    /// For a WebSocket: the client's text messages in order, JSON parsed where JSON, with
    /// key fields redacted and Realtime audio reduced to its size (`"audio": {"bytes": n}`).
    /// Empty for plain HTTP.
    pub messages: Vec<Value>,
    /// For a WebSocket: the session is over (closed by either side, or dropped), so a test
    /// can see that a client let go of its connection. Always false for plain HTTP.
    pub ended: bool,
}

/// Headers recorded verbatim. An allow-list rather than a deny-list, so a credential in a
/// header nobody thought of is never stored.
const RECORDED_HEADERS: &[&str] = &[
    "accept",
    "content-type",
    "content-length",
    "user-agent",
    "openai-beta",
    "openai-organization",
    "openai-project",
    "x-request-id",
    "idempotency-key",
];

/// Field and parameter names whose values are credentials.
const SECRET_NAMES: &[&str] = &[
    "authorization",
    "xi-api-key",
    "xi_api_key",
    "api-key",
    "api_key",
    "apikey",
    "token",
    "access_token",
];

/// What replaces a secret value, keeping the field visible.
pub const REDACTED: &str = "[redacted]";

/// Whether a field or parameter name carries a credential.
pub fn is_secret_name(name: &str) -> bool {
    SECRET_NAMES.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// The recordable headers, and whether `Authorization` and `xi-api-key` were present.
pub fn headers_of_interest(headers: &HeaderMap) -> (BTreeMap<String, String>, bool, bool) {
    let kept = RECORDED_HEADERS
        .iter()
        .filter_map(|name| {
            let value = headers.get(*name)?.to_str().ok()?;
            Some(((*name).to_owned(), value.to_owned()))
        })
        .collect();
    let present = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| !v.trim().is_empty())
    };
    (kept, present("authorization"), present("xi-api-key"))
}

/// The query with credential-like parameters replaced by [`REDACTED`].
pub fn redact_query(mut query: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (name, value) in query.iter_mut() {
        if is_secret_name(name) {
            *value = REDACTED.to_owned();
        }
    }
    query
}

/// A WebSocket message with credential-like top-level fields replaced by [`REDACTED`];
/// returns whether any was present.
pub fn redact_message(message: &mut Value) -> bool {
    let mut found = false;
    if let Value::Object(fields) = message {
        for (name, value) in fields.iter_mut() {
            if is_secret_name(name) && !value.is_null() {
                *value = Value::String(REDACTED.to_owned());
                found = true;
            }
        }
    }
    found
}

/// A body as recorded: JSON when it parses, else text, else a size.
pub fn body_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    if let Ok(v) = serde_json::from_slice(bytes) {
        return v;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "binary_bytes": bytes.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_are_reduced_to_presence() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer sk-secret".parse().unwrap());
        headers.insert("content-type", "application/json".parse().unwrap());
        headers.insert("x-api-key", "also-secret".parse().unwrap());
        let (kept, auth, xi) = headers_of_interest(&headers);
        assert!(auth && !xi);
        assert_eq!(kept.len(), 1);
        assert!(!format!("{kept:?}").contains("secret"));
    }

    #[test]
    fn secret_fields_in_messages_and_queries_are_redacted() {
        let mut m = json!({"text": " ", "xi-api-key": "k", "xi_api_key": "k2"});
        assert!(redact_message(&mut m));
        assert_eq!(
            m,
            json!({"text": " ", "xi-api-key": REDACTED, "xi_api_key": REDACTED})
        );
        let q = redact_query(BTreeMap::from([
            ("model_id".to_owned(), "m".to_owned()),
            ("xi-api-key".to_owned(), "k".to_owned()),
        ]));
        assert_eq!(q["xi-api-key"], REDACTED);
        assert_eq!(q["model_id"], "m");
    }
}
