//! One typed configuration, read from flags and the environment by clap and checked once at
//! start-up. A bad value stops start-up with a message naming the variable and what is wrong;
//! secrets are wrapped so that neither `Debug` nor a log line can print them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

/// The raw settings as clap reads them from flags and environment variables. Everything is
/// a string here so that [`Settings::from_args`] can say *which variable* is wrong; clap's
/// own errors only name the flag.
#[derive(Debug, Clone, clap::Args)]
pub struct SettingsArgs {
    /// Address the HTTP server listens on.
    #[arg(
        long,
        env = "SWITCHBOARD_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: String,
    /// Folder for the SQLite database, the generated JWT secret and later the embedded vector
    /// store.
    #[arg(
        long,
        env = "SWITCHBOARD_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; defaults to a SQLite file in the data dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<String>,
    /// Key that signs access tokens (at least 32 characters); generated once and kept in the
    /// data dir when unset.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<String>,
    /// The address Twilio and browsers reach this server at (`https://voice.example.com`);
    /// defaults to `http://` + the listen address.
    #[arg(long, env = "PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Redis for rate limits (and, later, events and quotas) shared by several nodes; without
    /// it they are kept in process.
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(
        long,
        env = "REDIS_KEY_PREFIX",
        default_value = "switchboard",
        global = true
    )]
    pub redis_key_prefix: String,
    /// Browser origins allowed to call the API, comma-separated (`*` for any); none by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "", global = true)]
    pub cors_allowed_origins: String,
    /// Longest time one HTTP request may take, in seconds.
    #[arg(
        long,
        env = "SWITCHBOARD_REQUEST_TIMEOUT_SECS",
        default_value = "30",
        global = true
    )]
    pub request_timeout_secs: String,
    /// Largest accepted JSON request body, in bytes.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_BODY_BYTES",
        default_value = "1048576",
        global = true
    )]
    pub max_body_bytes: String,
    /// Largest knowledge-base document accepted for upload, in bytes (20 MiB).
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_DOCUMENT_BYTES",
        default_value = "20971520",
        global = true
    )]
    pub max_document_bytes: String,
    /// Log lines as `text` for people or `json` for log collectors.
    #[arg(
        long,
        env = "SWITCHBOARD_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    pub log_format: String,
    /// Twilio auth token: verifies `X-Twilio-Signature` on webhooks. Without it every Twilio
    /// webhook is refused, since an unverified webhook could be forged by anyone.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true, global = true)]
    pub twilio_auth_token: Option<String>,
    /// Twilio account SID (`AC…`): with the auth token it lets the server hang up, transfer,
    /// place outbound calls and send texts through Twilio's REST API.
    #[arg(long, env = "TWILIO_ACCOUNT_SID", global = true)]
    pub twilio_account_sid: Option<String>,
    /// Twilio REST API root; point it at a local server in tests.
    #[arg(
        long,
        env = "TWILIO_API_BASE",
        default_value = "https://api.twilio.com",
        global = true
    )]
    pub twilio_api_base: String,
    /// OpenAI API key: speech-to-text, the agents' language model and embeddings.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true, global = true)]
    pub openai_api_key: Option<String>,
    /// OpenAI API root including `/v1`; any OpenAI-compatible server (vLLM, Ollama,
    /// llama.cpp, the provider emulator) works.
    #[arg(
        long,
        env = "OPENAI_BASE_URL",
        default_value = "https://api.openai.com/v1",
        global = true
    )]
    pub openai_base_url: String,
    /// OpenAI transcription model for callers' speech.
    #[arg(
        long,
        env = "OPENAI_STT_MODEL",
        default_value = "gpt-4o-mini-transcribe",
        global = true
    )]
    pub openai_stt_model: String,
    /// ElevenLabs API key: the agents' voices.
    #[arg(
        long,
        env = "ELEVENLABS_API_KEY",
        hide_env_values = true,
        global = true
    )]
    pub elevenlabs_api_key: Option<String>,
    /// ElevenLabs API root; the provider emulator in demos and tests.
    #[arg(
        long,
        env = "ELEVENLABS_BASE_URL",
        default_value = "https://api.elevenlabs.io",
        global = true
    )]
    pub elevenlabs_base_url: String,
    /// ElevenLabs model: `eleven_flash_v2_5` answers fastest.
    #[arg(
        long,
        env = "ELEVENLABS_MODEL",
        default_value = "eleven_flash_v2_5",
        global = true
    )]
    pub elevenlabs_model: String,
    /// Longest wait, in milliseconds, for a provider to start answering (and the longest
    /// silence within a streamed answer) before the turn is given up with an apology.
    #[arg(
        long,
        env = "PROVIDER_TIMEOUT_MS",
        default_value = "8000",
        global = true
    )]
    pub provider_timeout_ms: String,
    /// Login attempts allowed per email address per minute.
    #[arg(
        long,
        env = "LOGIN_LIMIT_PER_EMAIL",
        default_value = "5",
        global = true
    )]
    pub login_limit_per_email: String,
    /// Login attempts allowed per client address per minute.
    #[arg(
        long,
        env = "LOGIN_LIMIT_PER_ADDRESS",
        default_value = "20",
        global = true
    )]
    pub login_limit_per_address: String,
    /// How often, in milliseconds, each node looks for callbacks that are due (a callback
    /// rings up to this long after its time).
    #[arg(long, env = "CALLBACK_POLL_MS", default_value = "5000", global = true)]
    pub callback_poll_ms: String,
    /// A Qdrant server's gRPC address (`http://qdrant:6334`) for the knowledge base, shared
    /// by several nodes; without it each node keeps an embedded store in the data dir.
    #[arg(long, env = "QDRANT_URL", global = true)]
    pub qdrant_url: Option<String>,
    /// API key of the Qdrant server, when it asks for one.
    #[arg(long, env = "QDRANT_API_KEY", hide_env_values = true, global = true)]
    pub qdrant_api_key: Option<String>,
    /// Seconds live calls may go on after SIGTERM before they hear a goodbye and are hung up.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "600", global = true)]
    pub drain_timeout: String,
    /// Seconds a customer's conversation stays in memory after its last call or text; the
    /// next one loads it again from the database.
    #[arg(long, env = "CONVERSATION_IDLE", default_value = "120", global = true)]
    pub conversation_idle: String,
    /// Serve `/metrics` on this address alone (an internal port for Prometheus) instead of
    /// on the API's.
    #[arg(long, env = "METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<String>,
    /// Allow webhook endpoints on loopback and private addresses (refused by default, as a
    /// request forgery guard).
    #[arg(
        long,
        env = "WEBHOOKS_ALLOW_PRIVATE",
        default_value = "false",
        global = true
    )]
    pub webhooks_allow_private: String,
    /// Wait, in milliseconds, before a failed webhook delivery is first retried; each later
    /// retry waits twice as long (at most two hours), for a day.
    #[arg(
        long,
        env = "WEBHOOK_RETRY_BASE_MS",
        default_value = "10000",
        global = true
    )]
    pub webhook_retry_base_ms: String,
    /// How often, in milliseconds, each node looks for webhook deliveries that are due.
    #[arg(long, env = "WEBHOOK_POLL_MS", default_value = "1000", global = true)]
    pub webhook_poll_ms: String,
    /// The Qdrant collection holding every tenant's knowledge chunks.
    #[arg(
        long,
        env = "QDRANT_COLLECTION",
        default_value = "switchboard_knowledge",
        global = true
    )]
    pub qdrant_collection: String,
}

/// Which database the store talks to, decided by the scheme of `DATABASE_URL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// The embedded default: one file, no server.
    Sqlite,
    /// The production choice, with row-level security as a second wall between tenants.
    Postgres,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Text,
    /// One JSON object per line for log collectors.
    Json,
}

/// Allowed browser origins for CORS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No cross-origin browser access (the default: the dashboard is served same-origin).
    None,
    /// Any origin; only sensible for development, since the API uses bearer tokens.
    Any,
    /// Exactly these origins.
    List(Vec<String>),
}

/// The checked settings every part of the server reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the HTTP server listens.
    pub listen: SocketAddr,
    /// Where local state (SQLite file, generated secrets) lives.
    pub data_dir: PathBuf,
    /// The database URL; secret because it may hold a password.
    pub database_url: SecretString,
    /// Which backend `database_url` names.
    pub database_kind: DatabaseKind,
    /// Key for signing access tokens.
    pub jwt_secret: SecretString,
    /// The externally visible base URL, without a trailing slash; `None` means "derive it
    /// from the bound address".
    pub public_url: Option<String>,
    /// Redis URL, when several nodes share state; secret because it may hold a password.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key.
    pub redis_key_prefix: String,
    /// Browser origins allowed to call the API.
    pub cors_origins: CorsOrigins,
    /// Longest time one HTTP request may take.
    pub request_timeout: Duration,
    /// Largest accepted JSON body.
    pub max_body_bytes: usize,
    /// Largest accepted knowledge-base upload (its route alone takes bodies this large).
    pub max_document_bytes: usize,
    /// How log lines are written.
    pub log_format: LogFormat,
    /// Twilio auth token, when Twilio is configured.
    pub twilio_auth_token: Option<SecretString>,
    /// Twilio's REST API, when both the account SID and the auth token are set.
    pub twilio_rest: Option<TwilioRest>,
    /// The speech and language providers, when their keys are set: without them the server
    /// answers calls with a polite "not set up yet".
    pub voice: Option<VoiceProviders>,
    /// Login attempts per email per minute.
    pub login_limit_per_email: u32,
    /// Login attempts per client address per minute.
    pub login_limit_per_address: u32,
    /// How often the callback scheduler looks for due callbacks.
    pub callback_poll: Duration,
    /// The Qdrant server for the knowledge base; `None`: the embedded store.
    pub qdrant: Option<QdrantServer>,
    /// Outbound webhooks.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Where `/metrics` is served alone; `None`: on the API's address.
    pub metrics_listen: Option<SocketAddr>,
    /// How long live calls may go on once shutdown begins.
    pub drain_timeout: Duration,
    /// How long an idle customer's conversation stays in memory.
    pub conversation_idle: Duration,
}

/// A Qdrant server holding the knowledge base.
#[derive(Debug, Clone)]
pub struct QdrantServer {
    /// gRPC address.
    pub url: String,
    /// API key, if the server asks for one.
    pub api_key: Option<SecretString>,
    /// Collection of every tenant's chunks.
    pub collection: String,
}

/// Where and as whom the server calls Twilio's REST API.
#[derive(Debug, Clone)]
pub struct TwilioRest {
    /// `AC…`.
    pub account_sid: String,
    /// API root (`https://api.twilio.com` in production).
    pub api_base: String,
}

/// The providers a phone call needs: OpenAI for hearing and thinking, ElevenLabs for
/// speaking.
#[derive(Debug, Clone)]
pub struct VoiceProviders {
    /// OpenAI API key.
    pub openai_api_key: SecretString,
    /// OpenAI API root including `/v1`.
    pub openai_base_url: String,
    /// Transcription model.
    pub openai_stt_model: String,
    /// ElevenLabs API key.
    pub elevenlabs_api_key: SecretString,
    /// ElevenLabs API root.
    pub elevenlabs_base_url: String,
    /// ElevenLabs model.
    pub elevenlabs_model: String,
    /// Longest wait for a provider to start answering, or to go on once it has.
    pub timeout: Duration,
}

/// A setting that cannot be used, naming the variable (and its flag) and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct SettingsError {
    /// The environment variable (and flag) at fault.
    pub variable: &'static str,
    /// What is wrong with it, in words an operator can act on.
    pub problem: String,
}

fn bad(variable: &'static str, problem: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        problem: problem.into(),
    }
}

/// The file that keeps a generated JWT secret across restarts.
const JWT_SECRET_FILE: &str = "jwt_secret";
/// Shortest accepted JWT secret; HS256 wants at least 256 bits of key.
const MIN_JWT_SECRET_LEN: usize = 32;

impl Settings {
    /// Checks every raw value. Creates the data dir and, when `JWT_SECRET` is unset, reads or
    /// generates the secret kept there.
    pub fn from_args(args: SettingsArgs) -> Result<Self, SettingsError> {
        let listen = args.listen.parse().map_err(|_| {
            bad(
                "SWITCHBOARD_LISTEN (--listen)",
                format!(
                    "`{}` is not an address and port like 127.0.0.1:8080",
                    args.listen
                ),
            )
        })?;
        std::fs::create_dir_all(&args.data_dir).map_err(|e| {
            bad(
                "SWITCHBOARD_DATA_DIR (--data-dir)",
                format!("cannot create {}: {e}", args.data_dir.display()),
            )
        })?;
        let database_url = args.database_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                args.data_dir.join("switchboard.db").display()
            )
        });
        let database_kind = database_kind(&database_url)?;
        let jwt_secret = match args.jwt_secret {
            Some(s) if s.len() < MIN_JWT_SECRET_LEN => {
                return Err(bad(
                    "JWT_SECRET (--jwt-secret)",
                    format!(
                        "must be at least {MIN_JWT_SECRET_LEN} characters, it has {}",
                        s.len()
                    ),
                ))
            }
            Some(s) => s,
            None => stored_jwt_secret(&args.data_dir)?,
        };
        let public_url = args.public_url.map(|u| public_url(&u)).transpose()?;
        let redis_url = args
            .redis_url
            .map(|u| {
                redis::Client::open(u.as_str())
                    .map(|_| SecretString::from(u))
                    .map_err(|e| bad("REDIS_URL (--redis-url)", format!("not a Redis URL: {e}")))
            })
            .transpose()?;
        if args.redis_key_prefix.is_empty() || args.redis_key_prefix.contains(char::is_whitespace) {
            return Err(bad(
                "REDIS_KEY_PREFIX (--redis-key-prefix)",
                "must be a non-empty word without spaces",
            ));
        }
        let twilio_auth_token = non_empty(args.twilio_auth_token).map(SecretString::from);
        let twilio_rest = match (non_empty(args.twilio_account_sid), &twilio_auth_token) {
            (Some(sid), Some(_)) => Some(TwilioRest {
                account_sid: sid,
                api_base: http_url("TWILIO_API_BASE (--twilio-api-base)", &args.twilio_api_base)?,
            }),
            (Some(_), None) => {
                return Err(bad(
                    "TWILIO_AUTH_TOKEN (--twilio-auth-token)",
                    "must be set when TWILIO_ACCOUNT_SID is",
                ))
            }
            (None, _) => None,
        };
        let voice = match (
            non_empty(args.openai_api_key),
            non_empty(args.elevenlabs_api_key),
        ) {
            (Some(openai), Some(elevenlabs)) => Some(VoiceProviders {
                openai_api_key: openai.into(),
                openai_base_url: http_url(
                    "OPENAI_BASE_URL (--openai-base-url)",
                    &args.openai_base_url,
                )?,
                openai_stt_model: args.openai_stt_model,
                elevenlabs_api_key: elevenlabs.into(),
                elevenlabs_base_url: http_url(
                    "ELEVENLABS_BASE_URL (--elevenlabs-base-url)",
                    &args.elevenlabs_base_url,
                )?,
                elevenlabs_model: args.elevenlabs_model,
                timeout: Duration::from_millis(positive(
                    "PROVIDER_TIMEOUT_MS (--provider-timeout-ms)",
                    &args.provider_timeout_ms,
                )?),
            }),
            (Some(_), None) => {
                return Err(bad(
                    "ELEVENLABS_API_KEY (--elevenlabs-api-key)",
                    "must be set when OPENAI_API_KEY is: calls need a voice",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "OPENAI_API_KEY (--openai-api-key)",
                    "must be set when ELEVENLABS_API_KEY is: calls need to hear and think",
                ))
            }
            (None, None) => None,
        };
        Ok(Self {
            listen,
            data_dir: args.data_dir,
            database_url: database_url.into(),
            database_kind,
            jwt_secret: jwt_secret.into(),
            public_url,
            redis_url,
            redis_key_prefix: args.redis_key_prefix,
            cors_origins: cors_origins(&args.cors_allowed_origins)?,
            request_timeout: Duration::from_secs(positive(
                "SWITCHBOARD_REQUEST_TIMEOUT_SECS (--request-timeout-secs)",
                &args.request_timeout_secs,
            )?),
            max_body_bytes: positive(
                "SWITCHBOARD_MAX_BODY_BYTES (--max-body-bytes)",
                &args.max_body_bytes,
            )? as usize,
            max_document_bytes: positive(
                "SWITCHBOARD_MAX_DOCUMENT_BYTES (--max-document-bytes)",
                &args.max_document_bytes,
            )? as usize,
            log_format: match args.log_format.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                other => {
                    return Err(bad(
                        "SWITCHBOARD_LOG_FORMAT (--log-format)",
                        format!("`{other}` is neither `text` nor `json`"),
                    ))
                }
            },
            twilio_auth_token,
            twilio_rest,
            voice,
            login_limit_per_email: positive(
                "LOGIN_LIMIT_PER_EMAIL (--login-limit-per-email)",
                &args.login_limit_per_email,
            )? as u32,
            login_limit_per_address: positive(
                "LOGIN_LIMIT_PER_ADDRESS (--login-limit-per-address)",
                &args.login_limit_per_address,
            )? as u32,
            callback_poll: Duration::from_millis(positive(
                "CALLBACK_POLL_MS (--callback-poll-ms)",
                &args.callback_poll_ms,
            )?),
            drain_timeout: Duration::from_secs(positive(
                "DRAIN_TIMEOUT (--drain-timeout)",
                &args.drain_timeout,
            )?),
            conversation_idle: Duration::from_secs(positive(
                "CONVERSATION_IDLE (--conversation-idle)",
                &args.conversation_idle,
            )?),
            metrics_listen: non_empty(args.metrics_listen)
                .map(|raw| {
                    raw.parse().map_err(|_| {
                        bad(
                            "METRICS_LISTEN (--metrics-listen)",
                            format!("`{raw}` is not an address and port like 0.0.0.0:9100"),
                        )
                    })
                })
                .transpose()?,
            webhooks: crate::webhooks::WebhookSettings {
                allow_private: flag(
                    "WEBHOOKS_ALLOW_PRIVATE (--webhooks-allow-private)",
                    &args.webhooks_allow_private,
                )?,
                retry_base: Duration::from_millis(positive(
                    "WEBHOOK_RETRY_BASE_MS (--webhook-retry-base-ms)",
                    &args.webhook_retry_base_ms,
                )?),
                poll: Duration::from_millis(positive(
                    "WEBHOOK_POLL_MS (--webhook-poll-ms)",
                    &args.webhook_poll_ms,
                )?),
            },
            qdrant: qdrant_server(args.qdrant_url, args.qdrant_api_key, args.qdrant_collection)?,
        })
    }

    /// The base URL Twilio and browsers use: `PUBLIC_URL`, or `http://` + the bound address.
    pub fn public_url_or(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// The database URL with any password replaced, for start-up logs.
    pub fn database_url_for_logs(&self) -> String {
        redact_password(self.database_url.expose_secret())
    }
}

/// The Qdrant server settings, when `QDRANT_URL` is set.
fn qdrant_server(
    url: Option<String>,
    api_key: Option<String>,
    collection: String,
) -> Result<Option<QdrantServer>, SettingsError> {
    let Some(url) = non_empty(url) else {
        return Ok(None);
    };
    let valid_name = !collection.is_empty()
        && collection.len() <= 255
        && collection
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(bad(
            "QDRANT_COLLECTION (--qdrant-collection)",
            "must be 1-255 letters, digits, `_` or `-`",
        ));
    }
    Ok(Some(QdrantServer {
        url: http_url("QDRANT_URL (--qdrant-url)", &url)?,
        api_key: non_empty(api_key).map(SecretString::from),
        collection,
    }))
}

/// A yes/no setting: `true`/`false`, `1`/`0`, `yes`/`no`.
fn flag(variable: &'static str, raw: &str) -> Result<bool, SettingsError> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        other => Err(bad(
            variable,
            format!("`{other}` is neither true nor false"),
        )),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// An `http(s)://` URL without a query, with any trailing slash removed.
fn http_url(variable: &'static str, raw: &str) -> Result<String, SettingsError> {
    match reqwest::Url::parse(raw) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.has_host()
                && url.query().is_none() =>
        {
            Ok(raw.trim_end_matches('/').to_owned())
        }
        _ => Err(bad(
            variable,
            format!("`{raw}` is not an http(s) URL without a query"),
        )),
    }
}

fn database_kind(url: &str) -> Result<DatabaseKind, SettingsError> {
    if url.starts_with("sqlite:") {
        Ok(DatabaseKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DatabaseKind::Postgres)
    } else {
        Err(bad(
            "DATABASE_URL (--database-url)",
            format!(
                "`{}` is neither a sqlite:// nor a postgres:// URL",
                redact_password(url)
            ),
        ))
    }
}

fn public_url(raw: &str) -> Result<String, SettingsError> {
    let trimmed = raw.trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(trimmed.to_owned()),
        _ => Err(bad(
            "PUBLIC_URL (--public-url)",
            format!("`{raw}` is not an http(s) URL like https://voice.example.com"),
        )),
    }
}

fn cors_origins(raw: &str) -> Result<CorsOrigins, SettingsError> {
    let origins: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    if origins.is_empty() {
        return Ok(CorsOrigins::None);
    }
    if origins.iter().any(|o| o == "*") {
        return Ok(CorsOrigins::Any);
    }
    for origin in &origins {
        if public_url(origin).is_err() || origin.trim_end_matches('/') != origin {
            return Err(bad(
                "CORS_ALLOWED_ORIGINS (--cors-allowed-origins)",
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        }
    }
    Ok(CorsOrigins::List(origins))
}

fn positive(variable: &'static str, raw: &str) -> Result<u64, SettingsError> {
    match raw.trim().parse::<u64>() {
        Ok(n) if n > 0 && n <= u32::MAX as u64 => Ok(n),
        _ => Err(bad(
            variable,
            format!("`{raw}` is not a positive whole number"),
        )),
    }
}

/// Reads the secret generated on an earlier start, or makes one and keeps it (mode 0600), so
/// tokens survive restarts without the operator having to invent a key.
fn stored_jwt_secret(data_dir: &Path) -> Result<String, SettingsError> {
    const VAR: &str = "JWT_SECRET (--jwt-secret)";
    let path = data_dir.join(JWT_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= MIN_JWT_SECRET_LEN => return Ok(s.trim().to_owned()),
        Ok(_) => {
            return Err(bad(
                VAR,
                format!("unset, and {} is shorter than {MIN_JWT_SECRET_LEN} characters; delete it to generate a new one", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(bad(VAR, format!("unset, and {} cannot be read: {e}", path.display()))),
    }
    let mut key = [0u8; 48];
    rand::rngs::OsRng.fill_bytes(&mut key);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    write_private(&path, &secret).map_err(|e| {
        bad(
            VAR,
            format!("unset, and {} cannot be written: {e}", path.display()),
        )
    })?;
    Ok(secret)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: SettingsArgs,
    }

    fn args(dir: &Path, extra: &[&str]) -> SettingsArgs {
        let mut argv = vec![
            "switchboard".to_owned(),
            "--data-dir".to_owned(),
            dir.display().to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        Cli::parse_from(argv).settings
    }

    #[test]
    fn defaults_give_sqlite_in_the_data_dir_and_a_kept_secret() {
        let dir = tempdir();
        let first = Settings::from_args(args(&dir, &[])).unwrap();
        assert_eq!(first.database_kind, DatabaseKind::Sqlite);
        assert!(first
            .database_url
            .expose_secret()
            .contains("switchboard.db"));
        assert_eq!(first.listen.to_string(), "127.0.0.1:8080");
        let second = Settings::from_args(args(&dir, &[])).unwrap();
        assert_eq!(
            first.jwt_secret.expose_secret(),
            second.jwt_secret.expose_secret()
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let dir = tempdir();
        let cases: &[(&[&str], &str)] = &[
            (&["--listen", "nowhere"], "SWITCHBOARD_LISTEN"),
            (&["--database-url", "mysql://x"], "DATABASE_URL"),
            (&["--jwt-secret", "short"], "JWT_SECRET"),
            (&["--public-url", "ftp://x"], "PUBLIC_URL"),
            (&["--redis-url", "nope"], "REDIS_URL"),
            (
                &["--request-timeout-secs", "0"],
                "SWITCHBOARD_REQUEST_TIMEOUT_SECS",
            ),
            (&["--log-format", "xml"], "SWITCHBOARD_LOG_FORMAT"),
            (
                &["--cors-allowed-origins", "not an origin"],
                "CORS_ALLOWED_ORIGINS",
            ),
            (&["--openai-api-key", "sk-1"], "ELEVENLABS_API_KEY"),
            (&["--elevenlabs-api-key", "xi-1"], "OPENAI_API_KEY"),
            (
                &[
                    "--openai-api-key",
                    "sk-1",
                    "--elevenlabs-api-key",
                    "xi-1",
                    "--openai-base-url",
                    "localhost:9090",
                ],
                "OPENAI_BASE_URL",
            ),
            (&["--twilio-account-sid", "AC1"], "TWILIO_AUTH_TOKEN"),
            (&["--callback-poll-ms", "soon"], "CALLBACK_POLL_MS"),
        ];
        for (flags, variable) in cases {
            let err = Settings::from_args(args(&dir, flags)).unwrap_err();
            assert!(
                err.to_string().starts_with(variable),
                "{flags:?} gave {err}"
            );
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let dir = tempdir();
        let settings = Settings::from_args(args(
            &dir,
            &[
                "--jwt-secret",
                "a-very-long-secret-that-must-not-leak-000",
                "--database-url",
                "postgres://app:hunter2hunter2@db/sb",
                "--openai-api-key",
                "sk-openai-must-not-leak",
                "--elevenlabs-api-key",
                "xi-eleven-must-not-leak",
            ],
        ))
        .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("must-not-leak"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(settings.database_url_for_logs(), "postgres://app:***@db/sb");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sb-settings-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
