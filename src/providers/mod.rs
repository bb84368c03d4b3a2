//! The real provider adapters: the vendor implementations of the runtime's ports
//! (`actors::ports`). Each module speaks one vendor's wire format (`PROTOCOLS.md`) and turns
//! its answers and failures into port values, so the engine never learns which vendor is
//! behind a port. They are tested against the provider emulator (`crate::emulator`) over
//! loopback, never against the live services.

pub mod elevenlabs;
mod elevenlabs_ws;
pub mod fallback;
pub mod openai;
pub mod openai_realtime;
pub mod retry;
pub mod stt_router;

/// Longest provider message copied into a port error.
pub(crate) const MAX_ERROR_CHARS: usize = 300;

/// A provider's message as it may be shown: cut to [`MAX_ERROR_CHARS`] and with the API key
/// removed should it appear.
/// How one attempt at a provider came out, for `switchboard_provider_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// It answered with success (first bytes, for streams).
    Ok,
    /// It answered with this HTTP status.
    Status(u16),
    /// No answer: the connection failed or broke.
    Transport,
    /// No answer in time.
    Timeout,
    /// Refused, status unknown here (the request will not work as it is).
    Refused,
    /// Failed in a way that may pass, status unknown here (5xx, rate limit, broken stream).
    Unavailable,
}

/// Counts one attempt at `provider`'s `operation` by how it came out, and times it (to the
/// answer, or its first bytes), so error rates and latencies per provider are on Grafana.
pub(crate) fn observe_attempt(
    provider: &'static str,
    operation: &str,
    started: std::time::Instant,
    attempt: Attempt,
) {
    let result = match attempt {
        Attempt::Ok => "ok",
        Attempt::Status(s) if s >= 500 => "5xx",
        Attempt::Status(429) => "429",
        Attempt::Status(_) => "4xx",
        Attempt::Transport => "transport",
        Attempt::Timeout => "timeout",
        Attempt::Refused => "refused",
        Attempt::Unavailable => "unavailable",
    };
    metrics::counter!("switchboard_provider_requests_total", "provider" => provider,
        "operation" => operation.to_owned(), "result" => result)
    .increment(1);
    metrics::histogram!("switchboard_provider_request_duration_seconds", "provider" => provider,
        "operation" => operation.to_owned())
    .record(started.elapsed().as_secs_f64());
}

pub(crate) fn scrub(message: &str, api_key: &secrecy::SecretString) -> String {
    use secrecy::ExposeSecret;
    let key = api_key.expose_secret();
    let message = if key.is_empty() {
        message.to_owned()
    } else {
        message.replace(key, "[redacted]")
    };
    message.chars().take(MAX_ERROR_CHARS).collect()
}

/// `http(s)://host/prefix` as `ws(s)://host/prefix`, without a trailing slash: the WebSocket
/// twin of an HTTP base URL (provider streams, our own media socket). `None` for any other
/// scheme.
pub fn websocket_base(http_base: &str) -> Option<String> {
    let base = http_base.trim_end_matches('/');
    if let Some(rest) = base.strip_prefix("https://") {
        Some(format!("wss://{rest}"))
    } else {
        base.strip_prefix("http://")
            .map(|rest| format!("ws://{rest}"))
    }
}
