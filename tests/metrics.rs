//! `/metrics` after real work: a document read, a simulated call, a live-event stream. The
//! counts and histograms say what happened, and every metric the Grafana dashboards and the
//! Prometheus alert rules query is exported. (One test in this binary: the recorder is per
//! process, so no other test's calls may count.)

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::fixtures::manual_pdf;
use common::{spawn_voice_app, EventStream};
use reqwest::StatusCode;
use switchboard::simulator::CallerTurn;

/// The samples of a Prometheus text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the one series named `name` with all of `labels`.
fn value(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(series, _)| {
            let bare = series.split('{').next().unwrap();
            bare == name && labels.iter().all(|l| series.contains(l))
        })
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    found[0]
}

/// Every `switchboard_…` metric name a query text uses, without histogram suffixes.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("switchboard_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(name.to_owned());
        rest = &tail[end..];
    }
    names
}

#[tokio::test]
async fn metrics_count_a_call_and_cover_every_dashboard_and_alert_query() {
    let (script, caller) = common::caller_saying(&["What are your hours?"]);
    let (app, _emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    let (status, doc) = app
        .upload_document(&line.owner.access, "manual.pdf", &manual_pdf())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let _stream = EventStream::open(&app, "/v1/events", Some(&line.owner.access), &[]).await;
    let report = common::simulate_call(
        &app.base,
        &caller,
        &line.number,
        vec![CallerTurn::say("What are your hours?")],
    )
    .await;
    app.ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;

    let res = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = res.text().await.unwrap();
    let samples = samples(&text);

    assert_eq!(
        value(
            &samples,
            "switchboard_calls_total",
            &[r#"outcome="completed""#]
        ),
        1.0
    );
    assert_eq!(value(&samples, "switchboard_calls_live", &[]), 0.0);
    assert_eq!(
        value(&samples, "switchboard_call_duration_seconds_count", &[]),
        1.0
    );
    // The greeting has no caller speech before it: one reply with a voice-to-voice time.
    assert_eq!(
        value(
            &samples,
            "switchboard_turn_stage_duration_seconds_count",
            &[r#"stage="voice_to_voice""#]
        ),
        1.0
    );
    assert!(
        value(
            &samples,
            "switchboard_turn_stage_duration_seconds_count",
            &[r#"stage="stt""#]
        ) >= 1.0
    );
    assert!(
        value(
            &samples,
            "switchboard_provider_requests_total",
            &[
                r#"provider="openai""#,
                r#"operation="chat completion""#,
                r#"result="ok""#
            ]
        ) >= 2.0,
        "the reply and the post-call analysis"
    );
    assert!(
        value(
            &samples,
            "switchboard_provider_requests_total",
            &[r#"provider="elevenlabs""#, r#"result="ok""#]
        ) >= 2.0
    );
    assert_eq!(
        value(
            &samples,
            "switchboard_http_requests_total",
            &[
                r#"route="/v1/knowledge/documents""#,
                r#"method="POST""#,
                r#"status="202""#
            ]
        ),
        1.0
    );
    assert!(value(&samples, "switchboard_audio_inbound_lag_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&samples, "switchboard_sse_subscribers", &[]), 1.0);
    assert_eq!(
        value(
            &samples,
            "switchboard_knowledge_documents_ingested_total",
            &[]
        ),
        1.0
    );
    assert_eq!(
        value(&samples, "switchboard_knowledge_ingested_pages_total", &[]),
        2.0
    );
    assert!(
        value(
            &samples,
            "switchboard_knowledge_search_duration_seconds_count",
            &[]
        ) >= 1.0
    );
    assert!(value(&samples, "switchboard_process_resident_memory_bytes", &[]) > 1e6);
    assert!(
        value(
            &samples,
            "switchboard_db_pool_connections",
            &[r#"state="idle""#]
        ) >= 0.0
    );
    assert_eq!(value(&samples, "switchboard_tenants_active", &[]), 1.0);
    assert_eq!(
        value(
            &samples,
            "switchboard_calls_refused_total",
            &[r#"reason="concurrent_limit""#]
        ),
        0.0
    );
    // No series names a call, a number or a tenant.
    for id in [
        &report.call_sid,
        &caller,
        &line.number,
        &line.owner.tenant_id,
    ] {
        assert!(!text.contains(id.as_str()), "{id} is in a label");
    }

    // Every metric the dashboards and alert rules query is exported.
    let exported: BTreeSet<String> = samples
        .keys()
        .flat_map(|series| metric_names(series.split('{').next().unwrap()))
        .collect();
    let root = env!("CARGO_MANIFEST_DIR");
    let mut queried = BTreeSet::new();
    let dashboards = std::fs::read_dir(format!("{root}/grafana/dashboards")).unwrap();
    let mut dashboard_count = 0;
    for entry in dashboards {
        let path = entry.unwrap().path();
        let board: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        dashboard_count += 1;
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                let names = metric_names(expr);
                assert!(
                    !names.is_empty(),
                    "{}: {expr} queries no switchboard metric",
                    path.display()
                );
                queried.extend(names);
            }
        }
    }
    assert_eq!(
        dashboard_count, 5,
        "Overview, Latency, Providers, Runtime, Tenants"
    );
    queried.extend(metric_names(
        &std::fs::read_to_string(format!("{root}/prometheus/alerts.yml")).unwrap(),
    ));
    let missing: Vec<&String> = queried.difference(&exported).collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}
