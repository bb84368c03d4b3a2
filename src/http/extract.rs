//! Request extractors that fail with problem+json: a JSON body, the authenticated staff
//! member, and the client's address.

use std::net::{IpAddr, SocketAddr};

use actors::domain::TenantId;
use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};

use super::error::ApiError;
use super::AppState;
use crate::store::{Actor, StoreError, User};

/// A JSON request body whose every failure (wrong content type, malformed JSON, a missing or
/// mistyped field, too large) is a problem+json that quotes the parser's reason.
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with Content-Type: application/json".to_owned()
        }
        JsonRejection::JsonSyntaxError(e) => {
            format!("the body is not valid JSON: {}", source_text(e))
        }
        JsonRejection::JsonDataError(e) => format!("the body does not fit: {}", source_text(e)),
        JsonRejection::BytesRejection(_) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            "the request body is larger than this server accepts".to_owned()
        }
        other => other.body_text(),
    };
    ApiError::new(status, detail)
}

/// The innermost cause, which is serde's own words ("missing field `email` at line 1 …").
fn source_text(e: &dyn std::error::Error) -> String {
    let mut inner = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// The staff member behind the request's bearer token, read fresh from the store so a
/// removed user or a changed role takes effect at once, not when the token expires.
pub struct Staff(pub User);

impl Staff {
    /// The staff member's tenant: every query of the request is scoped to it.
    pub fn tenant(&self) -> TenantId {
        self.0.tenant_id
    }

    /// The staff member as the audit log records them.
    pub fn actor(&self) -> Actor {
        Actor::User(self.0.id)
    }

    /// Refuses unless the staff member is an owner or admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.0.role.can_administer() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this needs the owner or admin role; you are {}",
                self.0.role
            )))
        }
    }
}

impl Staff {
    /// Refuses viewers: `what` ("placing calls") needs a role that handles customers (owner,
    /// admin or agent).
    pub fn require_customer_role(&self, what: &str) -> Result<(), ApiError> {
        if self.0.role.can_handle_customers() {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "{what} needs the owner, admin or agent role; you are {}",
                self.0.role
            )))
        }
    }
}

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                ApiError::unauthorized("send an access token as Authorization: Bearer <token>")
            })?;
        let claims = state
            .jwt
            .verify(token.trim())
            .map_err(ApiError::unauthorized)?;
        match state.store.user(claims.tid, claims.sub).await {
            Ok(user) => Ok(Staff(user)),
            Err(StoreError::NotFound) => {
                Err(ApiError::unauthorized("this account no longer exists"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The address of the client, for per-address rate limits.
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| ClientAddr(addr.ip()))
            .ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "client address unknown")
            })
    }
}

/// An id taken from the path. One that does not parse cannot name anything, so it is a 404
/// like any other unknown id, not a 400 that would tell ids apart by shape.
pub struct PathId<T>(pub T);

impl<T, S> FromRequestParts<S> for PathId<T>
where
    T: std::str::FromStr + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::not_found("resource"))?;
        raw.parse()
            .map(PathId)
            .map_err(|_| ApiError::not_found("resource"))
    }
}

/// Query parameters whose failure is a problem+json quoting the parser's reason.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))
    }
}
