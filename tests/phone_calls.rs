//! Phone calls over real sockets: the voice webhook admits a call and connects its Media
//! Stream, the media socket takes only the stream token of its own call, and a tenant at its
//! limit sends callers to its fallback number or tells them the lines are busy.

mod common;

use base64::Engine;
use common::fake_twilio::{FakeTwilio, ACCOUNT};
use common::{call_sid, spawn_voice_app, Line, TestApp};
use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use switchboard::emulator::EmulatorScript;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const OUTBOUND_SID: &str = "CA1f0123456789abcdef0123456789abcd";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Asserts the call `sid` was refused: recorded `busy`, its reason mentioning `why`.
async fn assert_refused(app: &TestApp, line: &Line, sid: &str, why: &str) {
    let tenant = line.owner.tenant_id.parse().unwrap();
    let call = app.store.call_by_sid(tenant, sid).await.unwrap();
    let record = app.store.call_record(tenant, call).await.unwrap();
    assert_eq!(record.status, "busy");
    assert!(
        record.failure.as_deref().is_some_and(|f| f.contains(why)),
        "{record:?}"
    );
}

/// Gives the line's agent a transfer (and fallback) number.
/// A voice server whose Twilio REST API is the fake `twilio`.
async fn spawn_twilio_app(twilio: &FakeTwilio) -> (TestApp, switchboard::emulator::EmulatorHandle) {
    spawn_voice_app(
        EmulatorScript::instant(),
        &[
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-api-base",
            &twilio.base_url,
        ],
    )
    .await
}

/// The value of the stream's `token` parameter in a TwiML answer.
fn stream_token(twiml: &str) -> String {
    let start = twiml
        .find(r#"name="token" value=""#)
        .unwrap_or_else(|| panic!("no token parameter in {twiml}"))
        + r#"name="token" value=""#.len();
    let end = start + twiml[start..].find('"').unwrap();
    twiml[start..end].to_owned()
}

async fn open_socket(app: &TestApp) -> Socket {
    let url = format!("{}/twilio/media", app.base.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Sends `connected` and a `start` for `call_sid` carrying `token`.
async fn start_stream(socket: &mut Socket, call_sid: &str, token: Option<&str>) {
    let parameters = match token {
        Some(token) => json!({ "token": token }),
        None => json!({}),
    };
    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    for message in [
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"}),
        json!({"event": "start", "sequenceNumber": "1", "streamSid": stream_sid, "start": {
            "accountSid": "AC0123456789abcdef0123456789abcdef", "streamSid": stream_sid,
            "callSid": call_sid, "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": parameters}}),
    ] {
        socket
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }
}

/// The close frame the server ends the socket with, skipping any audio before it.
async fn close_frame(socket: &mut Socket) -> (CloseCode, String) {
    let wait = async {
        while let Some(message) = socket.next().await {
            match message {
                Ok(Message::Close(Some(frame))) => {
                    return (frame.code, frame.reason.to_string());
                }
                Ok(Message::Close(None)) => panic!("closed without a reason"),
                Ok(_) => continue,
                Err(error) => panic!("the socket failed instead of closing: {error}"),
            }
        }
        panic!("the socket ended without a close frame")
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("the server closes the socket")
}

/// Waits for the agent's first audio: the stream is connected and the greeting plays.
async fn first_audio(socket: &mut Socket) {
    let wait = async {
        while let Some(message) = socket.next().await {
            if let Ok(Message::Text(text)) = message {
                if text.contains(r#""event":"media""#) {
                    return;
                }
            }
        }
        panic!("the socket ended before any audio")
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), wait)
        .await
        .expect("the greeting plays");
}

#[tokio::test]
async fn a_ringing_call_is_recorded_and_connected_to_its_media_stream() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let sid = call_sid();
    let (status, twiml) = app.ring(&sid, "+14155550100", &line.number).await;
    assert_eq!(status, StatusCode::OK, "{twiml}");
    let stream_url = format!(
        r#"<Connect><Stream url="{}/twilio/media"><Parameter name="token" value=""#,
        app.base.replace("http://", "ws://")
    );
    assert!(twiml.contains(&stream_url), "{twiml}");
    assert!(!stream_token(&twiml).is_empty());

    let tenant = line.owner.tenant_id.parse().unwrap();
    let call = app.store.call_by_sid(tenant, &sid).await.unwrap();
    let record = app.store.call_record(tenant, call).await.unwrap();
    assert!(
        ["ringing", "in-progress"].contains(&record.status.as_str()),
        "{record:?}"
    );
}

#[tokio::test]
async fn media_sockets_without_a_valid_token_for_their_call_are_closed_with_1008() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let (first, second) = (call_sid(), call_sid());
    let first_token = stream_token(&app.ring(&first, "+14155550100", &line.number).await.1);
    let second_token = stream_token(&app.ring(&second, "+14155550101", &line.number).await.1);

    let cases = [
        (first.clone(), None, "no stream token"),
        (first.clone(), Some("not-a-token".to_owned()), "invalid"),
        (
            first.clone(),
            Some(second_token.clone()),
            "for another call",
        ),
    ];
    for (sid, token, reason) in cases {
        let mut socket = open_socket(&app).await;
        start_stream(&mut socket, &sid, token.as_deref()).await;
        let (code, said) = close_frame(&mut socket).await;
        assert_eq!(code, CloseCode::Policy, "{reason}: {said}");
        assert!(said.contains(reason), "expected `{reason}`, got `{said}`");
    }

    // The right token opens the stream once; a second socket for the call is refused.
    let mut socket = open_socket(&app).await;
    start_stream(&mut socket, &first, Some(&first_token)).await;
    first_audio(&mut socket).await;
    let mut again = open_socket(&app).await;
    start_stream(&mut again, &first, Some(&first_token)).await;
    let (code, said) = close_frame(&mut again).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(said.contains("not waiting"), "{said}");
    drop(socket);

    // A message over 64 KiB closes the socket with 1009.
    let mut socket = open_socket(&app).await;
    start_stream(&mut socket, &second, Some(&second_token)).await;
    let huge = json!({"event": "media", "streamSid": "MZ1", "media": {
        "track": "inbound", "chunk": "1", "timestamp": "0", "payload": "A".repeat(70_000)}});
    socket
        .send(Message::Text(huge.to_string().into()))
        .await
        .unwrap();
    let (code, said) = close_frame(&mut socket).await;
    assert_eq!(code, CloseCode::Size, "{said}");
}

#[tokio::test]
async fn a_tenant_at_its_limit_sends_callers_to_its_fallback_or_says_it_is_busy() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"concurrent_call_limit": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut events = common::EventStream::open(
        &app,
        "/v1/events?types=quota.exceeded",
        Some(&line.owner.access),
        &[],
    )
    .await;

    let (status, twiml) = app.ring(&call_sid(), "+14155550100", &line.number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("<Connect>"), "{twiml}");

    let refused = call_sid();
    let (status, twiml) = app.ring(&refused, "+14155550101", &line.number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("All of our lines are busy"), "{twiml}");
    assert!(twiml.contains("<Hangup />"), "{twiml}");
    assert_refused(&app, &line, &refused, "limit").await;
    let exceeded = events
        .next(std::time::Duration::from_secs(5))
        .await
        .expect("staff screens hear of the refusal");
    assert_eq!(exceeded.data["data"]["quota"], "concurrent_calls");
    assert_eq!(exceeded.data["data"]["limit"], 1);

    app.configure_agent(&line, json!({"transfer_number": "+14155550999"}))
        .await;
    let (status, twiml) = app.ring(&call_sid(), "+14155550102", &line.number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        twiml.contains("<Dial>+14155550999</Dial>"),
        "the caller is sent to the fallback number: {twiml}"
    );
}

#[tokio::test]
async fn an_outbound_call_is_dialled_through_twilio_and_its_stream_accepted() {
    let twilio = FakeTwilio::start(std::time::Duration::ZERO, |_| {
        (
            StatusCode::CREATED,
            json!({"sid": OUTBOUND_SID, "account_sid": ACCOUNT, "status": "queued",
                "to": "+14155550123", "from": "+14155550199"})
            .to_string(),
        )
    })
    .await;
    let (app, _emulator) = spawn_twilio_app(&twilio).await;
    let line = app.line().await;

    let (status, body) = app
        .post(
            "/v1/calls",
            Some(&line.owner.access),
            json!({"to": "+14155550123", "agent_id": line.agent}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["call_sid"], OUTBOUND_SID);

    let seen = twilio.only_request();
    assert_eq!(
        seen.path,
        format!("/2010-04-01/Accounts/{ACCOUNT}/Calls.json")
    );
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{ACCOUNT}:{}", common::TWILIO_TOKEN));
    assert_eq!(seen.header("authorization"), format!("Basic {basic}"));
    let field = |name: &str| {
        seen.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} in {:?}", seen.form))
    };
    assert_eq!(field("To"), "+14155550123");
    assert_eq!(field("From"), line.number);
    assert_eq!(
        field("StatusCallback"),
        format!("{}/twilio/voice/status", app.base)
    );
    let twiml = field("Twiml");
    assert!(twiml.contains("<Connect><Stream url="), "{twiml}");

    // Twilio opens the stream under the call's SID once the callee answers.
    let token = stream_token(&twiml);
    let mut stranger = open_socket(&app).await;
    start_stream(&mut stranger, &call_sid(), Some(&token)).await;
    assert_eq!(close_frame(&mut stranger).await.0, CloseCode::Policy);
    let mut socket = open_socket(&app).await;
    start_stream(&mut socket, OUTBOUND_SID, Some(&token)).await;
    first_audio(&mut socket).await;

    let tenant = line.owner.tenant_id.parse().unwrap();
    app.store.call_by_sid(tenant, OUTBOUND_SID).await.unwrap();
}

#[tokio::test]
async fn an_outbound_call_without_twilio_configured_is_503_and_a_viewer_may_not_dial() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let body = json!({"to": "+14155550123", "agent_id": line.agent});
    let (status, problem) = app
        .post("/v1/calls", Some(&line.owner.access), body.clone())
        .await;
    common::assert_problem(status, &problem, StatusCode::SERVICE_UNAVAILABLE);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("TWILIO_ACCOUNT_SID"));

    let viewer = app.add_user(&line.owner, "viewer").await;
    let (status, problem) = app.post("/v1/calls", Some(&viewer.access), body).await;
    common::assert_problem(status, &problem, StatusCode::FORBIDDEN);

    let (status, problem) = app
        .post(
            "/v1/calls",
            Some(&line.owner.access),
            json!({"to": "nonsense", "agent_id": line.agent}),
        )
        .await;
    common::assert_problem(status, &problem, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn pressing_0_hands_the_caller_to_the_transfer_number_through_twilio() {
    let mut live = LiveCall::start().await;

    let press = json!({"event": "dtmf", "streamSid": "MZ1", "sequenceNumber": "9",
        "dtmf": {"track": "inbound_track", "digit": "0"}});
    live.socket
        .send(Message::Text(press.to_string().into()))
        .await
        .unwrap();
    live.assert_transferred().await;
}

#[tokio::test]
async fn a_tenant_that_used_its_monthly_minutes_takes_no_new_calls() {
    let (app, _emulator) = spawn_voice_app(EmulatorScript::instant(), &[]).await;
    let line = app.line().await;
    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"monthly_minute_quota": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sid = call_sid();
    let (status, twiml) = app.ring(&sid, "+14155550100", &line.number).await;
    assert_eq!(status, StatusCode::OK);
    assert!(twiml.contains("All of our lines are busy"), "{twiml}");
    assert_refused(&app, &line, &sid, "minutes").await;

    let (status, body) = app
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"monthly_minute_quota": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, twiml) = app.ring(&call_sid(), "+14155550100", &line.number).await;
    assert!(twiml.contains("<Connect>"), "unlimited again: {twiml}");
}

/// The TwiML the server redirected the call `sid` to through Twilio's REST API (waits 5 s).
async fn redirect_twiml(twilio: &FakeTwilio, sid: &str) -> String {
    let redirect = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let seen = twilio.seen.lock().unwrap().clone();
            if let Some(update) = seen
                .into_iter()
                .find(|s| s.path.ends_with(&format!("/Calls/{sid}.json")))
            {
                return update;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call is redirected through Twilio's REST API");
    redirect
        .form
        .iter()
        .find(|(k, _)| k == "Twiml")
        .expect("a Twiml field")
        .1
        .clone()
}

#[tokio::test]
async fn taking_the_conversation_over_hands_a_live_call_to_the_transfer_number() {
    let mut live = LiveCall::start().await;
    let (app, owner) = (&live.app, &live.line.owner);

    // The greeting opened the customer's conversation.
    let conversation = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let (_, list) = app.get("/v1/conversations", &owner.access).await;
            if let Some(id) = list["items"][0]["id"].as_str() {
                return id.to_owned();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the call's conversation is listed");
    let (status, body) = app
        .post(
            &format!("/v1/conversations/{conversation}/takeover"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    live.assert_transferred().await;
}

/// A call in progress on a server whose Twilio REST API is a fake, with the agent's transfer
/// number `+14155550999`; the greeting has started playing.
struct LiveCall {
    twilio: FakeTwilio,
    app: TestApp,
    _emulator: switchboard::emulator::EmulatorHandle,
    line: Line,
    sid: String,
    socket: Socket,
}

impl LiveCall {
    async fn start() -> Self {
        let twilio = FakeTwilio::start(std::time::Duration::ZERO, |_| {
            (
                StatusCode::OK,
                json!({"sid": OUTBOUND_SID, "account_sid": ACCOUNT, "status": "in-progress"})
                    .to_string(),
            )
        })
        .await;
        let (app, emulator) = spawn_twilio_app(&twilio).await;
        let line = app.line().await;
        app.configure_agent(&line, json!({"transfer_number": "+14155550999"}))
            .await;
        let sid = call_sid();
        let token = stream_token(&app.ring(&sid, "+14155550100", &line.number).await.1);
        let mut socket = open_socket(&app).await;
        start_stream(&mut socket, &sid, Some(&token)).await;
        first_audio(&mut socket).await;
        Self {
            twilio,
            app,
            _emulator: emulator,
            line,
            sid,
            socket,
        }
    }
}

impl LiveCall {
    /// The stream closed normally, Twilio was told to dial the transfer number, and the call
    /// is recorded as transferred.
    async fn assert_transferred(&mut self) {
        let (code, reason) = close_frame(&mut self.socket).await;
        assert_eq!(code, CloseCode::Normal, "{reason}");
        let twiml = redirect_twiml(&self.twilio, &self.sid).await;
        assert!(twiml.contains("<Dial>+14155550999</Dial>"), "{twiml}");
        let ended = self
            .app
            .ended_call(&self.line.owner.tenant_id, &self.sid)
            .await;
        assert_eq!(ended.end_reason.as_deref(), Some("transferred"));
    }
}

impl LiveCall {
    /// Our id of the live call.
    async fn call_id(&self) -> String {
        let tenant = self.line.owner.tenant_id.parse().unwrap();
        self.app
            .store
            .call_by_sid(tenant, &self.sid)
            .await
            .unwrap()
            .to_string()
    }
}

#[tokio::test]
async fn staff_transfer_a_live_call_from_the_dashboard() {
    let mut live = LiveCall::start().await;
    let id = live.call_id().await;
    let owner = live.line.owner.clone();
    let (status, body) = live
        .app
        .post(
            &format!("/v1/calls/{id}/transfer"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    live.assert_transferred().await;
    // Over: nothing more to control.
    let (status, body) = live
        .app
        .post(
            &format!("/v1/calls/{id}/hangup"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    common::assert_problem(status, &body, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_supervisor_listens_puts_words_in_the_agents_mouth_and_hangs_up() {
    let mut live = LiveCall::start().await;
    let id = live.call_id().await;
    let (app, owner) = (&live.app, &live.line.owner);

    // Listening needs a WebSocket; a plain GET is told so.
    let (status, body) = app
        .get(&format!("/v1/calls/{id}/listen"), &owner.access)
        .await;
    common::assert_problem(status, &body, StatusCode::UPGRADE_REQUIRED);
    let mut request = format!(
        "{}/v1/calls/{id}/listen",
        app.base.replace("http://", "ws://")
    )
    .into_client_request()
    .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", owner.access).parse().unwrap(),
    );
    let (mut ear, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // The caller says something (silence is audio too) and the agent's audio flows.
    let silence = base64::engine::general_purpose::STANDARD.encode([0xff_u8; 160]);
    for n in 0..5 {
        let media = json!({"event": "media", "streamSid": "MZ1", "sequenceNumber": (10 + n).to_string(),
            "media": {"track": "inbound", "chunk": (n + 1).to_string(), "timestamp": (n * 20).to_string(),
                "payload": silence}});
        live.socket
            .send(Message::Text(media.to_string().into()))
            .await
            .unwrap();
    }
    let (status, body) = app
        .post(
            &format!("/v1/calls/{id}/say"),
            Some(&owner.access),
            json!({"text": "A manager will join you shortly."}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut tracks = std::collections::BTreeSet::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while tracks.len() < 2 {
            match ear.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(frame["event"], "media");
                    assert!(frame["payload"].as_str().is_some_and(|p| !p.is_empty()));
                    tracks.insert(frame["track"].as_str().unwrap().to_owned());
                }
                other => panic!("the listener got {other:?}"),
            }
        }
    })
    .await
    .expect("the listener hears both sides");

    // The staff line is the agent's next line in the record once it has played (the phone
    // echoes each mark, as Twilio does).
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            if let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(std::time::Duration::from_millis(50), live.socket.next()).await
            {
                let message: serde_json::Value = serde_json::from_str(&text).unwrap();
                if message["event"] == "mark" {
                    live.socket.send(Message::Text(text)).await.unwrap();
                }
            }
            let (_, detail) = app.get(&format!("/v1/calls/{id}"), &owner.access).await;
            let said = detail["turns"].as_array().unwrap().iter().any(|t| {
                t["speaker"] == "agent" && t["text"] == "A manager will join you shortly."
            });
            if said {
                return;
            }
        }
    })
    .await
    .expect("the staff sentence is recorded as the agent's line");

    let (status, body) = app
        .post(
            &format!("/v1/calls/{id}/hangup"),
            Some(&owner.access),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (code, _) = close_frame(&mut live.socket).await;
    assert_eq!(code, CloseCode::Normal);
    let (code, reason) = close_frame(&mut ear).await;
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Normal, "the call has ended")
    );
    let ended = live
        .app
        .ended_call(&live.line.owner.tenant_id, &live.sid)
        .await;
    assert_eq!(ended.end_reason.as_deref(), Some("completed"));
}

#[tokio::test]
async fn the_concurrent_call_limit_holds_across_nodes_sharing_redis() {
    if switchboard::testing::redis_url().is_none() {
        return; // across nodes, the limit is kept in Redis
    }
    let database = common::shared_database_url().await;
    let prefix = format!("sbtest-{}", uuid::Uuid::new_v4().simple());
    let shared = [
        "--database-url",
        &database,
        "--redis-key-prefix",
        &prefix,
        "--jwt-secret",
        "a-secret-both-nodes-share-0123456789",
    ];
    let (a, _emulator_a) = spawn_voice_app(EmulatorScript::instant(), &shared).await;
    let (b, _emulator_b) = spawn_voice_app(EmulatorScript::instant(), &shared).await;
    let line = a.line().await;
    let (status, body) = a
        .patch(
            "/v1/tenant",
            &line.owner.access,
            json!({"concurrent_call_limit": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let first = call_sid();
    let (_, twiml) = a.ring(&first, "+14155550100", &line.number).await;
    assert!(twiml.contains("<Connect>"), "{twiml}");
    // The other node has no call of this tenant, yet the tenant's one slot is taken.
    let refused = call_sid();
    let (_, twiml) = b.ring(&refused, "+14155550101", &line.number).await;
    assert!(twiml.contains("All of our lines are busy"), "{twiml}");
    assert_refused(&b, &line, &refused, "limit").await;

    // The first call ends (it never got its stream): its slot frees for any node.
    assert_eq!(
        a.call_status(&first, "completed").await,
        StatusCode::NO_CONTENT
    );
    let admitted = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let (_, twiml) = b.ring(&call_sid(), "+14155550102", &line.number).await;
            if twiml.contains("<Connect>") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(admitted.is_ok(), "the freed slot was never taken");
}
