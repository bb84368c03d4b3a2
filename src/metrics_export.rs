//! Prometheus metrics: the recorder every crate's `metrics::counter!`/`histogram!`/`gauge!`
//! reports to, rendered as Prometheus text at `/metrics` (on the API's port, or on
//! `METRICS_LISTEN` alone when that is set).
//!
//! Names are `switchboard_<subsystem>_<name>_<unit>`; no label carries a call, a number or a
//! user, and tenant labels appear nowhere, so the series count stays bounded however many
//! calls and tenants a node serves. Every `_seconds` metric is a histogram with the buckets
//! of [`LATENCY_BUCKETS`], fit for `histogram_quantile` in Grafana and alert rules.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets, in seconds: fine below a second where voice latency lives, coarse
/// beyond for call lengths and ingestion.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 900.0, 1800.0,
];

/// How often histograms and summaries are compacted between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's recorder, installed on first use (once per process, however many servers
/// a test starts in it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .unwrap_or_else(|error| {
                    // Another recorder was installed first (never in this program): metrics
                    // then go there, and this handle renders nothing.
                    tracing::error!(%error, "the Prometheus recorder could not be installed");
                    PrometheusBuilder::new().build_recorder().handle()
                });
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".to_owned())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                })
                .ok();
            metrics::gauge!("switchboard_build_info", "version" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
            describe();
            handle
        })
        .clone()
}

/// Says what every metric means (Prometheus `# HELP`), and creates the series that count
/// rare things at zero, so dashboards and alert rules see them before they first happen.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!("switchboard_calls_live", "Calls live on this node now.");
    describe_counter!("switchboard_calls_total", "Calls that ended, by outcome.");
    describe_counter!(
        "switchboard_calls_refused_total",
        "Calls not admitted, by reason."
    );
    describe_histogram!(
        "switchboard_call_duration_seconds",
        Unit::Seconds,
        "Length of calls, answer to end."
    );
    describe_histogram!("switchboard_turn_stage_duration_seconds", Unit::Seconds,
        "Each stage of an agent's reply, from the end of the caller's speech; `runtime` is what switchboard added.");
    describe_counter!(
        "switchboard_provider_requests_total",
        "Attempts at provider requests, by provider, operation and result."
    );
    describe_histogram!(
        "switchboard_provider_request_duration_seconds",
        Unit::Seconds,
        "Provider answer (or first byte) times."
    );
    describe_counter!(
        "switchboard_actor_restarts_total",
        "Actors restarted by their supervisor, by kind."
    );
    describe_counter!(
        "switchboard_actor_failures_total",
        "Actors that failed, by kind."
    );
    describe_histogram!(
        "switchboard_audio_inbound_lag_seconds",
        Unit::Seconds,
        "How late callers' audio arrives (worst per second of audio)."
    );
    describe_gauge!("switchboard_sse_subscribers", "Open live-event streams.");
    describe_counter!(
        "switchboard_events_dropped_total",
        "Events dropped before reaching Redis or the webhook outbox, by reason."
    );
    describe_counter!(
        "switchboard_webhook_deliveries_total",
        "Webhook delivery attempts, by result."
    );
    describe_counter!(
        "switchboard_http_requests_total",
        "HTTP requests, by route template, method and status."
    );
    describe_histogram!(
        "switchboard_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request times, by route template."
    );
    describe_gauge!(
        "switchboard_db_pool_connections",
        "Database pool connections, by state."
    );
    describe_histogram!(
        "switchboard_knowledge_search_duration_seconds",
        Unit::Seconds,
        "Knowledge-base searches."
    );
    describe_histogram!(
        "switchboard_knowledge_ingestion_duration_seconds",
        Unit::Seconds,
        "Document ingestion, upload to ready."
    );
    describe_counter!(
        "switchboard_knowledge_documents_ingested_total",
        "Documents made searchable."
    );
    describe_counter!(
        "switchboard_knowledge_ingested_pages_total",
        "Pages of paginated documents made searchable."
    );
    describe_counter!(
        "switchboard_knowledge_auto_retrieval_total",
        "Automatic retrievals before replies, by outcome."
    );
    describe_gauge!(
        "switchboard_tenants_active",
        "Tenants with a running supervisor on this node."
    );
    describe_gauge!(
        "switchboard_conversations_loaded",
        "Customer conversations held in memory on this node (retired after CONVERSATION_IDLE)."
    );
    describe_gauge!(
        "switchboard_process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory of this process."
    );
    describe_gauge!(
        "switchboard_process_cpu_seconds",
        Unit::Seconds,
        "CPU time this process has used."
    );
    metrics::gauge!("switchboard_calls_live").increment(0.0);
    metrics::gauge!("switchboard_sse_subscribers").increment(0.0);
    metrics::gauge!("switchboard_tenants_active").increment(0.0);
    metrics::gauge!("switchboard_conversations_loaded").increment(0.0);
    for outcome in ["completed", "transferred", "failed"] {
        metrics::counter!("switchboard_calls_total", "outcome" => outcome).increment(0);
    }
    for reason in ["concurrent_limit", "monthly_minutes", "draining"] {
        metrics::counter!("switchboard_calls_refused_total", "reason" => reason).increment(0);
    }
    for actor in ["stt", "llm", "tts", "knowledge", "call", "conversation"] {
        metrics::counter!("switchboard_actor_restarts_total", "actor" => actor).increment(0);
        metrics::counter!("switchboard_actor_failures_total", "actor" => actor).increment(0);
    }
    for result in ["delivered", "retrying", "failed"] {
        metrics::counter!("switchboard_webhook_deliveries_total", "result" => result).increment(0);
    }
    for reason in ["outbox_full", "redis", "webhook_queue_full"] {
        metrics::counter!("switchboard_events_dropped_total", "reason" => reason).increment(0);
    }
    for outcome in ["hit", "empty", "over_budget", "failed"] {
        metrics::counter!("switchboard_knowledge_auto_retrieval_total", "outcome" => outcome)
            .increment(0);
    }
    metrics::counter!("switchboard_knowledge_documents_ingested_total").increment(0);
    metrics::counter!("switchboard_knowledge_ingested_pages_total").increment(0);
}

/// This process's resident memory in bytes, from `/proc/self/statm` (Linux; `None` elsewhere).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Seconds of CPU this process has used, from `/proc/self/stat` (Linux; `None` elsewhere).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
