//! The ports: every way the engine reaches the outside world, as traits the server's adapters
//! implement (OpenAI, ElevenLabs, Twilio, the SQL store, Qdrant) and the tests implement in
//! memory. Actors hold them as `Arc<dyn …>` and never learn which vendor is behind one.
//!
//! Rules every port follows:
//! - Nothing here blocks: work that takes time is `async`, and the actors run it in tasks so a
//!   slow provider never stalls a mailbox.
//! - Streams (LLM tokens, TTS audio, STT transcripts) are cancelled by dropping them.
//! - Errors are values ([`PortError`]) the actors decide about; a port never panics.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use tokio::sync::mpsc;

use crate::audio::FRAME_SAMPLES;
use crate::domain::{AgentId, CallId, TenantId, E164};

/// One 20 ms frame of 8 kHz linear PCM: what the engine hears.
pub type PcmFrame = [i16; FRAME_SAMPLES];

/// One 20 ms frame of 8 kHz G.711 mu-law: what the phone network carries.
pub type MulawFrame = [u8; FRAME_SAMPLES];

/// Why a port could not do what it was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The provider could not be reached or answered with a server error; retrying may help.
    #[error("{0} is unavailable")]
    Unavailable(String),
    /// The provider refused the request (bad input, auth, quota); retrying will not help.
    #[error("refused: {0}")]
    Refused(String),
    /// The provider did not answer in time.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

/// Result of a port call.
pub type PortResult<T> = Result<T, PortError>;

/// What a call is, as the ports need to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    /// The call.
    pub call_id: CallId,
    /// Whose call it is.
    pub tenant: TenantId,
    /// The agent answering it.
    pub agent: AgentId,
    /// The customer's number: the key of their conversation across calls and texts.
    pub customer: String,
    /// The tenant's number that was dialled (or that dials out).
    pub business_number: E164,
}

// ---------------------------------------------------------------- speech-to-text

/// What the engine feeds a speech-to-text session.
// A frame travels by value through a bounded channel (boxing it would allocate per frame),
// and stays mu-law as the caller sent it: half the bytes of PCM in every queued slot, and a
// provider that takes G.711 sends it untouched.
#[derive(Debug, Clone, PartialEq)]
pub enum SttInput {
    /// One frame of the caller's speech, as the phone sent it (frames outside speech are not
    /// sent).
    Audio(MulawFrame),
    /// The endpointer decided the caller finished speaking: a per-utterance provider
    /// transcribes what it buffered now; a streaming one finalizes.
    UtteranceEnded,
}

/// What a speech-to-text session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SttEvent {
    /// A guess at the words so far; may change.
    Partial(String),
    /// The words of the utterance that just ended.
    Final(String),
    /// The session failed; no more events follow.
    Failed(PortError),
}

/// Where the engine pushes a session's audio. `push` must return at once (a provider that
/// talks to a network hands the input to its own task); an error ends the session.
pub trait SttFeed: Send + 'static {
    /// Hands over one input.
    fn push(&mut self, input: SttInput) -> PortResult<()>;
}

/// A channel is the usual feed: the provider's task reads the other end. A full channel means
/// the provider has fallen more than a channel's worth of audio behind.
impl SttFeed for mpsc::Sender<SttInput> {
    fn push(&mut self, input: SttInput) -> PortResult<()> {
        self.try_send(input).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                PortError::Unavailable("speech-to-text (backlog full)".to_owned())
            }
            mpsc::error::TrySendError::Closed(_) => {
                PortError::Unavailable("speech-to-text (session closed)".to_owned())
            }
        })
    }
}

/// One call's speech-to-text session: audio goes in through the feed, transcripts come out of
/// the receiver, and the provider runs on its own so neither side waits on the other.
pub struct SttSession {
    /// Frames and utterance ends.
    pub feed: Box<dyn SttFeed>,
    /// Partial and final transcripts.
    pub events: mpsc::Receiver<SttEvent>,
}

/// How an agent's speech is turned into text, chosen per agent.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum SttMode {
    /// Each utterance is transcribed whole once the endpointer ends it: one request per
    /// utterance, the simplest and cheapest, but the upload and the transcription both wait
    /// for the end of speech.
    #[default]
    Utterance,
    /// Audio streams to the provider while the caller speaks, so at the end of speech only
    /// the transcription itself is left: lower latency, one connection per call.
    Streaming,
}

impl SttMode {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Utterance => "utterance",
            Self::Streaming => "streaming",
        }
    }

    /// Reads a stored or submitted name (exact, as stored).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "utterance" => Some(Self::Utterance),
            "streaming" => Some(Self::Streaming),
            _ => None,
        }
    }
}

/// What a speech-to-text session is opened with, from the agent's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SttOptions {
    /// BCP 47 language of the call.
    pub language: String,
    /// Streaming or per utterance.
    pub mode: SttMode,
}

impl SttOptions {
    /// Options for a call in `language` (BCP 47) in `mode`.
    pub fn new(language: impl Into<String>, mode: SttMode) -> Self {
        Self {
            language: language.into(),
            mode,
        }
    }
}

/// Turns speech into text, streaming or per utterance. A provider that works in one mode
/// only ignores `options.mode`; a router that chooses a provider by mode reads it.
pub trait SpeechToText: Send + Sync + 'static {
    /// Opens a session for one call with the agent's options.
    fn open(&self, call: &CallInfo, options: &SttOptions) -> SttSession;
}

// ---------------------------------------------------------------- language model

/// A message of the prompt, in the order the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatMessage {
    /// Instructions (the agent's system prompt, the summary, retrieved knowledge).
    System(String),
    /// What the customer said or wrote.
    User(String),
    /// What the agent said, and the tools it called.
    Assistant {
        /// The words (possibly cut to what the caller heard).
        text: String,
        /// Tool calls made in this message.
        tool_calls: Vec<ToolCall>,
    },
    /// A tool's answer to one call.
    Tool {
        /// The [`ToolCall::id`] answered.
        call_id: String,
        /// The result, usually JSON.
        content: String,
    },
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Function name (`search_knowledge`).
    pub name: String,
    /// When to use it, for the model.
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
}

/// A complete tool call (the adapter joins streamed fragments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Provider's id, echoed in the answer.
    pub id: String,
    /// Which tool.
    pub name: String,
    /// Arguments as a JSON string.
    pub arguments: String,
}

/// A request for one reply.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// Model name.
    pub model: String,
    /// The prompt.
    pub messages: Vec<ChatMessage>,
    /// Tools offered.
    pub tools: Vec<ToolSpec>,
    /// Models to try in order, on the same endpoint, when `model` fails before its first
    /// token because it is unavailable or too slow (empty: no fallback). A port that
    /// cannot fall back ignores them; the server wraps its model in one that can.
    pub fallback_models: Vec<String>,
}

/// A piece of a streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LlmDelta {
    /// More words.
    Text(String),
    /// A complete tool call.
    ToolCall(ToolCall),
    /// Token counts, once, at the end.
    Usage {
        /// Tokens read.
        prompt_tokens: u32,
        /// Tokens written.
        completion_tokens: u32,
    },
}

/// A streamed reply; dropping it cancels the generation.
pub type LlmStream = BoxStream<'static, PortResult<LlmDelta>>;

/// Writes the agent's replies.
#[async_trait]
pub trait LanguageModel: Send + Sync + 'static {
    /// Starts a reply; the stream yields as the model writes.
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream>;
}

// ---------------------------------------------------------------- text-to-speech

/// Text to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsRequest {
    /// One sentence or so.
    pub text: String,
    /// Provider voice id.
    pub voice: String,
    /// BCP 47 language.
    pub language: String,
}

/// 8 kHz mu-law audio in chunks of any length; dropping it cancels the synthesis.
pub type AudioStream = BoxStream<'static, PortResult<Vec<u8>>>;

/// Speaks the agent's words.
#[async_trait]
pub trait TextToSpeech: Send + Sync + 'static {
    /// Starts speaking `request`; audio streams as it is made.
    async fn synthesize(&self, request: TtsRequest) -> PortResult<AudioStream>;
}

// ---------------------------------------------------------------- knowledge

/// Turns text into dense vectors for semantic search.
#[async_trait]
pub trait Embedder: Send + Sync + 'static {
    /// One vector per text, in order.
    async fn embed(&self, texts: Vec<String>) -> PortResult<Vec<Vec<f32>>>;
}

/// A piece of a tenant's document, as stored for search.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeChunk {
    /// Unique id of the chunk.
    pub id: String,
    /// The document it came from.
    pub document_id: String,
    /// The document's title or file name.
    pub title: String,
    /// Page or section, for citing the source.
    pub location: String,
    /// The text.
    pub text: String,
    /// Its dense vector, when an embedder is configured.
    pub dense: Option<Vec<f32>>,
}

/// A search of one tenant's knowledge.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeQuery {
    /// The words to look for.
    pub text: String,
    /// Their dense vector, when an embedder is configured.
    pub dense: Option<Vec<f32>>,
    /// How many chunks to return.
    pub k: usize,
}

/// A chunk that matched, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct KnowledgeHit {
    /// The chunk (without its vector).
    pub chunk: KnowledgeChunk,
    /// Fused relevance, higher is better.
    pub score: f32,
}

/// Where chunks are kept and searched. Every method takes the tenant, and an adapter must
/// never return another tenant's chunks.
#[async_trait]
pub trait VectorStore: Send + Sync + 'static {
    /// Adds or replaces chunks.
    async fn upsert(&self, tenant: TenantId, chunks: Vec<KnowledgeChunk>) -> PortResult<()>;
    /// Best matches for the query.
    async fn search(
        &self,
        tenant: TenantId,
        query: KnowledgeQuery,
    ) -> PortResult<Vec<KnowledgeHit>>;
    /// Removes every chunk of a document.
    async fn delete_document(&self, tenant: TenantId, document_id: &str) -> PortResult<()>;
}

// ---------------------------------------------------------------- records

/// Who said a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Speaker {
    /// The customer (caller or texter).
    Customer,
    /// The AI agent.
    Agent,
    /// A staff member who took over.
    Staff,
}

/// How long each stage of one turn took, measured from the end of the caller's speech.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StageTimings {
    /// Trailing silence the endpointer waited before deciding the caller was done.
    pub endpointing_ms: Option<u32>,
    /// End of speech to final transcript.
    pub stt_ms: Option<u32>,
    /// Automatic retrieval from the knowledge base, run while the prompt is built; `None`
    /// when it was off, over its budget or failed.
    pub retrieval_ms: Option<u32>,
    /// Final transcript to the model's first token.
    pub llm_first_token_ms: Option<u32>,
    /// Final transcript to the first complete sentence, which is what speech waits for
    /// (tool rounds included).
    pub llm_first_sentence_ms: Option<u32>,
    /// First sentence sent to TTS to its first audio.
    pub tts_first_byte_ms: Option<u32>,
    /// End of speech to the first audio sent to the caller.
    pub voice_to_voice_ms: Option<u32>,
}

impl StageTimings {
    /// What the runtime itself added to the turn's voice-to-voice latency: everything that
    /// was not waiting for a provider (STT, the model's first sentence, TTS's first audio).
    pub fn runtime_overhead_ms(&self) -> Option<u32> {
        let providers = self.stt_ms? + self.llm_first_sentence_ms? + self.tts_first_byte_ms?;
        Some(self.voice_to_voice_ms?.saturating_sub(providers))
    }
}

/// One line of a call's transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnRecord {
    /// Order within the call, from 0.
    pub seq: u32,
    /// Who spoke.
    pub speaker: Speaker,
    /// What was said (for the agent: what the caller heard).
    pub text: String,
    /// The agent was cut off by the caller.
    pub interrupted: bool,
    /// Stage timings (agent turns).
    pub timings: StageTimings,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// The caller or the agent hung up normally.
    Completed,
    /// The call was handed to a person at this number.
    Transferred(E164),
    /// The runtime gave up on the call; the text says why.
    Failed(String),
}

/// What a call consumed, in the units the providers bill by, so quotas and invoices can be
/// computed from the runtime's own count rather than from each vendor's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallUsage {
    /// From answer to hang-up.
    pub call_ms: u64,
    /// Caller audio sent to speech-to-text (20 ms a frame).
    pub stt_ms: u64,
    /// Prompt plus completion tokens of every generation: replies, tool rounds, the analysis.
    pub llm_tokens: u64,
    /// Characters sent to text-to-speech.
    pub tts_characters: u64,
}

impl CallUsage {
    /// Nothing was consumed: there is nothing worth recording.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// How the customer came across on a call, as the post-call analysis judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sentiment {
    /// Pleased, helped.
    Positive,
    /// Neither.
    Neutral,
    /// Unhappy, frustrated, angry.
    Negative,
}

impl Sentiment {
    /// The stored and published name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Neutral => "neutral",
            Self::Negative => "negative",
        }
    }

    /// Reads a name, forgiving case and surrounding space (model output is loose).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "positive" => Some(Self::Positive),
            "neutral" => Some(Self::Neutral),
            "negative" => Some(Self::Negative),
            _ => None,
        }
    }
}

/// What the agent's model made of a finished call: what staff read instead of the
/// transcript, and the fields the agent was configured to extract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAnalysis {
    /// A few sentences: who called, what they wanted, what was agreed.
    pub summary: String,
    /// How the customer came across.
    pub sentiment: Sentiment,
    /// Data following the agent's extraction schema (empty when it has none).
    pub extracted: serde_json::Map<String, serde_json::Value>,
}

/// Where calls and their transcripts are recorded.
#[async_trait]
pub trait CallLog: Send + Sync + 'static {
    /// The call was answered.
    async fn call_started(&self, call: &CallInfo) -> PortResult<()>;
    /// A line of the transcript, with timings.
    async fn turn(&self, call: &CallInfo, turn: &TurnRecord) -> PortResult<()>;
    /// The agent called a tool (by its name), for analytics.
    async fn tool_called(&self, call: &CallInfo, tool: &str) -> PortResult<()>;
    /// The call ended.
    async fn call_ended(&self, call: &CallInfo, outcome: &CallOutcome) -> PortResult<()>;
    /// What the call consumed: sent once when it ends and once more for work done after it
    /// (the analysis), so the quantities of every record of a call add up.
    async fn usage(&self, call: &CallInfo, usage: &CallUsage) -> PortResult<()>;
    /// The post-call analysis, once the model has written it. Returns the customer's lead
    /// fields (as prompt variables) after what the analysis taught, so the customer's
    /// conversation prompts with them from now on.
    async fn analysis(
        &self,
        call: &CallInfo,
        analysis: &CallAnalysis,
    ) -> PortResult<BTreeMap<String, String>>;
}

/// The channel a line of history arrived by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A phone call.
    Voice,
    /// A text message.
    Sms,
}

/// One line of a customer's history across calls and texts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryEntry {
    /// Who said it.
    pub speaker: Speaker,
    /// Call or text.
    pub channel: Channel,
    /// What was said.
    pub text: String,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// A customer's conversation as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationSnapshot {
    /// Every line, oldest first.
    pub history: Vec<HistoryEntry>,
    /// Summary of lines no longer sent in full.
    pub summary: String,
    /// The lead's fields (name, vehicle of interest, …), for dynamic variables.
    pub lead: BTreeMap<String, String>,
}

/// Where a customer's history, summary and lead live.
#[async_trait]
pub trait ConversationStore: Send + Sync + 'static {
    /// The conversation of `customer` with `tenant` (empty when new).
    async fn load(&self, tenant: TenantId, customer: &str) -> PortResult<ConversationSnapshot>;
    /// Appends one line.
    async fn append(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> PortResult<()>;
    /// Replaces the stored summary.
    async fn save_summary(&self, tenant: TenantId, customer: &str, summary: &str)
        -> PortResult<()>;
    /// Sets lead fields learnt in the conversation.
    async fn update_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: BTreeMap<String, String>,
    ) -> PortResult<()>;
    /// Books a call back to the customer at `when`, ISO 8601 as the model gave it: with a
    /// UTC offset, or a local date and time in the tenant's timezone. Returns the booked
    /// time as the tenant reads it (RFC 3339 with the local offset) so the agent can
    /// confirm it; a time that cannot be read or is already past is `Refused`, with words
    /// the model can act on.
    async fn schedule_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> PortResult<String>;
}

// ---------------------------------------------------------------- configuration

/// A tool the agent's model may call during a call or a text conversation.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// Look the answer up in the tenant's knowledge base.
    SearchKnowledge,
    /// Hand the caller to the agent's transfer number.
    TransferToHuman,
    /// End the call politely.
    EndCall,
    /// Record what was learnt about the customer on their lead.
    UpdateLead,
    /// Text the customer (a link, a confirmation).
    SendSms,
    /// Book a call back to the customer.
    ScheduleCallback,
}

/// One agent's configuration, as the runtime uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The agent.
    pub id: AgentId,
    /// Instructions for the model; may hold `{{variables}}`.
    pub system_prompt: String,
    /// Said on pick-up; may hold `{{variables}}`.
    pub first_message: String,
    /// BCP 47 language.
    pub language: String,
    /// TTS voice id.
    pub voice: String,
    /// Model name.
    pub llm_model: String,
    /// Models tried in order when `llm_model` is unavailable (at most a few).
    pub llm_fallback_models: Vec<String>,
    /// Streaming or per-utterance speech-to-text.
    pub stt_mode: SttMode,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Where transfers and failed calls go.
    pub transfer_number: Option<E164>,
    /// JSON Schema of what the post-call analysis extracts from a call (`{}`: nothing).
    pub analysis_schema: serde_json::Map<String, serde_json::Value>,
    /// Longest wait for the knowledge base to be searched before each reply, its best
    /// chunks put in front of the model; `None`: no automatic retrieval.
    pub auto_retrieval: Option<std::time::Duration>,
}

/// What a tenant's supervisor needs to admit and run calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    /// The tenant's display name (a built-in prompt variable).
    pub name: String,
    /// The tenant's IANA timezone (`America/Chicago`): the built-in `local_time` and
    /// `local_date` variables are in it.
    pub timezone: String,
    /// Most calls live at once.
    pub concurrent_call_limit: usize,
    /// The tenant's agents.
    pub agents: Vec<AgentConfig>,
}

/// Where the runtime reads a tenant's configuration when the tenant is first used.
#[async_trait]
pub trait TenantDirectory: Send + Sync + 'static {
    /// The tenant's current configuration.
    async fn tenant_config(&self, tenant: TenantId) -> PortResult<TenantConfig>;
}

// ---------------------------------------------------------------- events and telephony

/// Every kind of [`TenantEvent`], so subscribers can name what they want and events read
/// back from another node map onto the same static names.
pub const EVENT_KINDS: &[&str] = &[
    "call.ringing",
    "call.started",
    "call.transcript",
    "call.agent_speaking",
    "call.barge_in",
    "call.tool_calls",
    "call.dtmf",
    "call.ended",
    "call.failed",
    "sms.received",
    "sms.sent",
    "conversation.takeover",
    "lead.updated",
    "document.status",
    "quota.exceeded",
];

/// The static name of an event kind, if it is one.
pub fn event_kind(name: &str) -> Option<&'static str> {
    EVENT_KINDS.iter().copied().find(|k| *k == name)
}

/// Something staff screens and webhooks care about, scoped to one tenant.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TenantEvent {
    /// Whose event it is; subscribers of other tenants never see it.
    #[serde(skip)]
    pub tenant: TenantId,
    /// `call.started`, `call.transcript`, …
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The call it concerns, if any.
    pub call_id: Option<CallId>,
    /// Event details.
    pub data: serde_json::Value,
}

/// Where the engine publishes events. Never blocks and never fails a call: a sink that cannot
/// keep up drops events and says so to its subscribers.
pub trait EventSink: Send + Sync + 'static {
    /// Publishes one event.
    fn publish(&self, event: TenantEvent);
}

/// Control of one live call's phone leg (a Twilio Media Stream and REST API in production).
#[async_trait]
pub trait Telephony: Send + Sync + 'static {
    /// Queues mu-law audio for the caller; returns at once.
    fn send_audio(&self, mulaw: &[u8]);
    /// Asks to be told (by name) when playback reaches this point.
    fn mark(&self, name: &str);
    /// Throws away audio queued but not yet played (barge-in).
    fn clear(&self);
    /// Ends the call.
    async fn hang_up(&self) -> PortResult<()>;
    /// Hands the call to a person at `to`.
    async fn transfer(&self, to: &E164) -> PortResult<()>;
    /// Texts the customer from the business number.
    async fn send_sms(&self, body: &str) -> PortResult<()>;
}
