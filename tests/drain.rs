//! Graceful drain of the real binary: SIGTERM during a live simulated call turns `/readyz`
//! not-ready and refuses a new call politely, while the live call finishes every turn; then
//! the process exits 0.

mod common;

use std::time::Duration;

use common::process::{emulated_providers, ServerProcess};
use common::TWILIO_TOKEN;
use reqwest::StatusCode;
use secrecy::SecretString;
use switchboard::emulator::Emulator;
use switchboard::simulator::{CallScript, CallerTurn, SimulatorConfig};

/// Polls until `check` holds, for up to `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn sigterm_lets_the_live_call_finish_refuses_new_ones_and_exits_0() {
    let (script, caller) = common::caller_saying(&["Do you open on Sunday?", "And on Monday?"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = Emulator::start(listener, script);

    let database = common::shared_database_url().await;
    let mut env = emulated_providers(&emulator);
    env.push(("DATABASE_URL", database));
    env.push(("DRAIN_TIMEOUT", "60".to_owned()));
    if let Some(redis) = switchboard::testing::redis_url() {
        env.push(("REDIS_URL", redis));
        env.push((
            "REDIS_KEY_PREFIX",
            format!("sbtest-{}", uuid::Uuid::new_v4().simple()),
        ));
    }
    let server = ServerProcess::start(&env).await;
    let app = &server.app;
    let base = app.base.clone();
    let line = app.line().await;

    // A two-turn call, the caller pausing before the second so the call is still live when
    // the signal comes.
    let mut config = SimulatorConfig::new(
        &base,
        SecretString::from(TWILIO_TOKEN.to_owned()),
        &caller,
        &line.number,
    );
    config.account_sid = common::fake_twilio::ACCOUNT.to_owned();
    let mut second = CallerTurn::say("And on Monday?");
    second.pause_ms = 3_000;
    let turns = CallScript::new(vec![CallerTurn::say("Do you open on Sunday?"), second]);
    let call = tokio::spawn(async move { switchboard::simulator::run_call(&config, &turns).await });
    let token = line.owner.access.clone();
    let live = eventually(Duration::from_secs(20), || {
        let token = token.clone();
        async move {
            let (_, page) = app.get("/v1/calls?status=in-progress", &token).await;
            page["items"]
                .as_array()
                .is_some_and(|items| items.len() == 1)
        }
    })
    .await;
    assert!(live, "the call never went live");
    let (_, page) = app.get("/v1/calls?status=in-progress", &token).await;
    let call_id: actors::domain::CallId = page["items"][0]["id"].as_str().unwrap().parse().unwrap();
    let store = app.store.clone();

    server.terminate();
    assert!(
        server
            .readiness_becomes(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(5))
            .await,
        "/readyz never turned not-ready"
    );
    // A new call is refused politely while the live one goes on.
    let (status, twiml) = app
        .ring(&common::call_sid(), "+14155550177", &line.number)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("All of our lines are busy"), "{twiml}");

    let report = call.await.unwrap().expect("the live call completes");
    assert_eq!(
        report.turns.len(),
        2,
        "both turns were answered: {report:?}"
    );
    assert!(
        report.turns.iter().all(|t| t.reply.audio_ms > 0),
        "{report:?}"
    );

    let exited = server.exit_within(Duration::from_secs(30)).await;
    let status = exited.expect("the server exits after the drain");
    assert!(status.success(), "exit status {status:?}");

    // The call's last records reached the database before the process exited.
    let tenant = line.owner.tenant_id.parse().unwrap();
    let record = store.call_record(tenant, call_id).await.unwrap();
    assert_eq!(record.status, "completed", "{record:?}");
    assert_eq!(
        record.end_reason.as_deref(),
        Some("completed"),
        "{record:?}"
    );
    assert_eq!(
        record.turns.len(),
        5,
        "greeting, two lines and two replies: {record:?}"
    );
}
