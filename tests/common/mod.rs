//! Test support: `spawn_app` starts a real server on port 0 with its own fresh database —
//! a SQLite file by default, or a new PostgreSQL database when `TEST_DATABASE_URL` is set —
//! and Redis-backed rate limits when `TEST_REDIS_URL` is set.

#![allow(dead_code)]

pub mod fake_twilio;
pub mod fixtures;
pub mod process;

use std::path::PathBuf;

use clap::Parser;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use switchboard::app::Application;
use switchboard::settings::{Settings, SettingsArgs};
use switchboard::store::Store;

#[derive(Parser)]
#[command(args_override_self = true)]
struct Args {
    #[command(flatten)]
    settings: SettingsArgs,
}

/// A running server and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    pub data_dir: PathBuf,
}

/// A tenant with one agent on one number, as [`TestApp::line`] makes it.
pub struct Line {
    pub owner: Login,
    pub agent: String,
    pub number: String,
}

/// A signed-in staff member.
#[derive(Clone, Debug)]
pub struct Login {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    pub tenant_id: String,
    pub email: String,
}

/// Extra flags for the server, such as tight login limits.
pub async fn spawn_app_with(flags: &[&str]) -> TestApp {
    let data_dir = std::env::temp_dir().join(format!("sbtest-{}", uuid::Uuid::new_v4()));
    let mut argv: Vec<String> = vec![
        "switchboard".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--login-limit-per-address".into(),
        "1000".into(),
    ];
    if let Some(url) = switchboard::testing::postgres_url() {
        argv.extend([
            "--database-url".into(),
            switchboard::testing::fresh_postgres_database(&url).await,
        ]);
    }
    if let Some(url) = switchboard::testing::redis_url() {
        argv.extend(["--redis-url".into(), url]);
        argv.extend([
            "--redis-key-prefix".into(),
            format!("sbtest-{}", uuid::Uuid::new_v4().simple()),
        ]);
    }
    argv.extend(flags.iter().map(|f| f.to_string()));
    let settings =
        Settings::from_args(Args::parse_from(argv).settings).expect("test settings are valid");
    let app = Application::build(settings).await.expect("the app builds");
    let base = format!("http://{}", app.local_addr());
    let store = app.store();
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    TestApp {
        base,
        client: reqwest::Client::new(),
        store,
        data_dir,
    }
}

/// A server with default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

impl TestApp {
    /// Sends a request with an optional bearer token and JSON body; returns status and body
    /// (JSON, or `null` when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the server answers");
        let status = res.status();
        let bytes = res.bytes().await.expect("a body");
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    /// Posts the voice webhook with an optional signature; returns status, content type and
    /// body.
    pub async fn post_voice(
        &self,
        params: &[(String, String)],
        signature: Option<String>,
    ) -> (StatusCode, String, String) {
        let mut req = self
            .client
            .post(format!("{}/twilio/voice", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(serde_urlencoded::to_string(params).unwrap());
        if let Some(signature) = signature {
            req = req.header(switchboard::twilio::signature::SIGNATURE_HEADER, signature);
        }
        let res = req.send().await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, content_type, res.text().await.unwrap())
    }

    /// Posts a voice webhook signed as Twilio would for this server's own URL.
    pub async fn ring(&self, call_sid: &str, from: &str, to: &str) -> (StatusCode, String) {
        let params = voice_params(call_sid, from, to);
        let signature = twilio_signature(&format!("{}/twilio/voice", self.base), &params);
        let (status, _, body) = self.post_voice(&params, Some(signature)).await;
        (status, body)
    }

    /// Posts a signed status callback saying the call with this CallSid is `status`.
    pub async fn call_status(&self, call_sid: &str, status: &str) -> StatusCode {
        let params: Vec<(String, String)> = [
            ("CallSid", call_sid),
            ("AccountSid", fake_twilio::ACCOUNT),
            ("CallStatus", status),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let url = format!("{}/twilio/voice/status", self.base);
        self.client
            .post(&url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(
                switchboard::twilio::signature::SIGNATURE_HEADER,
                twilio_signature(&url, &params),
            )
            .body(serde_urlencoded::to_string(&params).unwrap())
            .send()
            .await
            .unwrap()
            .status()
    }

    /// The record of the call with this CallSid once it has ended (waits up to 10 s).
    pub async fn ended_call(
        &self,
        tenant_id: &str,
        call_sid: &str,
    ) -> switchboard::store::CallRecord {
        let tenant = tenant_id.parse().unwrap();
        let call = self.store.call_by_sid(tenant, call_sid).await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let record = self.store.call_record(tenant, call).await.unwrap();
                if record.end_reason.is_some() {
                    return record;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        })
        .await
        .expect("the call is recorded as ended")
    }

    /// Uploads `bytes` as the knowledge-base document `file_name`; returns status and body.
    pub async fn upload_document(
        &self,
        token: &str,
        file_name: &str,
        bytes: &[u8],
    ) -> (StatusCode, Value) {
        let boundary = format!("sb-{}", uuid::Uuid::new_v4().simple());
        let mut form = switchboard::providers::openai::MultipartBody::new(&boundary);
        form.file("file", file_name, "application/octet-stream", bytes);
        let res = self
            .client
            .post(format!("{}/v1/knowledge/documents", self.base))
            .bearer_auth(token)
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(form.finish())
            .send()
            .await
            .expect("the server answers");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// Registers a new tenant with a unique owner email and returns the owner's login.
    pub async fn register(&self, tenant: &str) -> Login {
        let email = format!(
            "owner-{}@{}.example",
            uuid::Uuid::new_v4().simple(),
            tenant.to_lowercase().replace(' ', "-")
        );
        let (status, body) = self
            .post(
                "/v1/auth/register",
                None,
                json!({"tenant_name": tenant, "name": "Owner", "email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        login_of(&body)
    }

    /// Signs in with email and password.
    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Invites a user with `role` into the tenant of `admin` and signs them in, returning
    /// their login.
    pub async fn add_user(&self, admin: &Login, role: &str) -> Login {
        let email = format!("{role}-{}@staff.example", uuid::Uuid::new_v4().simple());
        let (status, body) = self
            .post(
                "/v1/users",
                Some(&admin.access),
                json!({"email": email, "name": role, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = self.last_token(&admin.tenant_id, "user.invited").await;
        let (status, body) = self
            .post(
                "/v1/auth/password-reset/confirm",
                None,
                json!({"token": token, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        login_of(&body)
    }

    /// The token in the newest outbox event of this type: what the webhook would deliver.
    pub async fn last_token(&self, tenant_id: &str, event_type: &str) -> String {
        let events = self
            .store
            .outbox_events(tenant_id.parse().unwrap(), event_type)
            .await
            .expect("read the outbox");
        events.last().expect("an outbox event")["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates an agent in the tenant of `admin`; returns its id.
    pub async fn create_agent(&self, admin: &Login, name: &str) -> String {
        let (status, body) = self
            .post("/v1/agents", Some(&admin.access), json!({"name": name}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// A new tenant ("Acme Motors") with one agent ("Front desk") on one new number.
    pub async fn line(&self) -> Line {
        let owner = self.register("Acme Motors").await;
        let agent = self.create_agent(&owner, "Front desk").await;
        let number = unique_number();
        self.create_number(&owner, &number, &agent).await;
        Line {
            owner,
            agent,
            number,
        }
    }

    /// Changes the line's agent (a `PATCH /v1/agents/{id}` body); panics unless it is taken.
    pub async fn configure_agent(&self, line: &Line, fields: Value) {
        let (status, body) = self
            .patch(
                &format!("/v1/agents/{}", line.agent),
                &line.owner.access,
                fields,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Adds a number answered by `agent`; returns its id.
    pub async fn create_number(&self, admin: &Login, number: &str, agent: &str) -> String {
        let (status, body) = self
            .post(
                "/v1/phone-numbers",
                Some(&admin.access),
                json!({"number": number, "agent_id": agent}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

/// The Twilio auth token test servers are started with.
pub const TWILIO_TOKEN: &str = "twilio-test-auth-token";

/// The form parameters Twilio posts to the voice webhook for an inbound call.
pub fn voice_params(call_sid: &str, from: &str, to: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", "AC0123456789abcdef0123456789abcdef"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", from),
        ("To", to),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The `X-Twilio-Signature` Twilio would send with these parameters to `url`.
pub fn twilio_signature(url: &str, params: &[(String, String)]) -> String {
    switchboard::twilio::signature::sign(
        &secrecy::SecretString::from(TWILIO_TOKEN.to_owned()),
        url,
        params,
    )
}

/// Places a simulated call (the call simulator plays Twilio) from `from` to `to` on the
/// server at `base`, the caller saying `turns`, from the account of [`fake_twilio::ACCOUNT`]
/// (the account servers with a fake Twilio REST API are configured with); panics if the call
/// fails.
pub async fn simulate_call(
    base: &str,
    from: &str,
    to: &str,
    turns: Vec<switchboard::simulator::CallerTurn>,
) -> switchboard::simulator::CallReport {
    let mut config = switchboard::simulator::SimulatorConfig::new(
        base,
        secrecy::SecretString::from(TWILIO_TOKEN.to_owned()),
        from,
        to,
    );
    config.account_sid = fake_twilio::ACCOUNT.to_owned();
    switchboard::simulator::run_call(&config, &switchboard::simulator::CallScript::new(turns))
        .await
        .expect("the simulated call completes")
}

/// A fresh Twilio CallSid.
pub fn call_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

/// A server that runs phone calls: Twilio webhooks signed with [`TWILIO_TOKEN`], OpenAI and
/// ElevenLabs played by the provider emulator with `script`, plus any `flags`.
pub async fn spawn_voice_app(
    script: switchboard::emulator::EmulatorScript,
    flags: &[&str],
) -> (TestApp, switchboard::emulator::EmulatorHandle) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let emulator = switchboard::emulator::Emulator::start(listener, script);
    let openai = emulator.openai_base_url();
    let elevenlabs = emulator.base_url();
    let mut all = vec![
        "--twilio-auth-token",
        TWILIO_TOKEN,
        "--openai-api-key",
        "sk-test",
        "--openai-base-url",
        &openai,
        "--elevenlabs-api-key",
        "xi-test",
        "--elevenlabs-base-url",
        &elevenlabs,
    ];
    all.extend_from_slice(flags);
    let app = spawn_app_with(&all).await;
    (app, emulator)
}

/// An instant emulator script in which a new caller's speech is heard as `lines`, in order;
/// returns it with that caller's number.
pub fn caller_saying(lines: &[&str]) -> (switchboard::emulator::EmulatorScript, String) {
    let caller = unique_number();
    let mut script = switchboard::emulator::EmulatorScript::instant();
    script.transcripts.by_prompt = std::collections::BTreeMap::from([(
        caller.clone(),
        lines.iter().map(|l| (*l).to_owned()).collect(),
    )]);
    (script, caller)
}

/// A valid password for test accounts.
pub const PASSWORD: &str = "correct horse battery";

/// A phone number no other test uses, so tests can share a PostgreSQL server.
pub fn unique_number() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 10_000_000_000;
    format!("+1{n:010}")
}

fn login_of(session: &Value) -> Login {
    Login {
        access: session["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        refresh: session["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
        user_id: session["user"]["id"].as_str().unwrap().to_owned(),
        tenant_id: session["user"]["tenant_id"].as_str().unwrap().to_owned(),
        email: session["user"]["email"].as_str().unwrap().to_owned(),
    }
}

/// Asserts a problem+json error with this status; returns its body.
pub fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode) -> Value {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body.clone()
}

/// A database several servers can share, as `--database-url`: a SQLite file in a fresh
/// folder, or a fresh PostgreSQL database on the PostgreSQL pass. Two servers started with
/// it are two nodes of one deployment.
pub async fn shared_database_url() -> String {
    match switchboard::testing::postgres_url() {
        Some(server) => switchboard::testing::fresh_postgres_database(&server).await,
        None => {
            let dir = std::env::temp_dir().join(format!("sbshared-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            format!("sqlite://{}?mode=rwc", dir.join("shared.db").display())
        }
    }
}

/// One Server-Sent Event as a client receives it.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `id:`, if the event had one.
    pub id: Option<String>,
    /// `event:`.
    pub event: String,
    /// `data:`, parsed as JSON.
    pub data: Value,
}

/// A client's end of `GET /v1/events`, read event by event.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

impl EventStream {
    /// Opens the stream at `path_and_query` with `token` as bearer (or none) and extra
    /// headers; panics unless the server answers 200 with an event stream.
    pub async fn open(
        app: &TestApp,
        path_and_query: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Self {
        let mut request = app.client.get(format!("{}{path_and_query}", app.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "an event stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments and keep-alives skipped), or `None` if none comes within
    /// `wait` or the stream ends.
    pub async fn next(&mut self, wait: std::time::Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment or a retry hint
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Some(SseEvent { id, event, data });
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("the stream reads")?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until one of type `until` (included), failing after `wait`.
    pub async fn until(&mut self, until: &str, wait: std::time::Duration) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await.unwrap_or_else(|| {
                panic!(
                    "no {until} event came; saw {:?}",
                    seen.iter()
                        .map(|e: &SseEvent| e.event.clone())
                        .collect::<Vec<_>>()
                )
            });
            let done = event.event == until;
            seen.push(event);
            if done {
                return seen;
            }
        }
    }
}
