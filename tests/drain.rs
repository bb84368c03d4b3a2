//! Graceful drain of the real binary: SIGTERM during a live simulated call turns `/readyz`
//! not-ready and refuses a new call politely, while the live call finishes every turn; then
//! the process exits 0.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{TestApp, TWILIO_TOKEN};
use reqwest::StatusCode;
use secrecy::SecretString;
use switchboard::emulator::Emulator;
use switchboard::settings::DatabaseKind;
use switchboard::simulator::{CallScript, CallerTurn, SimulatorConfig};
use switchboard::store::Store;

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

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = std::env::temp_dir().join(format!("sbdrain-{}", uuid::Uuid::new_v4()));
    let database = match switchboard::testing::postgres_url() {
        Some(server) => switchboard::testing::fresh_postgres_database(&server).await,
        None => format!("sqlite://{}/switchboard.db?mode=rwc", data_dir.display()),
    };
    let mut server = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    server
        .arg("serve")
        .env_clear()
        .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("SWITCHBOARD_DATA_DIR", &data_dir)
        .env("DATABASE_URL", &database)
        .env("TWILIO_AUTH_TOKEN", TWILIO_TOKEN)
        .env("OPENAI_API_KEY", "sk-test")
        .env("OPENAI_BASE_URL", emulator.openai_base_url())
        .env("ELEVENLABS_API_KEY", "xi-test")
        .env("ELEVENLABS_BASE_URL", emulator.base_url())
        .env("DRAIN_TIMEOUT", "60")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(redis) = switchboard::testing::redis_url() {
        server.env("REDIS_URL", redis).env(
            "REDIS_KEY_PREFIX",
            format!("sbtest-{}", uuid::Uuid::new_v4().simple()),
        );
    }
    let mut child = server.spawn().expect("the server starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = |expected: StatusCode| {
        let (client, url) = (client.clone(), format!("{base}/readyz"));
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                client
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == expected)
            }
        }
    };
    assert!(
        eventually(Duration::from_secs(30), ready(StatusCode::OK)).await,
        "the server never became ready"
    );
    let kind = if database.starts_with("sqlite") {
        DatabaseKind::Sqlite
    } else {
        DatabaseKind::Postgres
    };
    let app = TestApp {
        base: base.clone(),
        client: client.clone(),
        store: Store::open(&SecretString::from(database.clone()), kind)
            .await
            .unwrap(),
        data_dir,
    };
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
        let app = &app;
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

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    assert!(
        eventually(
            Duration::from_secs(5),
            ready(StatusCode::SERVICE_UNAVAILABLE)
        )
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

    let exited = tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            if std::time::Instant::now() > until {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    let status = exited.expect("the server exits after the drain");
    assert!(status.success(), "exit status {status:?}");
}
