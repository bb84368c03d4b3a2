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
use switchboard::simulator::CallerTurn;

async fn upload(app: &TestApp, who: &Login, file_name: &str, bytes: &[u8]) -> (StatusCode, Value) {
    app.upload_document(&who.access, file_name, bytes).await
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

/// Document events until one whose status is `ready` or `failed`.
async fn statuses_until_settled(events: &mut common::EventStream) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let event = events
            .next(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("the document never settled; saw {seen:?}"));
        assert_eq!(event.event, "document.status");
        let data = event.data["data"].clone();
        let done = data["status"] == "ready" || data["status"] == "failed";
        seen.push(data);
        if done {
            return seen;
        }
    }
}

#[tokio::test]
async fn a_documents_progress_is_announced_as_events() {
    let app = spawn_app().await;
    let a = app.register("Acme Motors").await;
    let mut events = common::EventStream::open(
        &app,
        "/v1/events?types=document.status",
        Some(&a.access),
        &[],
    )
    .await;

    let (status, doc) = upload(&app, &a, "manual.pdf", &manual_pdf()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    let seen = statuses_until_settled(&mut events).await;
    let statuses: Vec<&str> = seen.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses[..2], ["queued", "extracting"], "{statuses:?}");
    assert!(statuses.contains(&"embedding"), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&"ready"));
    assert!(seen
        .iter()
        .all(|d| d["document_id"] == doc["id"] && d["name"] == "manual.pdf"));
    let progress: Vec<f64> = seen
        .iter()
        .map(|d| d["progress"].as_f64().unwrap())
        .collect();
    assert!(progress.windows(2).all(|w| w[0] <= w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&1.0));
    let stored = settled(&app, &a, doc["id"].as_str().unwrap()).await;
    assert_eq!(seen.last().unwrap()["chunk_count"], stored["chunk_count"]);

    // A file that cannot be read ends with `failed` and the reason.
    let mut broken = manual_pdf();
    broken.truncate(broken.len() / 2);
    let (status, _) = upload(&app, &a, "broken.pdf", &broken).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let seen = statuses_until_settled(&mut events).await;
    let last = seen.last().unwrap();
    assert_eq!(last["status"], "failed", "{seen:?}");
    assert!(
        last["failure_reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{last}"
    );
}

/// A caller asks about the gold plan of `prices.docx`, on a server whose embeddings take
/// `embeddings_ms` and whose agent is configured with `agent` (a PATCH body); returns the
/// model request that answered the question and the answer's stage timings.
async fn ask_about_the_gold_plan(
    embeddings_ms: u64,
    agent: Value,
) -> (String, actors::ports::StageTimings) {
    let question = "What is the code for the gold plan?";
    let caller = common::unique_number();
    let mut script = EmulatorScript::instant();
    script.latency.embeddings = switchboard::emulator::script::Latency::new(embeddings_ms, 0);
    script.transcripts.by_prompt = BTreeMap::from([(caller.clone(), vec![question.to_owned()])]);
    let (app, emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await; // no tools; automatic retrieval is on by default
    app.configure_agent(&line, agent).await;
    ready(&app, &line.owner, "prices.docx", &price_list_docx()).await;

    let report = common::simulate_call(
        &app.base,
        &caller,
        &line.number,
        vec![CallerTurn::say(question)],
    )
    .await;
    let record = app
        .ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;
    let asked = emulator
        .requests_for(Family::Llm)
        .into_iter()
        .map(|r| r.body.to_string())
        .find(|body| body.contains(question))
        .expect("the model was asked the question");
    let answer = record
        .turns
        .iter()
        .find(|t| t.speaker == actors::ports::Speaker::Agent && t.seq > 0)
        .expect("the agent answered");
    (asked, answer.timings)
}

#[tokio::test]
async fn a_callers_question_is_answered_from_the_documents_without_a_tool_call() {
    let (asked, timings) = ask_about_the_gold_plan(0, json!({})).await;
    assert!(asked.contains("ZX-42-OSPREY"), "{asked}");
    assert!(!asked.contains("\"tools\""), "no tool was offered: {asked}");
    assert!(timings.retrieval_ms.is_some(), "{timings:?}");
}

#[tokio::test]
async fn a_knowledge_base_slower_than_the_agents_budget_is_skipped() {
    // Every search embeds the question first, which here takes a second and a half.
    let (asked, timings) =
        ask_about_the_gold_plan(1_500, json!({"retrieval_budget_ms": 100})).await;
    assert!(
        !asked.contains("ZX-42-OSPREY"),
        "the turn waited for the search: {asked}"
    );
    assert_eq!(timings.retrieval_ms, None);
    assert!(
        timings.voice_to_voice_ms.is_some_and(|ms| ms < 1_500),
        "the caller did not wait for the slow search: {timings:?}"
    );
}

#[tokio::test]
async fn the_retrieval_budget_is_checked_and_shown() {
    let app = spawn_app().await;
    let line = app.line().await;
    let (_, agent) = app
        .get(&format!("/v1/agents/{}", line.agent), &line.owner.access)
        .await;
    assert_eq!(agent["auto_retrieval"], true);
    assert_eq!(agent["retrieval_budget_ms"], 150);
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{}", line.agent),
            &line.owner.access,
            json!({"retrieval_budget_ms": 60_000}),
        )
        .await;
    let problem = assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"][0]["field"], "retrieval_budget_ms");
    let (status, agent) = app
        .patch(
            &format!("/v1/agents/{}", line.agent),
            &line.owner.access,
            json!({"auto_retrieval": false, "retrieval_budget_ms": 300}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{agent}");
    assert_eq!(agent["auto_retrieval"], false);
    assert_eq!(agent["retrieval_budget_ms"], 300);
}

/// Ingestion throughput through the API: 200-page PDFs of 30 lines a page uploaded one
/// after another, each timed from upload to `ready` (extraction, chunking, BM25, the
/// embedded store; no embedder). Prints pages per second.
/// `cargo test --release --test knowledge -- --ignored --nocapture benchmark_ingestion`
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by hand"]
async fn benchmark_ingestion_pages_per_second() {
    const PAGES: usize = 200;
    const RUNS: usize = 5;
    let app = spawn_app_with(&["--max-document-bytes", "104857600"]).await;
    let owner = app.register("Acme Motors").await;
    let lines: Vec<String> = (0..30)
        .map(|i| {
            format!(
                "Line {i}: the service plan covers brakes, tyres, oil and the annual inspection."
            )
        })
        .collect();
    let page: Vec<&str> = lines.iter().map(String::as_str).collect();
    let pages: Vec<&[&str]> = (0..PAGES).map(|_| page.as_slice()).collect();
    let mut doc = common::fixtures::pdf_document(&pages);
    doc.compress();
    let bytes = common::fixtures::save(doc);
    let mut rates = Vec::new();
    for run in 0..RUNS {
        let started = std::time::Instant::now();
        let (status, doc) = upload(&app, &owner, &format!("manual-{run}.pdf"), &bytes).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
        let doc = settled(&app, &owner, doc["id"].as_str().unwrap()).await;
        assert_eq!(doc["status"], "ready", "{doc}");
        rates.push(PAGES as f64 / started.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "ingestion of a {PAGES}-page PDF ({} KiB), {RUNS} runs: median {:.0} pages/s (min {:.0}, max {:.0})",
        bytes.len() / 1024,
        rates[RUNS / 2],
        rates[0],
        rates[RUNS - 1]
    );
}
