//! Call history through the API: finished simulated calls listed newest first with filters
//! and cursor pages, and one call with its transcript and each turn's stage timings.

mod common;

use std::collections::BTreeMap;

use common::{assert_problem, spawn_voice_app};
use reqwest::StatusCode;
use serde_json::Value;
use switchboard::emulator::EmulatorScript;
use switchboard::simulator::CallerTurn;

#[tokio::test]
async fn finished_calls_are_listed_filtered_paged_and_shown_with_their_timings() {
    let callers: Vec<String> = (0..3).map(|_| common::unique_number()).collect();
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = callers
        .iter()
        .map(|c| (c.clone(), vec!["Are you open today?".to_owned()]))
        .collect::<BTreeMap<_, _>>();
    let (app, _emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    let other = app.register("Bright Smiles").await;
    let mut sids = Vec::new();
    for caller in &callers {
        let report = common::simulate_call(
            &app.base,
            caller,
            &line.number,
            vec![CallerTurn::say("Are you open today?")],
        )
        .await;
        app.ended_call(&line.owner.tenant_id, &report.call_sid)
            .await;
        sids.push(report.call_sid);
    }
    let token = &line.owner.access;

    // Newest first, two to a page, no call twice and none missing.
    let (status, first) = app.get("/v1/calls?limit=2", token).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, second) = app
        .get(&format!("/v1/calls?limit=2&cursor={cursor}"), token)
        .await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let listed: Vec<&str> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .map(|c| c["call_sid"].as_str().unwrap())
        .collect();
    let newest_first: Vec<&str> = sids.iter().rev().map(String::as_str).collect();
    assert_eq!(listed, newest_first);

    // Filters.
    let count = |body: &Value| body["items"].as_array().unwrap().len();
    let (_, by_number) = app
        .get(
            &format!("/v1/calls?number={}", callers[1].replace('+', "%2B")),
            token,
        )
        .await;
    assert_eq!(count(&by_number), 1, "{by_number}");
    assert_eq!(by_number["items"][0]["from_number"], callers[1].as_str());
    let (_, outbound) = app.get("/v1/calls?direction=outbound", token).await;
    assert_eq!(count(&outbound), 0);
    let (_, completed) = app.get("/v1/calls?status=completed", token).await;
    assert_eq!(count(&completed), 3);
    let (_, agent) = app
        .get(&format!("/v1/calls?agent_id={}", line.agent), token)
        .await;
    assert_eq!(count(&agent), 3);
    let (_, future) = app.get("/v1/calls?from=2999-01-01T00:00:00Z", token).await;
    assert_eq!(count(&future), 0);
    let (_, theirs) = app.get("/v1/calls", &other.access).await;
    assert_eq!(count(&theirs), 0, "another tenant sees none of them");
    for bad in [
        "status=ringingish",
        "direction=sideways",
        "from=yesterday",
        "sentiment=meh",
        "limit=0",
    ] {
        let (status, body) = app.get(&format!("/v1/calls?{bad}"), token).await;
        assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // One call: its transcript in order and the agent's stage timings.
    let id = first["items"][0]["id"].as_str().unwrap();
    let (status, detail) = app.get(&format!("/v1/calls/{id}"), token).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["status"], "completed");
    assert_eq!(detail["direction"], "inbound");
    let turns = detail["turns"].as_array().unwrap();
    let speakers: Vec<&str> = turns
        .iter()
        .map(|t| t["speaker"].as_str().unwrap())
        .collect();
    assert_eq!(speakers[..3], ["agent", "caller", "agent"], "{detail}");
    assert_eq!(turns[1]["text"], "Are you open today?");
    let reply = &turns[2]["timings"];
    for stage in [
        "endpointing_ms",
        "stt_ms",
        "llm_first_token_ms",
        "tts_first_byte_ms",
        "voice_to_voice_ms",
        "runtime_ms",
    ] {
        assert!(reply[stage].as_u64().is_some(), "{stage} missing: {reply}");
    }
    let (status, _) = app.get(&format!("/v1/calls/{id}"), &other.access).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
