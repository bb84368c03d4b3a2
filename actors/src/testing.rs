//! Test doubles: in-memory implementations of the ports in [`crate::ports`].
//!
//! These in-memory fakes are for unit tests of the actors crate and for the supervisors
//! crate's tests; the server never wires them in. They behave like the real adapters where a
//! test can tell the difference (a vector store never crosses tenants, a call log refuses a
//! turn of a call it was never told about) and record what they were asked, so a test can
//! assert on it afterwards.
//!
//! One section per port, in the order of `ports.rs`. Every fake keeps its state behind a
//! `std::sync::Mutex` held only for a few instructions and never across an `.await`; a
//! poisoned lock (a test panicked while holding it) is recovered rather than propagated, so one
//! failing assertion does not cascade into unrelated panics.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::{mpsc, Notify};

use crate::audio::FRAME_SAMPLES;
use crate::conversation::apply_corrections;
use crate::domain::{CallId, TenantId, E164};
use crate::ports::{
    AudioStream, CallAnalysis, CallInfo, CallLog, CallOutcome, CallUsage, ChatMessage,
    ConversationSnapshot, ConversationStore, Embedder, HistoryEntry, KnowledgeChunk, KnowledgeHit,
    KnowledgeQuery, LanguageModel, LlmDelta, LlmRequest, LlmStream, PortError, PortResult,
    SpeechToText, SttEvent, SttFeed, SttInput, SttOptions, SttSession, Telephony, TenantConfig,
    TenantDirectory, TextToSpeech, TtsRequest, TurnRecord, VectorStore,
};

/// Locks `m`, recovering the data if a panicking test poisoned it: a fake must not turn one
/// failed assertion into a cascade of unrelated panics.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Lower-cased alphanumeric words of `text`: the shared notion of a "term" for the fake
/// embedder and the fake store's lexical score.
fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

// ---------------------------------------------------------------- knowledge: embedder

/// A deterministic embedder: each word is hashed (FNV-1a, stable across Rust versions and
/// runs) into one of `dimension` buckets, and the bucket counts are L2-normalised. Texts that
/// share words get a high cosine; that is all a test of the knowledge path needs.
#[derive(Debug)]
pub struct HashEmbedder {
    /// Length of every vector.
    dimension: usize,
    /// Size of every batch asked for, in order, so tests can check batching.
    batches: Mutex<Vec<usize>>,
}

impl HashEmbedder {
    /// The dimension used by [`HashEmbedder::default`].
    pub const DEFAULT_DIMENSION: usize = 64;

    /// An embedder producing vectors of `dimension` (at least 1) components.
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension: dimension.max(1),
            batches: Mutex::new(Vec::new()),
        }
    }

    /// The vector of one text, as [`Embedder::embed`] would return it.
    pub fn vector(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0_f32; self.dimension];
        for term in terms(text) {
            let bucket = fnv1a(term.as_bytes()) % self.dimension as u64;
            // `bucket < dimension`, so the index is in range.
            if let Some(slot) = v.get_mut(bucket as usize) {
                *slot += 1.0;
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }

    /// How many texts each call to [`Embedder::embed`] carried, in call order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        lock(&self.batches).clone()
    }
}

impl Default for HashEmbedder {
    fn default() -> Self {
        Self::new(Self::DEFAULT_DIMENSION)
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    async fn embed(&self, texts: Vec<String>) -> PortResult<Vec<Vec<f32>>> {
        lock(&self.batches).push(texts.len());
        Ok(texts.iter().map(|t| self.vector(t)).collect())
    }
}

/// 64-bit FNV-1a: a tiny hash whose output never changes between builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

// ---------------------------------------------------------------- knowledge: vector store

/// A vector store in memory: one list of chunks per tenant, searched by term overlap plus
/// cosine similarity of dense vectors when both query and chunk have one. Like a real
/// adapter, it never returns (or deletes) another tenant's chunks.
#[derive(Debug, Default)]
pub struct MemoryVectorStore {
    /// Chunks per tenant.
    chunks: Mutex<HashMap<TenantId, Vec<KnowledgeChunk>>>,
    /// Every search asked for, with its tenant, so tests can see what the actor sent.
    queries: Mutex<Vec<(TenantId, KnowledgeQuery)>>,
}

impl MemoryVectorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The chunks stored for `tenant`, in insertion order.
    pub fn chunks(&self, tenant: TenantId) -> Vec<KnowledgeChunk> {
        lock(&self.chunks).get(&tenant).cloned().unwrap_or_default()
    }

    /// Every search received so far, oldest first.
    pub fn queries(&self) -> Vec<(TenantId, KnowledgeQuery)> {
        lock(&self.queries).clone()
    }
}

/// Cosine similarity; 0 when the lengths differ or a vector is all zeros.
fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

#[async_trait]
impl VectorStore for MemoryVectorStore {
    async fn upsert(&self, tenant: TenantId, chunks: Vec<KnowledgeChunk>) -> PortResult<()> {
        let mut all = lock(&self.chunks);
        let stored = all.entry(tenant).or_default();
        for chunk in chunks {
            match stored.iter_mut().find(|c| c.id == chunk.id) {
                Some(existing) => *existing = chunk,
                None => stored.push(chunk),
            }
        }
        Ok(())
    }

    async fn search(
        &self,
        tenant: TenantId,
        query: KnowledgeQuery,
    ) -> PortResult<Vec<KnowledgeHit>> {
        lock(&self.queries).push((tenant, query.clone()));
        let query_terms = terms(&query.text);
        let all = lock(&self.chunks);
        let Some(stored) = all.get(&tenant) else {
            return Ok(Vec::new());
        };
        let mut hits: Vec<KnowledgeHit> = stored
            .iter()
            .filter_map(|chunk| {
                let chunk_terms = terms(&chunk.text);
                let overlap = if query_terms.is_empty() {
                    0.0
                } else {
                    let shared = query_terms
                        .iter()
                        .filter(|t| chunk_terms.contains(t))
                        .count();
                    shared as f32 / query_terms.len() as f32
                };
                let dense = match (&query.dense, &chunk.dense) {
                    (Some(q), Some(c)) => cosine(q, c).max(0.0),
                    _ => 0.0,
                };
                let score = overlap + dense;
                (score > 0.0).then(|| KnowledgeHit {
                    chunk: KnowledgeChunk {
                        dense: None,
                        ..chunk.clone()
                    },
                    score,
                })
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(query.k);
        Ok(hits)
    }

    async fn delete_document(&self, tenant: TenantId, document_id: &str) -> PortResult<()> {
        if let Some(stored) = lock(&self.chunks).get_mut(&tenant) {
            stored.retain(|c| c.document_id != document_id);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- records: call log

/// What [`MemoryCallLog`] knows of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// The call as given to [`CallLog::call_started`].
    pub info: CallInfo,
    /// Every turn, in the order recorded.
    pub turns: Vec<TurnRecord>,
    /// How it ended, once [`CallLog::call_ended`] was called (the first end, if several).
    pub outcome: Option<CallOutcome>,
    /// How many times an end was recorded: more than one is a bug in the caller.
    pub ends: u32,
    /// Every usage record of the call, added up.
    pub usage: CallUsage,
    /// How many usage records were written.
    pub usage_records: u32,
    /// The post-call analysis, once recorded.
    pub analysis: Option<CallAnalysis>,
    /// The tools the agent called, in order.
    pub tools: Vec<String>,
}

/// A call log in memory, for assertions on what a call recorded. Like the SQL adapter (whose
/// turns reference their call), it refuses a turn or an end for a call that never started,
/// which catches ordering bugs in the code under test.
#[derive(Debug, Default)]
pub struct MemoryCallLog {
    /// Calls by id.
    calls: Mutex<HashMap<CallId, RecordedCall>>,
    /// Woken whenever anything is recorded, for [`MemoryCallLog::wait_for`].
    changed: Notify,
    /// Writes still to refuse as a busy database would ([`MemoryCallLog::fail_next_writes`]).
    failing_writes: std::sync::atomic::AtomicU32,
}

impl MemoryCallLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was recorded for `call`, if it started.
    pub fn call(&self, call: CallId) -> Option<RecordedCall> {
        lock(&self.calls).get(&call).cloned()
    }

    /// Waits until `call` has ended, then returns its record. Waits forever for a call that
    /// never ends: wrap it in `tokio::time::timeout` where that is possible.
    pub async fn wait_for_end(&self, call: CallId) -> RecordedCall {
        self.wait_for(call, |r| r.outcome.is_some()).await
    }

    /// Waits until the record of `call` satisfies `done` (say, its analysis arrived), then
    /// returns it. Waits forever otherwise, like [`MemoryCallLog::wait_for_end`].
    pub async fn wait_for(
        &self,
        call: CallId,
        done: impl Fn(&RecordedCall) -> bool,
    ) -> RecordedCall {
        loop {
            // Registered before looking, so a change between the look and the wait still wakes.
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if let Some(record) = self.call(call).filter(|r| done(r)) {
                return record;
            }
            changed.await;
        }
    }

    /// Makes the next `n` writes fail as `Unavailable`, as a database whose pool is queued
    /// past its wait does, to show records are retried rather than lost.
    pub fn fail_next_writes(&self, n: u32) {
        self.failing_writes
            .store(n, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this write is one [`MemoryCallLog::fail_next_writes`] asked to fail.
    fn busy(&self) -> PortResult<()> {
        let failing = self.failing_writes.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        match failing {
            Ok(_) => Err(PortError::Unavailable("the call log is busy".to_owned())),
            Err(_) => Ok(()),
        }
    }

    /// Runs `f` on the record of a call that started; refuses one that never did, as the
    /// SQL adapter (whose rows reference their call) would.
    fn with_call(
        &self,
        call: &CallInfo,
        what: &str,
        f: impl FnOnce(&mut RecordedCall),
    ) -> PortResult<()> {
        self.busy()?;
        let outcome = match lock(&self.calls).get_mut(&call.call_id) {
            Some(recorded) => {
                f(recorded);
                Ok(())
            }
            None => Err(PortError::Refused(format!(
                "{what} for call {} that never started",
                call.call_id
            ))),
        };
        self.changed.notify_waiters();
        outcome
    }

    /// The ids of every call started so far (in no particular order).
    pub fn call_ids(&self) -> Vec<CallId> {
        lock(&self.calls).keys().copied().collect()
    }
}

#[async_trait]
impl CallLog for MemoryCallLog {
    async fn call_started(&self, call: &CallInfo) -> PortResult<()> {
        self.busy()?;
        lock(&self.calls).insert(
            call.call_id,
            RecordedCall {
                info: call.clone(),
                turns: Vec::new(),
                outcome: None,
                ends: 0,
                usage: CallUsage::default(),
                usage_records: 0,
                analysis: None,
                tools: Vec::new(),
            },
        );
        self.changed.notify_waiters();
        Ok(())
    }

    async fn turn(&self, call: &CallInfo, turn: &TurnRecord) -> PortResult<()> {
        self.with_call(call, "turn", |recorded| recorded.turns.push(turn.clone()))
    }

    async fn tool_called(&self, call: &CallInfo, tool: &str) -> PortResult<()> {
        self.with_call(call, "tool call", |recorded| {
            recorded.tools.push(tool.to_owned())
        })
    }

    async fn call_ended(&self, call: &CallInfo, outcome: &CallOutcome) -> PortResult<()> {
        self.with_call(call, "end", |recorded| {
            recorded.ends += 1;
            recorded.outcome.get_or_insert_with(|| outcome.clone());
        })
    }

    async fn usage(&self, call: &CallInfo, usage: &CallUsage) -> PortResult<()> {
        self.with_call(call, "usage", |recorded| {
            let total = &mut recorded.usage;
            total.call_ms += usage.call_ms;
            total.stt_ms += usage.stt_ms;
            total.llm_tokens += usage.llm_tokens;
            total.tts_characters += usage.tts_characters;
            recorded.usage_records += 1;
        })
    }

    async fn analysis(
        &self,
        call: &CallInfo,
        analysis: &CallAnalysis,
    ) -> PortResult<BTreeMap<String, String>> {
        self.with_call(call, "analysis", |recorded| {
            recorded.analysis = Some(analysis.clone());
        })
        .map(|()| BTreeMap::new())
    }
}

// ---------------------------------------------------------------- records: conversation store

/// A call back booked through [`ConversationStore::schedule_callback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledCallback {
    /// Whose customer.
    pub tenant: TenantId,
    /// The customer's number.
    pub customer: String,
    /// When, as the agent said it.
    pub when: String,
    /// Why.
    pub note: String,
}

/// A conversation store in memory, keyed by (tenant, customer) like the real one, so the same
/// customer number in two tenants is two conversations.
///
/// Tests can make it fail ([`MemoryConversationStore::set_failure`]) or slow
/// ([`MemoryConversationStore::set_write_delay`]) to check that an actor survives a broken
/// store and never waits on a slow one.
#[derive(Debug, Default)]
pub struct MemoryConversationStore {
    /// Conversations by (tenant, customer).
    conversations: Mutex<HashMap<(TenantId, String), ConversationSnapshot>>,
    /// Call backs booked, oldest first.
    callbacks: Mutex<Vec<ScheduledCallback>>,
    /// When set, every method fails with this error.
    failure: Mutex<Option<PortError>>,
    /// How long every write sleeps before it lands.
    write_delay: Mutex<Duration>,
}

impl MemoryConversationStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stores `snapshot` as the conversation of `customer` with `tenant`, replacing any.
    pub fn insert(&self, tenant: TenantId, customer: &str, snapshot: ConversationSnapshot) {
        lock(&self.conversations).insert((tenant, customer.to_owned()), snapshot);
    }

    /// The stored conversation as a reader of the store sees it: barge-in corrections folded
    /// into the lines they correct ([`apply_corrections`]). Empty when nothing was stored.
    pub fn snapshot(&self, tenant: TenantId, customer: &str) -> ConversationSnapshot {
        let mut snapshot = self.raw_snapshot(tenant, customer);
        snapshot.history = apply_corrections(snapshot.history);
        snapshot
    }

    /// The stored conversation exactly as appended (corrections as separate lines), which is
    /// also what [`ConversationStore::load`] returns. Empty when nothing was stored.
    pub fn raw_snapshot(&self, tenant: TenantId, customer: &str) -> ConversationSnapshot {
        lock(&self.conversations)
            .get(&(tenant, customer.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Every call back booked so far, oldest first.
    pub fn callbacks(&self) -> Vec<ScheduledCallback> {
        lock(&self.callbacks).clone()
    }

    /// Makes every later call fail with `failure` (or work again with `None`).
    pub fn set_failure(&self, failure: Option<PortError>) {
        *lock(&self.failure) = failure;
    }

    /// Makes every later write wait `delay` before it lands.
    pub fn set_write_delay(&self, delay: Duration) {
        *lock(&self.write_delay) = delay;
    }

    /// The configured failure, as an `Err`.
    fn check(&self) -> PortResult<()> {
        match lock(&self.failure).clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits the configured write delay, then checks for a configured failure.
    async fn before_write(&self) -> PortResult<()> {
        let delay = *lock(&self.write_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.check()
    }

    /// Runs `f` on the (possibly new) conversation.
    fn with_conversation(
        &self,
        tenant: TenantId,
        customer: &str,
        f: impl FnOnce(&mut ConversationSnapshot),
    ) {
        let mut all = lock(&self.conversations);
        f(all.entry((tenant, customer.to_owned())).or_default());
    }
}

#[async_trait]
impl ConversationStore for MemoryConversationStore {
    async fn load(&self, tenant: TenantId, customer: &str) -> PortResult<ConversationSnapshot> {
        self.check()?;
        Ok(self.raw_snapshot(tenant, customer))
    }

    async fn append(
        &self,
        tenant: TenantId,
        customer: &str,
        entry: &HistoryEntry,
    ) -> PortResult<()> {
        self.before_write().await?;
        self.with_conversation(tenant, customer, |c| c.history.push(entry.clone()));
        Ok(())
    }

    async fn save_summary(
        &self,
        tenant: TenantId,
        customer: &str,
        summary: &str,
    ) -> PortResult<()> {
        self.before_write().await?;
        self.with_conversation(tenant, customer, |c| summary.clone_into(&mut c.summary));
        Ok(())
    }

    async fn update_lead(
        &self,
        tenant: TenantId,
        customer: &str,
        fields: BTreeMap<String, String>,
    ) -> PortResult<()> {
        self.before_write().await?;
        self.with_conversation(tenant, customer, |c| c.lead.extend(fields));
        Ok(())
    }

    async fn schedule_callback(
        &self,
        tenant: TenantId,
        customer: &str,
        when: &str,
        note: &str,
    ) -> PortResult<String> {
        self.before_write().await?;
        lock(&self.callbacks).push(ScheduledCallback {
            tenant,
            customer: customer.to_owned(),
            when: when.to_owned(),
            note: note.to_owned(),
        });
        Ok(when.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(id: &str, doc: &str, text: &str) -> KnowledgeChunk {
        KnowledgeChunk {
            id: id.to_owned(),
            document_id: doc.to_owned(),
            title: doc.to_owned(),
            location: "p. 1".to_owned(),
            text: text.to_owned(),
            dense: None,
        }
    }

    #[test]
    fn the_hash_embedder_is_deterministic_and_normalised() {
        let e = HashEmbedder::default();
        let a = e.vector("Oil change prices");
        assert_eq!(a, e.vector("oil CHANGE prices"));
        assert_eq!(a.len(), HashEmbedder::DEFAULT_DIMENSION);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(e.vector("").iter().all(|x| *x == 0.0));
    }

    #[tokio::test]
    async fn the_memory_vector_store_ranks_by_overlap_and_never_crosses_tenants() {
        let store = MemoryVectorStore::new();
        let (a, b) = (TenantId::new(), TenantId::new());
        store
            .upsert(
                a,
                vec![
                    chunk("1", "d", "oil change costs forty dollars"),
                    chunk("2", "d", "we are open on saturday"),
                ],
            )
            .await
            .unwrap();
        store
            .upsert(b, vec![chunk("3", "e", "oil change is free")])
            .await
            .unwrap();
        let query = KnowledgeQuery {
            text: "oil change".into(),
            dense: None,
            k: 5,
        };
        let hits = store.search(a, query.clone()).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].chunk.id, "1");
        store.delete_document(b, "d").await.unwrap();
        assert_eq!(store.chunks(a).len(), 2, "deleting in b left a alone");
    }

    #[tokio::test]
    async fn the_memory_call_log_refuses_turns_of_unknown_calls() {
        let log = MemoryCallLog::new();
        let info = CallInfo {
            call_id: CallId::new(),
            tenant: TenantId::new(),
            agent: crate::domain::AgentId::new(),
            customer: "+14155550100".into(),
            business_number: crate::domain::E164::parse("+14155550199").unwrap(),
        };
        let turn = TurnRecord {
            seq: 0,
            speaker: crate::ports::Speaker::Customer,
            text: "hi".into(),
            interrupted: false,
            timings: Default::default(),
        };
        assert!(log.turn(&info, &turn).await.is_err());
        log.call_started(&info).await.unwrap();
        log.turn(&info, &turn).await.unwrap();
        let waiting = log.wait_for_end(info.call_id);
        let (recorded, ended) = tokio::join!(waiting, async {
            tokio::task::yield_now().await;
            log.call_ended(&info, &CallOutcome::Completed).await
        });
        ended.unwrap();
        assert_eq!(log.call(info.call_id), Some(recorded.clone()));
        assert_eq!(recorded.turns, vec![turn]);
        assert_eq!(recorded.outcome, Some(CallOutcome::Completed));
    }

    #[tokio::test]
    async fn the_memory_call_log_adds_usage_up_and_keeps_the_analysis() {
        let log = MemoryCallLog::new();
        let info = CallInfo {
            call_id: CallId::new(),
            tenant: TenantId::new(),
            agent: crate::domain::AgentId::new(),
            customer: "+14155550100".into(),
            business_number: crate::domain::E164::parse("+14155550199").unwrap(),
        };
        let usage = CallUsage {
            call_ms: 1_000,
            stt_ms: 400,
            llm_tokens: 30,
            tts_characters: 12,
        };
        assert!(log.usage(&info, &usage).await.is_err(), "unknown call");
        log.call_started(&info).await.unwrap();
        log.usage(&info, &usage).await.unwrap();
        log.usage(
            &info,
            &CallUsage {
                llm_tokens: 5,
                ..CallUsage::default()
            },
        )
        .await
        .unwrap();
        let analysis = CallAnalysis {
            summary: "Asked about hours.".into(),
            sentiment: crate::ports::Sentiment::Neutral,
            extracted: serde_json::Map::new(),
        };
        log.analysis(&info, &analysis).await.unwrap();
        let recorded = log.wait_for(info.call_id, |r| r.analysis.is_some()).await;
        assert_eq!(recorded.usage.llm_tokens, 35);
        assert_eq!(recorded.usage.call_ms, 1_000);
        assert_eq!(recorded.usage_records, 2);
        assert_eq!(recorded.analysis, Some(analysis));
    }
}

// ---------------------------------------------------------------- speech-to-text

/// Speech-to-text that "hears" a script: each utterance the endpointer ends yields the next
/// line of the customer's script as its final transcript, after `latency`. A customer can
/// be marked so that their session's feed panics on every frame (a crashing adapter). It
/// keeps the options of every session opened, so a test can check what the engine asked for.
#[derive(Default)]
pub struct ScriptedStt {
    scripts: Arc<Mutex<HashMap<String, VecDeque<String>>>>,
    /// Panics left to throw, by customer, shared by every session (restarts included).
    panics: Arc<Mutex<HashMap<String, usize>>>,
    /// The options of each session opened through [`SpeechToText::open_with`], in order.
    opened: Mutex<Vec<SttOptions>>,
    latency: Duration,
}

impl ScriptedStt {
    /// Transcripts arrive `latency` after each utterance ends.
    pub fn new(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// What `customer` will be heard saying, utterance by utterance.
    pub fn script(&self, customer: &str, lines: &[&str]) {
        lock(&self.scripts).insert(
            customer.to_owned(),
            lines.iter().map(|l| l.to_string()).collect(),
        );
    }

    /// The next `times` frames fed for `customer` make the STT actor panic
    /// (`usize::MAX`: every frame).
    pub fn panic_for(&self, customer: &str, times: usize) {
        lock(&self.panics).insert(customer.to_owned(), times);
    }

    /// The options every session was opened with, in order (restarts included).
    pub fn opened(&self) -> Vec<SttOptions> {
        lock(&self.opened).clone()
    }
}

/// The feed of a scripted session.
struct ScriptedFeed {
    tx: mpsc::Sender<SttInput>,
    customer: String,
    panics: Arc<Mutex<HashMap<String, usize>>>,
}

impl SttFeed for ScriptedFeed {
    fn push(&mut self, input: SttInput) -> PortResult<()> {
        let crash = match lock(&self.panics).get_mut(&self.customer) {
            Some(left) if *left > 0 => {
                *left = left.saturating_sub(1);
                true
            }
            _ => false,
        };
        assert!(!crash, "scripted STT adapter crash");
        self.tx.push(input)
    }
}

impl SpeechToText for ScriptedStt {
    /// Records the options, then hears the script whatever the mode.
    fn open(&self, call: &CallInfo, options: &SttOptions) -> SttSession {
        lock(&self.opened).push(options.clone());
        let (tx, mut input) = mpsc::channel(1024);
        let (events_tx, events) = mpsc::channel(16);
        let scripts = self.scripts.clone();
        let customer = call.customer.clone();
        let latency = self.latency;
        tokio::spawn(async move {
            let mut frames = 0usize;
            while let Some(item) = input.recv().await {
                match item {
                    SttInput::Audio(_) => frames += 1,
                    SttInput::UtteranceEnded => {
                        let text = match frames {
                            0 => String::new(),
                            _ => lock(&scripts)
                                .get_mut(&customer)
                                .and_then(VecDeque::pop_front)
                                .unwrap_or_default(),
                        };
                        frames = 0;
                        tokio::time::sleep(latency).await;
                        if events_tx.send(SttEvent::Final(text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        SttSession {
            feed: Box::new(ScriptedFeed {
                tx,
                customer: call.customer.clone(),
                panics: self.panics.clone(),
            }),
            events,
        }
    }
}

// ---------------------------------------------------------------- language model

/// How a scripted model answers a request.
type ReplyFn = dyn Fn(&LlmRequest) -> Vec<LlmDelta> + Send + Sync;

/// A language model whose replies a test writes as a function of the request, streamed a
/// word at a time after `first_token` latency. It keeps every request for assertions.
pub struct ScriptedLlm {
    reply: Box<ReplyFn>,
    first_token: Duration,
    requests: Mutex<Vec<LlmRequest>>,
}

impl ScriptedLlm {
    /// Replies made by `reply`.
    pub fn new(
        first_token: Duration,
        reply: impl Fn(&LlmRequest) -> Vec<LlmDelta> + Send + Sync + 'static,
    ) -> Self {
        Self {
            reply: Box::new(reply),
            first_token,
            requests: Mutex::new(Vec::new()),
        }
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LlmRequest> {
        lock(&self.requests).clone()
    }

    /// The last user message of a request, the usual key of a scripted reply.
    pub fn last_user(request: &LlmRequest) -> &str {
        request
            .messages
            .iter()
            .rev()
            .find_map(|m| match m {
                ChatMessage::User(text) => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or("")
    }

    /// Text deltas of `text`, a word (with its space) at a time.
    pub fn words(text: &str) -> Vec<LlmDelta> {
        text.split_inclusive(' ')
            .map(|w| LlmDelta::Text(w.to_owned()))
            .collect()
    }
}

#[async_trait]
impl LanguageModel for ScriptedLlm {
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
        let deltas = (self.reply)(&request);
        lock(&self.requests).push(request);
        let first_token = self.first_token;
        let delayed = futures::stream::once(async move {
            tokio::time::sleep(first_token).await;
            futures::stream::iter(deltas.into_iter().map(Ok))
        });
        Ok(Box::pin(delayed.flatten()))
    }
}

// ---------------------------------------------------------------- text-to-speech

/// Text-to-speech that "speaks" 60 ms of mu-law per character in 20 ms chunks, after
/// `first_byte` latency; the audio is a quiet tone, so it is real mu-law a phone could play.
pub struct ToneTts {
    first_byte: Duration,
}

impl ToneTts {
    /// Audio starts `first_byte` after the request.
    pub fn new(first_byte: Duration) -> Self {
        Self { first_byte }
    }
}

#[async_trait]
impl TextToSpeech for ToneTts {
    async fn synthesize(&self, request: TtsRequest) -> PortResult<AudioStream> {
        tokio::time::sleep(self.first_byte).await;
        let frames = request.text.chars().count() * 3;
        let frame: Vec<u8> = (0..FRAME_SAMPLES)
            .map(|i| crate::audio::mulaw::encode(((i as f32 * 0.35).sin() * 2000.0) as i16))
            .collect();
        Ok(Box::pin(futures::stream::iter(
            (0..frames).map(move |_| Ok(frame.clone())),
        )))
    }
}

// ---------------------------------------------------------------- telephony

/// What a fake phone leg was asked to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PhoneLog {
    /// Bytes of audio sent to the caller.
    pub audio_bytes: usize,
    /// Marks, in order.
    pub marks: Vec<String>,
    /// `clear` calls (barge-ins).
    pub clears: usize,
    /// The call was hung up.
    pub hung_up: bool,
    /// Transfers, in order.
    pub transfers: Vec<String>,
    /// Texts sent.
    pub sms: Vec<String>,
}

/// Where a fake phone plays marks back to.
type MarkEcho = dyn Fn(String) + Send + Sync;

/// A phone leg that records everything and plays marks back like Twilio: at once, or held
/// until the test releases them (to stage a barge-in mid-reply).
#[derive(Default)]
pub struct FakePhone {
    log: Mutex<PhoneLog>,
    echo: Mutex<Option<Box<MarkEcho>>>,
    hold_marks: Mutex<Option<VecDeque<String>>>,
}

impl FakePhone {
    /// Where marks are played back to (the call).
    pub fn on_mark(&self, echo: impl Fn(String) + Send + Sync + 'static) {
        *lock(&self.echo) = Some(Box::new(echo));
    }

    /// From now on marks wait for [`FakePhone::release_marks`].
    pub fn hold_marks(&self) {
        *lock(&self.hold_marks) = Some(VecDeque::new());
    }

    /// Plays back up to `n` held marks; returns how many were released.
    pub fn release_marks(&self, n: usize) -> usize {
        let released: Vec<String> = match lock(&self.hold_marks).as_mut() {
            Some(held) => (0..n).map_while(|_| held.pop_front()).collect(),
            None => Vec::new(),
        };
        let count = released.len();
        for mark in released {
            self.echo(mark);
        }
        count
    }

    /// Plays back every held mark and stops holding: marks echo at once again.
    pub fn stop_holding(&self) {
        let held = lock(&self.hold_marks).take().unwrap_or_default();
        for mark in held {
            self.echo(mark);
        }
    }

    /// Marks held and not yet released.
    pub fn held_marks(&self) -> usize {
        lock(&self.hold_marks).as_ref().map_or(0, VecDeque::len)
    }

    /// What the call asked of the phone so far.
    pub fn log(&self) -> PhoneLog {
        lock(&self.log).clone()
    }

    fn echo(&self, mark: String) {
        if let Some(echo) = lock(&self.echo).as_ref() {
            echo(mark);
        }
    }
}

#[async_trait]
impl Telephony for FakePhone {
    fn send_audio(&self, mulaw: &[u8]) {
        lock(&self.log).audio_bytes += mulaw.len();
    }

    fn mark(&self, name: &str) {
        lock(&self.log).marks.push(name.to_owned());
        let held = match lock(&self.hold_marks).as_mut() {
            Some(held) => {
                held.push_back(name.to_owned());
                true
            }
            None => false,
        };
        if !held {
            self.echo(name.to_owned());
        }
    }

    fn clear(&self) {
        lock(&self.log).clears += 1;
        if let Some(held) = lock(&self.hold_marks).as_mut() {
            held.clear();
        }
    }

    async fn hang_up(&self) -> PortResult<()> {
        lock(&self.log).hung_up = true;
        Ok(())
    }

    async fn transfer(&self, to: &E164) -> PortResult<()> {
        lock(&self.log).transfers.push(to.to_string());
        Ok(())
    }

    async fn send_sms(&self, body: &str) -> PortResult<()> {
        lock(&self.log).sms.push(body.to_owned());
        Ok(())
    }
}

// ---------------------------------------------------------------- configuration

/// Tenants' configuration held in memory.
#[derive(Default)]
pub struct StaticDirectory {
    tenants: Mutex<HashMap<TenantId, TenantConfig>>,
}

impl StaticDirectory {
    /// Sets (or replaces) a tenant's configuration.
    pub fn set(&self, tenant: TenantId, config: TenantConfig) {
        lock(&self.tenants).insert(tenant, config);
    }
}

#[async_trait]
impl TenantDirectory for StaticDirectory {
    async fn tenant_config(&self, tenant: TenantId) -> PortResult<TenantConfig> {
        lock(&self.tenants)
            .get(&tenant)
            .cloned()
            .ok_or_else(|| PortError::Refused(format!("no tenant {tenant}")))
    }
}

// ---------------------------------------------------------------- supervision probe

/// A supervisor for tests: whatever is started under it reports failures here, and the test
/// fails if any escaped (an actor that should have been handled lower in the tree).
pub struct Probe {
    actor: ActorRef<()>,
    failures: Arc<Mutex<Vec<String>>>,
}

struct ProbeActor;

impl Actor for ProbeActor {
    type Msg = ();
    type State = Arc<Mutex<Vec<String>>>;
    type Arguments = Arc<Mutex<Vec<String>>>;

    async fn pre_start(
        &self,
        _: ActorRef<()>,
        failures: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(failures)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        failures: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(who, error) = event {
            lock(failures).push(format!("{who:?}: {error}"));
        }
        Ok(())
    }
}

impl Probe {
    /// Starts a probe.
    pub async fn start() -> Self {
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (actor, _) = ProbeActor::spawn(None, ProbeActor, failures.clone())
            .await
            .expect("a probe starts");
        Self { actor, failures }
    }

    /// The supervisor cell to start the actor under test with.
    pub fn cell(&self) -> ActorCell {
        self.actor.get_cell()
    }

    /// Panics with every failure that reached the probe.
    pub fn assert_no_failures(&self) {
        let failures = lock(&self.failures);
        assert!(
            failures.is_empty(),
            "failures escaped to the probe: {failures:?}"
        );
    }
}
