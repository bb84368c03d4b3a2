//! The leads CRM over HTTP and the real store: create, read, change and delete with their
//! checks; search, filters, sorts and cursor pages; stats from calls and texts; the per-lead
//! trail of staff, agent and post-call changes; template variables filled from leads and
//! checked by `POST /v1/agents/{id}/validate`; and the agent calling a lead.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use actors::domain::{CallId, TenantId, E164};
use actors::ports::{
    CallAnalysis, CallInfo, CallLog, Channel, ConversationStore, HistoryEntry, Sentiment, Speaker,
};
use common::fake_twilio::{FakeTwilio, ACCOUNT};
use common::{assert_problem, spawn_app, spawn_voice_app, unique_number, Login, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::emulator::{EmulatorScript, Family, ReplyRule, ScriptedToolCall};
use switchboard::simulator::CallerTurn;
use switchboard::store::{Direction, NewCall, TwilioCallStatus};

async fn create_lead(app: &TestApp, who: &Login, body: Value) -> Value {
    let (status, lead) = app.post("/v1/leads", Some(&who.access), body).await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    lead
}

fn id_of(lead: &Value) -> String {
    lead["id"].as_str().unwrap().to_owned()
}

/// The problem's first field error names `field`.
fn assert_field(status: StatusCode, body: &Value, field: &str) {
    assert_problem(status, body, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["field"], field, "{body}");
}

#[tokio::test]
async fn leads_are_created_read_changed_and_deleted_with_their_fields_checked() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let staff = app.add_user(&owner, "agent").await;
    let viewer = app.add_user(&owner, "viewer").await;
    let phone = unique_number();

    let lead = create_lead(
        &app,
        &staff,
        json!({
            "name": "Ana Diaz", "phone": phone, "email": "Ana@Example.com", "status": "contacted",
            "sentiment": "positive", "funding_readiness": "pre-approved", "credit_profile": "good",
            "preferences": {"vehicle_interest": "RAV4 hybrid"}, "notes": "Prefers texts",
            "assigned_user_id": staff.user_id, "custom_fields": {"trade_in": "2015 Civic"}
        }),
    )
    .await;
    assert_eq!(lead["email"], "ana@example.com");
    assert_eq!(lead["phone"], phone);
    assert_eq!(lead["assigned_user_id"], staff.user_id);
    assert_eq!(lead["preferences"]["vehicle_interest"], "RAV4 hybrid");
    assert_eq!(lead["message_count"], 0);
    assert_eq!(lead["call_count"], 0);
    assert_eq!(lead["total_call_ms"], 0);
    assert_eq!(lead["last_contact_at"], Value::Null);
    let id = id_of(&lead);

    let (status, read) = app.get(&format!("/v1/leads/{id}"), &viewer.access).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, lead, "a viewer reads what was written");

    let (status, changed) = app
        .patch(
            &format!("/v1/leads/{id}"),
            &owner.access,
            json!({"status": "qualified", "email": null, "custom_fields": {"trade_in": "none"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(changed["status"], "qualified");
    assert_eq!(changed["email"], Value::Null);
    assert_eq!(changed["name"], "Ana Diaz", "untouched fields stay");

    // Every field is checked, and the error names it.
    let path = format!("/v1/leads/{id}");
    for (body, field) in [
        (json!({"phone": "555-0100"}), "phone"),
        (json!({"email": "not an email"}), "email"),
        (json!({"status": "maybe"}), "status"),
        (json!({"sentiment": "ecstatic"}), "sentiment"),
        (json!({"preferences": ["RAV4"]}), "preferences"),
        (json!({"custom_fields": {"has space": 1}}), "custom_fields"),
        (json!({"name": "x".repeat(201)}), "name"),
        (json!({"assigned_user_id": "not-an-id"}), "assigned_user_id"),
    ] {
        let (status, problem) = app.patch(&path, &owner.access, body.clone()).await;
        assert_field(status, &problem, field);
    }
    let other = app.register("Other Co").await;
    let (status, problem) = app
        .patch(
            &path,
            &owner.access,
            json!({"assigned_user_id": other.user_id}),
        )
        .await;
    assert_field(status, &problem, "assigned_user_id");
    let (status, problem) = app
        .post(
            "/v1/leads",
            Some(&owner.access),
            json!({"name": "Bad", "phone": "12"}),
        )
        .await;
    assert_field(status, &problem, "phone");

    // One lead per number.
    let (status, problem) = app
        .post(
            "/v1/leads",
            Some(&owner.access),
            json!({"name": "Twin", "phone": phone}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::CONFLICT);
    let second = create_lead(&app, &owner, json!({"name": "Ben"})).await;
    let (status, problem) = app
        .patch(
            &format!("/v1/leads/{}", id_of(&second)),
            &owner.access,
            json!({"phone": phone}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::CONFLICT);

    // A viewer reads but does not write.
    let (status, problem) = app
        .post("/v1/leads", Some(&viewer.access), json!({"name": "V"}))
        .await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN);
    let (status, problem) = app.patch(&path, &viewer.access, json!({"name": "V"})).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN);
    let (status, problem) = app.delete(&path, &viewer.access).await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN);

    let (status, _) = app.delete(&path, &staff.access).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, problem) = app.get(&path, &owner.access).await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND);
    let (status, problem) = app.delete(&path, &owner.access).await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND);

    // Staff writes are in the tenant's audit log too.
    let (_, log) = app.get("/v1/audit-log", &owner.access).await;
    let actions: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_id"] == id.as_str())
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor_user_id"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("lead.deleted", staff.user_id.as_str()),
            ("lead.updated", owner.user_id.as_str()),
            ("lead.created", staff.user_id.as_str())
        ]
    );
}

/// The names of every lead on every page of `query` (which must leave room for `cursor`),
/// checking no lead is listed twice.
async fn all_pages(app: &TestApp, who: &Login, query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut ids = BTreeSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let path = match &cursor {
            Some(c) => format!("/v1/leads?{query}&cursor={c}"),
            None => format!("/v1/leads?{query}"),
        };
        let (status, page) = app.get(&path, &who.access).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for lead in page["items"].as_array().unwrap() {
            assert!(ids.insert(id_of(lead)), "{} listed twice", lead["name"]);
            names.push(lead["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return names,
        }
    }
    panic!("the pages never ended");
}

#[tokio::test]
async fn leads_are_searched_filtered_sorted_and_paged_without_repeats_or_gaps() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let staff = app.add_user(&owner, "agent").await;
    let names = ["carla", "Ana", "bob", "Dave", "Eve", "ana maria", "Frank"];
    let mut phones = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        let phone = unique_number();
        let mut body = json!({"name": name, "phone": phone});
        if i % 2 == 0 {
            body["status"] = json!("qualified");
            body["sentiment"] = json!("positive");
            body["assigned_user_id"] = json!(staff.user_id);
        }
        create_lead(&app, &owner, body).await;
        phones.insert(*name, phone);
    }
    // Another tenant's leads never show.
    let other = app.register("Other Co").await;
    create_lead(&app, &other, json!({"name": "Ana Other"})).await;

    // Newest first by default, two to a page.
    let newest: Vec<String> = names.iter().rev().map(|n| n.to_string()).collect();
    assert_eq!(all_pages(&app, &owner, "limit=2").await, newest);
    assert_eq!(
        all_pages(&app, &owner, "limit=3&sort=created_at").await,
        names.to_vec()
    );
    let mut by_name: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    by_name.sort_by_key(|n| n.to_lowercase());
    assert_eq!(all_pages(&app, &owner, "limit=2&sort=name").await, by_name);
    by_name.reverse();
    assert_eq!(all_pages(&app, &owner, "limit=4&sort=-name").await, by_name);
    assert_eq!(
        all_pages(&app, &owner, "limit=2&sort=last_contact_at")
            .await
            .len(),
        names.len()
    );

    // Search by name (any case) or number.
    assert_eq!(
        all_pages(&app, &owner, "q=ANA&sort=name").await,
        ["Ana", "ana maria"]
    );
    let digits = &phones["Dave"][5..];
    assert_eq!(
        all_pages(&app, &owner, &format!("q={digits}")).await,
        ["Dave"]
    );
    assert!(
        all_pages(&app, &owner, "q=%25").await.is_empty(),
        "LIKE characters are literal"
    );

    // Filters.
    let qualified = all_pages(&app, &owner, "status=qualified&sort=created_at").await;
    assert_eq!(qualified, ["carla", "bob", "Eve", "Frank"]);
    assert_eq!(
        all_pages(
            &app,
            &owner,
            &format!(
                "assigned_user_id={}&sentiment=positive&sort=created_at&limit=1",
                staff.user_id
            )
        )
        .await,
        qualified
    );
    assert!(all_pages(&app, &owner, "sentiment=negative")
        .await
        .is_empty());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let past = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let encode = |t: &str| t.replace('+', "%2B");
    assert!(
        all_pages(&app, &owner, &format!("created_from={}", encode(&future)))
            .await
            .is_empty()
    );
    assert_eq!(
        all_pages(
            &app,
            &owner,
            &format!(
                "created_from={}&created_to={}",
                encode(&past),
                encode(&future)
            )
        )
        .await
        .len(),
        names.len()
    );

    // Bad parameters are 422s naming the parameter; a cursor only fits its own sort.
    for (query, field) in [
        ("sort=phone", "sort"),
        ("status=maybe", "status"),
        ("limit=201", "limit"),
        ("created_from=yesterday", "created_from"),
        ("cursor=nonsense", "cursor"),
    ] {
        let (status, problem) = app.get(&format!("/v1/leads?{query}"), &owner.access).await;
        assert_field(status, &problem, field);
    }
    let (_, page) = app.get("/v1/leads?limit=1&sort=name", &owner.access).await;
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, problem) = app
        .get(
            &format!("/v1/leads?sort=-created_at&cursor={cursor}"),
            &owner.access,
        )
        .await;
    assert_field(status, &problem, "cursor");
}

/// Creates the tenant's agent and number; returns (agent id, number id, number).
async fn line(app: &TestApp, owner: &Login) -> (String, String, String) {
    let agent = app.create_agent(owner, "Front desk").await;
    let number = unique_number();
    let number_id = app.create_number(owner, &number, &agent).await;
    (agent, number_id, number)
}

/// Records a finished call with the customer lasting `secs` seconds.
async fn record_call(
    app: &TestApp,
    tenant: TenantId,
    (agent, number_id, number): (&str, &str, &str),
    customer: &str,
    direction: Direction,
    secs: i64,
) -> CallInfo {
    let sid = common::call_sid();
    let (from, to) = match direction {
        Direction::Inbound => (customer, number),
        Direction::Outbound => (number, customer),
    };
    let info = CallInfo {
        call_id: CallId::new(),
        tenant,
        agent: agent.parse().unwrap(),
        customer: customer.to_owned(),
        business_number: E164::parse(number).unwrap(),
    };
    app.store
        .create_call(
            tenant,
            &NewCall {
                id: info.call_id,
                call_sid: sid.clone(),
                agent: info.agent,
                phone_number: number_id.parse().unwrap(),
                direction,
                from: from.to_owned(),
                to: E164::parse(to).unwrap(),
            },
        )
        .await
        .unwrap();
    app.store
        .apply_call_status(&sid, TwilioCallStatus::Completed, Some(secs))
        .await
        .unwrap();
    info
}

#[tokio::test]
async fn stats_count_both_directions_and_the_trail_says_who_changed_what() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let staff = app.add_user(&owner, "agent").await;
    let tenant: TenantId = owner.tenant_id.parse().unwrap();
    let (agent, number_id, number) = line(&app, &owner).await;
    let phone = unique_number();
    let lead = create_lead(&app, &owner, json!({"name": "Ana", "phone": phone})).await;
    let path = format!("/v1/leads/{}", id_of(&lead));

    // Two calls each way would both count; a call with someone else does not.
    let ids = (agent.as_str(), number_id.as_str(), number.as_str());
    record_call(&app, tenant, ids, &phone, Direction::Inbound, 30).await;
    let outbound = record_call(&app, tenant, ids, &phone, Direction::Outbound, 12).await;
    record_call(&app, tenant, ids, &unique_number(), Direction::Inbound, 99).await;
    for (speaker, channel, text) in [
        (
            Speaker::Customer,
            Channel::Sms,
            "Hi, is the RAV4 still there?",
        ),
        (Speaker::Agent, Channel::Sms, "It is!"),
        (Speaker::Customer, Channel::Voice, "a line of a call"),
    ] {
        let entry = HistoryEntry {
            speaker,
            channel,
            text: text.to_owned(),
            at_ms: chrono::Utc::now().timestamp_millis(),
        };
        ConversationStore::append(&app.store, tenant, &phone, &entry)
            .await
            .unwrap();
    }
    let (_, read) = app.get(&path, &owner.access).await;
    assert_eq!(read["call_count"], 2, "{read}");
    assert_eq!(read["total_call_ms"], 42_000, "{read}");
    assert_eq!(read["message_count"], 2, "texts, not call lines: {read}");
    assert!(read["last_contact_at"].is_string(), "{read}");

    // A staff member, the agent's update_lead tool and the post-call analysis change it.
    let (status, body) = app
        .patch(
            &path,
            &staff.access,
            json!({"status": "contacted", "name": "Ana"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    ConversationStore::update_lead(
        &app.store,
        tenant,
        &phone,
        BTreeMap::from([
            ("customer_name".to_owned(), "Ana Diaz".to_owned()),
            ("vehicle_interest".to_owned(), "RAV4".to_owned()),
        ]),
    )
    .await
    .unwrap();
    let mut extracted = serde_json::Map::new();
    extracted.insert("credit_profile".to_owned(), json!("rebuilding"));
    extracted.insert("budget".to_owned(), json!(30000));
    CallLog::analysis(
        &app.store,
        &outbound,
        &CallAnalysis {
            summary: "Ana wants a RAV4.".to_owned(),
            sentiment: Sentiment::Negative,
            extracted,
        },
    )
    .await
    .unwrap();

    let (_, read) = app.get(&path, &owner.access).await;
    assert_eq!(read["name"], "Ana Diaz");
    assert_eq!(read["status"], "contacted");
    assert_eq!(read["sentiment"], "negative");
    assert_eq!(read["credit_profile"], "rebuilding");
    assert_eq!(
        read["custom_fields"],
        json!({"vehicle_interest": "RAV4", "budget": 30000})
    );

    let (status, trail) = app.get(&format!("{path}/changes"), &owner.access).await;
    assert_eq!(status, StatusCode::OK, "{trail}");
    let trail = trail["items"].as_array().unwrap();
    assert_eq!(trail.len(), 4, "{trail:#?}");
    let [system, agent_change, staff_change, created] = &trail[..] else {
        unreachable!()
    };
    assert_eq!(system["actor_kind"], "system");
    assert_eq!(system["call_id"], outbound.call_id.to_string());
    assert_eq!(
        system["changes"]["sentiment"],
        json!({"from": null, "to": "negative"})
    );
    assert_eq!(
        system["changes"]["credit_profile"],
        json!({"from": null, "to": "rebuilding"})
    );
    assert_eq!(agent_change["actor_kind"], "agent");
    assert_eq!(agent_change["user_id"], Value::Null);
    assert_eq!(
        agent_change["changes"]["name"],
        json!({"from": "Ana", "to": "Ana Diaz"})
    );
    assert_eq!(staff_change["actor_kind"], "user");
    assert_eq!(staff_change["user_id"], staff.user_id);
    assert_eq!(
        staff_change["changes"],
        json!({"status": {"from": "new", "to": "contacted"}}),
        "only what changed (the name was given unchanged)"
    );
    assert_eq!(created["user_id"], owner.user_id);
    assert_eq!(created["changes"]["name"], json!({"from": "", "to": "Ana"}));

    // A PATCH that changes nothing leaves no entry.
    app.patch(&path, &staff.access, json!({"status": "contacted"}))
        .await;
    let (_, again) = app.get(&format!("{path}/changes"), &owner.access).await;
    assert_eq!(again["items"].as_array().unwrap().len(), 4);

    // The analysis of a call with a number that has no lead creates one.
    let stranger = unique_number();
    let call = record_call(&app, tenant, ids, &stranger, Direction::Inbound, 5).await;
    CallLog::analysis(
        &app.store,
        &call,
        &CallAnalysis {
            summary: "Asked for hours.".to_owned(),
            sentiment: Sentiment::Neutral,
            extracted: serde_json::Map::from_iter([("name".to_owned(), json!("Bo"))]),
        },
    )
    .await
    .unwrap();
    let (_, found) = app
        .get(&format!("/v1/leads?q={}", &stranger[1..]), &owner.access)
        .await;
    assert_eq!(found["items"][0]["name"], "Bo", "{found}");
    assert_eq!(found["items"][0]["sentiment"], "neutral");
    assert_eq!(found["items"][0]["call_count"], 1);
}

#[tokio::test]
async fn validate_reports_the_variables_that_nothing_fills() {
    let app = spawn_app().await;
    let owner = app.register("Acme Motors").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{agent}"),
            &owner.access,
            json!({
                "system_prompt": "Call {{customer_name}} about {{vehicle_interest}}; it is {{local_time}} on {{ local_date }}. {{mystery}}",
                "first_message": "Hi from {{tenant_name}} about your {{trade_in}}, {{customer_name}}. {{also_unknown}}"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    create_lead(
        &app,
        &owner,
        json!({"preferences": {"vehicle_interest": "RAV4"}, "custom_fields": {"trade_in": "Civic"}}),
    )
    .await;
    let viewer = app.add_user(&owner, "viewer").await;
    let (status, report) = app
        .post(
            &format!("/v1/agents/{agent}/validate"),
            Some(&viewer.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        report["variables"],
        json!([
            "customer_name",
            "vehicle_interest",
            "local_time",
            "local_date",
            "mystery",
            "tenant_name",
            "trade_in",
            "also_unknown"
        ])
    );
    assert_eq!(report["unknown"], json!(["mystery", "also_unknown"]));

    // Another tenant's agent is not found; its leads' fields do not count.
    let other = app.register("Other Co").await;
    let (status, problem) = app
        .post(
            &format!("/v1/agents/{agent}/validate"),
            Some(&other.access),
            json!({}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND);
    create_lead(&app, &other, json!({"custom_fields": {"mystery": "x"}})).await;
    let (_, report) = app
        .post(
            &format!("/v1/agents/{agent}/validate"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(report["unknown"], json!(["mystery", "also_unknown"]));
}

#[tokio::test]
async fn a_call_fills_templates_from_the_lead_and_its_tool_and_analysis_update_the_lead() {
    let caller = unique_number();
    let mut script = EmulatorScript::instant();
    script.transcripts.by_prompt = BTreeMap::from([(
        caller.clone(),
        vec!["I am pre-approved for the RAV4.".to_owned()],
    )]);
    script.replies.rules = vec![
        ReplyRule {
            system_contains: Some(supervisors::call::ANALYSIS_INSTRUCTIONS.to_owned()),
            text: Some(
                json!({"summary": "Ana is pre-approved.", "sentiment": "positive",
                    "extracted": {"trade_in": "2015 Civic"}})
                .to_string(),
            ),
            ..ReplyRule::default()
        },
        ReplyRule {
            user_contains: Some("pre-approved".to_owned()),
            tool_calls: vec![ScriptedToolCall {
                name: "update_lead".to_owned(),
                arguments: json!({"fields": {"funding_readiness": "pre-approved"}}),
            }],
            ..ReplyRule::default()
        },
    ];
    let (app, emulator) = spawn_voice_app(script, &[]).await;
    let owner = app.register("Acme Motors").await;
    let (agent, _, number) = line(&app, &owner).await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{agent}"),
            &owner.access,
            json!({
                "system_prompt": "You sell cars for {{tenant_name}}. {{customer_name}} wants a {{vehicle_interest}}. Today is {{local_date}}.",
                "first_message": "Hi {{customer_name}}!",
                "enabled_tools": ["update_lead"]
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let lead = create_lead(
        &app,
        &owner,
        json!({"name": "Ana", "phone": caller, "preferences": {"vehicle_interest": "RAV4 hybrid"}}),
    )
    .await;

    let report = common::simulate_call(
        &app.base,
        &caller,
        &number,
        vec![CallerTurn::say("I am pre-approved for the RAV4.")],
    )
    .await;
    let record = app.ended_call(&owner.tenant_id, &report.call_sid).await;
    assert_eq!(
        record.turns[0].text, "Hi Ana!",
        "the first message is filled"
    );
    let prompt = emulator
        .requests_for(Family::Llm)
        .iter()
        .map(|r| r.body.to_string())
        .find(|b| b.contains("You sell cars"))
        .expect("the model was asked");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        prompt.contains("You sell cars for Acme Motors. Ana wants a RAV4 hybrid. Today is "),
        "{prompt}"
    );
    assert!(
        prompt.contains(&today),
        "local_date in UTC (the default timezone): {prompt}"
    );

    // The tool's change and then the analysis land on the lead, each in the trail.
    let path = format!("/v1/leads/{}", id_of(&lead));
    let trail = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let (_, trail) = app.get(&format!("{path}/changes"), &owner.access).await;
            if trail["items"].as_array().unwrap().len() >= 3 {
                return trail;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the agent's and the analysis's changes are recorded");
    let kinds: Vec<&str> = trail["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["actor_kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["system", "agent", "user"], "{trail}");
    let (_, read) = app.get(&path, &owner.access).await;
    assert_eq!(read["funding_readiness"], "pre-approved");
    assert_eq!(read["sentiment"], "positive");
    assert_eq!(read["custom_fields"]["trade_in"], "2015 Civic");
    assert_eq!(read["call_count"], 1);
}

#[tokio::test]
async fn the_agent_calls_a_lead_through_twilio() {
    let twilio = FakeTwilio::start(std::time::Duration::ZERO, |_| {
        (
            StatusCode::CREATED,
            json!({"sid": "CAlead0000000000000000000000000001", "account_sid": ACCOUNT, "status": "queued"})
                .to_string(),
        )
    })
    .await;
    let (app, _emulator) = spawn_voice_app(
        EmulatorScript::instant(),
        &[
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-api-base",
            &twilio.base_url,
        ],
    )
    .await;
    let owner = app.register("Acme Motors").await;
    let (_, number_id, number) = line(&app, &owner).await;
    let phone = unique_number();
    let lead = create_lead(&app, &owner, json!({"name": "Ana", "phone": phone})).await;
    let no_phone = create_lead(&app, &owner, json!({"name": "Ben"})).await;
    let viewer = app.add_user(&owner, "viewer").await;
    let staff = app.add_user(&owner, "agent").await;

    let (status, problem) = app
        .post(
            &format!("/v1/leads/{}/call", id_of(&no_phone)),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_field(status, &problem, "phone");
    let (status, problem) = app
        .post(
            &format!("/v1/leads/{}/call", id_of(&lead)),
            Some(&viewer.access),
            json!({}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::FORBIDDEN);
    assert!(twilio.seen.lock().unwrap().is_empty(), "nobody was dialled");

    let (status, placed) = app
        .post(
            &format!("/v1/leads/{}/call", id_of(&lead)),
            Some(&staff.access),
            json!({"from_number_id": number_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{placed}");
    assert_eq!(placed["call_sid"], "CAlead0000000000000000000000000001");
    let seen = twilio.only_request();
    let field = |name: &str| {
        seen.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(field("To"), phone);
    assert_eq!(field("From"), number);
    let (_, read) = app
        .get(&format!("/v1/leads/{}", id_of(&lead)), &owner.access)
        .await;
    assert_eq!(
        read["call_count"], 1,
        "the outbound call counts for the lead"
    );

    // Another tenant cannot call the lead.
    let other = app.register("Other Co").await;
    let (status, problem) = app
        .post(
            &format!("/v1/leads/{}/call", id_of(&lead)),
            Some(&other.access),
            json!({}),
        )
        .await;
    assert_problem(status, &problem, StatusCode::NOT_FOUND);
}
