//! `switchboard loadtest`: many simulated calls at once against a real server (the provider
//! emulator behind it), measured from the callers' side and from the server's /metrics.
//! Correctness only: the figures of the budget come from `bench/loadtest.sh` in release.

mod common;

use std::time::Duration;

use common::{spawn_voice_app, TestApp, TWILIO_TOKEN};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use switchboard::emulator::EmulatorScript;
use switchboard::simulator::load::{self, LoadPlan};
use switchboard::simulator::{CallScript, CallerTurn};

fn plan(app: &TestApp, to: &str, calls: usize) -> LoadPlan {
    LoadPlan {
        server: app.base.clone(),
        to: to.to_owned(),
        calls,
        ramp: Duration::from_millis(300),
        duration: Duration::from_millis(500),
        baseline_ms: 100,
        metrics_url: format!("{}/metrics", app.base),
        auth_token: SecretString::from(TWILIO_TOKEN.to_owned()),
    }
}

#[tokio::test]
async fn concurrent_calls_are_completed_and_measured() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let script = CallScript::new(vec![CallerTurn::say("What time do you open?")]);
    let report = load::run(&plan(&app, &line.number, 4), &script, |_| {})
        .await
        .unwrap();

    assert_eq!(report.failed, 0, "{:?}", report.failures);
    // Every slot placed at least one call, and each call's one line got a reply.
    assert!(report.completed >= 4, "{report:?}");
    assert_eq!(report.voice_to_voice_ms.count as u64, report.completed);
    let v2v = report.voice_to_voice_ms;
    // Endpointing alone waits 600 ms of silence before the (instant) providers are asked.
    assert!(
        v2v.p50 >= 600 && v2v.p50 <= v2v.p95 && v2v.p95 <= v2v.max,
        "{v2v:?}"
    );
    assert_eq!(report.overhead_ms.p50, v2v.p50 - 100);
    assert_eq!(report.outbound_gaps, 0);
    // The server's side, from its /metrics.
    assert!(report.peak_live_calls >= 1.0, "{report:?}");
    assert!(report.samples.len() >= 2);
    assert!(report.samples.iter().all(|s| s.resident_bytes > 0.0));
    let cpu = report.cpu_seconds_per_call_minute.expect("CPU measured");
    assert!(cpu > 0.0, "{cpu}");
    assert!(report.resident_kib_per_live_call.is_some());
    assert!(report.inbound_lag_p99_ms.is_some());
    let table = report.to_table();
    assert!(table.contains("calls completed"), "{table}");
    assert!(table.contains("runtime overhead ms"), "{table}");
}

/// Runs the real binary's `loadtest` against `app`.
async fn loadtest(app: &TestApp, args: &[&str], token: Option<&str>) -> std::process::Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("loadtest")
        .args(["--server", &app.base])
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn");
    if let Some(token) = token {
        command.env("TWILIO_AUTH_TOKEN", token);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the load test ends")
        .unwrap()
}

#[tokio::test]
async fn calls_past_the_tenants_limit_are_reported_as_failed_with_the_reason() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"concurrent_call_limit": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let script = std::env::temp_dir().join(format!("loadtest-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(
        &script,
        r#"{"turns": [{"say": "Are you open on Sunday?"}]}"#,
    )
    .unwrap();
    let script_arg = script.display().to_string();
    let out = loadtest(
        &app,
        &[
            "--to",
            &line.number,
            "--calls",
            "3",
            "--ramp",
            "0s",
            "--duration",
            "200ms",
            "--script",
            &script_arg,
            "--json",
        ],
        Some(TWILIO_TOKEN),
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // A run with failed calls exits 1, with its report.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert!(report["completed"].as_u64().unwrap() >= 1, "{report}");
    assert!(report["failed"].as_u64().unwrap() >= 2, "{report}");
    let reasons: Vec<&String> = report["failures"].as_object().unwrap().keys().collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.starts_with("not streamed (Refused)")),
        "{reasons:?}"
    );
    assert!(report["samples"].as_array().unwrap().len() >= 2, "{report}");
}

#[tokio::test]
async fn bad_input_is_refused_before_any_call_with_exit_code_2() {
    let app = common::spawn_app().await;
    for (args, token, named) in [
        (
            &["--to", "+15550001111", "--calls", "0"][..],
            Some("t"),
            "--calls",
        ),
        (&["--to", "5550001111"][..], Some("t"), "--to"),
        (&["--to", "+15550001111"][..], None, "TWILIO_AUTH_TOKEN"),
        (
            &["--to", "+15550001111", "--ramp", "soon"][..],
            Some("t"),
            "--ramp",
        ),
        (
            &["--to", "+15550001111", "--script", "/no/such/script.json"][..],
            Some("t"),
            "/no/such/script.json",
        ),
    ] {
        let out = loadtest(&app, args, token).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
