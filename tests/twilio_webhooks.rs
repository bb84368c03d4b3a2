//! Twilio's voice webhook over real HTTP: only requests signed with the auth token for this
//! server's public URL are taken, calls are routed by the dialled number, and the caller
//! always hears a polite TwiML answer.

mod common;

use common::{assert_problem, spawn_app_with, unique_number, TWILIO_TOKEN as TOKEN};
use reqwest::{header, StatusCode};
use secrecy::SecretString;
use switchboard::twilio::signature::{sign, SIGNATURE_HEADER};

const PUBLIC: &str = "https://voice.example.com";

fn voice_params(to: &str) -> Vec<(String, String)> {
    common::voice_params("CA0123456789abcdef0123456789abcdef", "+14155550100", to)
}

async fn post_voice(
    app: &common::TestApp,
    params: &[(String, String)],
    signature: Option<String>,
) -> (StatusCode, String, String) {
    app.post_voice(params, signature).await
}

fn signed(url: &str, params: &[(String, String)]) -> Option<String> {
    Some(common::twilio_signature(url, params))
}

async fn app() -> common::TestApp {
    spawn_app_with(&["--twilio-auth-token", TOKEN, "--public-url", PUBLIC]).await
}

#[tokio::test]
async fn unsigned_forged_and_replayed_voice_webhooks_are_refused() {
    let app = app().await;
    let params = voice_params("+14155550199");
    let url = format!("{PUBLIC}/twilio/voice");

    let (status, content_type, body) = post_voice(&app, &params, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(content_type, "application/problem+json");

    let forged = Some(sign(
        &SecretString::from("another-token".to_owned()),
        &url,
        &params,
    ));
    assert_eq!(
        post_voice(&app, &params, forged).await.0,
        StatusCode::FORBIDDEN
    );

    let elsewhere = signed("https://other.example.com/twilio/voice", &params);
    assert_eq!(
        post_voice(&app, &params, elsewhere).await.0,
        StatusCode::FORBIDDEN,
        "signed for another URL"
    );

    let mut tampered = params.clone();
    let signature = signed(&url, &params);
    tampered[5].1 = "+19995550000".to_owned();
    assert_eq!(
        post_voice(&app, &tampered, signature).await.0,
        StatusCode::FORBIDDEN,
        "a changed parameter"
    );
}

#[tokio::test]
async fn a_signed_call_to_an_unknown_number_hears_it_is_not_in_service() {
    let app = app().await;
    let params = voice_params(&unique_number());
    let (status, content_type, body) = post_voice(
        &app,
        &params,
        signed(&format!("{PUBLIC}/twilio/voice"), &params),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(content_type, "text/xml");
    assert_eq!(
        body,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Say>Sorry, the number you called is not in service. Goodbye.</Say><Hangup /></Response>"
    );
}

#[tokio::test]
async fn a_signed_call_to_a_tenants_number_is_routed_and_answered_politely() {
    let app = app().await;
    let owner = app.register("Acme").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let number = unique_number();
    app.create_number(&owner, &number, &agent).await;

    let params = voice_params(&number);
    let (status, _, body) = post_voice(
        &app,
        &params,
        signed(&format!("{PUBLIC}/twilio/voice"), &params),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("<Say>Thanks for calling.") && body.ends_with("<Hangup /></Response>"),
        "{body}"
    );
}

#[tokio::test]
async fn without_an_auth_token_twilio_webhooks_are_unavailable() {
    let app = spawn_app_with(&["--public-url", PUBLIC]).await;
    let params = voice_params("+14155550199");
    let (status, _, body) = post_voice(
        &app,
        &params,
        signed(&format!("{PUBLIC}/twilio/voice"), &params),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let problem = assert_problem(status, &body, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("TWILIO_AUTH_TOKEN"),
        "{problem}"
    );
}

async fn post_status(
    app: &common::TestApp,
    params: &[(&str, &str)],
    sign_it: bool,
) -> (StatusCode, String) {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut req = app
        .client
        .post(format!("{}/twilio/voice/status", app.base))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&params).unwrap());
    if sign_it {
        req = req.header(
            SIGNATURE_HEADER,
            signed(&format!("{PUBLIC}/twilio/voice/status"), &params).unwrap(),
        );
    }
    let res = req.send().await.unwrap();
    (res.status(), res.text().await.unwrap())
}

/// A call from +14155550100 to the tenant's `number` (its id and E.164), as the voice
/// webhook records it.
fn inbound_call(
    id: actors::domain::CallId,
    call_sid: &str,
    agent: &str,
    (number_id, number): (&str, &str),
) -> switchboard::store::NewCall {
    switchboard::store::NewCall {
        id,
        call_sid: call_sid.to_owned(),
        agent: agent.parse().unwrap(),
        phone_number: number_id.parse().unwrap(),
        direction: switchboard::store::Direction::Inbound,
        from: "+14155550100".to_owned(),
        to: actors::domain::E164::parse(number).unwrap(),
    }
}

/// A call is recorded once per CallSid (Twilio retries a webhook it got no answer to), and
/// only with the tenant's own agent and number.
#[tokio::test]
async fn a_call_is_recorded_once_per_call_sid_and_only_with_the_tenants_own_agent() {
    let app = app().await;
    let owner = app.register("Acme").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let number = unique_number();
    let number_id = app.create_number(&owner, &number, &agent).await;
    let other = app.register("Globex").await;
    let other_agent = app.create_agent(&other, "Front desk").await;
    let tenant = owner.tenant_id.parse().unwrap();
    let call = |call_sid: &str, agent: &str| {
        inbound_call(
            actors::domain::CallId::new(),
            call_sid,
            agent,
            (&number_id, &number),
        )
    };
    let call_sid = common::call_sid();
    app.store
        .create_call(tenant, &call(&call_sid, &agent))
        .await
        .unwrap();
    let again = app
        .store
        .create_call(tenant, &call(&call_sid, &agent))
        .await;
    assert!(
        matches!(again, Err(switchboard::store::StoreError::Conflict(_))),
        "{again:?}"
    );
    let foreign = app
        .store
        .create_call(tenant, &call(&common::call_sid(), &other_agent))
        .await;
    assert!(
        matches!(
            foreign,
            Err(switchboard::store::StoreError::BadReference(_))
        ),
        "{foreign:?}"
    );
}

#[tokio::test]
async fn status_callbacks_record_the_end_and_duration_of_a_call() {
    let app = app().await;
    let owner = app.register("Acme").await;
    let agent = app.create_agent(&owner, "Front desk").await;
    let number = unique_number();
    let number_id = app.create_number(&owner, &number, &agent).await;
    let tenant = owner.tenant_id.parse().unwrap();
    let call_id = actors::domain::CallId::new();
    let call_sid = common::call_sid();
    app.store
        .create_call(
            tenant,
            &inbound_call(call_id, &call_sid, &agent, (&number_id, &number)),
        )
        .await
        .unwrap();

    let unsigned = post_status(
        &app,
        &[("CallSid", &call_sid), ("CallStatus", "completed")],
        false,
    )
    .await;
    assert_eq!(unsigned.0, StatusCode::FORBIDDEN);
    assert_eq!(
        app.store.call_record(tenant, call_id).await.unwrap().status,
        "ringing",
        "nothing changed"
    );

    let bad = post_status(
        &app,
        &[("CallSid", &call_sid), ("CallStatus", "exploded")],
        true,
    )
    .await;
    assert_eq!(bad.0, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.1);

    let done = post_status(
        &app,
        &[
            ("CallSid", &call_sid),
            ("CallStatus", "completed"),
            ("CallDuration", "42"),
            ("SequenceNumber", "3"),
        ],
        true,
    )
    .await;
    assert_eq!(done.0, StatusCode::NO_CONTENT, "{}", done.1);
    let record = app.store.call_record(tenant, call_id).await.unwrap();
    assert_eq!(record.status, "completed");
    assert_eq!(record.duration_ms, Some(42_000));

    let unknown = post_status(
        &app,
        &[("CallSid", "CAunknown"), ("CallStatus", "completed")],
        true,
    )
    .await;
    assert_eq!(
        unknown.0,
        StatusCode::NO_CONTENT,
        "Twilio is not made to retry"
    );
}
