//! The Twilio REST client against a local stand-in for api.twilio.com: what goes over the
//! wire (method, path, Basic auth, `Accept`, form fields with repeated keys) and how Twilio's
//! answers, errors included, come back.

mod common;

use std::time::Duration;

use actors::domain::E164;
use axum::http::{Method, StatusCode};
use base64::Engine;
use common::fake_twilio::{FakeTwilio, Seen, ACCOUNT, TOKEN};
use secrecy::SecretString;
use switchboard::twilio::rest::{
    CallEvent, CallStatus, HangUp, MessageStatus, StatusCallback, TwilioClient, TwilioError,
};
use switchboard::twilio::twiml::{Connect, Dial, Stream, VoiceResponse};

const CALL: &str = "CA1f0123456789abcdef0123456789abcd";

fn e164(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn assert_twilio_python_request(seen: &Seen, path: &str) {
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, path);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TOKEN}"));
    assert_eq!(seen.header("authorization"), format!("Basic {basic}"));
    assert_eq!(seen.header("accept"), "application/json");
    assert_eq!(
        seen.header("content-type"),
        "application/x-www-form-urlencoded"
    );
}

const CALL_JSON: &str = r#"{"sid":"CA1f0123456789abcdef0123456789abcd","account_sid":"AC0123456789abcdef0123456789abcdef",
    "to":"+14155550100","from":"+14155550199","status":"queued","direction":"outbound-api",
    "api_version":"2010-04-01","date_created":"Tue, 01 Sep 2026 12:00:00 +0000",
    "start_time":null,"duration":null,"price":null,"subresource_uris":{},
    "uri":"/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA1f0123456789abcdef0123456789abcd.json"}"#;

const NOT_FOUND_20404: &str = r#"{"code":20404,"message":"The requested resource /2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls/CA1f0123456789abcdef0123456789abcd.json was not found","more_info":"https://www.twilio.com/docs/errors/20404","status":404}"#;

#[tokio::test]
async fn create_call_posts_the_form_twilio_python_sends() {
    let twilio = FakeTwilio::answering(StatusCode::CREATED, CALL_JSON).await;
    let twiml = VoiceResponse::new()
        .connect(Connect::stream(
            Stream::new("wss://ex.com/media")
                .unwrap()
                .parameter("token", "t0k&n"),
        ))
        .to_xml();
    let callback = StatusCallback {
        url: "https://ex.com/status".into(),
        events: vec![CallEvent::Initiated, CallEvent::Completed],
    };

    let call = twilio
        .client()
        .create_call(
            &e164("+14155550100"),
            &e164("+14155550199"),
            &twiml,
            Some(&callback),
        )
        .await
        .unwrap();

    assert_eq!(call.sid, CALL);
    assert_eq!(call.status, Some(CallStatus::Queued));
    let seen = twilio.only_request();
    assert_twilio_python_request(&seen, &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json"));
    assert_eq!(
        seen.fields(),
        vec![
            ("To", "+14155550100"),
            ("From", "+14155550199"),
            ("Twiml", twiml.as_str()),
            ("StatusCallback", "https://ex.com/status"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "completed"),
        ]
    );
    assert!(
        seen.body
            .starts_with("To=%2B14155550100&From=%2B14155550199&Twiml=%3C%3Fxml"),
        "{}",
        seen.body
    );
    assert!(
        seen.body
            .ends_with("&StatusCallbackEvent=initiated&StatusCallbackEvent=completed"),
        "{}",
        seen.body
    );
}

#[tokio::test]
async fn create_call_with_every_event_repeats_the_key_four_times() {
    let twilio = FakeTwilio::answering(StatusCode::CREATED, CALL_JSON).await;
    twilio
        .client()
        .create_call(
            &e164("+14155550100"),
            &e164("+14155550199"),
            "<Response/>",
            Some(&StatusCallback::all("https://ex.com/status")),
        )
        .await
        .unwrap();
    let seen = twilio.only_request();
    let events: Vec<&str> = seen
        .fields()
        .into_iter()
        .filter(|(k, _)| *k == "StatusCallbackEvent")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(events, ["initiated", "ringing", "answered", "completed"]);
}

#[tokio::test]
async fn create_call_without_a_callback_sends_no_callback_fields() {
    let twilio = FakeTwilio::answering(StatusCode::CREATED, CALL_JSON).await;
    twilio
        .client()
        .create_call(
            &e164("+14155550100"),
            &e164("+14155550199"),
            "<Response/>",
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        twilio.only_request().fields(),
        vec![
            ("To", "+14155550100"),
            ("From", "+14155550199"),
            ("Twiml", "<Response/>"),
        ]
    );
}

#[tokio::test]
async fn hang_up_posts_status_completed_to_the_call() {
    let twilio = FakeTwilio::answering(StatusCode::OK, CALL_JSON).await;
    let outcome = twilio.client().hang_up(CALL).await.unwrap();
    assert_eq!(outcome, HangUp::Ended);
    let seen = twilio.only_request();
    assert_twilio_python_request(
        &seen,
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"),
    );
    assert_eq!(seen.fields(), vec![("Status", "completed")]);
    assert_eq!(seen.body, "Status=completed");
}

#[tokio::test]
async fn hang_up_of_a_call_that_already_ended_is_success() {
    let twilio = FakeTwilio::answering(StatusCode::NOT_FOUND, NOT_FOUND_20404).await;
    let outcome = twilio.client().hang_up(CALL).await.unwrap();
    assert_eq!(outcome, HangUp::AlreadyEnded);
}

#[tokio::test]
async fn hang_up_answered_by_another_404_is_an_error() {
    // Same status, another Twilio code.
    let twilio = FakeTwilio::answering(
        StatusCode::NOT_FOUND,
        r#"{"code":20003,"message":"Authenticate","status":404}"#,
    )
    .await;
    let err = twilio.client().hang_up(CALL).await.unwrap_err();
    assert!(
        matches!(
            err,
            TwilioError::Api {
                status: 404,
                code: Some(20003),
                ..
            }
        ),
        "{err:?}"
    );

    // A 404 that is not Twilio's at all (a wrong base URL behind a proxy).
    let twilio = FakeTwilio::answering(StatusCode::NOT_FOUND, "<html>Not Found</html>").await;
    let err = twilio.client().hang_up(CALL).await.unwrap_err();
    assert!(
        matches!(&err, TwilioError::Api { status: 404, code: None, message, .. } if message == "<html>Not Found</html>"),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_authentication_error_reports_twilio_code_and_message_but_never_the_token() {
    let twilio = FakeTwilio::answering(
        StatusCode::UNAUTHORIZED,
        r#"{"code":20003,"message":"Authentication Error - invalid username","more_info":"https://www.twilio.com/docs/errors/20003","status":401}"#,
    )
    .await;
    let err = twilio
        .client()
        .send_sms(&e164("+14155550100"), &e164("+14155550199"), "hi", None)
        .await
        .unwrap_err();
    let TwilioError::Api {
        status,
        code,
        ref message,
        ref more_info,
    } = err
    else {
        panic!("not an API error: {err:?}");
    };
    assert_eq!((status, code), (401, Some(20003)));
    assert_eq!(message, "Authentication Error - invalid username");
    assert_eq!(
        more_info.as_deref(),
        Some("https://www.twilio.com/docs/errors/20003")
    );
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(TOKEN), "{text}");
    }
    assert_eq!(
        err.to_string(),
        "Twilio answered 401: Authentication Error - invalid username (error 20003)"
    );
}

#[tokio::test]
async fn redirect_twiml_replaces_the_calls_twiml_for_a_transfer() {
    let twilio = FakeTwilio::answering(
        StatusCode::OK,
        r#"{"sid":"CA1f0123456789abcdef0123456789abcd","status":"in-progress"}"#,
    )
    .await;
    let twiml = VoiceResponse::new()
        .say("Transferring you now.")
        .dial(Dial::number(e164("+14155550123")))
        .to_xml();
    let call = twilio.client().redirect_twiml(CALL, &twiml).await.unwrap();
    assert_eq!(call.status, Some(CallStatus::InProgress));
    let seen = twilio.only_request();
    assert_twilio_python_request(
        &seen,
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"),
    );
    assert_eq!(seen.fields(), vec![("Twiml", twiml.as_str())]);
}

#[tokio::test]
async fn send_sms_posts_to_messages_json() {
    let twilio = FakeTwilio::answering(
        StatusCode::CREATED,
        r#"{"sid":"SM0123456789abcdef0123456789abcdef","status":"queued","to":"+14155550100",
            "from":"+14155550199","body":"Your table is booked & confirmed.","num_segments":"1",
            "direction":"outbound-api","error_code":null,"error_message":null}"#,
    )
    .await;
    let msg = twilio
        .client()
        .send_sms(
            &e164("+14155550100"),
            &e164("+14155550199"),
            "Your table is booked & confirmed.",
            Some("https://ex.com/sms-status"),
        )
        .await
        .unwrap();
    assert_eq!(msg.sid, "SM0123456789abcdef0123456789abcdef");
    assert_eq!(msg.status, Some(MessageStatus::Queued));
    let seen = twilio.only_request();
    assert_twilio_python_request(
        &seen,
        &format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json"),
    );
    assert_eq!(
        seen.fields(),
        vec![
            ("To", "+14155550100"),
            ("From", "+14155550199"),
            ("Body", "Your table is booked & confirmed."),
            ("StatusCallback", "https://ex.com/sms-status"),
        ]
    );
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    let twilio = FakeTwilio::answering(StatusCode::OK, CALL_JSON).await;
    let client = TwilioClient::with_options(
        ACCOUNT,
        SecretString::from(TOKEN),
        &format!("{}/fake-twilio/", twilio.base_url),
        Duration::from_secs(5),
    )
    .unwrap();
    client.hang_up(CALL).await.unwrap();
    assert_eq!(
        twilio.only_request().path,
        format!("/fake-twilio/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json")
    );
}

#[tokio::test]
async fn a_stalled_twilio_times_out() {
    let twilio = FakeTwilio::start(Duration::from_secs(30), |_| {
        (StatusCode::OK, CALL_JSON.to_owned())
    })
    .await;
    let client = TwilioClient::with_options(
        ACCOUNT,
        SecretString::from(TOKEN),
        &twilio.base_url,
        Duration::from_millis(200),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = client.hang_up(CALL).await.unwrap_err();
    assert!(
        matches!(err, TwilioError::Timeout(d) if d == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_unreachable_twilio_is_a_transport_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = TwilioClient::with_options(
        ACCOUNT,
        SecretString::from(TOKEN),
        &format!("http://{addr}"),
        Duration::from_secs(5),
    )
    .unwrap();
    let err = client.hang_up(CALL).await.unwrap_err();
    assert!(matches!(err, TwilioError::Transport(_)), "{err:?}");
}

#[tokio::test]
async fn a_success_without_the_resource_is_a_decode_error() {
    let twilio = FakeTwilio::answering(StatusCode::CREATED, r#"{"unexpected":true}"#).await;
    let err = twilio
        .client()
        .create_call(
            &e164("+14155550100"),
            &e164("+14155550199"),
            "<Response/>",
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, TwilioError::Decode(_)), "{err:?}");
}

#[tokio::test]
async fn a_call_sid_that_would_change_the_path_is_refused_before_sending() {
    let twilio = FakeTwilio::answering(StatusCode::OK, CALL_JSON).await;
    let err = twilio.client().hang_up("../Messages").await.unwrap_err();
    assert!(matches!(err, TwilioError::Invalid(_)), "{err:?}");
    assert!(twilio.seen.lock().unwrap().is_empty());
}
