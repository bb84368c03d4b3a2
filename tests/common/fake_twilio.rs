//! A stand-in for api.twilio.com: records every request and answers as told, so tests can
//! check what the server sends Twilio (path, Basic auth, form fields).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use secrecy::SecretString;
use switchboard::twilio::rest::TwilioClient;

/// The account the fake's client uses.
pub const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
/// The auth token the fake's client uses.
pub const TOKEN: &str = "test-auth-token-do-not-leak";

/// One request as the fake Twilio saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    pub form: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn fields(&self) -> Vec<(&str, &str)> {
        self.form
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

type Reply = Arc<dyn Fn(&Seen) -> (StatusCode, String) + Send + Sync>;

#[derive(Clone)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Reply,
    delay: Duration,
}

/// A stand-in for api.twilio.com on 127.0.0.1:0 that records every request and answers
/// with `reply`, after `delay`.
pub struct FakeTwilio {
    pub base_url: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeTwilio {
    pub async fn start(
        delay: Duration,
        reply: impl Fn(&Seen) -> (StatusCode, String) + Send + Sync + 'static,
    ) -> Self {
        let fake = Fake {
            seen: Arc::default(),
            reply: Arc::new(reply),
            delay,
        };
        let seen = fake.seen.clone();
        let app = Router::new().fallback(record).with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base_url: format!("http://{addr}"),
            seen,
        }
    }

    pub async fn answering(status: StatusCode, body: &'static str) -> Self {
        Self::start(Duration::ZERO, move |_| (status, body.to_owned())).await
    }

    /// Accepts every text (Messages.json) with a fresh SID.
    pub async fn accepting_texts() -> Self {
        Self::start(Duration::ZERO, |seen: &Seen| {
            let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
            let to = seen
                .form
                .iter()
                .find(|(k, _)| k == "To")
                .map(|(_, v)| v.clone());
            (
                StatusCode::CREATED,
                serde_json::json!({"sid": sid, "status": "queued", "num_segments": "1", "to": to})
                    .to_string(),
            )
        })
        .await
    }

    pub fn client(&self) -> TwilioClient {
        TwilioClient::with_options(
            ACCOUNT,
            SecretString::from(TOKEN),
            &self.base_url,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    pub fn only_request(&self) -> Seen {
        let seen = self.seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "expected exactly one request: {seen:#?}");
        seen[0].clone()
    }
}

async fn record(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let seen = Seen {
        method,
        path: uri.path().to_owned(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        form: serde_urlencoded::from_bytes(&body).unwrap_or_default(),
    };
    let (status, reply) = (fake.reply)(&seen);
    fake.seen.lock().unwrap().push(seen);
    tokio::time::sleep(fake.delay).await;
    (status, [("content-type", "application/json")], reply)
}
