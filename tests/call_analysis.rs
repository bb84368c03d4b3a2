//! After the call: the agent's extraction schema through the API, and a call run through the
//! actor runtime over the real store (SQLite, or PostgreSQL with `TEST_DATABASE_URL`) leaving
//! its usage rows and the model's analysis in SQL. Speech, model and voice are in-memory
//! providers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actors::domain::{CallId, E164};
use actors::ports::{CallInfo, LlmDelta, LlmRequest, Sentiment, TenantDirectory};
use actors::testing::{FakePhone, MemoryVectorStore, ScriptedLlm, ScriptedStt, ToneTts};
use common::{assert_problem, spawn_app, unique_number};
use reqwest::StatusCode;
use serde_json::json;
use supervisors::call::{CallMsg, CallSettings, ANALYSIS_INSTRUCTIONS};
use supervisors::runtime::{Runtime, RuntimeArgs, RuntimePorts};
use switchboard::store::NewCall;

const SPEECH: &[u8] = include_bytes!("../actors/tests/fixtures/sentence.ulaw");

#[tokio::test]
async fn an_agents_analysis_schema_round_trips_and_reaches_the_runtime() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let (status, plain) = app
        .post("/v1/agents", Some(&owner.access), json!({"name": "Plain"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(
        plain["analysis_schema"],
        json!({}),
        "extracts nothing by default"
    );

    let schema = json!({
        "type": "object",
        "properties": {
            "vehicle": {"type": "string", "description": "make and model"},
            "appointment_day": {"type": "string"}
        }
    });
    let (status, agent) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "Service desk", "analysis_schema": schema}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    assert_eq!(agent["analysis_schema"], schema);
    let id = agent["id"].as_str().unwrap();
    let (_, read) = app.get(&format!("/v1/agents/{id}"), &owner.access).await;
    assert_eq!(read["analysis_schema"], schema);

    let tenant = owner.tenant_id.parse().unwrap();
    let config = app.store.tenant_config(tenant).await.unwrap();
    let runtime_agent = config
        .agents
        .iter()
        .find(|a| a.id.to_string() == id)
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(runtime_agent.analysis_schema.clone()),
        schema,
        "the runtime analyses calls by it"
    );

    let (status, changed) = app
        .patch(
            &format!("/v1/agents/{id}"),
            &owner.access,
            json!({"name": "Service"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["analysis_schema"], schema, "untouched fields stay");
    let (_, cleared) = app
        .patch(
            &format!("/v1/agents/{id}"),
            &owner.access,
            json!({"analysis_schema": {}}),
        )
        .await;
    assert_eq!(cleared["analysis_schema"], json!({}));
}

#[tokio::test]
async fn an_analysis_schema_that_is_not_an_object_is_refused_by_name() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let id = app.create_agent(&owner, "Front desk").await;
    for bad in [
        json!("vehicle, day"),
        json!(["vehicle", "day"]),
        json!(42),
        json!(null),
        json!({"type": "string"}),
        json!({"properties": {"notes": {"type": "string", "description": "x".repeat(20_001)}}}),
    ] {
        let (status, problem) = app
            .post(
                "/v1/agents",
                Some(&owner.access),
                json!({"name": "Another", "analysis_schema": bad}),
            )
            .await;
        let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problem["errors"][0]["field"], "analysis_schema",
            "{problem}"
        );

        let (status, problem) = app
            .patch(
                &format!("/v1/agents/{id}"),
                &owner.access,
                json!({"analysis_schema": bad}),
            )
            .await;
        let problem = assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            problem["errors"][0]["field"], "analysis_schema",
            "{problem}"
        );
    }
    let (_, agents) = app.get("/v1/agents", &owner.access).await;
    assert_eq!(
        agents["items"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    assert_eq!(
        agents["items"][0]["analysis_schema"],
        json!({}),
        "nor changed"
    );
}

/// Replies echo the caller; the analysis reads the transcript and answers in a fence.
fn reply(request: &LlmRequest) -> Vec<LlmDelta> {
    let analysing = matches!(request.messages.first(),
        Some(actors::ports::ChatMessage::System(s)) if s.starts_with(ANALYSIS_INSTRUCTIONS));
    let mut deltas = if analysing {
        vec![LlmDelta::Text(
            "```json\n{\"summary\": \"The caller needs new tires.\", \"sentiment\": \"neutral\", \
             \"extracted\": {\"vehicle\": \"unknown\"}}\n```"
                .to_owned(),
        )]
    } else {
        ScriptedLlm::words(&format!("You said: {}.", ScriptedLlm::last_user(request)))
    };
    deltas.push(LlmDelta::Usage {
        prompt_tokens: 40,
        completion_tokens: 10,
    });
    deltas
}

#[tokio::test]
async fn a_call_through_the_runtime_leaves_its_usage_and_analysis_in_sql() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let (status, agent) = app
        .post(
            "/v1/agents",
            Some(&owner.access),
            json!({"name": "Service desk", "first_message": "Hello!",
                   "analysis_schema": {"type": "object", "properties": {"vehicle": {"type": "string"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{agent}");
    let number = unique_number();
    let number_id = app
        .create_number(&owner, &number, agent["id"].as_str().unwrap())
        .await;
    let tenant = owner.tenant_id.parse().unwrap();
    let customer = unique_number();
    let info = CallInfo {
        call_id: CallId::new(),
        tenant,
        agent: agent["id"].as_str().unwrap().parse().unwrap(),
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
    let since = chrono::Utc::now().timestamp_millis();

    let stt = Arc::new(ScriptedStt::new(Duration::from_millis(30)));
    stt.script(&customer, &["I need new tires"]);
    let llm = Arc::new(ScriptedLlm::new(Duration::from_millis(50), reply));
    let runtime = Runtime::start(
        RuntimeArgs {
            ports: RuntimePorts {
                stt,
                llm: llm.clone(),
                tts: Arc::new(ToneTts::new(Duration::from_millis(20))),
                call_log: Arc::new(app.store.clone()),
                conversations: Arc::new(app.store.clone()),
                vectors: Arc::new(MemoryVectorStore::default()),
                embedder: None,
                directory: Arc::new(app.store.clone()),
                events: switchboard::events::EventBus::local(None).await.unwrap(),
            },
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

    let lines_recorded = |n: usize| {
        let store = app.store.clone();
        async move {
            store
                .call_record(tenant, info.call_id)
                .await
                .unwrap()
                .turns
                .len()
                >= n
        }
    };
    wait_until(|| lines_recorded(1)).await;
    let audio = ractor::call_t!(call, CallMsg::AudioInlet, 1000).unwrap();
    for frame in SPEECH
        .chunks_exact(160)
        .chain(std::iter::repeat_n(&[0xFFu8; 160][..], 50))
    {
        audio.push(frame.try_into().unwrap());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_until(|| lines_recorded(3)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    call.send_message(CallMsg::CallerHungUp).unwrap();
    // The analysis outlives the call, and the runtime.
    runtime.stop().await;
    wait_until(|| {
        let store = app.store.clone();
        async move {
            let record = store.call_record(tenant, info.call_id).await.unwrap();
            let usage = store.call_usage(tenant, info.call_id).await.unwrap();
            record.summary.is_some() && usage.llm_tokens == 100
        }
    })
    .await;

    let record = app.store.call_record(tenant, info.call_id).await.unwrap();
    assert_eq!(record.status, "completed");
    assert_eq!(
        record.summary.as_deref(),
        Some("The caller needs new tires.")
    );
    assert_eq!(record.sentiment, Some(Sentiment::Neutral));
    assert_eq!(
        serde_json::Value::Object(record.extracted.clone()),
        json!({"vehicle": "unknown"})
    );

    let usage = app.store.call_usage(tenant, info.call_id).await.unwrap();
    assert_eq!(
        usage.llm_tokens, 100,
        "the reply's 50 and the analysis's 50"
    );
    assert!(usage.call_ms > 0, "{usage:?}");
    assert!(usage.stt_ms > 0 && usage.stt_ms % 20 == 0, "{usage:?}");
    let spoken: usize = record
        .turns
        .iter()
        .filter(|t| t.speaker == actors::ports::Speaker::Agent)
        .map(|t| t.text.chars().count())
        .sum();
    assert_eq!(usage.tts_characters, spoken as i64);
    assert_eq!(usage.sms_segments, 0);
    assert_eq!(
        app.store
            .usage_totals(tenant, (since, i64::MAX))
            .await
            .unwrap(),
        usage,
        "the tenant's only call is all its usage"
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
