//! The HTTP API: routes, the layers every request passes (request id, trace, timeout, body
//! limit, CORS, compression, problem+json for every error), and the OpenAPI document that
//! is generated from the same route list, so it cannot miss a route.

mod agents;
mod analytics;
mod auth;
mod callbacks;
mod calls;
mod conversations;
mod dashboard;
pub mod error;
mod events;
mod extract;
mod health;
mod knowledge;
mod leads;
mod media;
mod phone_numbers;
mod tenant;
mod twilio;
mod users;
mod validate;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, Method, Request};
use axum::response::IntoResponse;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use health::render_metrics;

use crate::auth::{JwtKeys, RateLimiter};
use crate::calls::CallService;
use crate::events::EventBus;
use crate::knowledge::ingest::KnowledgeBase;
use crate::settings::{CorsOrigins, Settings};
use crate::store::Store;
use crate::texts::Texter;
use error::ApiError;

/// What every handler can reach. Cheap to clone: everything inside is shared.
#[derive(Clone)]
pub struct AppState {
    /// The repository.
    pub store: Store,
    /// Access-token keys.
    pub jwt: JwtKeys,
    /// Login and sign-up limits.
    pub limiter: Arc<RateLimiter>,
    /// The checked settings.
    pub settings: Arc<Settings>,
    /// The base URL Twilio reaches this server at, without a trailing slash; webhook
    /// signatures are computed over it.
    pub public_url: Arc<str>,
    /// Phone calls, when the speech and language providers are configured.
    pub calls: Option<Arc<CallService>>,
    /// Texts from the agent and staff (through Twilio's REST API, when configured).
    pub texter: Texter,
    /// Tenants' documents and the search over them.
    pub knowledge: Arc<KnowledgeBase>,
    /// Live events, for the dashboard's streams and everything that publishes.
    pub events: Arc<EventBus>,
    /// Outbound webhooks: URL checks and the endpoint cache.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// True once the server is draining for shutdown: not ready, streams told to go.
    pub draining: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// A tenant's agents or limits changed: live runtime state picks the change up.
    pub fn tenant_changed(&self, tenant: actors::domain::TenantId) {
        if let Some(calls) = &self.calls {
            calls.config_changed(tenant);
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "switchboard", description = "Multi-tenant runtime for AI voice and SMS agents."),
    modifiers(&BearerAuth),
    components(schemas(error::Problem, error::FieldError))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every route, with its OpenAPI description gathered as it is registered.
fn api_routes() -> OpenApiRouter<AppState> {
    small_body_routes()
        .merge(call_webhook_routes())
        .merge(upload_routes())
}

/// Twilio's call webhooks, which run on the store's thread (see [`on_store_thread`]).
fn call_webhook_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(twilio::voice))
        .routes(routes!(twilio::voice_status))
}

/// Runs the request on the store's thread. A call's webhooks are mostly database work that
/// a call's start and end wait for; on the runtime busy with thousands of calls' audio, each
/// of their round trips to SQLite's one writer connection waited its turn while holding it.
async fn on_store_thread(
    State(state): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match state.store.on_own_thread(next.run(request)).await {
        Ok(response) => response,
        Err(stopped) => ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            stopped.to_string(),
        )
        .into_response(),
    }
}

/// The routes that take documents: bodies up to `SWITCHBOARD_MAX_DOCUMENT_BYTES`.
fn upload_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(knowledge::upload, knowledge::list))
}

/// Every other route: bodies up to `SWITCHBOARD_MAX_BODY_BYTES`.
fn small_body_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::refresh))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::request_password_reset))
        .routes(routes!(auth::confirm_password_reset))
        .routes(routes!(auth::me))
        .routes(routes!(users::list, users::invite))
        .routes(routes!(users::get, users::change_role, users::remove))
        .routes(routes!(tenant::get, tenant::update))
        .routes(routes!(tenant::audit_log))
        .routes(routes!(agents::list, agents::create))
        .routes(routes!(agents::get, agents::update, agents::delete))
        .routes(routes!(agents::validate_variables))
        .routes(routes!(leads::list, leads::create))
        .routes(routes!(leads::get, leads::update, leads::delete))
        .routes(routes!(leads::changes))
        .routes(routes!(leads::call))
        .routes(routes!(phone_numbers::list, phone_numbers::create))
        .routes(routes!(
            phone_numbers::get,
            phone_numbers::update,
            phone_numbers::delete
        ))
        .routes(routes!(calls::place, calls::list))
        .routes(routes!(calls::get))
        .routes(routes!(calls::hang_up))
        .routes(routes!(calls::transfer))
        .routes(routes!(calls::say))
        .routes(routes!(calls::listen))
        .routes(routes!(callbacks::list, callbacks::create))
        .routes(routes!(callbacks::get))
        .routes(routes!(callbacks::cancel))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::send))
        .routes(routes!(conversations::take_over, conversations::release))
        .routes(routes!(knowledge::get, knowledge::delete))
        .routes(routes!(knowledge::search))
        .routes(routes!(twilio::sms))
        .routes(routes!(twilio::sms_status))
        .routes(routes!(media::media))
        .routes(routes!(events::stream))
        .routes(routes!(events::ticket))
        .routes(routes!(analytics::summary))
        .routes(routes!(analytics::usage))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::redeliver))
}

/// The OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// This API's OpenAPI 3 document, generated from the routes themselves.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "OpenAPI 3 document")))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    static DOCUMENT: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    axum::Json(DOCUMENT.get_or_init(openapi).clone())
}

/// The whole application router with its layers.
pub fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let request_id = HeaderName::from_static("x-request-id");
    // Multipart framing comes on top of the document itself.
    let upload_limit = settings.max_document_bytes.saturating_add(64 * 1024);
    let call_webhooks = Router::from(call_webhook_routes()).route_layer(
        axum::middleware::from_fn_with_state(state.clone(), on_store_thread),
    );
    Router::from(small_body_routes())
        .merge(call_webhooks)
        .layer(RequestBodyLimitLayer::new(settings.max_body_bytes))
        .merge(Router::from(upload_routes()).layer(RequestBodyLimitLayer::new(upload_limit)))
        .merge(dashboard::routes())
        .with_state(state)
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(axum::http::StatusCode::SERVICE_UNAVAILABLE, settings.request_timeout))
        .layer(axum::middleware::from_fn(error::problem_for_bare_errors))
        .layer(axum::middleware::from_fn(count_request))
        .layer(CompressionLayer::new())
        .layer(cors(&settings.cors_origins))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }).on_response(DefaultOnResponse::new().level(tracing::Level::INFO)))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// Counts each request by route (the path template, so ids make no new series), method and
/// status, and times it.
async fn count_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("switchboard_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("switchboard_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

fn cors(origins: &CorsOrigins) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER]);
    match origins {
        CorsOrigins::None => base,
        CorsOrigins::Any => base.allow_origin(AllowOrigin::any()),
        CorsOrigins::List(list) => base.allow_origin(AllowOrigin::list(
            list.iter().filter_map(|o| o.parse().ok()),
        )),
    }
}
