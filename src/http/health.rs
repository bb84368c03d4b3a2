//! Liveness and readiness for load balancers and orchestrators, and metrics for Prometheus.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::AppState;

/// A health answer.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`; a node that is not ready answers with a problem instead.
    pub status: &'static str,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> axum::Json<Health> {
    axum::Json(Health { status: "ok" })
}

/// The database answers and every migration this build knows is applied; a 503 problem
/// otherwise, so a load balancer sends no traffic to a node that cannot serve it.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Result<axum::Json<Health>, ApiError> {
    if *state.draining.borrow() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: this server is draining for shutdown",
        ));
    }
    state.store.check_ready().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the database is unreachable or its migrations are not applied",
        )
    })?;
    Ok(axum::Json(Health { status: "ok" }))
}

/// Prometheus metrics in the text exposition format (see `metrics_export` for what they
/// are). Served here unless `METRICS_LISTEN` puts them on an internal port of their own.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> axum::response::Response {
    if state.settings.metrics_listen.is_some() {
        return ApiError::not_found("route here: metrics are served on METRICS_LISTEN")
            .into_response();
    }
    render_metrics(&state.store).into_response()
}

/// The process's metrics, with the gauges read at scrape time brought up to date.
pub fn render_metrics(store: &crate::store::Store) -> impl IntoResponse {
    let (size, idle) = store.pool_connections();
    metrics::gauge!("switchboard_db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("switchboard_db_pool_connections", "state" => "in_use")
        .set((f64::from(size) - idle as f64).max(0.0));
    if let Some(bytes) = crate::metrics_export::resident_memory_bytes() {
        metrics::gauge!("switchboard_process_resident_memory_bytes").set(bytes as f64);
    }
    if let Some(seconds) = crate::metrics_export::cpu_seconds() {
        metrics::gauge!("switchboard_process_cpu_seconds").set(seconds);
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics_export::handle().render(),
    )
}
