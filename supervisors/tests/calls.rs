//! Whole calls through the supervision tree with in-memory ports: several turns, barge-in,
//! a tool call, crash isolation across 200 concurrent calls, admission and drain, and what
//! is recorded after a call (usage, the model's analysis). Every test
//! runs the runtime under a probe supervisor that fails the test on any escaped failure, with
//! paused time so provider latencies cost no wall-clock time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::conversation::ConversationMsg;
use actors::domain::{AgentId, CallId, TenantId, E164};
use actors::event_hub::{EventHub, EventHubArgs, EventHubMsg, EventHubSink, Subscription};
use actors::knowledge::KnowledgeMsg;
use actors::ports::TenantDirectory;
use actors::ports::{
    AgentConfig, CallInfo, CallOutcome, CallUsage, ChatMessage, KnowledgeChunk, LanguageModel,
    LlmDelta, LlmRequest, LlmStream, PortResult, Sentiment, Speaker, SpeechToText, SttFeed,
    SttInput, SttMode, SttOptions, SttSession, TenantConfig, Tool, ToolCall,
};
use actors::testing::{
    FakePhone, HashEmbedder, MemoryCallLog, MemoryConversationStore, MemoryVectorStore, Probe,
    ScriptedLlm, ScriptedStt, StaticDirectory, ToneTts,
};
use ractor::{Actor, ActorRef};
use supervisors::call::{CallMsg, CallPhase, CallSettings, ANALYSIS_INSTRUCTIONS};
use supervisors::runtime::{Runtime, RuntimeArgs, RuntimePorts};
use supervisors::tenant::Refusal;

/// Real speech (espeak-ng), 8 kHz mu-law: "I'd like to book a service appointment for Tuesday".
const SPEECH: &[u8] = include_bytes!("../../actors/tests/fixtures/sentence.ulaw");

struct World {
    runtime: Runtime,
    /// Where the calls' events go, for the tests that watch them.
    hub: ActorRef<EventHubMsg>,
    probe: Probe,
    stt: Arc<ScriptedStt>,
    /// Frames of caller audio every session was fed, for usage.
    stt_frames: Arc<AtomicU64>,
    llm: Arc<ScriptedLlm>,
    log: Arc<MemoryCallLog>,
    conversations: Arc<MemoryConversationStore>,
    directory: Arc<StaticDirectory>,
    tenant: TenantId,
    agent: AgentId,
}

fn agent(tools: Vec<Tool>) -> AgentConfig {
    AgentConfig {
        id: AgentId::new(),
        system_prompt: "You are the front desk of {{tenant_name}}.".to_owned(),
        first_message: "Thanks for calling {{tenant_name}}!".to_owned(),
        language: "en".to_owned(),
        voice: "test-voice".to_owned(),
        llm_model: "test-model".to_owned(),
        llm_fallback_models: Vec::new(),
        stt_mode: SttMode::Utterance,
        tools,
        transfer_number: Some(E164::parse("+14155550100").unwrap()),
        analysis_schema: serde_json::Map::new(),
        auto_retrieval: None,
    }
}

/// Speech-to-text that counts the frames of audio fed to it, then hands them to the
/// scripted provider: the truth that recorded STT usage is checked against.
struct CountingStt {
    inner: Arc<ScriptedStt>,
    frames: Arc<AtomicU64>,
}

struct CountingFeed {
    inner: Box<dyn SttFeed>,
    frames: Arc<AtomicU64>,
}

impl SttFeed for CountingFeed {
    fn push(&mut self, input: SttInput) -> PortResult<()> {
        if matches!(input, SttInput::Audio(_)) {
            self.frames.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.push(input)
    }
}

impl CountingStt {
    fn counted(&self, session: SttSession) -> SttSession {
        SttSession {
            feed: Box::new(CountingFeed {
                inner: session.feed,
                frames: self.frames.clone(),
            }),
            events: session.events,
        }
    }
}

impl SpeechToText for CountingStt {
    fn open(&self, call: &CallInfo, options: &SttOptions) -> SttSession {
        self.counted(self.inner.open(call, options))
    }
}

async fn world(limit: usize, tools: Vec<Tool>, llm: ScriptedLlm) -> World {
    let llm = Arc::new(llm);
    world_with(limit, agent(tools), llm.clone(), llm).await
}

/// The post-call analysis request, as opposed to a reply to the caller.
fn is_analysis(request: &LlmRequest) -> bool {
    matches!(request.messages.first(), Some(ChatMessage::System(s)) if s.starts_with(ANALYSIS_INSTRUCTIONS))
}

/// The requests for replies to the caller, without the analysis.
fn replies(llm: &ScriptedLlm) -> Vec<LlmRequest> {
    llm.requests()
        .into_iter()
        .filter(|r| !is_analysis(r))
        .collect()
}

/// A world whose model port is `model` (usually `llm` itself, or a wrapper of it).
async fn world_with(
    limit: usize,
    agent: AgentConfig,
    llm: Arc<ScriptedLlm>,
    model: Arc<dyn LanguageModel>,
) -> World {
    let tenant = TenantId::new();
    let directory = Arc::new(StaticDirectory::default());
    directory.set(
        tenant,
        TenantConfig {
            name: "Acme Motors".to_owned(),
            timezone: "America/Chicago".to_owned(),
            concurrent_call_limit: limit,
            agents: vec![agent.clone()],
        },
    );
    let stt = Arc::new(ScriptedStt::new(Duration::from_millis(150)));
    let stt_frames = Arc::new(AtomicU64::new(0));
    let log = Arc::new(MemoryCallLog::default());
    let conversations = Arc::new(MemoryConversationStore::default());
    let (hub, _) = Actor::spawn(None, EventHub, EventHubArgs::default())
        .await
        .expect("the event hub starts");
    let ports = RuntimePorts {
        stt: Arc::new(CountingStt {
            inner: stt.clone(),
            frames: stt_frames.clone(),
        }),
        llm: model,
        tts: Arc::new(ToneTts::new(Duration::from_millis(120))),
        call_log: log.clone(),
        conversations: conversations.clone(),
        vectors: Arc::new(MemoryVectorStore::default()),
        embedder: Some(Arc::new(HashEmbedder::default())),
        directory: directory.clone(),
        events: Arc::new(EventHubSink(hub.clone())),
    };
    let probe = Probe::start().await;
    let runtime = Runtime::start(
        RuntimeArgs {
            ports,
            settings: CallSettings::default(),
        },
        Some(probe.cell()),
    )
    .await
    .expect("the runtime starts");
    World {
        runtime,
        hub,
        probe,
        stt,
        stt_frames,
        llm,
        log,
        conversations,
        directory,
        tenant,
        agent: agent.id,
    }
}

fn echo_reply(request: &actors::ports::LlmRequest) -> Vec<LlmDelta> {
    ScriptedLlm::words(&format!("You said: {}.", ScriptedLlm::last_user(request)))
}

impl World {
    /// The tenant's live events.
    async fn subscribe(&self) -> Subscription {
        ractor::call_t!(
            self.hub,
            |reply| EventHubMsg::Subscribe {
                tenant: self.tenant,
                capacity: 256,
                after: None,
                reply,
            },
            1000
        )
        .expect("the hub answers")
    }

    fn call_info(&self, customer: &str) -> CallInfo {
        CallInfo {
            call_id: CallId::new(),
            tenant: self.tenant,
            agent: self.agent,
            customer: customer.to_owned(),
            business_number: E164::parse("+14155550199").unwrap(),
        }
    }

    /// Starts a call whose phone plays marks back at once.
    async fn dial(
        &self,
        customer: &str,
    ) -> Result<(CallInfo, ActorRef<CallMsg>, Arc<FakePhone>), Refusal> {
        let info = self.call_info(customer);
        let phone = Arc::new(FakePhone::default());
        let call = self.runtime.start_call(info.clone(), phone.clone()).await?;
        let echo_to = call.clone();
        phone.on_mark(move |mark| {
            let _ = echo_to.send_message(CallMsg::Marked(mark));
        });
        Ok((info, call, phone))
    }

    async fn shutdown(self) {
        self.runtime.stop().await;
        self.probe.assert_no_failures();
    }
}

/// The caller speaks the fixture, then is silent long enough to end the utterance, a frame
/// every 20 ms as Twilio sends them (paused time makes that free).
async fn speak(call: &ActorRef<CallMsg>) {
    let audio = ractor::call_t!(call, CallMsg::AudioInlet, 1000).unwrap();
    for frame in SPEECH
        .chunks_exact(160)
        .chain(std::iter::repeat_n(&[0xFFu8; 160][..], 50))
    {
        audio.push(frame.try_into().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the call has recorded `turns` lines and listens again; `None` once the call
/// is over.
async fn after_turns(
    log: &MemoryCallLog,
    info: &CallInfo,
    call: &ActorRef<CallMsg>,
    turns: usize,
) -> Option<()> {
    for _ in 0..2_000 {
        match log.call(info.call_id) {
            Some(record) if record.outcome.is_some() => return None,
            Some(record) if record.turns.len() >= turns => return listening(call).await,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the call never reached {turns} lines");
}

/// Waits until the call listens; `None` once the call is over.
async fn listening(call: &ActorRef<CallMsg>) -> Option<()> {
    for _ in 0..2_000 {
        let phase = ractor::call_t!(call, CallMsg::Phase, 1_000).ok()?;
        match phase {
            CallPhase::Listening => return Some(()),
            CallPhase::Ended => return None,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    panic!("the call never listened again");
}

/// Dials from `caller`, who will say `lines` (one per turn), and waits for the greeting.
async fn greeted(
    world: &World,
    caller: &str,
    lines: &[&str],
) -> (CallInfo, ActorRef<CallMsg>, Arc<FakePhone>) {
    world.stt.script(caller, lines);
    let (info, call, phone) = world.dial(caller).await.unwrap();
    after_turns(&world.log, &info, &call, 1)
        .await
        .expect("greeting played");
    (info, call, phone)
}

/// Dials from `caller`, who says `lines` (one per turn, after the greeting) and hangs up;
/// the call's record once it has ended.
async fn converse(world: &World, caller: &str, lines: &[&str]) -> actors::testing::RecordedCall {
    let (info, call, _phone) = greeted(world, caller, lines).await;
    for turn in 1..=lines.len() {
        speak(&call).await;
        after_turns(&world.log, &info, &call, 1 + 2 * turn)
            .await
            .expect("the call goes on");
    }
    call.send_message(CallMsg::CallerHungUp).unwrap();
    world.log.wait_for_end(info.call_id).await
}

#[tokio::test(start_paused = true)]
async fn a_call_of_several_turns_is_answered_recorded_and_remembered() {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(250), echo_reply),
    )
    .await;
    world.stt.script(
        "+15550001",
        &[
            "I need a service appointment",
            "Tuesday at nine",
            "That's all, thanks",
        ],
    );
    let mut events = world.subscribe().await;
    let (info, call, phone) = world.dial("+15550001").await.unwrap();

    after_turns(&world.log, &info, &call, 1)
        .await
        .expect("greeting played");
    for turn in 1..=3 {
        speak(&call).await;
        after_turns(&world.log, &info, &call, 1 + 2 * turn)
            .await
            .expect("reply played");
    }
    call.send_message(CallMsg::CallerHungUp).unwrap();
    let record = world.log.wait_for_end(info.call_id).await;

    assert_eq!(record.outcome, Some(CallOutcome::Completed));
    let lines: Vec<(Speaker, &str)> = record
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (Speaker::Agent, "Thanks for calling Acme Motors!"),
            (Speaker::Customer, "I need a service appointment"),
            (Speaker::Agent, "You said: I need a service appointment."),
            (Speaker::Customer, "Tuesday at nine"),
            (Speaker::Agent, "You said: Tuesday at nine."),
            (Speaker::Customer, "That's all, thanks"),
            (Speaker::Agent, "You said: That's all, thanks."),
        ]
    );
    for turn in record.turns.iter().skip(2).step_by(2) {
        let t = turn.timings;
        assert_eq!(t.endpointing_ms, Some(600));
        assert!(t.stt_ms.is_some_and(|ms| ms >= 150), "{t:?}");
        assert!(t.llm_first_token_ms.is_some_and(|ms| ms >= 250), "{t:?}");
        assert!(t.tts_first_byte_ms.is_some_and(|ms| ms >= 120), "{t:?}");
        assert!(t.voice_to_voice_ms.is_some_and(|ms| ms >= 520), "{t:?}");
    }
    assert!(phone.log().audio_bytes > 0);
    assert_eq!(phone.log().clears, 0);

    // Staff screens saw the call as it happened, in order, ending with its summary.
    let mut kinds = Vec::new();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
            Ok(Some(actors::event_hub::HubItem::Event(stamped))) => {
                kinds.push(stamped.event.kind);
                if stamped.event.kind == "call.ended" {
                    break stamped.event.data.clone();
                }
            }
            other => panic!("no event should be lost or missing: {other:?} after {kinds:?}"),
        }
    };
    assert_eq!(kinds.first(), Some(&"call.started"), "{kinds:?}");
    assert_eq!(ended["outcome"], "completed", "{ended}");
    // This model writes no analysis: the end is announced without a summary.
    assert!(
        ended["duration_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{ended}"
    );
    assert_eq!(ended["summary"], serde_json::Value::Null, "{ended}");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "call.agent_speaking")
            .count(),
        4,
        "the greeting and three replies: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "call.transcript").count(),
        7,
        "{kinds:?}"
    );

    // The customer's history across calls now holds the conversation, and the next prompt
    // carries it.
    let requests = replies(&world.llm);
    let last = requests.last().unwrap();
    assert!(
        matches!(&last.messages[0], ChatMessage::System(s) if s == "You are the front desk of Acme Motors.")
    );
    assert!(last
        .messages
        .contains(&ChatMessage::User("Tuesday at nine".to_owned())));
    let stored = world.conversations.snapshot(world.tenant, "+15550001");
    assert_eq!(stored.history.len(), 7);
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn records_a_busy_store_refused_are_written_when_it_recovers() {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(250), echo_reply),
    )
    .await;
    // The call's first record meets a busy store four times running (0.2 + 0.4 + 0.8 + 1.6 s
    // of backoff); the ones queued behind it wait their turn.
    world.log.fail_next_writes(4);
    let record = converse(&world, "+15550002", &["Are you open on Sunday"]).await;

    assert_eq!(record.outcome, Some(CallOutcome::Completed));
    let lines: Vec<&str> = record.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Thanks for calling Acme Motors!",
            "Are you open on Sunday",
            "You said: Are you open on Sunday."
        ]
    );
    world.shutdown().await;
}

/// A server's drain ends with the runtime's stop; the calls' last records, even one the
/// store is still retrying, are written before it returns (the database closes next).
#[tokio::test(start_paused = true)]
async fn stopping_the_runtime_waits_for_the_calls_last_records() {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(250), echo_reply),
    )
    .await;
    let (info, call, _phone) = greeted(&world, "+15550009", &[]).await;
    // The end of the call meets a busy store (0.2 + 0.4 + 0.8 s of backoff).
    world.log.fail_next_writes(3);
    call.send_message(CallMsg::CallerHungUp).unwrap();
    assert_eq!(listening(&call).await, None, "the call ended");
    let log = world.log.clone();
    world.shutdown().await;

    let record = log.call(info.call_id).expect("the call started");
    assert_eq!(record.outcome, Some(CallOutcome::Completed), "{record:?}");
    assert_eq!(record.ends, 1);
}

#[tokio::test(start_paused = true)]
async fn idle_conversations_leave_memory_and_come_back_whole_but_not_while_on_a_call() {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(10), echo_reply),
    )
    .await;
    let idle = CallSettings::default().conversation_idle;
    converse(&world, "+15550003", &["I need new tires"]).await;
    let loaded = world
        .runtime
        .conversation(world.tenant, "+15550003")
        .await
        .unwrap();
    let (on_call, live, _) = world.dial("+15550004").await.unwrap();
    let talking = world
        .runtime
        .conversation(world.tenant, "+15550004")
        .await
        .unwrap();

    tokio::time::sleep(idle * 2).await;
    assert_eq!(
        loaded.get_status(),
        ractor::ActorStatus::Stopped,
        "idle: retired"
    );
    let reloaded = world
        .runtime
        .conversation(world.tenant, "+15550003")
        .await
        .unwrap();
    assert_ne!(reloaded.get_id(), loaded.get_id());
    let snapshot = ractor::call_t!(reloaded, ConversationMsg::Snapshot, 1000).unwrap();
    let lines: Vec<&str> = snapshot.history.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Thanks for calling Acme Motors!",
            "I need new tires",
            "You said: I need new tires."
        ],
        "reloaded from the store with nothing lost"
    );
    let still = world
        .runtime
        .conversation(world.tenant, "+15550004")
        .await
        .unwrap();
    assert_eq!(
        still.get_id(),
        talking.get_id(),
        "a customer on a call keeps theirs"
    );

    live.send_message(CallMsg::CallerHungUp).unwrap();
    world.log.wait_for_end(on_call.call_id).await;
    world.shutdown().await;
}

/// A call whose agent is in the middle of a three-sentence reply: every sentence is queued
/// at the phone and none has played yet. The caller will next be heard saying `then`.
async fn mid_reply(
    customer: &str,
    then: &str,
) -> (World, CallInfo, ActorRef<CallMsg>, Arc<FakePhone>) {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(200), three_sentences),
    )
    .await;
    world.stt.script(customer, &["Tell me everything", then]);
    let (info, call, phone) = world.dial(customer).await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    phone.hold_marks();
    speak(&call).await;
    for _ in 0..500 {
        if phone.held_marks() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(phone.held_marks(), 3, "the whole reply is queued");
    (world, info, call, phone)
}

#[tokio::test(start_paused = true)]
async fn barge_in_stops_the_reply_clears_playback_and_keeps_only_what_was_heard() {
    let (world, info, call, phone) = mid_reply("+15550002", "Wait, stop").await;
    assert_eq!(phone.release_marks(1), 1);
    // The caller talks over the rest; then playback is real-time again for the next reply.
    speak(&call).await;
    assert_eq!(phone.log().clears, 1, "barge-in cleared the queued audio");
    phone.stop_holding();
    after_turns(&world.log, &info, &call, 5).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    let record = world.log.wait_for_end(info.call_id).await;

    assert_eq!(phone.log().clears, 1, "no later reply was cleared");
    let interrupted: Vec<_> = record.turns.iter().filter(|t| t.interrupted).collect();
    assert_eq!(interrupted.len(), 1);
    assert_eq!(interrupted[0].text, "The first thing to know is our hours.");
    let history = world
        .conversations
        .snapshot(world.tenant, "+15550002")
        .history;
    let agent_lines: Vec<&str> = history
        .iter()
        .filter(|h| h.speaker == Speaker::Agent)
        .map(|h| h.text.as_str())
        .collect();
    assert_eq!(
        agent_lines,
        [
            "Thanks for calling Acme Motors!",
            "The first thing to know is our hours.",
            "Okay."
        ]
    );
    // Every sentence that went to synthesis is billed, heard or not.
    let usage = world
        .log
        .wait_for(info.call_id, |r| r.usage_records >= 1)
        .await
        .usage;
    let synthesized = [
        "Thanks for calling Acme Motors!",
        "The first thing to know is our hours.",
        "The second thing is our prices.",
        "The third thing is our warranty.",
        "Okay.",
    ];
    assert_eq!(
        usage.tts_characters,
        synthesized
            .iter()
            .map(|s| s.chars().count() as u64)
            .sum::<u64>()
    );
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_tool_call_round_trip_answers_from_the_knowledge_base() {
    let reply = |request: &actors::ports::LlmRequest| match request.messages.last() {
        Some(ChatMessage::Tool { content, .. }) => {
            let found: serde_json::Value = serde_json::from_str(content).unwrap();
            let text = found["results"][0]["text"]
                .as_str()
                .unwrap_or("nothing found")
                .to_owned();
            ScriptedLlm::words(&format!("Here is what I found: {text}"))
        }
        _ => vec![LlmDelta::ToolCall(ToolCall {
            id: "call_1".to_owned(),
            name: "search_knowledge".to_owned(),
            arguments: r#"{"query":"opening hours"}"#.to_owned(),
        })],
    };
    let world = world(
        5,
        vec![Tool::SearchKnowledge],
        ScriptedLlm::new(Duration::from_millis(100), reply),
    )
    .await;
    let tenant = world.runtime.tenant(world.tenant).await.unwrap();
    let knowledge = ractor::call_t!(tenant, supervisors::tenant::TenantMsg::Knowledge, 1_000)
        .unwrap()
        .expect("the knowledge actor runs");
    let chunk = KnowledgeChunk {
        id: "hours-1".to_owned(),
        document_id: "handbook".to_owned(),
        title: "Handbook".to_owned(),
        location: "page 1".to_owned(),
        text: "Our opening hours are 8am to 6pm, Monday to Friday.".to_owned(),
        dense: None,
    };
    ractor::call_t!(
        knowledge,
        |reply| KnowledgeMsg::Ingest {
            chunks: vec![chunk],
            reply
        },
        1_000
    )
    .unwrap()
    .unwrap();

    world.stt.script("+15550003", &["When are you open?"]);
    let (info, call, _phone) = world.dial("+15550003").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    speak(&call).await;
    after_turns(&world.log, &info, &call, 3).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    let record = world.log.wait_for_end(info.call_id).await;

    let requests = replies(&world.llm);
    assert_eq!(
        requests.len(),
        2,
        "one round for the tool call, one for the answer"
    );
    assert_eq!(requests[0].tools[0].name, "search_knowledge");
    assert!(
        matches!(requests[1].messages.last(), Some(ChatMessage::Tool { call_id, .. }) if call_id == "call_1")
    );
    let answer = &record.turns.last().unwrap().text;
    assert_eq!(
        answer,
        "Here is what I found: Our opening hours are 8am to 6pm, Monday to Friday."
    );
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn one_crashing_call_among_200_ends_gracefully_and_the_others_complete() {
    let world = Arc::new(
        world(
            500,
            vec![],
            ScriptedLlm::new(Duration::from_millis(250), echo_reply),
        )
        .await,
    );
    let broken = "+15550057";
    world.stt.panic_for(broken, usize::MAX);
    let mut callers = Vec::new();
    for i in 0..200 {
        let customer = format!("+155500{i:02}");
        let lines = [
            format!("Hello from caller {i}"),
            format!("Goodbye from caller {i}"),
        ];
        world
            .stt
            .script(&customer, &[lines[0].as_str(), lines[1].as_str()]);
        let world = world.clone();
        callers.push(tokio::spawn(async move {
            let (info, call, phone) = world.dial(&customer).await.expect("admitted");
            if after_turns(&world.log, &info, &call, 1).await.is_some() {
                for turn in 1..=2 {
                    speak(&call).await;
                    if after_turns(&world.log, &info, &call, 1 + 2 * turn)
                        .await
                        .is_none()
                    {
                        break;
                    }
                }
                let _ = call.send_message(CallMsg::CallerHungUp);
            }
            (customer, info, phone, lines)
        }));
    }
    let mut completed = 0;
    for caller in callers {
        let (customer, info, phone, lines) = caller.await.expect("no caller task panicked");
        let record = world.log.wait_for_end(info.call_id).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let record = world.log.call(info.call_id).unwrap_or(record);
        assert_eq!(record.ends, 1, "{customer}'s end was recorded once");
        if customer == broken {
            let Some(CallOutcome::Failed(reason)) = &record.outcome else {
                panic!("the broken call should have failed: {:?}", record.outcome);
            };
            assert!(reason.contains("Stt"), "{reason}");
            let phone = phone.log();
            let apology = "t18446744073709551615s0".to_owned();
            assert!(
                phone.marks.contains(&apology),
                "the apology played: {phone:?}"
            );
            assert_eq!(phone.transfers, ["+14155550100"], "then a person took over");
            continue;
        }
        assert_eq!(record.outcome, Some(CallOutcome::Completed), "{customer}");
        let said: Vec<&str> = record
            .turns
            .iter()
            .filter(|t| t.speaker == Speaker::Customer)
            .map(|t| t.text.as_str())
            .collect();
        assert_eq!(said, [lines[0].as_str(), lines[1].as_str()], "{customer}");
        completed += 1;
    }
    assert_eq!(completed, 199);
    let world = Arc::try_unwrap(world).ok().expect("callers are done");
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_tenant_limit_refuses_the_next_call_until_one_ends() {
    let world = world(
        2,
        vec![],
        ScriptedLlm::new(Duration::from_millis(10), echo_reply),
    )
    .await;
    let (first, call, _) = world.dial("+15550101").await.unwrap();
    world.dial("+15550102").await.unwrap();
    let refused = world.dial("+15550103").await.err();
    assert_eq!(refused, Some(Refusal::AtCapacity(2)));

    call.send_message(CallMsg::CallerHungUp).unwrap();
    world.log.wait_for_end(first.call_id).await;
    let mut admitted = false;
    for _ in 0..100 {
        if world.dial("+15550104").await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(admitted, "a freed slot admits the next call");
    assert_eq!(
        world.dial("+15550105").await.err(),
        Some(Refusal::AtCapacity(2))
    );

    // The tenant raises its limit: the runtime reloads it and admits more.
    let mut config = world.directory.tenant_config(world.tenant).await.unwrap();
    config.concurrent_call_limit = 3;
    world.directory.set(world.tenant, config);
    world.runtime.config_changed(world.tenant);
    let mut raised = false;
    for _ in 0..100 {
        if world.dial("+15550106").await.is_ok() {
            raised = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(raised, "the new limit applies without a restart");
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn draining_refuses_new_calls_and_waits_for_live_ones() {
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(10), echo_reply),
    )
    .await;
    let (info, call, _) = world.dial("+15550201").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    let runtime = world.runtime.clone();
    let drained = tokio::spawn(async move { runtime.drain(Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(world.dial("+15550202").await.err(), Some(Refusal::Draining));
    call.send_message(CallMsg::CallerHungUp).unwrap();
    assert_eq!(drained.await.unwrap(), Ok(0));
    world.shutdown().await;
}

/// Agent speech whose marks the test holds, so the agent is still "speaking" when the
/// caller makes a sound.
fn three_sentences(request: &actors::ports::LlmRequest) -> Vec<LlmDelta> {
    if ScriptedLlm::last_user(request).starts_with("Tell me") {
        ScriptedLlm::words("The first thing to know is our hours. The second thing is our prices. The third thing is our warranty. ")
    } else {
        ScriptedLlm::words("Okay.")
    }
}

#[tokio::test(start_paused = true)]
async fn a_short_sound_over_the_agent_neither_interrupts_nor_starts_a_turn() {
    let (world, info, call, phone) = mid_reply("+15550301", "mm-hm").await;
    // 300 ms of speech: longer than an utterance's minimum, shorter than a barge-in.
    let burst = &SPEECH[160 * 40..160 * 55];
    let audio = ractor::call_t!(call, CallMsg::AudioInlet, 1000).unwrap();
    for frame in burst
        .chunks_exact(160)
        .chain(std::iter::repeat_n(&[0xFFu8; 160][..], 50))
    {
        audio.push(frame.try_into().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    phone.stop_holding();
    after_turns(&world.log, &info, &call, 3).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    let record = world.log.wait_for_end(info.call_id).await;

    assert_eq!(phone.log().clears, 0, "nothing was cut off");
    let lines: Vec<&str> = record.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Thanks for calling Acme Motors!",
            "Tell me everything",
            "The first thing to know is our hours. The second thing is our prices. The third thing is our warranty."
        ]
    );
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_agents_stt_mode_and_fallback_models_reach_the_ports() {
    let llm = Arc::new(ScriptedLlm::new(
        Duration::from_millis(100),
        echo_and_analyse,
    ));
    let agent = AgentConfig {
        stt_mode: SttMode::Streaming,
        llm_fallback_models: vec!["spare-a".to_owned(), "spare-b".to_owned()],
        ..agent(vec![])
    };
    let world = world_with(5, agent, llm.clone(), llm).await;
    world.stt.script("+15550401", &["What time do you open?"]);
    let (info, call, _phone) = world.dial("+15550401").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    speak(&call).await;
    after_turns(&world.log, &info, &call, 3).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    world
        .log
        .wait_for(info.call_id, |r| r.analysis.is_some())
        .await;

    assert_eq!(
        world.stt.opened(),
        [SttOptions {
            language: "en".to_owned(),
            mode: SttMode::Streaming
        }],
        "the session is opened in the agent's mode and language"
    );
    let requests = world.llm.requests();
    assert!(requests.iter().any(is_analysis), "the analysis ran");
    for request in &requests {
        assert_eq!(request.model, "test-model");
        assert_eq!(
            request.fallback_models,
            ["spare-a", "spare-b"],
            "replies and the analysis alike may fall back"
        );
    }
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_child_restarted_within_its_budget_lets_the_call_go_on() {
    let crashed_once = std::sync::atomic::AtomicBool::new(false);
    let flaky = move |request: &actors::ports::LlmRequest| {
        if !crashed_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
            panic!("model adapter bug");
        }
        echo_reply(request)
    };
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(100), flaky),
    )
    .await;
    world.stt.panic_for("+15550302", 1);
    let record = converse(&world, "+15550302", &["First question", "Second question"]).await;

    assert_eq!(record.outcome, Some(CallOutcome::Completed));
    let lines: Vec<&str> = record.turns.iter().map(|t| t.text.as_str()).collect();
    assert_eq!(
        lines,
        [
            "Thanks for calling Acme Motors!",
            "First question",
            "You said: First question.",
            "Second question",
            "You said: Second question."
        ],
        "the STT restart kept the utterance and the LLM restart resumed the reply"
    );
    world.shutdown().await;
}

/// Replies echo the caller and cost 15 tokens; the analysis answers in a ```json fence, as
/// models like to, and costs 120.
fn echo_and_analyse(request: &LlmRequest) -> Vec<LlmDelta> {
    if is_analysis(request) {
        return vec![
            LlmDelta::Text(
                "```json\n{\"summary\": \"The caller booked a service for Tuesday.\", ".to_owned(),
            ),
            LlmDelta::Text(
                "\"sentiment\": \"positive\", \"extracted\": {\"day\": \"Tuesday\"}}\n```"
                    .to_owned(),
            ),
            LlmDelta::Usage {
                prompt_tokens: 100,
                completion_tokens: 20,
            },
        ];
    }
    let mut deltas = echo_reply(request);
    deltas.push(LlmDelta::Usage {
        prompt_tokens: 10,
        completion_tokens: 5,
    });
    deltas
}

/// The schema the analysed agent extracts by.
fn day_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {"day": {"type": "string"}}})
}

fn analysed_agent() -> AgentConfig {
    let mut agent = agent(vec![]);
    agent.analysis_schema = day_schema().as_object().unwrap().clone();
    agent
}

/// The transcript as the analysis is meant to read it.
fn transcript_of(record: &actors::testing::RecordedCall) -> String {
    let lines: Vec<String> = record
        .turns
        .iter()
        .map(|t| match t.speaker {
            Speaker::Customer => format!("Customer: {}", t.text),
            _ => format!("Agent: {}", t.text),
        })
        .collect();
    lines.join("\n")
}

#[tokio::test(start_paused = true)]
async fn a_finished_call_records_its_usage_and_the_models_analysis() {
    let llm = Arc::new(ScriptedLlm::new(
        Duration::from_millis(250),
        echo_and_analyse,
    ));
    let world = world_with(5, analysed_agent(), llm.clone(), llm).await;
    let mut events = world.subscribe().await;
    world.stt.script(
        "+15550401",
        &["I need a service appointment", "Tuesday at nine"],
    );
    let before_dial = tokio::time::Instant::now();
    let (info, call, _phone) = world.dial("+15550401").await.unwrap();
    let after_dial = tokio::time::Instant::now();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    for turn in 1..=2 {
        speak(&call).await;
        after_turns(&world.log, &info, &call, 1 + 2 * turn)
            .await
            .expect("reply played");
    }
    let hung_up = tokio::time::Instant::now();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    let ended = world.log.wait_for_end(info.call_id).await;
    let ended_at = tokio::time::Instant::now();
    assert!(ended.analysis.is_none(), "the model is still writing it");

    // The call's supervisor stops at once; the analysis it started goes on without it.
    for _ in 0..100 {
        if call.get_status() == ractor::ActorStatus::Stopped {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(call.get_status(), ractor::ActorStatus::Stopped);
    let record = world
        .log
        .wait_for(info.call_id, |r| {
            r.analysis.is_some() && r.usage_records == 2
        })
        .await;

    let analysis = record.analysis.clone().unwrap();
    assert_eq!(analysis.summary, "The caller booked a service for Tuesday.");
    // Staff screens get the end with the summary once the model wrote it, and what the
    // analysis taught about the customer as a lead change.
    let (mut ended_event, mut lead_event) = (None, None);
    while ended_event.is_none() || lead_event.is_none() {
        match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
            Ok(Some(actors::event_hub::HubItem::Event(e))) => match e.event.kind {
                "call.ended" => ended_event = Some(e.event.data.clone()),
                "lead.updated" => lead_event = Some(e.event.data.clone()),
                _ => {}
            },
            other => panic!("missing call.ended or lead.updated: {other:?}"),
        }
    }
    let (ended_event, lead_event) = (ended_event.unwrap(), lead_event.unwrap());
    assert_eq!(
        ended_event["summary"],
        "The caller booked a service for Tuesday."
    );
    assert_eq!(ended_event["sentiment"], "positive");
    assert_eq!(lead_event["by"], "analysis");
    assert_eq!(lead_event["customer"], "+15550401");
    assert_eq!(analysis.sentiment, Sentiment::Positive);
    assert_eq!(
        serde_json::Value::Object(analysis.extracted),
        serde_json::json!({"day": "Tuesday"})
    );

    let analyses: Vec<LlmRequest> = world
        .llm
        .requests()
        .into_iter()
        .filter(is_analysis)
        .collect();
    assert_eq!(analyses.len(), 1, "the call is analysed once");
    let request = &analyses[0];
    assert_eq!(request.model, "test-model", "on the agent's own model");
    assert!(request.tools.is_empty());
    let ChatMessage::System(instructions) = &request.messages[0] else {
        panic!("{:?}", request.messages);
    };
    assert!(
        instructions.contains(&day_schema().to_string()),
        "the agent's schema is asked for: {instructions}"
    );
    assert_eq!(
        request.messages[1],
        ChatMessage::User(transcript_of(&record)),
        "with the whole transcript"
    );

    let spoken: u64 = record
        .turns
        .iter()
        .filter(|t| t.speaker == Speaker::Agent)
        .map(|t| t.text.chars().count() as u64)
        .sum();
    let usage = record.usage;
    assert_eq!(
        usage,
        CallUsage {
            call_ms: usage.call_ms,
            stt_ms: world.stt_frames.load(Ordering::SeqCst) * 20,
            llm_tokens: 2 * 15 + 120,
            tts_characters: spoken,
        },
        "two replies and the analysis in tokens, every frame heard, every character spoken"
    );
    assert!(usage.stt_ms > 0);
    let at_least = hung_up.duration_since(after_dial).as_millis() as u64;
    let at_most = ended_at.duration_since(before_dial).as_millis() as u64;
    assert!(
        (at_least..=at_most).contains(&usage.call_ms),
        "{at_least} <= {} <= {at_most}",
        usage.call_ms
    );
    assert_eq!(
        record.usage_records, 2,
        "the call's usage when it ended, the analysis's tokens after"
    );
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_call_where_the_customer_said_nothing_is_not_analysed() {
    let llm = Arc::new(ScriptedLlm::new(
        Duration::from_millis(10),
        echo_and_analyse,
    ));
    let world = world_with(5, analysed_agent(), llm.clone(), llm).await;
    let (info, call, _phone) = world.dial("+15550402").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    world
        .log
        .wait_for(info.call_id, |r| {
            r.outcome.is_some() && r.usage_records == 1
        })
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;

    let record = world.log.call(info.call_id).unwrap();
    assert!(world.llm.requests().is_empty(), "nothing to analyse");
    assert!(record.analysis.is_none());
    assert_eq!(record.usage_records, 1);
    let greeting = "Thanks for calling Acme Motors!".chars().count() as u64;
    assert_eq!(record.usage.tts_characters, greeting);
    assert_eq!((record.usage.stt_ms, record.usage.llm_tokens), (0, 0));
    assert!(record.usage.call_ms > 0);
    world.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_analysis_records_nothing_and_harms_nothing() {
    // The model answers the analysis like a caller: no JSON at all.
    let world = world(
        5,
        vec![],
        ScriptedLlm::new(Duration::from_millis(10), echo_reply),
    )
    .await;
    world.stt.script("+15550403", &["Just a question"]);
    let (info, call, _phone) = world.dial("+15550403").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    speak(&call).await;
    after_turns(&world.log, &info, &call, 3).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    world.log.wait_for_end(info.call_id).await;
    for _ in 0..100 {
        if world.llm.requests().iter().any(is_analysis) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(world.llm.requests().iter().any(is_analysis));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let record = world.log.call(info.call_id).unwrap();
    assert_eq!(record.outcome, Some(CallOutcome::Completed));
    assert_eq!(record.ends, 1);
    assert!(record.analysis.is_none());
    world.shutdown().await;
}

/// Sets its flag when dropped: tells a test that a stream was given up.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A model that replies to the caller but never finishes an analysis: its analysis stream
/// stays open until dropped.
struct SilentAnalyst {
    replies: Arc<ScriptedLlm>,
    dropped: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl LanguageModel for SilentAnalyst {
    async fn stream(&self, request: LlmRequest) -> PortResult<LlmStream> {
        if !is_analysis(&request) {
            return self.replies.stream(request).await;
        }
        let flag = DropFlag(self.dropped.clone());
        let never = futures::stream::pending::<PortResult<LlmDelta>>();
        Ok(Box::pin(futures::StreamExt::map(never, move |delta| {
            let _ = &flag;
            delta
        })))
    }
}

#[tokio::test(start_paused = true)]
async fn an_analysis_that_never_comes_is_given_up_at_its_deadline() {
    let llm = Arc::new(ScriptedLlm::new(
        Duration::from_millis(10),
        echo_and_analyse,
    ));
    let dropped = Arc::new(AtomicBool::new(false));
    let model = Arc::new(SilentAnalyst {
        replies: llm.clone(),
        dropped: dropped.clone(),
    });
    let world = world_with(5, analysed_agent(), llm, model).await;
    world.stt.script("+15550404", &["Just a question"]);
    let (info, call, _phone) = world.dial("+15550404").await.unwrap();
    after_turns(&world.log, &info, &call, 1).await.unwrap();
    speak(&call).await;
    after_turns(&world.log, &info, &call, 3).await.unwrap();
    call.send_message(CallMsg::CallerHungUp).unwrap();
    world.log.wait_for_end(info.call_id).await;

    tokio::time::sleep(Duration::from_secs(55)).await;
    assert!(
        !dropped.load(Ordering::SeqCst),
        "still waiting for the model"
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(dropped.load(Ordering::SeqCst), "given up after a minute");
    let record = world.log.call(info.call_id).unwrap();
    assert_eq!(record.outcome, Some(CallOutcome::Completed));
    assert!(record.analysis.is_none());
    assert_eq!(record.usage_records, 1, "no tokens were reported for it");
    assert_eq!(record.usage.llm_tokens, 15);
    world.shutdown().await;
}
