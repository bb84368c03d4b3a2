//! The emulator's script: how slow each provider is, what the caller "says", what the "model"
//! answers and which faults to inject. It is plain data read from a JSON file (the workspace
//! has `serde_json` and no YAML parser), plus the pure matching logic that picks a reply for
//! a conversation, so that logic is unit-tested without a socket.
//!
//! Every section is optional; an empty object `{}` is a valid script that answers every
//! request with the defaults below.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One of the four kinds of provider call, each with its own latency and fault setting:
/// the runtime's own ports are split the same way, so a test can break exactly one stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// OpenAI `POST /v1/audio/transcriptions` and Realtime transcription sessions.
    Stt,
    /// OpenAI `POST /v1/chat/completions`.
    Llm,
    /// ElevenLabs text-to-speech, over HTTP streaming and the WebSocket stream-input API.
    Tts,
    /// OpenAI `POST /v1/embeddings`.
    Embeddings,
}

impl Family {
    /// Every family, for code that sets or clears all of them.
    pub const ALL: [Family; 4] = [Family::Stt, Family::Llm, Family::Tts, Family::Embeddings];
}

/// Why a script could not be used: the file is unreadable, is not the JSON this module
/// describes, or names values no provider would produce.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The script file could not be read.
    #[error("reading the emulator script {path}")]
    Io {
        /// The path that was asked for, so the message says which file.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a script: bad JSON, an unknown field (typos are errors, not ignored),
    /// or a value of the wrong type.
    #[error("parsing the emulator script")]
    Parse(#[from] serde_json::Error),
    /// The script parsed but says something impossible, e.g. a fault status of 200.
    #[error("invalid emulator script: {0}")]
    Invalid(String),
}

/// The whole script. `Default` is what the demo uses when given no file: realistic latencies,
/// no scripted transcripts, a polite default reply and no faults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorScript {
    /// How long each family takes to answer, so latency measurements mean something.
    pub latency: Latencies,
    /// What the speech-to-text endpoint returns, since it cannot understand audio.
    pub transcripts: Transcripts,
    /// What the chat-completions endpoint answers, chosen from the conversation it is sent.
    pub replies: Replies,
    /// Faults injected from the first request on; tests can change them at run time through
    /// the handle.
    pub faults: Faults,
    /// Whether requests without credentials are refused as the real services refuse them
    /// (OpenAI: `Authorization`, 401; ElevenLabs: `xi-api-key`, 401 or a WebSocket error).
    /// On by default so an adapter that forgets its key fails here, not in production.
    pub require_keys: bool,
}

impl Default for EmulatorScript {
    fn default() -> Self {
        Self {
            latency: Latencies::default(),
            transcripts: Transcripts::default(),
            replies: Replies::default(),
            faults: Faults::default(),
            require_keys: true,
        }
    }
}

impl EmulatorScript {
    /// Reads and validates a script file (JSON).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses and validates a script given as JSON text (embedded defaults, tests).
    pub fn from_json(text: &str) -> Result<Self, ScriptError> {
        let script: Self = serde_json::from_str(text)?;
        script.validate()?;
        Ok(script)
    }

    /// The default script with every latency at zero, for tests that measure nothing and
    /// should not wait.
    pub fn instant() -> Self {
        Self {
            latency: Latencies::none(),
            ..Self::default()
        }
    }

    /// Checks what serde cannot: fault statuses are errors, and every reply rule says
    /// something. `from_file` and `from_json` call it; call it yourself on a script built in
    /// code if it came from user input.
    pub fn validate(&self) -> Result<(), ScriptError> {
        for family in Family::ALL {
            if let Some(fault) = self.faults.get(family) {
                fault.validate(family)?;
            }
        }
        for (i, rule) in self.replies.rules.iter().enumerate() {
            if rule.text.is_none() && rule.tool_calls.is_empty() {
                return Err(ScriptError::Invalid(format!(
                    "replies.rules[{i}] has neither text nor tool_calls"
                )));
            }
            for call in &rule.tool_calls {
                let name_ok = !call.name.is_empty()
                    && call.name.len() <= 64
                    && call
                        .name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !name_ok {
                    return Err(ScriptError::Invalid(format!(
                        "replies.rules[{i}]: tool name {:?} is not a valid OpenAI function name \
                         (a-zA-Z0-9_-, at most 64 characters)",
                        call.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The latency of one family. `first_byte_ms` is the wait before anything at all is sent
/// (headers included), the time-to-first-token a client measures; `per_chunk_ms` is the gap
/// between later chunks of a streamed answer (tokens, audio chunks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Milliseconds before the first byte of the answer.
    pub first_byte_ms: u64,
    /// Milliseconds between streamed chunks after the first.
    pub per_chunk_ms: u64,
}

impl Latency {
    /// A latency from its two numbers.
    pub const fn new(first_byte_ms: u64, per_chunk_ms: u64) -> Self {
        Self {
            first_byte_ms,
            per_chunk_ms,
        }
    }
}

/// The latency of every family. A family left out of the script, or a field left out of a
/// family, keeps its default: STT 150 ms; LLM 250 ms to the first token then 20 ms a token;
/// TTS 120 ms to the first audio then 20 ms a chunk; embeddings 30 ms. These are in the range
/// the hosted services show from a nearby region, so the demo's latency table looks real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawLatencies")]
pub struct Latencies {
    /// Speech to text.
    pub stt: Latency,
    /// Chat completions.
    pub llm: Latency,
    /// Text to speech.
    pub tts: Latency,
    /// Embeddings.
    pub embeddings: Latency,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            stt: Latency::new(150, 0),
            llm: Latency::new(250, 20),
            tts: Latency::new(120, 20),
            embeddings: Latency::new(30, 0),
        }
    }
}

impl Latencies {
    /// Zero everywhere: tests that check content, not timing.
    pub const fn none() -> Self {
        Self {
            stt: Latency::new(0, 0),
            llm: Latency::new(0, 0),
            tts: Latency::new(0, 0),
            embeddings: Latency::new(0, 0),
        }
    }

    /// The latency of one family.
    pub fn get(&self, family: Family) -> Latency {
        match family {
            Family::Stt => self.stt,
            Family::Llm => self.llm,
            Family::Tts => self.tts,
            Family::Embeddings => self.embeddings,
        }
    }
}

/// The file form of [`Latencies`], where any number may be missing and falls back to that
/// family's own default (a plain `#[serde(default)]` would fall back to zero).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatencies {
    #[serde(default)]
    stt: RawLatency,
    #[serde(default)]
    llm: RawLatency,
    #[serde(default)]
    tts: RawLatency,
    #[serde(default)]
    embeddings: RawLatency,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    first_byte_ms: Option<u64>,
    per_chunk_ms: Option<u64>,
}

impl RawLatency {
    fn or(self, default: Latency) -> Latency {
        Latency {
            first_byte_ms: self.first_byte_ms.unwrap_or(default.first_byte_ms),
            per_chunk_ms: self.per_chunk_ms.unwrap_or(default.per_chunk_ms),
        }
    }
}

impl From<RawLatencies> for Latencies {
    fn from(raw: RawLatencies) -> Self {
        let d = Latencies::default();
        Self {
            stt: raw.stt.or(d.stt),
            llm: raw.llm.or(d.llm),
            tts: raw.tts.or(d.tts),
            embeddings: raw.embeddings.or(d.embeddings),
        }
    }
}

/// What the speech-to-text endpoint "hears". It cannot understand audio, so it returns
/// scripted lines in order.
///
/// Keying: the multipart `prompt` field (for a Realtime transcription session, the
/// session's `audio.input.transcription.prompt`) chooses the queue. When the prompt contains a key of
/// `by_prompt` (the longest such key wins), the next line of that key's queue is returned;
/// otherwise the next line of the shared `lines` queue, in arrival order across all callers.
/// A queue that has run out answers `fallback`. So a test with one caller just lists
/// `lines`; a test with concurrent callers has its STT adapter put a per-call marker in the
/// prompt (or a per-agent prompt) and keys the queues by it.
///
/// In a file it is either that object or, as a shorthand, a bare array meaning `lines`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawTranscripts")]
pub struct Transcripts {
    /// The shared queue, used when no `by_prompt` key matches.
    pub lines: Vec<String>,
    /// Queues chosen by a substring of the request's `prompt` field.
    pub by_prompt: BTreeMap<String, Vec<String>>,
    /// The answer once a queue is exhausted.
    pub fallback: String,
}

impl Default for Transcripts {
    fn default() -> Self {
        Self {
            lines: Vec::new(),
            by_prompt: BTreeMap::new(),
            fallback: DEFAULT_TRANSCRIPT.to_owned(),
        }
    }
}

const DEFAULT_TRANSCRIPT: &str = "Hello?";

impl Transcripts {
    /// The queue a request with this `prompt` reads from: `Some(key)` for a `by_prompt`
    /// queue, `None` for the shared `lines`.
    pub fn queue_for(&self, prompt: Option<&str>) -> Option<&str> {
        let prompt = prompt?;
        self.by_prompt
            .keys()
            .filter(|key| !key.is_empty() && prompt.contains(key.as_str()))
            .max_by_key(|key| key.len())
            .map(String::as_str)
    }

    /// Line `index` of a queue, or the fallback once the queue has run out.
    pub fn line(&self, queue: Option<&str>, index: usize) -> &str {
        let lines = match queue {
            Some(key) => self.by_prompt.get(key).map(Vec::as_slice).unwrap_or(&[]),
            None => &self.lines,
        };
        lines
            .get(index)
            .map(String::as_str)
            .unwrap_or(&self.fallback)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawTranscripts {
    Lines(Vec<String>),
    Full(FullTranscripts),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FullTranscripts {
    #[serde(default)]
    lines: Vec<String>,
    #[serde(default)]
    by_prompt: BTreeMap<String, Vec<String>>,
    fallback: Option<String>,
}

impl From<RawTranscripts> for Transcripts {
    fn from(raw: RawTranscripts) -> Self {
        match raw {
            RawTranscripts::Lines(lines) => Self {
                lines,
                ..Self::default()
            },
            RawTranscripts::Full(full) => Self {
                lines: full.lines,
                by_prompt: full.by_prompt,
                fallback: full
                    .fallback
                    .unwrap_or_else(|| DEFAULT_TRANSCRIPT.to_owned()),
            },
        }
    }
}

/// What the "model" answers. Rules are tried in order against the conversation in the
/// request and the first that matches answers; when none does, `default` answers a user
/// turn and `after_tool_default` answers a tool result.
///
/// Text may use two placeholders: `{user}` (the last user message) and `{tool_result}` (the
/// content of the last message when it is a `tool` result).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replies {
    /// The rules, first match wins.
    pub rules: Vec<ReplyRule>,
    /// The reply when no rule matches a user turn.
    pub default: String,
    /// The reply when no rule matches a tool result.
    pub after_tool_default: String,
}

impl Default for Replies {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default: "Thanks for calling. How can I help you today?".to_owned(),
            after_tool_default: "All done.".to_owned(),
        }
    }
}

/// One reply rule. All conditions given must hold; a rule with none matches every user turn.
///
/// - Without `after_tool`, the rule answers only a user turn (the last message is not a
///   `tool` result). With it, the rule answers only a tool result, from the tool it names
///   (`"*"` for any); `user_contains` then still looks at the last user message.
/// - A rule with `tool_calls` matches only when the request offers every tool it calls (in
///   `tools`, and `tool_choice` is not `"none"`), as a real model cannot call a tool it was
///   not given. An adapter that forgets to pass its tools therefore gets no tool call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplyRule {
    /// A case-insensitive substring of the last user message.
    pub user_contains: Option<String>,
    /// A case-insensitive substring of the system prompt(s), to script several agents.
    pub system_contains: Option<String>,
    /// Answer a tool result from this tool (`"*"`: any tool) instead of a user turn.
    pub after_tool: Option<String>,
    /// The text to stream, with placeholders.
    pub text: Option<String>,
    /// Tool calls to make, streamed after the text (parallel calls get indexes 0, 1, …).
    pub tool_calls: Vec<ScriptedToolCall>,
}

/// A tool call a rule makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedToolCall {
    /// The function name; must be one of the request's tools for the rule to match.
    pub name: String,
    /// The arguments: a JSON value is serialized; a JSON string is sent as it is, so a test
    /// can send deliberately malformed arguments.
    #[serde(default = "empty_object")]
    pub arguments: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl ScriptedToolCall {
    /// The arguments as the string OpenAI streams.
    pub fn arguments_text(&self) -> String {
        match &self.arguments {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// What the chat endpoint extracted from a request's messages: the only inputs reply rules
/// look at.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConversationView {
    /// The text of the last `user` message, if any.
    pub last_user: Option<String>,
    /// The system (and developer) prompts, joined.
    pub system: String,
    /// When the last message is a `tool` result: the tool's name (found through the
    /// assistant message that made the call, when present) and the result content.
    pub tool_result: Option<(Option<String>, String)>,
    /// The tools the model may call: `None` when the request offers none.
    pub offered_tools: Option<Vec<String>>,
}

impl ConversationView {
    /// Extracts the view from a chat-completions request body, leniently: content may be a
    /// string or an array of parts, and missing fields are simply absent.
    pub fn from_request(body: &Value) -> Self {
        let messages = body["messages"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut view = Self::default();
        let mut system = Vec::new();
        for m in messages {
            match m["role"].as_str() {
                Some("system") | Some("developer") => system.push(content_text(&m["content"])),
                Some("user") => view.last_user = Some(content_text(&m["content"])),
                _ => {}
            }
        }
        view.system = system.join("\n");
        if let Some(last) = messages.last() {
            if last["role"] == "tool" {
                let id = last["tool_call_id"].as_str();
                let name = id.and_then(|id| {
                    messages.iter().rev().find_map(|m| {
                        m["tool_calls"].as_array()?.iter().find_map(|call| {
                            (call["id"].as_str() == Some(id))
                                .then(|| call["function"]["name"].as_str().map(str::to_owned))
                                .flatten()
                        })
                    })
                });
                view.tool_result = Some((name, content_text(&last["content"])));
            }
        }
        let tools_allowed = body["tool_choice"] != "none";
        view.offered_tools = body["tools"]
            .as_array()
            .filter(|_| tools_allowed)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t["function"]["name"].as_str().map(str::to_owned))
                    .collect()
            });
        view
    }
}

/// A message's text: a plain string, or the `text` parts of an array of content parts.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// The reply chosen for a conversation: the text to stream (possibly empty) and the tool
/// calls to make, as `(name, arguments text)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChosenReply {
    /// The assistant text, placeholders filled.
    pub text: String,
    /// The tool calls, in index order.
    pub tool_calls: Vec<(String, String)>,
}

impl Replies {
    /// Picks the reply for a conversation: the first matching rule, else the default.
    pub fn choose(&self, view: &ConversationView) -> ChosenReply {
        let matched = self.rules.iter().find(|rule| rule.matches(view));
        let (text, calls) = match matched {
            Some(rule) => (
                rule.text.as_deref().unwrap_or(""),
                rule.tool_calls.as_slice(),
            ),
            None if view.tool_result.is_some() => (self.after_tool_default.as_str(), &[][..]),
            None => (self.default.as_str(), &[][..]),
        };
        ChosenReply {
            text: fill(text, view),
            tool_calls: calls
                .iter()
                .map(|c| (c.name.clone(), c.arguments_text()))
                .collect(),
        }
    }
}

impl ReplyRule {
    fn matches(&self, view: &ConversationView) -> bool {
        match (&self.after_tool, &view.tool_result) {
            (None, None) => {}
            (Some(wanted), Some((name, _))) => {
                if wanted != "*" && name.as_deref() != Some(wanted.as_str()) {
                    return false;
                }
            }
            _ => return false,
        }
        if let Some(needle) = &self.user_contains {
            let user = view.last_user.as_deref().unwrap_or("");
            if !contains_ci(user, needle) {
                return false;
            }
        }
        if let Some(needle) = &self.system_contains {
            if !contains_ci(&view.system, needle) {
                return false;
            }
        }
        if !self.tool_calls.is_empty() {
            let Some(offered) = &view.offered_tools else {
                return false;
            };
            if !self.tool_calls.iter().all(|c| offered.contains(&c.name)) {
                return false;
            }
        }
        true
    }
}

fn contains_ci(haystack: &str, needle: &str) -> bool {
    haystack.to_lowercase().contains(&needle.to_lowercase())
}

fn fill(template: &str, view: &ConversationView) -> String {
    let tool_result = view.tool_result.as_ref().map_or("", |(_, c)| c.as_str());
    template
        .replace("{user}", view.last_user.as_deref().unwrap_or(""))
        .replace("{tool_result}", tool_result)
}

/// The faults in force for each family at start (none by default).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Speech to text.
    pub stt: Option<Fault>,
    /// Chat completions.
    pub llm: Option<Fault>,
    /// Text to speech (HTTP and WebSocket).
    pub tts: Option<Fault>,
    /// Embeddings.
    pub embeddings: Option<Fault>,
}

impl Faults {
    /// The fault of one family.
    pub fn get(&self, family: Family) -> Option<&Fault> {
        match family {
            Family::Stt => self.stt.as_ref(),
            Family::Llm => self.llm.as_ref(),
            Family::Tts => self.tts.as_ref(),
            Family::Embeddings => self.embeddings.as_ref(),
        }
    }
}

/// A fault and which requests of its family it hits: requests are counted from when the
/// fault was set (script start, or `EmulatorHandle::set_fault`); the first `skip` pass
/// untouched, then `times` requests are hit (every later one when `times` is absent). So
/// "fail the second LLM call once" is `{"kind":"status","status":500,"skip":1,"times":1}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// What goes wrong.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Requests let through before the fault starts.
    #[serde(default)]
    pub skip: u32,
    /// How many requests the fault hits; absent means all of them.
    #[serde(default)]
    pub times: Option<u32>,
}

/// How a request fails.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer this HTTP status (4xx or 5xx) with the vendor's error body. On the ElevenLabs
    /// WebSocket, the handshake is refused with it.
    Status {
        /// The status code.
        status: u16,
    },
    /// Accept the request, then send nothing for `ms` (60 s by default: longer than any
    /// sane client timeout, yet bounded so a forgotten stall frees its connection), then
    /// fail. With `after_chunks` > 0 the stall comes after that many streamed chunks.
    Stall {
        /// How long to stay silent.
        #[serde(default = "default_stall_ms")]
        ms: u64,
        /// Chunks sent before the stall (0: before the response headers).
        #[serde(default)]
        after_chunks: u32,
    },
    /// Send `after_chunks` chunks of the answer, then drop the connection without ending
    /// the response (HTTP: no final chunk, so the client sees a body error; SSE: no
    /// `[DONE]`; WebSocket: no `isFinal` and no close frame). Counts past the end of a short
    /// answer are clamped so the end is always lost.
    Cut {
        /// Chunks sent before the cut.
        #[serde(default)]
        after_chunks: u32,
    },
}

fn default_stall_ms() -> u64 {
    60_000
}

impl Fault {
    /// Every request answers this HTTP status.
    pub fn status(status: u16) -> Self {
        Self::always(FaultKind::Status { status })
    }

    /// Every request stalls for 60 s before anything is sent.
    pub fn stall() -> Self {
        Self::always(FaultKind::Stall {
            ms: default_stall_ms(),
            after_chunks: 0,
        })
    }

    /// Every response is cut after `after_chunks` chunks.
    pub fn cut_after(after_chunks: u32) -> Self {
        Self::always(FaultKind::Cut { after_chunks })
    }

    fn always(kind: FaultKind) -> Self {
        Self {
            kind,
            skip: 0,
            times: None,
        }
    }

    /// The same fault, hitting only `times` requests.
    pub fn times(self, times: u32) -> Self {
        Self {
            times: Some(times),
            ..self
        }
    }

    /// The same fault, letting `skip` requests through first.
    pub fn skip(self, skip: u32) -> Self {
        Self { skip, ..self }
    }

    /// Whether the request with this 0-based number (counted since the fault was set) is hit.
    pub fn hits(&self, n: u32) -> bool {
        n >= self.skip && self.times.is_none_or(|t| n - self.skip < t)
    }

    fn validate(&self, family: Family) -> Result<(), ScriptError> {
        if let FaultKind::Status { status } = self.kind {
            if !(400..=599).contains(&status) {
                return Err(ScriptError::Invalid(format!(
                    "faults.{family:?}: status {status} is not an error status (400-599)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(body: Value) -> ConversationView {
        ConversationView::from_request(&body)
    }

    #[test]
    fn an_empty_object_is_the_default_script() {
        assert_eq!(
            EmulatorScript::from_json("{}").unwrap(),
            EmulatorScript::default()
        );
    }

    #[test]
    fn a_partly_given_latency_keeps_the_family_default_for_the_rest() {
        let s = EmulatorScript::from_json(r#"{"latency":{"llm":{"first_byte_ms":5}}}"#).unwrap();
        assert_eq!(s.latency.llm, Latency::new(5, 20));
        assert_eq!(s.latency.tts, Latency::new(120, 20));
    }

    #[test]
    fn typos_in_a_script_are_errors() {
        assert!(EmulatorScript::from_json(r#"{"latncy":{}}"#).is_err());
        assert!(EmulatorScript::from_json(r#"{"replies":{"rules":[{"contains":"x"}]}}"#).is_err());
    }

    #[test]
    fn a_fault_status_must_be_an_error() {
        let err = EmulatorScript::from_json(r#"{"faults":{"llm":{"kind":"status","status":200}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("200"), "{err}");
    }

    #[test]
    fn transcripts_accept_a_bare_list() {
        let s = EmulatorScript::from_json(r#"{"transcripts":["a","b"]}"#).unwrap();
        assert_eq!(s.transcripts.lines, ["a", "b"]);
        assert_eq!(s.transcripts.line(None, 2), DEFAULT_TRANSCRIPT);
    }

    #[test]
    fn the_longest_prompt_key_chooses_the_queue() {
        let t: Transcripts = serde_json::from_value(json!({
            "by_prompt": {"call": ["x"], "call-2": ["y"]}, "fallback": "bye"
        }))
        .unwrap();
        assert_eq!(t.queue_for(Some("vocabulary; call-2")), Some("call-2"));
        assert_eq!(t.queue_for(Some("nothing")), None);
        assert_eq!(t.queue_for(None), None);
        assert_eq!(t.line(Some("call-2"), 0), "y");
        assert_eq!(t.line(Some("call-2"), 1), "bye");
    }

    #[test]
    fn faults_count_skip_and_times() {
        let f = Fault::status(500).skip(1).times(2);
        assert_eq!(
            (0..5).map(|n| f.hits(n)).collect::<Vec<_>>(),
            [false, true, true, false, false]
        );
        assert!((0..100).all(|n| Fault::stall().hits(n)));
    }

    #[test]
    fn fault_kinds_read_from_json() {
        let f: Fault =
            serde_json::from_value(json!({"kind": "stall", "after_chunks": 2, "times": 1}))
                .unwrap();
        assert_eq!(
            f.kind,
            FaultKind::Stall {
                ms: 60_000,
                after_chunks: 2
            }
        );
        assert_eq!(f.times, Some(1));
    }

    fn booking_replies() -> Replies {
        serde_json::from_value(json!({
            "rules": [
                {"user_contains": "BOOK", "text": "One moment.",
                 "tool_calls": [{"name": "book_slot", "arguments": {"time": "15:00"}}]},
                {"after_tool": "book_slot", "text": "Booked: {tool_result}"},
                {"system_contains": "pirate", "text": "Arr, you said {user}"}
            ],
            "default": "Pardon?"
        }))
        .unwrap()
    }

    #[test]
    fn a_user_turn_matches_a_rule_case_insensitively_when_the_tool_is_offered() {
        let body = json!({
            "messages": [{"role": "user", "content": "I want to book at 3"}],
            "tools": [{"type": "function", "function": {"name": "book_slot"}}]
        });
        let reply = booking_replies().choose(&view(body));
        assert_eq!(reply.text, "One moment.");
        assert_eq!(
            reply.tool_calls,
            [("book_slot".to_owned(), r#"{"time":"15:00"}"#.to_owned())]
        );
    }

    #[test]
    fn a_tool_rule_does_not_match_when_the_tool_is_not_offered() {
        let no_tools = json!({"messages": [{"role": "user", "content": "book it"}]});
        assert_eq!(booking_replies().choose(&view(no_tools)).text, "Pardon?");
        let none = json!({
            "messages": [{"role": "user", "content": "book it"}],
            "tools": [{"type": "function", "function": {"name": "book_slot"}}],
            "tool_choice": "none"
        });
        assert_eq!(booking_replies().choose(&view(none)).text, "Pardon?");
    }

    #[test]
    fn a_tool_result_is_answered_by_its_rule_with_the_result_filled_in() {
        let body = json!({"messages": [
            {"role": "user", "content": "book it"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "book_slot", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"ok\":true}"}
        ]});
        let v = view(body);
        assert_eq!(
            v.tool_result,
            Some((Some("book_slot".into()), "{\"ok\":true}".into()))
        );
        assert_eq!(booking_replies().choose(&v).text, "Booked: {\"ok\":true}");
    }

    #[test]
    fn an_unmatched_tool_result_gets_the_after_tool_default() {
        let body = json!({"messages": [
            {"role": "tool", "tool_call_id": "call_9", "content": "42"}
        ]});
        assert_eq!(booking_replies().choose(&view(body)).text, "All done.");
    }

    #[test]
    fn system_prompts_and_content_parts_are_read() {
        let body = json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are a PIRATE."}]},
            {"role": "user", "content": [{"type": "text", "text": "hello"}]}
        ]});
        assert_eq!(
            booking_replies().choose(&view(body)).text,
            "Arr, you said hello"
        );
    }
}
