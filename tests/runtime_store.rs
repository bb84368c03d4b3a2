//! The actor runtime over the real store: a call's record, transcript, conversation and lead
//! land in SQL (SQLite, or PostgreSQL with `TEST_DATABASE_URL`) as the call happens, read
//! back through the same ports the runtime uses. Speech, model and voice are in-memory
//! providers; the phone-call issue replaces them with the real adapters.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actors::domain::{CallId, E164};
use actors::ports::{CallInfo, Channel, ConversationStore, Speaker, TenantDirectory};
use actors::testing::{FakePhone, MemoryVectorStore, ScriptedLlm, ScriptedStt, ToneTts};
use common::{spawn_app, unique_number};
use reqwest::StatusCode;
use serde_json::json;
use supervisors::call::{CallMsg, CallSettings};
use supervisors::runtime::{Runtime, RuntimeArgs, RuntimePorts};
use switchboard::store::{NewCall, Store};

const SPEECH: &[u8] = include_bytes!("../actors/tests/fixtures/sentence.ulaw");

async fn runtime_ports(store: &Store, stt: Arc<ScriptedStt>) -> RuntimePorts {
    let llm = ScriptedLlm::new(Duration::from_millis(50), |request| {
        ScriptedLlm::words(&format!("You said: {}.", ScriptedLlm::last_user(request)))
    });
    RuntimePorts {
        stt,
        llm: Arc::new(llm),
        tts: Arc::new(ToneTts::new(Duration::from_millis(20))),
        call_log: Arc::new(store.clone()),
        conversations: Arc::new(store.clone()),
        vectors: Arc::new(MemoryVectorStore::default()),
        embedder: None,
        directory: Arc::new(store.clone()),
        events: switchboard::events::EventBus::local(None).await.unwrap(),
    }
}

#[tokio::test]
async fn a_call_through_the_runtime_is_recorded_in_sql_as_it_happens() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let (status, agent) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "Front desk", "first_message": "Hi {{customer_name}}, thanks for calling {{tenant_name}}!"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let number = unique_number();
    let number_id = app
        .create_number(&owner, &number, agent["id"].as_str().unwrap())
        .await;
    let tenant = owner.tenant_id.parse().unwrap();
    let customer = unique_number();
    app.store
        .update_lead(
            tenant,
            &customer,
            BTreeMap::from([("customer_name".to_owned(), "Dana".to_owned())]),
        )
        .await
        .unwrap();

    let config = app.store.tenant_config(tenant).await.unwrap();
    assert_eq!(config.name, "Acme Motors");
    assert_eq!(config.agents.len(), 1);

    let info = CallInfo {
        call_id: CallId::new(),
        tenant,
        agent: config.agents[0].id,
        customer: customer.clone(),
        business_number: E164::parse(&number).unwrap(),
    };
    app.store
        .create_call(
            tenant,
            &NewCall::inbound(&info, &common::call_sid(), number_id.parse().unwrap()),
        )
        .await
        .unwrap();

    let stt = Arc::new(ScriptedStt::new(Duration::from_millis(30)));
    stt.script(&customer, &["I need new tires"]);
    let runtime = Runtime::start(
        RuntimeArgs {
            ports: runtime_ports(&app.store, stt).await,
            settings: CallSettings::default(),
        },
        None,
    )
    .await
    .unwrap();
    let phone = Arc::new(FakePhone::default());
    let call = runtime
        .start_call(info.clone(), phone.clone())
        .await
        .unwrap();
    let echo = call.clone();
    phone.on_mark(move |mark| {
        let _ = echo.send_message(CallMsg::Marked(mark));
    });

    // Wait for the greeting, speak, wait for the reply, hang up.
    let lines_stored = |n: usize| {
        let (store, customer) = (app.store.clone(), customer.clone());
        async move { store.load(tenant, &customer).await.unwrap().history.len() >= n }
    };
    wait_until(|| lines_stored(1)).await;
    let audio = ractor::call_t!(call, CallMsg::AudioInlet, 1000).unwrap();
    for frame in SPEECH
        .chunks_exact(160)
        .chain(std::iter::repeat_n(&[0xFFu8; 160][..], 50))
    {
        audio.push(frame.try_into().unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_until(|| lines_stored(3)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.send_message(CallMsg::CallerHungUp).unwrap();
    runtime.stop().await;
    wait_until(|| {
        let store = app.store.clone();
        async move {
            store
                .call_record(tenant, info.call_id)
                .await
                .unwrap()
                .status
                == "completed"
        }
    })
    .await;

    let snapshot = app.store.load(tenant, &customer).await.unwrap();
    let lines: Vec<(Speaker, &str)> = snapshot
        .history
        .iter()
        .map(|h| (h.speaker, h.text.as_str()))
        .collect();
    assert_eq!(
        lines,
        [
            (Speaker::Agent, "Hi Dana, thanks for calling Acme Motors!"),
            (Speaker::Customer, "I need new tires"),
            (Speaker::Agent, "You said: I need new tires."),
        ]
    );
    assert!(snapshot.history.iter().all(|h| h.channel == Channel::Voice));
    assert_eq!(
        snapshot.lead.get("customer_name").map(String::as_str),
        Some("Dana")
    );

    let record = app.store.call_record(tenant, info.call_id).await.unwrap();
    assert_eq!(record.end_reason.as_deref(), Some("completed"));
    assert!(record.duration_ms.is_some_and(|d| d > 0), "{record:?}");
    let said: Vec<(Speaker, &str)> = record
        .turns
        .iter()
        .map(|t| (t.speaker, t.text.as_str()))
        .collect();
    assert_eq!(
        said, lines,
        "the call's transcript matches the conversation"
    );
    let reply = &record.turns[2].timings;
    assert!(
        reply.voice_to_voice_ms.is_some() && reply.llm_first_token_ms.is_some(),
        "{reply:?}"
    );
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting");
}
