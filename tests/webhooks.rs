//! Outbound webhooks over real HTTP: deliveries signed per Standard Webhooks (verified with
//! that specification's own library), retried with backoff against a local receiver that
//! fails twice, logged and redeliverable; events written with a change (an invitation) are
//! delivered too; private targets are refused unless allowed; the secret is shown once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode as AxumStatus};
use common::{assert_problem, spawn_app, spawn_app_with, Login, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// What a receiver got: each request's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// A receiver on loopback answering the statuses of `script` in turn (then 204).
async fn receiver(script: Vec<u16>) -> (String, Received) {
    let received: Received = Arc::default();
    let answers = Arc::new(Mutex::new(script.into_iter()));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let received = received.clone();
            move |headers: HeaderMap, body: String| async move {
                received.lock().unwrap().push((headers, body));
                let status = answers.lock().unwrap().next().unwrap_or(204);
                AxumStatus::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

/// A server that may deliver to loopback, retrying fast.
async fn fast_app() -> TestApp {
    spawn_app_with(&[
        "--webhooks-allow-private",
        "true",
        "--webhook-retry-base-ms",
        "150",
        "--webhook-poll-ms",
        "50",
    ])
    .await
}

async fn create_endpoint(app: &TestApp, who: &Login, url: &str, types: Value) -> Value {
    let (status, body) = app
        .post(
            "/v1/webhooks",
            Some(&who.access),
            json!({"url": url, "event_types": types}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// Waits until the receiver has `n` requests.
async fn wait_for(received: &Received, n: usize) -> Vec<(HeaderMap, String)> {
    for _ in 0..200 {
        let got = received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the receiver got {} requests, not {n}",
        received.lock().unwrap().len()
    );
}

#[tokio::test]
async fn deliveries_are_signed_retried_until_accepted_logged_and_redeliverable() {
    let app = fast_app().await;
    let owner = app.register("Acme Motors").await;
    let (url, received) = receiver(vec![500, 503]).await;
    let endpoint = create_endpoint(&app, &owner, &url, json!(["lead.*"])).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let id = endpoint["id"].as_str().unwrap();

    // The secret is never shown again.
    let (_, shown) = app.get(&format!("/v1/webhooks/{id}"), &owner.access).await;
    assert!(shown.get("secret").is_none(), "{shown}");
    let (_, listed) = app.get("/v1/webhooks", &owner.access).await;
    assert!(!listed.to_string().contains(&secret));

    let (status, _) = app
        .post(
            "/v1/leads",
            Some(&owner.access),
            json!({"name": "Dana Reyes", "phone": common::unique_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let attempts = wait_for(&received, 3).await;
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for (headers, body) in &attempts {
        verifier
            .verify(body.as_bytes(), headers)
            .expect("the signature verifies with the Standard Webhooks library");
    }
    // One message, three attempts: the same id every time.
    let ids: Vec<&str> = attempts
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let body: Value = serde_json::from_str(&attempts[2].1).unwrap();
    assert_eq!(body["type"], "lead.updated");
    assert_eq!(body["data"]["name"], "Dana Reyes");
    assert_eq!(body["data"]["change"], "created");
    // A forged body fails verification.
    let mut forged = attempts[2].1.clone();
    forged = forged.replace("Dana", "Mallory");
    assert!(verifier.verify(forged.as_bytes(), &attempts[2].0).is_err());

    let log = delivered_log(&app, &owner, id).await;
    assert_eq!(log["attempts"], 3, "{log}");
    assert_eq!(log["last_status_code"], 204);
    assert_eq!(log["event_type"], "lead.updated");

    // Redelivered by hand: a fourth request with the same message id.
    let delivery = log["id"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/v1/webhooks/{id}/deliveries/{delivery}/redeliver"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let again = wait_for(&received, 4).await;
    assert_eq!(again[3].0["webhook-id"].to_str().unwrap(), ids[0]);
}

/// The endpoint's only delivery, once delivered.
async fn delivered_log(app: &TestApp, who: &Login, endpoint: &str) -> Value {
    for _ in 0..100 {
        let (status, page) = app
            .get(&format!("/v1/webhooks/{endpoint}/deliveries"), &who.access)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        if page["items"][0]["status"] == "delivered" {
            return page["items"][0].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the delivery was never recorded as delivered");
}

#[tokio::test]
async fn events_written_with_a_change_are_delivered_and_other_types_are_not() {
    let app = fast_app().await;
    let owner = app.register("Acme Motors").await;
    let (url, received) = receiver(Vec::new()).await;
    create_endpoint(&app, &owner, &url, json!(["user.invited"])).await;
    // A lead event is not one it asked for.
    let (status, _) = app
        .post(
            "/v1/leads",
            Some(&owner.access),
            json!({"name": "Ana", "phone": common::unique_number()}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    app.add_user(&owner, "agent").await;

    let got = wait_for(&received, 1).await;
    let body: Value = serde_json::from_str(&got[0].1).unwrap();
    assert_eq!(body["type"], "user.invited", "{body}");
    assert!(body["data"]["token"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(received.lock().unwrap().len(), 1, "nothing else was sent");
}

#[tokio::test]
async fn private_targets_and_bad_endpoints_are_refused() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "ftp://example.com/hook",
        "https://user:pass@example.com/hook",
    ] {
        let (status, body) = app
            .post(
                "/v1/webhooks",
                Some(&owner.access),
                json!({"url": url, "event_types": ["call.ended"]}),
            )
            .await;
        let problem = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], "url", "{url}: {body}");
    }
    let (status, body) = app
        .post(
            "/v1/webhooks",
            Some(&owner.access),
            json!({"url": "https://8.8.8.8/hook", "event_types": ["fax.received"]}),
        )
        .await;
    let problem = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "event_types");
    let viewer = app.add_user(&owner, "viewer").await;
    let (status, _) = app.get("/v1/webhooks", &viewer.access).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
