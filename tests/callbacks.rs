//! Callbacks: staff book, list and cancel them through `/v1/callbacks`; the agent books them
//! with its `schedule_callback` tool in the tenant's local time; and every node's scheduler
//! places a due callback exactly once, even when it fell due while no server could dial and
//! two nodes start on the same database.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actors::ports::{ConversationStore, PortError};
use chrono::{DateTime, Utc};
use common::fake_twilio::{FakeTwilio, ACCOUNT};
use common::{spawn_app, spawn_app_with, spawn_voice_app, unique_number, Login, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::emulator::script::{ReplyRule, ScriptedToolCall};
use switchboard::emulator::EmulatorScript;
use switchboard::simulator::CallerTurn;

/// RFC 3339 for `secs` from now (negative: in the past).
fn in_secs(secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

async fn book(app: &TestApp, who: &Login, body: Value) -> (StatusCode, Value) {
    app.post("/v1/callbacks", Some(&who.access), body).await
}

async fn book_ok(app: &TestApp, who: &Login, to: &str, due_at: &str) -> Value {
    let (status, body) = book(
        app,
        who,
        json!({"to": to, "due_at": due_at, "note": "quote"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

fn ids(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn staff_book_list_and_cancel_callbacks_and_viewers_only_read_them() {
    let app = spawn_app().await;
    let line = app.line().await;
    let customer = unique_number();

    let later = book_ok(&app, &line.owner, &customer, &in_secs(7200)).await;
    assert_eq!(later["status"], "scheduled");
    assert_eq!(later["requested_by"], "user");
    assert_eq!(later["user_id"], line.owner.user_id.as_str());
    assert_eq!(later["customer_number"], customer.as_str());
    assert_eq!(later["note"], "quote");
    assert_eq!(later["agent_id"], Value::Null);
    let staff = app.add_user(&line.owner, "agent").await;
    let (status, sooner) = book(
        &app,
        &staff,
        json!({"to": customer, "due_at": in_secs(3600), "agent_id": line.agent}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{sooner}");
    assert_eq!(sooner["agent_id"], line.agent.as_str());
    let third = book_ok(&app, &line.owner, &unique_number(), &in_secs(10_800)).await;

    // Soonest first, a page at a time.
    let (status, page) = app.get("/v1/callbacks?limit=2", &line.owner.access).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        ids(&page),
        [&sooner["id"], &later["id"]].map(|v| v.as_str().unwrap().to_owned())
    );
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = app
        .get(
            &format!("/v1/callbacks?limit=2&cursor={cursor}"),
            &line.owner.access,
        )
        .await;
    assert_eq!(ids(&rest), [third["id"].as_str().unwrap()]);
    assert_eq!(rest["next_cursor"], Value::Null);

    // A viewer reads but may neither book nor cancel.
    let viewer = app.add_user(&line.owner, "viewer").await;
    let path = format!("/v1/callbacks/{}", later["id"].as_str().unwrap());
    let (status, seen) = app.get(&path, &viewer.access).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen["id"], later["id"]);
    let (status, problem) = book(
        &app,
        &viewer,
        json!({"to": customer, "due_at": in_secs(60)}),
    )
    .await;
    common::assert_problem(status, &problem, StatusCode::FORBIDDEN);
    let (status, problem) = app
        .post(&format!("{path}/cancel"), Some(&viewer.access), json!({}))
        .await;
    common::assert_problem(status, &problem, StatusCode::FORBIDDEN);

    // Cancel once; a second cancel is a conflict; the filter finds it.
    let (status, canceled) = app
        .post(&format!("{path}/cancel"), Some(&staff.access), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "canceled");
    let (status, problem) = app
        .post(
            &format!("{path}/cancel"),
            Some(&line.owner.access),
            json!({}),
        )
        .await;
    common::assert_problem(status, &problem, StatusCode::CONFLICT);
    let (_, canceled_only) = app
        .get("/v1/callbacks?status=canceled", &line.owner.access)
        .await;
    assert_eq!(ids(&canceled_only), [later["id"].as_str().unwrap()]);
    let (_, scheduled) = app
        .get("/v1/callbacks?status=scheduled", &line.owner.access)
        .await;
    assert_eq!(ids(&scheduled).len(), 2);
}

#[tokio::test]
async fn bad_callback_requests_are_422_naming_the_field_and_a_strangers_agent_is_404() {
    let app = spawn_app().await;
    let line = app.line().await;
    let other = app.register("Other Motors").await;
    let strangers_agent = app.create_agent(&other, "Theirs").await;
    let customer = unique_number();
    let cases = [
        (json!({"to": "nonsense", "due_at": in_secs(60)}), "to"),
        (json!({"to": customer, "due_at": in_secs(-60)}), "due_at"),
        (
            json!({"to": customer, "due_at": "tomorrow at three"}),
            "due_at",
        ),
        (
            json!({"to": customer, "due_at": in_secs(60), "agent_id": "not-an-id"}),
            "agent_id",
        ),
        (
            json!({"to": customer, "due_at": in_secs(60), "note": "x".repeat(1001)}),
            "note",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = book(&app, &line.owner, body.clone()).await;
        common::assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(problem.to_string().contains(field), "{body}: {problem}");
    }
    let (status, problem) = book(
        &app,
        &line.owner,
        json!({"to": customer, "due_at": in_secs(60), "agent_id": strangers_agent}),
    )
    .await;
    common::assert_problem(status, &problem, StatusCode::NOT_FOUND);
    for query in ["status=soon", "limit=0", "cursor=nonsense"] {
        let (status, problem) = app
            .get(&format!("/v1/callbacks?{query}"), &line.owner.access)
            .await;
        common::assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (_, list) = app.get("/v1/callbacks", &line.owner.access).await;
    assert!(ids(&list).is_empty(), "nothing was booked: {list}");
    let (status, problem) = app
        .get(
            &format!("/v1/callbacks/{}", uuid::Uuid::new_v4()),
            &line.owner.access,
        )
        .await;
    common::assert_problem(status, &problem, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_agents_booking_is_read_in_the_tenants_timezone_linked_to_the_lead_and_announced() {
    let app = spawn_app().await;
    let line = app.line().await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"timezone": "America/Chicago"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let tenant = line.owner.tenant_id.parse().unwrap();
    let customer = unique_number();
    app.store
        .update_lead(
            tenant,
            &customer,
            BTreeMap::from([("name".to_owned(), "Dana".to_owned())]),
        )
        .await
        .unwrap();

    let booked = app
        .store
        .schedule_callback(tenant, &customer, "2099-03-02T15:00", "wants a quote")
        .await
        .unwrap();
    assert_eq!(
        booked, "2099-03-02T15:00:00-06:00",
        "confirmed in local time"
    );
    let refused = app
        .store
        .schedule_callback(tenant, &customer, "2001-03-02T15:00", "")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, PortError::Refused(m) if m.contains("in the past")),
        "{refused}"
    );
    let refused = app
        .store
        .schedule_callback(tenant, &customer, "next Tuesday", "")
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, PortError::Refused(m) if m.contains("ISO 8601")),
        "{refused}"
    );

    let (_, list) = app.get("/v1/callbacks", &line.owner.access).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the good time was booked: {list}");
    let callback = &items[0];
    assert_eq!(callback["requested_by"], "agent");
    assert_eq!(callback["note"], "wants a quote");
    let due: DateTime<Utc> = callback["due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due.to_rfc3339(), "2099-03-02T21:00:00+00:00");
    let (_, lead) = app
        .get(
            &format!("/v1/leads?q={}", customer.trim_start_matches('+')),
            &line.owner.access,
        )
        .await;
    assert_eq!(callback["lead_id"], lead["items"][0]["id"], "{lead}");
    let events = app
        .store
        .outbox_events(tenant, "callback.requested")
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], callback["id"]);
}

#[tokio::test]
async fn a_caller_who_asks_to_be_called_back_gets_a_callback_from_the_agent_they_spoke_to() {
    let customer = unique_number();
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = BTreeMap::from([(
        customer.clone(),
        vec!["Please call me back tomorrow afternoon.".to_owned()],
    )]);
    script.replies.rules = vec![
        ReplyRule {
            user_contains: Some("call me back".to_owned()),
            tool_calls: vec![ScriptedToolCall {
                name: "schedule_callback".to_owned(),
                arguments: json!({"when": "2099-03-02T15:00", "note": "wants a quote"}),
            }],
            ..ReplyRule::default()
        },
        ReplyRule {
            after_tool: Some("schedule_callback".to_owned()),
            text: Some("Booked: {tool_result}".to_owned()),
            ..ReplyRule::default()
        },
    ];
    let (app, _emulator) = spawn_voice_app(script, &[]).await;
    let line = app.line().await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{}", line.agent),
            &line.owner.access,
            json!({"enabled_tools": ["schedule_callback"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let report = common::simulate_call(
        &app.base,
        &customer,
        &line.number,
        vec![CallerTurn::say("Please call me back tomorrow afternoon.")],
    )
    .await;
    let record = app
        .ended_call(&line.owner.tenant_id, &report.call_sid)
        .await;
    let said: Vec<&str> = record.turns.iter().map(|t| t.text.as_str()).collect();
    assert!(
        said.iter().any(|t| t.contains("2099-03-02T15:00:00+00:00")),
        "the agent confirms the booked time: {said:?}"
    );

    let (_, list) = app.get("/v1/callbacks", &line.owner.access).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["customer_number"], customer.as_str());
    assert_eq!(items[0]["agent_id"], line.agent.as_str());
    assert_eq!(items[0]["requested_by"], "agent");
    assert_eq!(items[0]["due_at"], "2099-03-02T15:00:00Z");
}

/// The POSTs to Twilio's Calls.json that dial `number`.
fn dials_to(twilio: &FakeTwilio, number: &str) -> usize {
    twilio
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.ends_with("/Calls.json") && s.fields().contains(&("To", number)))
        .count()
}

/// A Twilio that accepts every dial with a fresh CallSid.
async fn accepting_twilio() -> FakeTwilio {
    FakeTwilio::start(Duration::ZERO, |_| {
        (
            StatusCode::CREATED,
            json!({"sid": common::call_sid(), "account_sid": ACCOUNT, "status": "queued"})
                .to_string(),
        )
    })
    .await
}

/// A node that dials through `twilio`, on `database`, looking for due callbacks every 50 ms.
async fn dialling_node(twilio: &FakeTwilio, database: &str) -> TestApp {
    spawn_voice_app(
        EmulatorScript::instant(),
        &[
            "--database-url",
            database,
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-api-base",
            &twilio.base_url,
            "--callback-poll-ms",
            "50",
        ],
    )
    .await
    .0
}

/// Waits up to 10 s for the callback to leave `scheduled`/`placing`; returns it.
async fn settled(app: &TestApp, tenant: &str, id: &str) -> switchboard::store::Callback {
    let (tenant, id) = (tenant.parse().unwrap(), id.parse().unwrap());
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let callback = app.store.callback(tenant, id).await.unwrap();
            if !matches!(
                callback.status,
                switchboard::store::CallbackStatus::Scheduled
                    | switchboard::store::CallbackStatus::Placing
            ) {
                return callback;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .expect("the callback is settled")
}

#[tokio::test]
async fn a_callback_due_while_the_server_was_down_is_placed_once_after_restart_on_two_nodes() {
    let twilio = accepting_twilio().await;
    let database = common::shared_database_url().await;
    // A server that cannot dial (no providers): callbacks are booked but nobody places them,
    // as when every node is down.
    let booking = spawn_app_with(&["--database-url", &database]).await;
    let line = booking.line().await;
    let (due_customer, canceled_customer, future_customer) =
        (unique_number(), unique_number(), unique_number());
    let due = book_ok(&booking, &line.owner, &due_customer, &in_secs(1)).await;
    let canceled = book_ok(&booking, &line.owner, &canceled_customer, &in_secs(1)).await;
    let future = book_ok(&booking, &line.owner, &future_customer, &in_secs(3600)).await;
    let (status, body) = booking
        .post(
            &format!("/v1/callbacks/{}/cancel", canceled["id"].as_str().unwrap()),
            Some(&line.owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        twilio.seen.lock().unwrap().is_empty(),
        "nobody could dial yet"
    );

    // Two nodes start on the same database, both polling every 50 ms.
    let (first, second) = tokio::join!(
        dialling_node(&twilio, &database),
        dialling_node(&twilio, &database)
    );
    let placed = settled(&first, &line.owner.tenant_id, due["id"].as_str().unwrap()).await;
    assert_eq!(
        placed.status,
        switchboard::store::CallbackStatus::Placed,
        "{placed:?}"
    );
    let call = placed.call_id.expect("the callback names its call");
    // Give both nodes many more polls to (wrongly) dial again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(dials_to(&twilio, &due_customer), 1, "dialled exactly once");
    assert_eq!(
        dials_to(&twilio, &canceled_customer),
        0,
        "a canceled callback never rings"
    );
    assert_eq!(dials_to(&twilio, &future_customer), 0, "not due yet");
    let dial = twilio.seen.lock().unwrap()[0].clone();
    assert!(
        dial.fields().contains(&("From", line.number.as_str())),
        "{dial:?}"
    );

    let tenant = line.owner.tenant_id.parse().unwrap();
    second
        .store
        .call_record(tenant, call)
        .await
        .expect("the placed call is recorded");
    let (_, canceled_now) = booking
        .get(
            &format!("/v1/callbacks/{}", canceled["id"].as_str().unwrap()),
            &line.owner.access,
        )
        .await;
    assert_eq!(canceled_now["status"], "canceled");
    let (_, future_now) = booking
        .get(
            &format!("/v1/callbacks/{}", future["id"].as_str().unwrap()),
            &line.owner.access,
        )
        .await;
    assert_eq!(future_now["status"], "scheduled");
    assert_eq!(future_now["attempts"], 0);
}

#[tokio::test]
async fn a_number_twilio_refuses_fails_the_callback_and_a_busy_twilio_is_tried_again_later() {
    let refused = unique_number();
    let refused_for_reply = refused.clone();
    let twilio = FakeTwilio::start(Duration::ZERO, move |seen| {
        if seen.fields().contains(&("To", refused_for_reply.as_str())) {
            (
                StatusCode::BAD_REQUEST,
                json!({"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
                    .to_string(),
            )
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"code": 20503, "message": "Service unavailable", "status": 503}).to_string(),
            )
        }
    })
    .await;
    let database = common::shared_database_url().await;
    let node = dialling_node(&twilio, &database).await;
    let line = node.line().await;
    let busy = unique_number();
    let bad = book_ok(&node, &line.owner, &refused, &in_secs(1)).await;
    let retried = book_ok(&node, &line.owner, &busy, &in_secs(1)).await;

    let failed = settled(&node, &line.owner.tenant_id, bad["id"].as_str().unwrap()).await;
    assert_eq!(failed.status, switchboard::store::CallbackStatus::Failed);
    assert!(
        failed
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("Invalid 'To'")),
        "{failed:?}"
    );

    let tenant = line.owner.tenant_id.parse().unwrap();
    let id = retried["id"].as_str().unwrap().parse().unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let callback = node.store.callback(tenant, id).await.unwrap();
            if callback.attempts == 1 && callback.failure.is_some() {
                return callback;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .expect("the busy dial is recorded");
    assert_eq!(
        again.status,
        switchboard::store::CallbackStatus::Scheduled,
        "{again:?}"
    );
    assert!(
        again.due_at > Utc::now() + chrono::Duration::seconds(30),
        "{again:?}"
    );
    assert_eq!(
        dials_to(&twilio, &busy),
        1,
        "not again until the later time"
    );
}

#[tokio::test]
async fn concurrent_claims_from_two_nodes_never_share_a_callback() {
    let database = common::shared_database_url().await;
    let one = spawn_app_with(&["--database-url", &database]).await;
    let two = spawn_app_with(&["--database-url", &database]).await;
    let line = one.line().await;
    let tenant = line.owner.tenant_id.parse().unwrap();
    let mut booked = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let callback = one
            .store
            .create_callback(
                tenant,
                &switchboard::store::NewCallback {
                    customer: actors::domain::E164::parse(&unique_number()).unwrap(),
                    due_at_ms: Utc::now().timestamp_millis() - 1_000,
                    note: String::new(),
                    agent: None,
                    requested_by: switchboard::store::CallbackRequester::Agent,
                },
            )
            .await
            .unwrap();
        booked.insert(callback.id);
    }

    // Eight schedulers, four per node, claim small batches at once until nothing is left.
    let claimers = (0..8).map(|i| {
        let store = if i % 2 == 0 {
            one.store.clone()
        } else {
            two.store.clone()
        };
        tokio::spawn(async move {
            let node = format!("node-{i}");
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due_callbacks(&node, 3).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                for callback in claimed {
                    assert_eq!(callback.attempts, 1, "{callback:?}");
                    mine.push(callback.id);
                }
            }
        })
    });
    let mut claimed = Vec::new();
    for claimer in futures::future::join_all(claimers).await {
        claimed.extend(claimer.unwrap());
    }
    claimed.sort();
    let unique: std::collections::BTreeSet<_> = claimed.iter().copied().collect();
    assert_eq!(claimed.len(), unique.len(), "a callback was claimed twice");
    assert_eq!(unique, booked, "every due callback was claimed");
}

#[tokio::test]
async fn a_customer_staff_have_taken_over_is_not_called_back_by_the_agent() {
    let twilio = accepting_twilio().await;
    let database = common::shared_database_url().await;
    let node = dialling_node(&twilio, &database).await;
    let line = node.line().await;
    let tenant = line.owner.tenant_id.parse().unwrap();
    let customer = unique_number();
    node.store
        .append(
            tenant,
            &customer,
            &actors::ports::HistoryEntry {
                speaker: actors::ports::Speaker::Customer,
                channel: actors::ports::Channel::Sms,
                text: "Call me later please".to_owned(),
                at_ms: Utc::now().timestamp_millis(),
            },
        )
        .await
        .unwrap();
    let (_, conversations) = node.get("/v1/conversations", &line.owner.access).await;
    let conversation = conversations["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer_number"] == customer.as_str())
        .unwrap_or_else(|| panic!("the customer's conversation: {conversations}"));
    let (status, body) = node
        .post(
            &format!(
                "/v1/conversations/{}/takeover",
                conversation["id"].as_str().unwrap()
            ),
            Some(&line.owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let callback = book_ok(&node, &line.owner, &customer, &in_secs(1)).await;
    let settled = settled(
        &node,
        &line.owner.tenant_id,
        callback["id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(settled.status, switchboard::store::CallbackStatus::Failed);
    assert_eq!(settled.failure.as_deref(), Some("taken over by staff"));
    assert_eq!(dials_to(&twilio, &customer), 0, "the agent did not ring");
}
