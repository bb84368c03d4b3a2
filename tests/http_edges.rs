//! What every client meets before its request reaches a handler: problem+json for every
//! error, body limits, request ids, CORS, health and the OpenAPI document.

mod common;

use common::{spawn_app, spawn_app_with};
use reqwest::{header, Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let (status, body) = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.store.close().await;
    let (status, body) = app.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["detail"].as_str().unwrap().starts_with("not ready"),
        "{body}"
    );
    // And an API call says the server is unavailable rather than crashing.
    let owner_attempt = app
        .post(
            "/v1/auth/login",
            None,
            json!({"email": "a@b.example", "password": "whatever-long"}),
        )
        .await;
    assert_eq!(
        owner_attempt.0,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        owner_attempt.1
    );
}

#[tokio::test]
async fn framework_errors_are_problem_json_too() {
    let app = spawn_app().await;
    let cases = [
        (Method::GET, "/no/such/route", StatusCode::NOT_FOUND),
        (Method::PUT, "/v1/tenant", StatusCode::METHOD_NOT_ALLOWED),
        (
            Method::GET,
            "/v1/agents/not-an-id",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    for (method, path, expected) in cases {
        let res = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{method} {path}");
        assert_eq!(
            res.headers()[header::CONTENT_TYPE],
            "application/problem+json",
            "{method} {path}"
        );
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["status"], expected.as_u16());
        assert!(!body["detail"].as_str().unwrap().is_empty());
    }
}

#[tokio::test]
async fn malformed_and_mistyped_json_get_a_reason() {
    let app = spawn_app().await;
    let owner = app.register("Acme").await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .post(format!("{}/v1/agents", app.base))
            .bearer_auth(&owner.access)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };
    let res = send("{\"name\": ", "application/json").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );

    let res = send("{\"name\": 42}", "application/json").await.unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("name"), "{body}");

    let res = send("name=x", "application/x-www-form-urlencoded")
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
}

#[tokio::test]
async fn oversize_bodies_are_refused_with_413() {
    let app = spawn_app_with(&["--max-body-bytes", "2048"]).await;
    let owner = app.register("Acme").await;
    let big = json!({"name": "A", "system_prompt": "x".repeat(4096)});
    let res = app
        .client
        .post(format!("{}/v1/agents", app.base))
        .bearer_auth(&owner.access)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let (_, agents) = app.get("/v1/agents", &owner.access).await;
    assert_eq!(agents["items"], json!([]), "nothing was created");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_a_given_one() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    let generated = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(&["--cors-allowed-origins", "https://app.acme.example"]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, format!("{}/v1/me", app.base))
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .send()
    };
    let allowed = preflight("https://app.acme.example").await.unwrap();
    assert_eq!(
        allowed.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.acme.example"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
}

#[tokio::test]
async fn large_responses_are_compressed_for_clients_that_ask() {
    let app = spawn_app().await;
    let res = reqwest::Client::builder()
        .no_gzip()
        .build()
        .unwrap()
        .get(format!("{}/openapi.json", app.base))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()[header::CONTENT_ENCODING], "gzip");
}

#[tokio::test]
async fn the_openapi_document_describes_the_api_and_its_security() {
    let app = spawn_app().await;
    let (status, doc) = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        doc["openapi"]
    );
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["paths"]["/v1/agents/{id}"]["patch"]["requestBody"].is_object());
    assert_eq!(
        doc["paths"]["/v1/me"]["get"]["security"][0]["bearer"],
        json!([])
    );
}
