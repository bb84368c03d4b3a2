//! The knowledge base through the API, on the embedded store under the server's data dir:
//! real PDF and DOCX uploads read in the background until ready, searched by words, kept per
//! tenant, replaced by name, deleted with their chunks; hostile or oversized uploads refused
//! with a reason; and a call whose agent looks the answer up.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::fixtures::{manual_pdf, price_list_docx};
use common::{assert_problem, spawn_app, spawn_app_with, spawn_voice_app, Login, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::emulator::script::{ReplyRule, ScriptedToolCall};
use switchboard::emulator::{EmulatorScript, Family};
use switchboard::providers::openai::MultipartBody;
use switchboard::simulator::CallerTurn;

/// Uploads `bytes` as `file_name`; returns the status and body.
async fn upload(app: &TestApp, who: &Login, file_name: &str, bytes: &[u8]) -> (StatusCode, Value) {
    let boundary = format!("sb-{}", uuid::Uuid::new_v4().simple());
    let mut form = MultipartBody::new(&boundary);
    form.file("file", file_name, "application/octet-stream", bytes);
    let res = app
        .client
        .post(format!("{}/v1/knowledge/documents", app.base))
        .bearer_auth(&who.access)
        .header(
            reqwest::header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form.finish())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Waits up to 20 s for the document to leave `queued`, `extracting` and `embedding`.
async fn settled(app: &TestApp, who: &Login, id: &str) -> Value {
    for _ in 0..400 {
        let (status, doc) = app
            .get(&format!("/v1/knowledge/documents/{id}"), &who.access)
            .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        if doc["status"] == "ready" || doc["status"] == "failed" {
            return doc;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("document {id} never finished");
}

/// Uploads and waits until the document is ready.
async fn ready(app: &TestApp, who: &Login, file_name: &str, bytes: &[u8]) -> Value {
    let (status, doc) = upload(app, who, file_name, bytes).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let doc = settled(app, who, doc["id"].as_str().unwrap()).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    doc
}

async fn search(app: &TestApp, who: &Login, query: &str) -> Vec<Value> {
    let (status, body) = app
        .post(
            "/v1/knowledge/search",
            Some(&who.access),
            json!({"query": query, "k": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_pdf_and_a_docx_become_searchable_per_tenant_and_deletion_removes_them() {
    let app = spawn_app().await;
    let a = app.register("Acme Motors").await;
    let b = app.register("Bright Smiles").await;

    let pdf = ready(&app, &a, "manual.pdf", &manual_pdf()).await;
    assert_eq!(pdf["content_type"], "PDF");
    assert!(pdf["chunk_count"].as_i64().unwrap() >= 1, "{pdf}");
    assert_eq!(pdf["progress"], 1.0);
    let docx = ready(&app, &a, "prices.docx", &price_list_docx()).await;
    assert_eq!(docx["content_type"], "DOCX");

    let hits = search(&app, &a, "what is the vault code").await;
    assert!(
        hits[0]["text"].as_str().unwrap().contains("7431-KESTREL"),
        "{hits:?}"
    );
    assert_eq!(hits[0]["title"], "manual.pdf");
    assert!(
        hits[0]["location"].as_str().unwrap().contains("page 2"),
        "{hits:?}"
    );
    let hits = search(&app, &a, "Gold plan code").await;
    assert!(
        hits[0]["text"].as_str().unwrap().contains("ZX-42-OSPREY"),
        "{hits:?}"
    );
    assert!(
        hits[0]["location"].as_str().unwrap().contains("Pricing"),
        "{hits:?}"
    );

    // Tenant B sees none of it, by search or by id.
    for query in ["vault code", "Gold plan code", "KESTREL", "OSPREY"] {
        assert!(search(&app, &b, query).await.is_empty(), "{query}");
    }
    let id = pdf["id"].as_str().unwrap();
    let (status, _) = app
        .get(&format!("/v1/knowledge/documents/{id}"), &b.access)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .delete(&format!("/v1/knowledge/documents/{id}"), &b.access)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app.get("/v1/knowledge/documents", &b.access).await;
    assert_eq!(listed["items"], json!([]));

    let (_, listed) = app.get("/v1/knowledge/documents", &a.access).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    let (status, _) = app
        .delete(&format!("/v1/knowledge/documents/{id}"), &a.access)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let hits = search(&app, &a, "vault code KESTREL").await;
    assert!(
        hits.iter()
            .all(|h| !h["text"].as_str().unwrap().contains("KESTREL")),
        "{hits:?}"
    );
    let (status, _) = app
        .get(&format!("/v1/knowledge/documents/{id}"), &a.access)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn uploading_a_name_again_replaces_the_document() {
    let app = spawn_app().await;
    let a = app.register("Acme Motors").await;
    let first = ready(
        &app,
        &a,
        "faq.md",
        b"# Hours\n\nWe open at 8 on weekdays, code PELICAN.\n",
    )
    .await;
    let second = ready(
        &app,
        &a,
        "faq.md",
        b"# Hours\n\nWe open at 10 on weekdays, code HERON.\n",
    )
    .await;
    assert_eq!(first["id"], second["id"], "the same document, read again");
    assert_eq!(second["content_type"], "Markdown");
    let hits = search(&app, &a, "when do you open").await;
    let texts: Vec<&str> = hits.iter().map(|h| h["text"].as_str().unwrap()).collect();
    assert!(texts.iter().any(|t| t.contains("HERON")), "{texts:?}");
    assert!(texts.iter().all(|t| !t.contains("PELICAN")), "{texts:?}");
    let (_, listed) = app.get("/v1/knowledge/documents", &a.access).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_uploads_are_refused_or_fail_with_a_reason() {
    let app = spawn_app_with(&["--max-document-bytes", "4096"]).await;
    let a = app.register("Acme Motors").await;
    let viewer = app.add_user(&a, "viewer").await;

    let (status, body) = upload(&app, &viewer, "a.txt", b"hello").await;
    assert_problem(status, &body, StatusCode::FORBIDDEN);
    let (status, body) = upload(&app, &a, "big.txt", &vec![b'a'; 10_000]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = upload(&app, &a, "x.pdf", &[0xff, 0xd8, 0xff, 0xe0, 0, 1, 2, 3]).await;
    assert_problem(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = upload(&app, &a, "empty.txt", b"").await;
    assert_problem(status, &body, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Content, not the name, decides: a PDF that is corrupt past its header fails reading.
    let (status, doc) = upload(
        &app,
        &a,
        "notes.txt",
        b"%PDF-1.7\n this is not really a pdf",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let doc = settled(&app, &a, doc["id"].as_str().unwrap()).await;
    assert_eq!(doc["status"], "failed", "{doc}");
    assert!(
        doc["failure_reason"]
            .as_str()
            .is_some_and(|r| r.contains("corrupt")),
        "{doc}"
    );
    let (status, body) = app
        .post(
            "/v1/knowledge/search",
            Some(&a.access),
            json!({"query": " "}),
        )
        .await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_agent_answers_a_caller_from_an_uploaded_document() {
    let caller = common::unique_number();
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = BTreeMap::from([(
        caller.clone(),
        vec!["What is the code for the gold plan?".to_owned()],
    )]);
    script.replies.rules = vec![
        ReplyRule {
            user_contains: Some("gold plan".to_owned()),
            tool_calls: vec![ScriptedToolCall {
                name: "search_knowledge".to_owned(),
                arguments: json!({"query": "gold plan code"}),
            }],
            ..ReplyRule::default()
        },
        ReplyRule {
            after_tool: Some("search_knowledge".to_owned()),
            text: Some("Here is what I found: {tool_result}".to_owned()),
            ..ReplyRule::default()
        },
    ];
    let (app, emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    app.configure_agent(&line, json!({"enabled_tools": ["search_knowledge"]}))
        .await;
    ready(&app, &line.owner, "prices.docx", &price_list_docx()).await;

    let report = common::simulate_call(
        &app.base,
        &caller,
        &line.number,
        vec![CallerTurn::say("What is the code for the gold plan?")],
    )
    .await;
    app.ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;
    let after_tool = emulator
        .requests_for(Family::Llm)
        .into_iter()
        .map(|r| r.body.to_string())
        .find(|body| body.contains("\"role\":\"tool\""))
        .expect("the model got the search's answer");
    assert!(after_tool.contains("ZX-42-OSPREY"), "{after_tool}");
}

#[tokio::test]
async fn a_starting_server_leaves_documents_still_being_read_alone() {
    let app = spawn_app().await;
    let a = app.register("Acme Motors").await;
    let tenant = a.tenant_id.parse().unwrap();
    let stale = app
        .store
        .upsert_document(
            tenant,
            switchboard::store::Actor::System,
            &switchboard::store::NewDocument {
                name: "half.pdf",
                content_type: "PDF",
                size_bytes: 10,
                sha256: "00",
            },
        )
        .await
        .unwrap();
    // Another node may be reading it right now: only work stalled for
    // INGESTION_STALL_MS is taken for a stopped server's.
    assert_eq!(
        app.store.fail_interrupted_documents().await.unwrap(),
        0,
        "fresh work is left alone"
    );
    let doc = app.store.document(tenant, stale.id).await.unwrap();
    assert_eq!(doc.status, switchboard::store::DocumentStatus::Queued);
}
