//! Texts end to end over real sockets: Twilio's signed messaging webhooks into the server,
//! the agent's replies out through a fake Twilio REST API (or in TwiML), the provider
//! emulator as the model, and one memory across texts and calls.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use actors::conversation::{estimate_tokens, PromptBudget};
use actors::ports::{Channel, ConversationStore, HistoryEntry, Speaker};
use common::fake_twilio::{FakeTwilio, Seen, ACCOUNT};
use common::{spawn_voice_app, twilio_signature, unique_number, Line, Login, TestApp};
use reqwest::StatusCode;
use serde_json::{json, Value};
use switchboard::emulator::script::{ReplyRule, ScriptedToolCall};
use switchboard::emulator::{EmulatorHandle, EmulatorScript, Family, Fault};
use switchboard::simulator::CallerTurn;
use switchboard::texts::PICTURES_NOT_READ;

/// A tenant with one agent, prompted with `prompt` and transferring to +14155550199, on one
/// number.
async fn shop(app: &TestApp, prompt: &str) -> Line {
    let line = app.line().await;
    app.configure_agent(
        &line,
        json!({"system_prompt": prompt, "first_message": "Thanks for calling.",
               "transfer_number": "+14155550199"}),
    )
    .await;
    line
}

fn rule(user_contains: &str, text: &str) -> ReplyRule {
    ReplyRule {
        user_contains: Some(user_contains.to_owned()),
        text: Some(text.to_owned()),
        ..ReplyRule::default()
    }
}

fn script(rules: Vec<ReplyRule>) -> EmulatorScript {
    let mut script = EmulatorScript::instant();
    script.replies.rules = rules;
    script
}

async fn spawn(rules: Vec<ReplyRule>, twilio: &FakeTwilio) -> (TestApp, EmulatorHandle) {
    spawn_with(script(rules), twilio).await
}

/// A server answering with the emulator's `script`, its Twilio REST API the fake `twilio`.
async fn spawn_with(script: EmulatorScript, twilio: &FakeTwilio) -> (TestApp, EmulatorHandle) {
    spawn_voice_app(
        script,
        &[
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-api-base",
            &twilio.base_url,
        ],
    )
    .await
}

fn sms_params(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", ACCOUNT),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", from),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("To", to),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Posts a form to a Twilio webhook path, signed unless `signed` is false; returns the status
/// and the body.
async fn post_form(
    app: &TestApp,
    path: &str,
    params: &[(String, String)],
    signed: bool,
) -> (StatusCode, String) {
    let url = format!("{}{path}", app.base);
    let mut req = app
        .client
        .post(&url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(serde_urlencoded::to_string(params).unwrap());
    if signed {
        req = req.header(
            switchboard::twilio::signature::SIGNATURE_HEADER,
            twilio_signature(&url, params),
        );
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

fn message_sid() -> String {
    format!("SM{}", uuid::Uuid::new_v4().simple())
}

/// Texts `to` from `from`, signed; returns the status and TwiML.
async fn text(app: &TestApp, from: &str, to: &str, body: &str) -> (StatusCode, String) {
    post_form(
        app,
        "/twilio/sms",
        &sms_params(&message_sid(), from, to, body),
        true,
    )
    .await
}

/// The texts Twilio was asked to send to `to`, waiting up to 10 s for `count` of them.
async fn sent_to(twilio: &FakeTwilio, to: &str, count: usize) -> Vec<Seen> {
    let sent = || {
        twilio
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| {
                s.path.ends_with("/Messages.json")
                    && s.form.iter().any(|(k, v)| k == "To" && v == to)
            })
            .cloned()
            .collect::<Vec<_>>()
    };
    for _ in 0..400 {
        if sent().len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    sent()
}

fn field<'a>(seen: &'a Seen, name: &str) -> &'a str {
    seen.form
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The conversation of `customer` as staff see it.
async fn conversation(app: &TestApp, owner: &Login, customer: &str) -> Value {
    let (status, list) = app.get("/v1/conversations", &owner.access).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customer_number"] == customer)
        .unwrap_or_else(|| panic!("no conversation with {customer}: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, detail) = app
        .get(&format!("/v1/conversations/{id}"), &owner.access)
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    detail
}

/// Waits up to 10 s for the conversation to hold `count` lines.
async fn conversation_with(app: &TestApp, owner: &Login, customer: &str, count: usize) -> Value {
    for _ in 0..400 {
        let detail = conversation(app, owner, customer).await;
        if detail["messages"].as_array().unwrap().len() >= count {
            return detail;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    conversation(app, owner, customer).await
}

/// Every chat request the model received, as JSON text.
fn llm_requests(emulator: &EmulatorHandle) -> Vec<String> {
    emulator
        .requests_for(Family::Llm)
        .iter()
        .map(|r| r.body.to_string())
        .collect()
}

#[tokio::test]
async fn a_text_is_answered_by_rest_and_its_delivery_is_recorded_in_order() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, _emulator) = spawn(
        vec![rule("civic", "Yes, the red Civic is on the lot.")],
        &twilio,
    )
    .await;
    let shop = shop(&app, "You sell cars.").await;
    let customer = unique_number();

    let sid = message_sid();
    let params = sms_params(
        &sid,
        &customer,
        &shop.number,
        "Is the red Civic still there?",
    );
    let (status, _) = post_form(&app, "/twilio/sms", &params, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "an unsigned text is refused");
    let (status, twiml) = post_form(&app, "/twilio/sms", &params, true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Response"), "{twiml}");
    assert!(
        !twiml.contains("<Message"),
        "the REST mode answers in the background: {twiml}"
    );
    // Twilio retries a webhook it thinks failed: the text is stored and answered once.
    let (status, _) = post_form(&app, "/twilio/sms", &params, true).await;
    assert_eq!(status, StatusCode::OK);

    let sent = sent_to(&twilio, &customer, 1).await;
    assert_eq!(sent.len(), 1, "one reply: {sent:#?}");
    assert_eq!(field(&sent[0], "From"), shop.number);
    assert_eq!(field(&sent[0], "Body"), "Yes, the red Civic is on the lot.");
    assert_eq!(
        field(&sent[0], "StatusCallback"),
        format!("{}/twilio/sms/status", app.base)
    );

    let detail = conversation_with(&app, &shop.owner, &customer, 2).await;
    let lines = detail["messages"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "{detail}");
    assert_eq!(lines[0]["sender"], "customer");
    assert_eq!(lines[0]["body"], "Is the red Civic still there?");
    assert_eq!(lines[0]["channel"], "sms");
    assert_eq!(lines[1]["sender"], "agent");
    assert_eq!(lines[1]["status"], "queued");

    let usage = app
        .store
        .usage_totals(shop.owner.tenant_id.parse().unwrap(), (0, i64::MAX))
        .await
        .unwrap();
    assert_eq!(usage.sms_segments, 2, "one segment in, one out: {usage:?}");
    assert!(
        usage.llm_tokens > 0,
        "the reply's tokens are metered: {usage:?}"
    );

    // Delivery reports, one arriving late: the status never moves back.
    let reply_sid = lines[1]["twilio_sid"]
        .as_str()
        .expect("the reply's SID")
        .to_owned();
    assert!(reply_sid.starts_with("SM"), "{reply_sid}");
    for (status, expected) in [("delivered", "delivered"), ("sent", "delivered")] {
        let report: Vec<(String, String)> = [
            ("AccountSid", ACCOUNT),
            ("MessageSid", reply_sid.as_str()),
            ("MessageStatus", status),
            ("SmsSid", reply_sid.as_str()),
            ("SmsStatus", status),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (code, _) = post_form(&app, "/twilio/sms/status", &report, true).await;
        assert_eq!(code, StatusCode::NO_CONTENT);
        let detail = conversation(&app, &shop.owner, &customer).await;
        assert_eq!(detail["messages"][1]["status"], expected, "{detail}");
    }
    let bogus = sms_params(&reply_sid, &customer, &shop.number, "");
    let (code, body) = post_form(&app, "/twilio/sms/status", &bogus, true).await;
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "no MessageStatus: {body}"
    );
}

#[tokio::test]
async fn the_twiml_mode_answers_in_the_webhook_and_pictures_get_a_polite_answer() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(vec![rule("hours", "We are open nine to six.")], &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &shop.owner.access,
            json!({"sms_reply_mode": "twiml"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sms_reply_mode"], "twiml");
    let customer = unique_number();

    let (status, twiml) = text(&app, &customer, &shop.number, "What are your hours?").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains("<Message>We are open nine to six.</Message>"),
        "{twiml}"
    );

    let mut params = sms_params(&message_sid(), &customer, &shop.number, "");
    params.retain(|(k, _)| k != "NumMedia");
    params.push(("NumMedia".into(), "1".into()));
    params.push(("MediaContentType0".into(), "image/jpeg".into()));
    params.push((
        "MediaUrl0".into(),
        "https://api.twilio.com/media/ME1".into(),
    ));
    let asked = llm_requests(&emulator).len();
    let (status, twiml) = post_form(&app, "/twilio/sms", &params, true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains(&format!(
            "<Message>{}</Message>",
            PICTURES_NOT_READ.replace('\'', "&apos;")
        )) || twiml.contains("view images yet"),
        "{twiml}"
    );
    assert_eq!(
        llm_requests(&emulator).len(),
        asked,
        "a picture alone needs no model"
    );
    assert!(
        sent_to(&twilio, &customer, 0).await.is_empty(),
        "nothing went by REST"
    );

    let detail = conversation(&app, &shop.owner, &customer).await;
    let lines = detail["messages"].as_array().unwrap();
    assert_eq!(lines.len(), 4, "{detail}");
    assert_eq!(
        lines[2]["media_urls"],
        json!(["https://api.twilio.com/media/ME1"])
    );
    assert_eq!(lines[3]["sender"], "agent");
}

#[tokio::test]
async fn a_call_after_a_text_knows_the_text_and_a_text_after_a_call_knows_the_call() {
    let twilio = FakeTwilio::accepting_texts().await;
    let customer = unique_number();
    let rules = vec![
        ReplyRule {
            system_contains: Some(supervisors::call::ANALYSIS_INSTRUCTIONS.to_owned()),
            text: Some(
                r#"{"summary": "The caller booked a Saturday test drive of the red Civic.", "sentiment": "positive", "extracted": {"vehicle_interest": "red Civic"}}"#
                    .to_owned(),
            ),
            ..ReplyRule::default()
        },
        ReplyRule {
            system_contains: Some("calling you now".to_owned()),
            text: Some("Welcome back! The red Civic you texted about is still here.".to_owned()),
            ..ReplyRule::default()
        },
        rule("still on", "Yes, see you Saturday."),
        rule("saturday", "Booked for Saturday."),
        rule("civic", "It is here."),
    ];
    let mut script = script(rules);
    script.transcripts.by_prompt =
        BTreeMap::from([(customer.clone(), vec!["Can I come on Saturday?".to_owned()])]);
    let (app, emulator) = spawn_with(script, &twilio).await;
    let shop = shop(&app, "You sell cars. Interest: {{vehicle_interest}}.").await;

    let (status, _) = text(
        &app,
        &customer,
        &shop.number,
        "Do you still have the red Civic?",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sent_to(&twilio, &customer, 1).await.len(), 1);

    emulator.clear_requests();
    let report = common::simulate_call(
        &app.base,
        &customer,
        &shop.number,
        vec![CallerTurn::say("Can I come on Saturday?")],
    )
    .await;
    let call_prompt = llm_requests(&emulator)
        .into_iter()
        .find(|r| {
            r.contains("Can I come on Saturday?")
                && !r.contains(supervisors::call::ANALYSIS_INSTRUCTIONS)
        })
        .expect("the model was asked during the call");
    assert!(
        call_prompt.contains("Do you still have the red Civic?"),
        "{call_prompt}"
    );
    assert!(call_prompt.contains("It is here."), "{call_prompt}");
    let record = app
        .ended_call(&shop.owner.tenant_id, &report.call_sid)
        .await;
    assert!(record.end_reason.is_some());
    // The caller who texted earlier is greeted knowing it: the model wrote the greeting
    // from the texts, in the spirit of the agent's first message.
    let greeting = &record.turns[0];
    assert_eq!(format!("{:?}", greeting.speaker), "Agent");
    assert_eq!(
        greeting.text,
        "Welcome back! The red Civic you texted about is still here."
    );
    let greeting_prompt = llm_requests(&emulator)
        .into_iter()
        .find(|r| r.contains("calling you now"))
        .expect("the model was asked for the greeting");
    assert!(
        greeting_prompt.contains("Thanks for calling."),
        "{greeting_prompt}"
    );
    assert!(
        greeting_prompt.contains("Do you still have the red Civic?"),
        "{greeting_prompt}"
    );

    // The analysis lands after the call; then a text reads the call.
    let tenant = shop.owner.tenant_id.parse().unwrap();
    for _ in 0..400 {
        if app
            .store
            .last_call_summary(tenant, &customer)
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    emulator.clear_requests();
    let (status, _) = text(&app, &customer, &shop.number, "Is Saturday still on?").await;
    assert_eq!(status, StatusCode::OK);
    let sent = sent_to(&twilio, &customer, 2).await;
    assert_eq!(field(&sent[1], "Body"), "Yes, see you Saturday.");
    let text_prompt = llm_requests(&emulator)
        .into_iter()
        .find(|r| r.contains("Is Saturday still on?"))
        .expect("the model was asked for the text");
    assert!(
        text_prompt.contains("The caller booked a Saturday test drive of the red Civic."),
        "the call's summary: {text_prompt}"
    );
    assert!(
        text_prompt.contains("Booked for Saturday."),
        "the call's transcript: {text_prompt}"
    );
    assert!(text_prompt.contains("text message (SMS)"), "{text_prompt}");
    assert!(
        text_prompt.contains("Interest: red Civic."),
        "what the call's analysis taught fills the prompt: {text_prompt}"
    );

    let detail = conversation(&app, &shop.owner, &customer).await;
    let channels: Vec<&str> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels.first(), Some(&"sms"), "{detail}");
    assert!(channels.contains(&"voice"), "{detail}");
    assert_eq!(channels.last(), Some(&"sms"), "{detail}");
}

#[tokio::test]
async fn takeover_silences_the_agent_on_both_channels_and_release_brings_it_back() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(vec![rule("anyone", "I can help with that.")], &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let viewer = app.add_user(&shop.owner, "viewer").await;
    let staff = app.add_user(&shop.owner, "agent").await;
    let customer = unique_number();
    text(&app, &customer, &shop.number, "Is anyone there?").await;
    assert_eq!(sent_to(&twilio, &customer, 1).await.len(), 1);
    let id = conversation(&app, &shop.owner, &customer).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, _) = app
        .post(
            &format!("/v1/conversations/{id}/takeover"),
            Some(&viewer.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "viewers cannot take over");
    let (status, taken) = app
        .post(
            &format!("/v1/conversations/{id}/takeover"),
            Some(&staff.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{taken}");
    assert_eq!(taken["takeover_user_id"], staff.user_id);
    let (_, list) = app
        .get("/v1/conversations?taken_over=true", &shop.owner.access)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    let asked = llm_requests(&emulator).len();
    let (status, twiml) = text(&app, &customer, &shop.number, "Hello? Is anyone there?").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!twiml.contains("<Message"), "{twiml}");
    let (status, twiml) = app.ring(&common::call_sid(), &customer, &shop.number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains("<Dial>+14155550199</Dial>") || twiml.contains("+14155550199"),
        "the call goes to a person: {twiml}"
    );
    assert!(!twiml.contains("<Stream"), "{twiml}");

    // Staff answer by text themselves.
    let (status, sent) = app
        .post(
            &format!("/v1/conversations/{id}/messages"),
            Some(&staff.access),
            json!({"body": "Hi, this is Dana from Acme. How can I help?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
    assert_eq!(sent["sender"], "staff");
    assert_eq!(sent["sender_user_id"], staff.user_id);
    let texts = sent_to(&twilio, &customer, 2).await;
    assert_eq!(texts.len(), 2, "the agent's first reply and the staff text");
    assert_eq!(
        field(&texts[1], "Body"),
        "Hi, this is Dana from Acme. How can I help?"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        llm_requests(&emulator).len(),
        asked,
        "the agent stayed quiet"
    );
    assert_eq!(sent_to(&twilio, &customer, 3).await.len(), 2);

    let (status, released) = app
        .delete(&format!("/v1/conversations/{id}/takeover"), &staff.access)
        .await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["takeover_user_id"], Value::Null);
    text(
        &app,
        &customer,
        &shop.number,
        "Can anyone help with financing?",
    )
    .await;
    let texts = sent_to(&twilio, &customer, 3).await;
    assert_eq!(texts.len(), 3);
    assert_eq!(field(&texts[2], "Body"), "I can help with that.");
    // The agent read the staff's words as its own side of the conversation.
    let last = llm_requests(&emulator).pop().unwrap();
    assert!(last.contains("this is Dana from Acme"), "{last}");
}

#[tokio::test]
async fn one_customer_of_two_tenants_has_two_separate_conversations() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(
        vec![
            ReplyRule {
                system_contains: Some("dealership".into()),
                text: Some("Dealership here.".into()),
                ..ReplyRule::default()
            },
            ReplyRule {
                system_contains: Some("clinic".into()),
                text: Some("Clinic here.".into()),
                ..ReplyRule::default()
            },
        ],
        &twilio,
    )
    .await;
    let dealer = shop(&app, "You are a car dealership.").await;
    let clinic = shop(&app, "You are a dental clinic.").await;
    let customer = unique_number();
    text(&app, &customer, &dealer.number, "I want a pickup truck").await;
    assert_eq!(sent_to(&twilio, &customer, 1).await.len(), 1);
    text(&app, &customer, &clinic.number, "My tooth hurts").await;
    let sent = sent_to(&twilio, &customer, 2).await;
    assert_eq!(field(&sent[0], "Body"), "Dealership here.");
    assert_eq!(field(&sent[1], "From"), clinic.number);
    assert_eq!(field(&sent[1], "Body"), "Clinic here.");

    let clinic_prompt = llm_requests(&emulator)
        .into_iter()
        .find(|r| r.contains("My tooth hurts"))
        .unwrap();
    assert!(!clinic_prompt.contains("pickup truck"), "{clinic_prompt}");
    let dealer_view = conversation(&app, &dealer.owner, &customer).await;
    let bodies: Vec<&str> = dealer_view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["I want a pickup truck", "Dealership here."]);
    let clinic_view = conversation(&app, &clinic.owner, &customer).await;
    assert_ne!(clinic_view["id"], dealer_view["id"]);
    let (status, _) = app
        .get(
            &format!("/v1/conversations/{}", dealer_view["id"].as_str().unwrap()),
            &clinic.owner.access,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's conversation"
    );
    assert_ne!(clinic.agent, dealer.agent);
}

#[tokio::test]
async fn a_text_that_routes_to_no_tenant_is_refused() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, _emulator) = spawn(Vec::new(), &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let customer = unique_number();
    let (status, body) = text(&app, &customer, &unique_number(), "hello").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let mut foreign = sms_params(&message_sid(), &customer, &shop.number, "hello");
    foreign[0].1 = "AC99999999999999999999999999999999".into();
    let (status, body) = post_form(&app, "/twilio/sms", &foreign, true).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another account's text: {body}"
    );
    let (_, list) = app.get("/v1/conversations", &shop.owner.access).await;
    assert_eq!(list["items"], json!([]), "nothing was stored");
    assert!(sent_to(&twilio, &customer, 0).await.is_empty());
}

#[tokio::test]
async fn a_120000_character_history_still_gives_a_prompt_under_the_budget() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(vec![rule("latest", "Here is the latest.")], &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let customer = unique_number();
    let tenant = shop.owner.tenant_id.parse().unwrap();
    let mut written = 0;
    let mut at_ms = 1_700_000_000_000;
    while written < 120_000 {
        let (speaker, words) = if at_ms % 2 == 0 {
            (
                Speaker::Customer,
                "I keep asking about trucks, colours, prices and trade-ins. ",
            )
        } else {
            (
                Speaker::Agent,
                "We have many trucks in many colours at fair prices today. ",
            )
        };
        let line = HistoryEntry {
            speaker,
            channel: Channel::Sms,
            text: words.repeat(10),
            at_ms,
        };
        written += line.text.len();
        at_ms += 1;
        ConversationStore::append(&app.store, tenant, &customer, &line)
            .await
            .unwrap();
    }

    let (status, _) = text(&app, &customer, &shop.number, "What is the latest offer?").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sent_to(&twilio, &customer, 1).await.len(), 1);
    let request = emulator
        .requests_for(Family::Llm)
        .into_iter()
        .map(|r| r.body)
        .find(|b| b.to_string().contains("What is the latest offer?"))
        .unwrap();
    let tokens: usize = request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| estimate_tokens(m["content"].as_str().unwrap_or_default()))
        .sum();
    let budget = PromptBudget::default().max_tokens;
    eprintln!(
        "a {written}-character history gave a prompt of {tokens} estimated tokens \
         ({} messages) against a budget of {budget}",
        request["messages"].as_array().unwrap().len()
    );
    assert!(
        tokens <= budget,
        "{tokens} estimated tokens against a budget of {budget}"
    );
    assert!(
        tokens > budget / 2,
        "the budget is used, not starved: {tokens}"
    );
    let last = request["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["content"], "What is the latest offer?");
}

#[tokio::test]
async fn a_text_the_agent_sends_during_a_call_joins_the_conversation() {
    let twilio = FakeTwilio::accepting_texts().await;
    let customer = unique_number();
    let mut script = script(vec![
        ReplyRule {
            user_contains: Some("send me the link".to_owned()),
            tool_calls: vec![ScriptedToolCall {
                name: "send_sms".to_owned(),
                arguments: json!({"body": "Book here: https://acme.example/book"}),
            }],
            ..ReplyRule::default()
        },
        ReplyRule {
            after_tool: Some("send_sms".to_owned()),
            text: Some("I just texted you the link.".to_owned()),
            ..ReplyRule::default()
        },
    ]);
    script.transcripts.by_prompt = BTreeMap::from([(
        customer.clone(),
        vec!["Can you send me the link?".to_owned()],
    )]);
    let (app, _emulator) = spawn_with(script, &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let (status, body) = app
        .patch(
            &format!("/v1/agents/{}", shop.agent),
            &shop.owner.access,
            json!({"enabled_tools": ["send_sms"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let report = common::simulate_call(
        &app.base,
        &customer,
        &shop.number,
        vec![CallerTurn::say("Can you send me the link?")],
    )
    .await;
    app.ended_call(&shop.owner.tenant_id, &report.call_sid)
        .await;
    let sent = sent_to(&twilio, &customer, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(
        field(&sent[0], "Body"),
        "Book here: https://acme.example/book"
    );
    assert_eq!(field(&sent[0], "From"), shop.number);

    let detail = conversation_with(&app, &shop.owner, &customer, 4).await;
    let texted: Vec<&Value> = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["channel"] == "sms")
        .collect();
    assert_eq!(texted.len(), 1, "{detail}");
    assert_eq!(texted[0]["body"], "Book here: https://acme.example/book");
    assert_eq!(texted[0]["sender"], "agent");
    assert!(texted[0]["twilio_sid"]
        .as_str()
        .is_some_and(|s| s.starts_with("SM")));
}

#[tokio::test]
async fn a_lead_staff_change_reaches_the_next_reply_of_a_running_conversation() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(Vec::new(), &twilio).await;
    let shop = shop(&app, "You are texting {{customer_name}}.").await;
    let customer = unique_number();
    let (status, lead) = app
        .post(
            "/v1/leads",
            Some(&shop.owner.access),
            json!({"name": "Ana Lima", "phone": customer}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{lead}");
    text(&app, &customer, &shop.number, "Hi there").await;
    assert_eq!(sent_to(&twilio, &customer, 1).await.len(), 1);
    let first = llm_requests(&emulator).pop().unwrap();
    assert!(first.contains("You are texting Ana Lima."), "{first}");

    let (status, body) = app
        .patch(
            &format!("/v1/leads/{}", lead["id"].as_str().unwrap()),
            &shop.owner.access,
            json!({"name": "Ana Souza"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    text(&app, &customer, &shop.number, "It's me again").await;
    assert_eq!(sent_to(&twilio, &customer, 2).await.len(), 2);
    let second = llm_requests(&emulator).pop().unwrap();
    assert!(second.contains("You are texting Ana Souza."), "{second}");
}

#[tokio::test]
async fn a_returning_caller_hears_the_first_message_when_the_model_cannot_greet() {
    let twilio = FakeTwilio::accepting_texts().await;
    let (app, emulator) = spawn(Vec::new(), &twilio).await;
    let shop = shop(&app, "You sell cars.").await;
    let customer = unique_number();
    let earlier = HistoryEntry {
        speaker: Speaker::Customer,
        channel: Channel::Sms,
        text: "Is the Civic still there?".to_owned(),
        at_ms: 1_700_000_000_000,
    };
    let tenant = shop.owner.tenant_id.parse().unwrap();
    ConversationStore::append(&app.store, tenant, &customer, &earlier)
        .await
        .unwrap();
    emulator.set_fault(Family::Llm, Some(Fault::status(500)));

    let report = common::simulate_call(&app.base, &customer, &shop.number, vec![]).await;
    let record = app
        .ended_call(&shop.owner.tenant_id, &report.call_sid)
        .await;
    assert_eq!(record.turns[0].text, "Thanks for calling.", "{record:?}");
    assert!(
        llm_requests(&emulator)
            .iter()
            .any(|r| r.contains("calling you now") && r.contains("Is the Civic still there?")),
        "the model was asked first"
    );
}
