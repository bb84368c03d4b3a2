//! The real `switchboard serve` binary in a process of its own, for tests about what crosses
//! processes: signals, and several nodes sharing one database and one Redis.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use switchboard::settings::DatabaseKind;
use switchboard::store::Store;

use super::{TestApp, TWILIO_TOKEN};

/// The environment of a server whose providers are the emulator at `emulator` and whose
/// Twilio webhooks are signed with [`TWILIO_TOKEN`].
pub fn emulated_providers(
    emulator: &switchboard::emulator::EmulatorHandle,
) -> Vec<(&'static str, String)> {
    vec![
        ("TWILIO_AUTH_TOKEN", TWILIO_TOKEN.to_owned()),
        ("OPENAI_API_KEY", "sk-test".to_owned()),
        ("OPENAI_BASE_URL", emulator.openai_base_url()),
        ("ELEVENLABS_API_KEY", "xi-test".to_owned()),
        ("ELEVENLABS_BASE_URL", emulator.base_url()),
    ]
}

/// A server process; killed when dropped unless it already exited.
pub struct ServerProcess {
    /// A client of the server, with a store opened on its database.
    pub app: TestApp,
    child: Child,
}

impl ServerProcess {
    /// Starts `switchboard serve` on a free port with a clean environment plus `env`
    /// (which must hold `DATABASE_URL`), and waits until `/readyz` answers 200.
    pub async fn start(env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data_dir = std::env::temp_dir().join(format!("sbproc-{}", uuid::Uuid::new_v4()));
        let database = env
            .iter()
            .find(|(k, _)| *k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .expect("DATABASE_URL is given");
        let child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("serve")
            .env_clear()
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_DATA_DIR", &data_dir)
            .env("LOGIN_LIMIT_PER_ADDRESS", "1000")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut child = child;
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{base}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == StatusCode::OK) {
                break;
            }
            let exited = child.try_wait().unwrap();
            if exited.is_some() || tokio::time::Instant::now() > until {
                let _ = child.kill();
                panic!("the server never became ready (exit: {exited:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kind = if database.starts_with("sqlite") {
            DatabaseKind::Sqlite
        } else {
            DatabaseKind::Postgres
        };
        let server = Self {
            app: TestApp {
                base,
                client,
                store: Store::open(&SecretString::from(database), kind)
                    .await
                    .unwrap(),
                data_dir,
            },
            child,
        };
        server
    }

    /// Whether `/readyz` answers `expected` within `within`.
    pub async fn readiness_becomes(&self, expected: StatusCode, within: Duration) -> bool {
        let url = format!("{}/readyz", self.app.base);
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until {
            let status = self.app.client.get(&url).send().await.map(|r| r.status());
            if status.is_ok_and(|s| s == expected) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Sends SIGTERM, as an orchestrator does before stopping a node.
    pub fn terminate(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
    }

    /// The exit status, if the process ends within `within` (else it is killed).
    pub async fn exit_within(mut self, within: Duration) -> Option<ExitStatus> {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
