//! The staff dashboard in a real browser: headless Chromium driven by playwright-core
//! (`tests/web/dashboard.mjs`) against a real server with the provider emulator and a fake
//! Twilio REST API. The script signs in, watches a simulated call appear on Live with its
//! transcript, takes over a conversation and texts, uploads a document until it is ready,
//! visits every screen (screenshots in `target/tmp/dashboard/`), checks phone width and a
//! viewer's read-only view, and fails on any console error.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/web`; `.ci/run` installs both and runs
//! this test, which is ignored by a plain `cargo test` on machines without a browser.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::fake_twilio::{FakeTwilio, ACCOUNT};
use common::{fixtures::manual_pdf, spawn_voice_app, PASSWORD};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::simulator::CallerTurn;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The caller's words, which the browser must see on Live.
const CALLER_LINE: &str = "What time do you close on Saturday?";

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and playwright-core; .ci/run installs both and runs it"]
async fn staff_use_the_dashboard_in_a_browser() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (script, caller) = common::caller_saying(&[CALLER_LINE]);
    let (app, _emulator) = spawn_voice_app(
        script,
        &[
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-api-base",
            &twilio.base_url,
        ],
    )
    .await;
    let line = app.line().await;
    let viewer = app.add_user(&line.owner, "viewer").await;
    // An invitation not yet accepted: the browser sets its password on the reset screen.
    let invited = format!("invited-{}@staff.example", uuid::Uuid::new_v4().simple());
    let (status, body) = app
        .post(
            "/v1/users",
            Some(&line.owner.access),
            json!({"email": invited, "name": "New Hire", "role": "agent"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let invitation = app.last_token(&line.owner.tenant_id, "user.invited").await;

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let document = shots.join("service-manual.pdf");
    std::fs::write(&document, manual_pdf()).unwrap();

    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web");
    assert!(
        web.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/web` (and apt-get install chromium)"
    );
    let mut browser = tokio::process::Command::new("node")
        .arg(web.join("dashboard.mjs"))
        .env("BASE_URL", &app.base)
        .env("OWNER_EMAIL", &line.owner.email)
        .env("VIEWER_EMAIL", &viewer.email)
        .env("PASSWORD", PASSWORD)
        .env("INVITATION", &invitation)
        .env("CALLER", &caller)
        .env("CALLER_LINE", CALLER_LINE)
        .env("DOCUMENT", &document)
        .env("SHOTS", &shots)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (apt-get install nodejs)");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let mut call = None;
    let mut done = false;
    let read = async {
        while let Some(text) = lines.next_line().await.unwrap() {
            eprintln!("browser: {text}");
            match text.as_str() {
                "@ready-for-call" => {
                    let (base, to, from) = (app.base.clone(), line.number.clone(), caller.clone());
                    call = Some(tokio::spawn(async move {
                        let turns = vec![CallerTurn::say(CALLER_LINE).pause_ms(1500)];
                        common::simulate_call(&base, &from, &to, turns).await
                    }));
                }
                "@done" => done = true,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(240), read)
        .await
        .expect("the browser test finishes within 4 minutes");
    let status = browser.wait().await.unwrap();
    assert!(
        status.success() && done,
        "the browser script failed: {status}"
    );

    // What the browser did reached the server.
    let report = call.expect("the browser asked for the call").await.unwrap();
    let (_, calls) = app
        .get(
            &format!("/v1/calls?number={}", urlencode(&caller)),
            &line.owner.access,
        )
        .await;
    assert_eq!(calls["items"][0]["call_sid"], report.call_sid.as_str());
    let (_, conversations) = app
        .get("/v1/conversations?taken_over=true", &line.owner.access)
        .await;
    let taken = &conversations["items"][0];
    assert_eq!(taken["customer_number"], caller.as_str(), "{conversations}");
    let (_, thread) = app
        .get(
            &format!("/v1/conversations/{}", taken["id"].as_str().unwrap()),
            &line.owner.access,
        )
        .await;
    let staff_texts: Vec<_> = thread["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender"] == "staff")
        .collect();
    assert_eq!(staff_texts.len(), 1, "{thread}");
    assert_eq!(
        staff_texts[0]["body"],
        "A person from our team here: we close at 5 pm on Saturdays."
    );
    let (_, documents) = app.get("/v1/knowledge/documents", &line.owner.access).await;
    assert_eq!(documents["items"][0]["status"], "ready", "{documents}");
    for screen in [
        "login",
        "live-call",
        "calls",
        "call",
        "conversation",
        "leads",
        "knowledge",
        "agents",
        "agent",
        "analytics",
        "team",
        "phone-live",
        "viewer-leads",
        "reset",
    ] {
        assert!(
            shots.join(format!("{screen}.png")).exists(),
            "no screenshot of {screen}"
        );
    }
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B")
}

/// The page and its files come from the binary with their types, a strict
/// Content-Security-Policy and revalidation; unknown files are a JSON 404.
#[tokio::test]
async fn the_page_is_served_with_its_assets() {
    let app = common::spawn_app().await;
    let page = app
        .client
        .get(format!("{}/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="/assets/js/app.js">"#),
        "{html}"
    );

    let script = app
        .client
        .get(format!("{}/assets/js/app.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    let etag = script.headers()["etag"].clone();
    let again = app
        .client
        .get(format!("{}/assets/js/app.js", app.base))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);

    for missing in [
        "/assets/js/nope.js",
        "/assets/../Cargo.toml",
        "/assets/%2e%2e/Cargo.toml",
    ] {
        let (status, body) = app.call(reqwest::Method::GET, missing, None, None).await;
        common::assert_problem(status, &body, StatusCode::NOT_FOUND);
    }
}
