//! Analytics and usage through the API, on calls, turns, texts, leads and tool calls written
//! through the store with known figures: every number equals the one computed by hand, on
//! SQLite and (with `TEST_DATABASE_URL`) on PostgreSQL alike.

mod common;

use actors::domain::{CallId, E164};
use actors::ports::{
    CallAnalysis, CallInfo, CallLog, CallOutcome, CallUsage, Channel, Sentiment, Speaker,
    StageTimings, TurnRecord,
};
use common::{assert_problem, spawn_app, unique_number};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::store::{NewCall, NewMessage, TwilioCallStatus};

/// An agent's reply with these voice-to-voice and STT milliseconds.
fn reply(seq: u32, voice_to_voice: u32, stt: u32) -> TurnRecord {
    TurnRecord {
        seq,
        speaker: Speaker::Agent,
        text: "Sure.".to_owned(),
        interrupted: false,
        timings: StageTimings {
            endpointing_ms: Some(600),
            stt_ms: Some(stt),
            voice_to_voice_ms: Some(voice_to_voice),
            ..StageTimings::default()
        },
    }
}

#[tokio::test]
async fn analytics_and_usage_equal_the_figures_computed_by_hand() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let (status, _) = app
        .patch(
            "/v1/tenant",
            &owner.access,
            json!({"timezone": "America/Chicago", "monthly_minute_quota": 100}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let agent = app.create_agent(&owner, "Front desk").await;
    let business = unique_number();
    let number = app.create_number(&owner, &business, &agent).await;
    let tenant = owner.tenant_id.parse().unwrap();
    let store = &app.store;

    // Four answered calls of 30 s, 60 s, 90 s and 10 min; five replies in all.
    let calls = [
        (30, vec![(500, 100)], Sentiment::Positive),
        (60, vec![(700, 120), (1_300, 200)], Sentiment::Positive),
        (90, vec![(900, 140)], Sentiment::Negative),
        (600, vec![(1_100, 160)], Sentiment::Neutral),
    ];
    for (seconds, replies, sentiment) in calls {
        let info = CallInfo {
            call_id: CallId::new(),
            tenant,
            agent: agent.parse().unwrap(),
            customer: unique_number(),
            business_number: E164::parse(&business).unwrap(),
        };
        let sid = common::call_sid();
        store
            .create_call(
                tenant,
                &NewCall::inbound(&info, &sid, number.parse().unwrap()),
            )
            .await
            .unwrap();
        store.call_started(&info).await.unwrap();
        for (i, (v2v, stt)) in replies.iter().enumerate() {
            store
                .turn(&info, &reply(i as u32, *v2v, *stt))
                .await
                .unwrap();
        }
        store.tool_called(&info, "search_knowledge").await.unwrap();
        store
            .call_ended(&info, &CallOutcome::Completed)
            .await
            .unwrap();
        store
            .usage(
                &info,
                &CallUsage {
                    call_ms: seconds * 1_000,
                    stt_ms: 1_500,
                    llm_tokens: 100,
                    tts_characters: 40,
                },
            )
            .await
            .unwrap();
        store
            .apply_call_status(&sid, TwilioCallStatus::Completed, Some(seconds as i64))
            .await
            .unwrap();
        store
            .analysis(
                &info,
                &CallAnalysis {
                    summary: "A call.".into(),
                    sentiment,
                    extracted: Default::default(),
                },
            )
            .await
            .unwrap();
    }
    // One refused call (never answered) and one more tool.
    let refused = CallInfo {
        call_id: CallId::new(),
        tenant,
        agent: agent.parse().unwrap(),
        customer: unique_number(),
        business_number: E164::parse(&business).unwrap(),
    };
    store
        .create_call(
            tenant,
            &NewCall::inbound(&refused, &common::call_sid(), number.parse().unwrap()),
        )
        .await
        .unwrap();
    store
        .refuse_call(tenant, refused.call_id, "at capacity")
        .await
        .unwrap();
    // Texts: two in, one out.
    for (sender, sid) in [
        (Speaker::Customer, "SM1"),
        (Speaker::Customer, "SM2"),
        (Speaker::Agent, "SM3"),
    ] {
        let sid = format!("{sid}{}", uuid::Uuid::new_v4().simple());
        let message = NewMessage {
            customer: "+14155550123",
            channel: Channel::Sms,
            sender,
            sender_user_id: None,
            body: "hello",
            media_urls: &[],
            twilio_sid: Some(&sid),
            status: "received",
            error_code: None,
            segments: 1,
            llm_tokens: 0,
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        store.record_message(tenant, &message).await.unwrap();
    }
    // Leads: two new, one qualified.
    for (name, status) in [("Ann", "new"), ("Bo", "new"), ("Cy", "qualified")] {
        let (code, body) = app
            .post(
                "/v1/leads",
                Some(&owner.access),
                json!({"name": name, "phone": unique_number(), "status": status}),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED, "{body}");
    }

    let zone: chrono_tz::Tz = "America/Chicago".parse().unwrap();
    let today = chrono::Utc::now().with_timezone(&zone).date_naive();
    let yesterday = today - chrono::Duration::days(1);
    let (status, summary) = app
        .get(
            &format!("/v1/analytics/summary?from={yesterday}&to={today}&bucket=day"),
            &owner.access,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    // Durations 30, 60, 90, 600 s: mean 195 s; nearest-rank p50 is the 2nd, p95 the 4th.
    assert_eq!(summary["calls"], 5);
    assert_eq!(summary["answered"], 4);
    assert_eq!(summary["duration_ms_avg"], 195_000.0);
    assert_eq!(
        summary["duration_ms"],
        json!({"p50": 60_000, "p95": 600_000})
    );
    // Voice-to-voice 500, 700, 900, 1100, 1300: p50 the 3rd, p95 the 5th.
    assert_eq!(
        summary["voice_to_voice_ms"],
        json!({"p50": 900, "p95": 1_300})
    );
    assert_eq!(summary["stages"]["stt_ms"], json!({"p50": 140, "p95": 200}));
    assert_eq!(
        summary["stages"]["endpointing_ms"],
        json!({"p50": 600, "p95": 600})
    );
    assert_eq!(
        summary["stages"]["retrieval_ms"],
        json!({"p50": null, "p95": null})
    );
    assert_eq!(
        summary["sentiment"],
        json!({"negative": 1, "neutral": 1, "positive": 2})
    );
    // The analysis made a lead of each of the four callers; staff added three.
    assert_eq!(summary["lead_funnel"], json!({"new": 6, "qualified": 1}));
    assert_eq!(summary["sms"], json!({"inbound": 2, "outbound": 1}));
    assert_eq!(summary["tool_calls"], json!({"search_knowledge": 4}));
    let buckets = summary["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2);
    assert_eq!(buckets[0]["calls"], 0);
    assert_eq!(buckets[0]["duration_ms"], json!({"p50": null, "p95": null}));
    assert_eq!(buckets[1]["calls"], 5);
    assert_eq!(
        buckets[1]["voice_to_voice_ms"],
        json!({"p50": 900, "p95": 1_300})
    );

    // Another tenant's analytics are its own: empty.
    let other = app.register("Bright Smiles").await;
    let (_, theirs) = app.get("/v1/analytics/summary", &other.access).await;
    assert_eq!(theirs["calls"], 0);
    assert_eq!(
        theirs["buckets"].as_array().unwrap().len(),
        7,
        "a week by default"
    );

    for bad in [
        "bucket=hour",
        "from=2026-13-01",
        "from=2026-03-02&to=2026-03-01",
        "from=2020-01-01&to=2026-01-01",
    ] {
        let (status, body) = app
            .get(&format!("/v1/analytics/summary?{bad}"), &owner.access)
            .await;
        assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Usage this month: 780 s of calls is 13 minutes; six STT seconds; the quota's rest.
    let (status, usage) = app.get("/v1/usage", &owner.access).await;
    assert_eq!(status, StatusCode::OK, "{usage}");
    assert_eq!(usage["call_ms"], 780_000);
    assert_eq!(usage["call_minutes"], 13);
    assert_eq!(usage["stt_seconds"], 6);
    assert_eq!(usage["llm_tokens"], 400);
    assert_eq!(usage["tts_characters"], 160);
    assert_eq!(usage["sms_segments"], 3);
    assert_eq!(usage["monthly_minute_quota"], 100);
    assert_eq!(usage["minutes_remaining"], 87);
    let (_, last_year) = app.get("/v1/usage?month=2020-01", &owner.access).await;
    assert_eq!(last_year["call_ms"], 0);
    assert_eq!(last_year["month"], "2020-01");
    let (status, body) = app.get("/v1/usage?month=January", &owner.access).await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
}
