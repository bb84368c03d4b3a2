//! Live events over Server-Sent Events, through real HTTP: a tenant's subscriber sees its
//! call as it happens and another tenant's sees nothing; a reconnect with `Last-Event-ID`
//! gets what it missed; tickets open one stream once; filters; and, with Redis, a
//! subscriber on one server process sees a call on another.

mod common;

use std::time::Duration;

use common::process::{emulated_providers, ServerProcess};
use common::{
    assert_problem, shared_database_url, spawn_app, spawn_voice_app, EventStream, SseEvent,
};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::simulator::CallerTurn;

const WAIT: Duration = Duration::from_secs(20);

fn types(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event.as_str()).collect()
}

/// The call's own events in order, `call.ringing` left out: the voice webhook announces the
/// admission while the call's actor announces its start, so the two can come in either order.
/// Checks that the call rang once.
fn call_lifecycle(events: &[SseEvent]) -> Vec<&str> {
    let kinds = types(events);
    let rang = kinds.iter().filter(|k| **k == "call.ringing").count();
    assert_eq!(rang, 1, "{kinds:?}");
    kinds.into_iter().filter(|k| *k != "call.ringing").collect()
}

/// Event ids, which must increase.
fn assert_ids_increase(events: &[SseEvent]) {
    let ids: Vec<(u64, u64)> = events
        .iter()
        .map(|e| {
            let id = e.id.as_deref().expect("every tenant event has an id");
            let (ms, seq) = id.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_subscriber_sees_its_call_in_order_and_another_tenant_sees_nothing() {
    let (script, caller) = common::caller_saying(&["Do you open on Sunday?"]);
    let (app, _emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    let other = app.register("Bright Smiles").await;
    let mut ours = EventStream::open(&app, "/v1/events", Some(&line.owner.access), &[]).await;
    let mut theirs = EventStream::open(&app, "/v1/events", Some(&other.access), &[]).await;
    // A subscriber to one call only, by a filter on type and call id, is checked below.
    let report = common::simulate_call(
        &app.base,
        &caller,
        &line.number,
        vec![CallerTurn::say("Do you open on Sunday?")],
    )
    .await;

    let events = ours.until("call.ended", WAIT).await;
    let kinds = call_lifecycle(&events);
    assert_eq!(kinds.first(), Some(&"call.started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"call.ended"), "{kinds:?}");
    let position = |kind: &str, speaker: &str| {
        events
            .iter()
            .position(|e| e.event == kind && e.data["data"]["speaker"] == speaker)
            .unwrap_or_else(|| panic!("no {kind} of the {speaker}: {kinds:?}"))
    };
    let greeting = position("call.transcript", "agent");
    let question = position("call.transcript", "customer");
    assert!(greeting < question, "{kinds:?}");
    assert_eq!(
        events[question].data["data"]["text"], "Do you open on Sunday?",
        "{:?}",
        events[question]
    );
    assert!(kinds.contains(&"call.agent_speaking"), "{kinds:?}");
    assert_ids_increase(&events);
    let call_id = events[0].data["call_id"].as_str().unwrap().to_owned();
    assert!(events.iter().all(|e| e.data["call_id"] == call_id.as_str()));
    app.ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;

    assert!(
        theirs.next(Duration::from_millis(500)).await.is_none(),
        "another tenant saw an event of this call"
    );
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_what_it_missed() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let mut first = EventStream::open(&app, "/v1/events", Some(&owner.access), &[]).await;
    for name in ["Alpha", "Bravo", "Charlie", "Delta"] {
        let (status, body) = app
            .post(
                "/v1/leads",
                Some(&owner.access),
                json!({"name": name, "phone": common::unique_number()}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let mut seen = Vec::new();
    while seen.len() < 4 {
        seen.push(first.next(WAIT).await.expect("lead events"));
    }
    assert_eq!(types(&seen), ["lead.updated"; 4]);
    drop(first);

    // The browser saw the first event only; its reconnect carries that id.
    let last_seen = seen[0].id.clone().unwrap();
    let mut resumed = EventStream::open(
        &app,
        "/v1/events",
        Some(&owner.access),
        &[("Last-Event-ID", &last_seen)],
    )
    .await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(resumed.next(WAIT).await.expect("a replayed event"));
    }
    let ids = |events: &[SseEvent]| events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&replayed), ids(&seen[1..]));
    assert_eq!(replayed[2].data["data"]["name"], "Delta");
    assert!(
        resumed.next(Duration::from_millis(300)).await.is_none(),
        "nothing is replayed twice"
    );

    // A malformed id is refused.
    let res = app
        .client
        .get(format!("{}/v1/events", app.base))
        .bearer_auth(&owner.access)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn a_ticket_opens_one_stream_once_and_filters_pick_types() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;

    let res = app
        .client
        .get(format!("{}/v1/events", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let (status, ticket) = app
        .post("/v1/events/ticket", Some(&owner.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ticket}");
    assert_eq!(ticket["expires_in"], 30);
    let ticket = ticket["ticket"].as_str().unwrap();
    let mut stream = EventStream::open(
        &app,
        &format!("/v1/events?ticket={ticket}&types=lead.*"),
        None,
        &[],
    )
    .await;
    // Used once: the same ticket opens nothing more.
    let (status, body) = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/events?ticket={ticket}"),
            None,
            None,
        )
        .await;
    assert_problem(status, &body, StatusCode::UNAUTHORIZED);

    // A document's events do not pass the `lead.*` filter; the lead's do.
    let (status, body) = app
        .upload_document(&owner.access, "hours.md", b"# Hours\n\nOpen nine to five.")
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, _) = app
        .post(
            "/v1/leads",
            Some(&owner.access),
            json!({"name": "Ana", "phone": common::unique_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let event = stream.next(WAIT).await.expect("the lead's event");
    assert_eq!(event.event, "lead.updated");

    let (status, body) = app.get("/v1/events?types=call.rang", &owner.access).await;
    let problem = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "types");
}

#[tokio::test]
async fn a_subscriber_on_one_server_process_sees_a_call_on_another() {
    if switchboard::testing::redis_url().is_none() {
        return; // events cross nodes through Redis only
    }
    let (script, caller) = common::caller_saying(&["Hello there"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = switchboard::emulator::Emulator::start(listener, script);
    // One deployment of two processes: one database, one Redis, one signing key.
    let shared = vec![
        ("DATABASE_URL", shared_database_url().await),
        ("REDIS_URL", switchboard::testing::redis_url().unwrap()),
        (
            "REDIS_KEY_PREFIX",
            format!("sbtest-{}", uuid::Uuid::new_v4().simple()),
        ),
        (
            "JWT_SECRET",
            "a-secret-both-nodes-share-0123456789".to_owned(),
        ),
    ];
    let mut calling = shared.clone();
    calling.extend(emulated_providers(&emulator));
    let calls_process = ServerProcess::start(&calling).await;
    let watch_process = ServerProcess::start(&shared).await;
    let (calls_node, watch_node) = (&calls_process.app, &watch_process.app);
    let line = calls_node.line().await;
    let mut events = EventStream::open(
        watch_node,
        "/v1/events?types=call.*",
        Some(&line.owner.access),
        &[],
    )
    .await;

    let report = common::simulate_call(
        &calls_node.base,
        &caller,
        &line.number,
        vec![CallerTurn::say("Hello there")],
    )
    .await;
    let seen = events.until("call.ended", WAIT).await;
    let kinds = call_lifecycle(&seen);
    assert_eq!(kinds[0], "call.started", "{kinds:?}");
    assert!(seen.iter().any(|e| e.data["data"]["text"] == "Hello there"));
    assert_ids_increase(&seen);
    calls_node
        .ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;

    // A reconnect to the other node resumes from the same stream of ids.
    let mut resumed = EventStream::open(
        calls_node,
        "/v1/events?types=call.*",
        Some(&line.owner.access),
        &[("Last-Event-ID", seen[0].id.as_deref().unwrap())],
    )
    .await;
    let again = resumed.until("call.ended", WAIT).await;
    assert_eq!(
        again.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        seen[1..].iter().map(|e| e.id.clone()).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn subscribers_that_never_read_do_not_hold_a_call_up() {
    let (script, caller) = common::caller_saying(&["What time is it?"]);
    let (app, _emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    // Three dashboards open streams and never read them.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        stalled.push(EventStream::open(&app, "/v1/events", Some(&line.owner.access), &[]).await);
    }
    let report = common::simulate_call(
        &app.base,
        &caller,
        &line.number,
        vec![CallerTurn::say("What time is it?")],
    )
    .await;
    let reply = &report.turns[0].reply;
    // The providers answer at once: anything near a second would be the events' doing.
    assert!(
        reply.voice_to_voice_ms.is_some_and(|ms| ms < 1_500),
        "{reply:?}"
    );
    app.ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;
    // They still get the whole call when they do read.
    let seen = stalled[0].until("call.ended", WAIT).await;
    assert_eq!(call_lifecycle(&seen).first(), Some(&"call.started"));
}
