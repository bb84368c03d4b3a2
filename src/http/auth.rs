//! `/v1/auth/*` and `/v1/me`: sign-up, login, token refresh with rotation, logout and
//! password reset.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{ClientAddr, Json, Staff};
use super::{validate, AppState};
use crate::auth::{hash_password, hash_token, verify_password, OneTimeToken, ACCESS_TOKEN_TTL};
use crate::store::{NewUser, RefreshOutcome, StoreError, Tenant, User};
use actors::domain::Role;

/// How long a refresh token (a session) lasts without use.
const REFRESH_TOKEN_TTL: chrono::Duration = chrono::Duration::days(30);
/// How long a password-reset link works.
const RESET_TOKEN_TTL: chrono::Duration = chrono::Duration::hours(1);
/// The window login limits count attempts in.
const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// A new business signs up: creates the tenant and its owner.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The business's name.
    #[schema(example = "Acme Motors")]
    pub tenant_name: String,
    /// The owner's name.
    #[schema(example = "Dana Reyes")]
    pub name: String,
    /// The owner's login email.
    #[schema(example = "dana@acme.example")]
    pub email: String,
    /// At least 10 characters.
    pub password: String,
}

/// Email and password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login email.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A refresh token, to rotate or to end its session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from login, register or the last refresh.
    pub refresh_token: String,
}

/// Asks for a password-reset link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The account's email.
    pub email: String,
}

/// Sets a new password with a reset or invitation token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    /// The token from the reset or invitation link.
    pub token: String,
    /// The new password, at least 10 characters.
    pub password: String,
}

/// A signed-in session.
#[derive(Serialize, ToSchema)]
pub struct Session {
    /// Short-lived bearer token for every other call.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    pub expires_in: i64,
    /// Single-use token that buys the next access token.
    pub refresh_token: String,
    /// Who signed in.
    pub user: User,
}

/// A new tenant and its owner's session.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    /// The owner's session.
    #[serde(flatten)]
    pub session: Session,
    /// The new tenant.
    pub tenant: Tenant,
}

/// The caller and their tenant.
#[derive(Serialize, ToSchema)]
pub struct Me {
    /// The signed-in user.
    pub user: User,
    /// Their tenant.
    pub tenant: Tenant,
}

impl AppState {
    fn session(&self, user: User, refresh: &OneTimeToken) -> Session {
        Session {
            access_token: self.jwt.issue(user.id, user.tenant_id, user.role),
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_TTL.num_seconds(),
            refresh_token: refresh.reveal().to_owned(),
            user,
        }
    }

    async fn limit_address(&self, addr: &ClientAddr) -> Result<(), ApiError> {
        let key = format!("auth-address:{}", addr.0);
        Ok(self
            .limiter
            .hit(&key, self.settings.login_limit_per_address, LOGIN_WINDOW)
            .await?)
    }

    async fn limit_email(&self, email: &str) -> Result<(), ApiError> {
        let key = format!("auth-email:{email}");
        Ok(self
            .limiter
            .hit(&key, self.settings.login_limit_per_email, LOGIN_WINDOW)
            .await?)
    }
}

/// Creates a tenant and its owner and signs the owner in.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = Registered), (status = 409, description = "email taken", body = Problem),
        (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn register(
    State(state): State<AppState>,
    addr: ClientAddr,
    Json(req): Json<RegisterRequest>,
) -> Result<(StatusCode, axum::Json<Registered>), ApiError> {
    state.limit_address(&addr).await?;
    let tenant_name = validate::text("tenant_name", &req.tenant_name, 1, 100)?;
    let name = validate::text("name", &req.name, 1, 100)?;
    let email = validate::email("email", &req.email)?;
    let password_hash = hash_password(req.password).await?;
    let owner = NewUser {
        email,
        name,
        role: Role::Owner,
        password_hash: Some(password_hash),
    };
    let (tenant, user) = state.store.register(&tenant_name, owner).await?;
    let refresh = OneTimeToken::generate(REFRESH_TOKEN_TTL);
    state.store.start_session(&user, &refresh).await?;
    let session = state.session(user, &refresh);
    Ok((
        StatusCode::CREATED,
        axum::Json(Registered { session, tenant }),
    ))
}

/// Signs in with email and password. Limited per email and per client address.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Session), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn login(
    State(state): State<AppState>,
    addr: ClientAddr,
    Json(req): Json<LoginRequest>,
) -> Result<axum::Json<Session>, ApiError> {
    state.limit_address(&addr).await?;
    let email = req.email.trim().to_lowercase();
    state.limit_email(&email).await?;
    let found = state.store.credentials_by_email(&email).await?;
    let stored_hash = found.as_ref().and_then(|c| c.password_hash.clone());
    let valid = verify_password(req.password, stored_hash).await;
    let (Some(credentials), true) = (found, valid) else {
        return Err(ApiError::unauthorized("the email or password is wrong"));
    };
    let refresh = OneTimeToken::generate(REFRESH_TOKEN_TTL);
    state
        .store
        .start_session(&credentials.user, &refresh)
        .await?;
    Ok(axum::Json(state.session(credentials.user, &refresh)))
}

/// Trades a refresh token for a new access token and a new refresh token. Each refresh token
/// works once; presenting a spent one ends every session that descends from the same login.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Session), (status = 401, body = Problem)))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<axum::Json<Session>, ApiError> {
    let next = OneTimeToken::generate(REFRESH_TOKEN_TTL);
    match state
        .store
        .rotate_refresh(&hash_token(req.refresh_token.trim()), &next)
        .await?
    {
        RefreshOutcome::Rotated(user) => Ok(axum::Json(state.session(user, &next))),
        RefreshOutcome::Reused => Err(ApiError::unauthorized(
            "this refresh token was already used; its session has been ended, sign in again",
        )),
        RefreshOutcome::Invalid => Err(ApiError::unauthorized(
            "the refresh token is unknown or expired",
        )),
    }
}

/// Ends the session the refresh token belongs to. Idempotent.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", request_body = RefreshRequest,
    responses((status = 204, description = "signed out")))]
pub async fn logout(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .end_session(&hash_token(req.refresh_token.trim()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Asks for a password-reset link. Always 202, so the answer does not reveal which emails
/// have accounts; the link is queued in the outbox for delivery by webhook and the request
/// is recorded in the audit log.
#[utoipa::path(post, path = "/v1/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, description = "if the account exists, a link is on its way"), (status = 429, body = Problem)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    addr: ClientAddr,
    Json(req): Json<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    state.limit_address(&addr).await?;
    let email = validate::email("email", &req.email)?;
    state.limit_email(&email).await?;
    if let Some(credentials) = state.store.credentials_by_email(&email).await? {
        let token = OneTimeToken::generate(RESET_TOKEN_TTL);
        state
            .store
            .request_password_reset(&credentials.user, &token)
            .await?;
    }
    Ok(StatusCode::ACCEPTED)
}

/// Sets a new password with a reset or invitation token; the token then stops working and
/// every existing session of the user ends.
#[utoipa::path(post, path = "/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 200, body = Session), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    addr: ClientAddr,
    Json(req): Json<ResetConfirm>,
) -> Result<axum::Json<Session>, ApiError> {
    state.limit_address(&addr).await?;
    let password_hash = hash_password(req.password).await?;
    let user = match state
        .store
        .use_password_token(&hash_token(req.token.trim()), &password_hash)
        .await
    {
        Ok(user) => user,
        Err(StoreError::NotFound) => {
            return Err(ApiError::bad_request(
                "the reset token is unknown, already used or expired",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let refresh = OneTimeToken::generate(REFRESH_TOKEN_TTL);
    state.store.start_session(&user, &refresh).await?;
    Ok(axum::Json(state.session(user, &refresh)))
}

/// The signed-in user and their tenant.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = Problem)))]
pub async fn me(State(state): State<AppState>, staff: Staff) -> Result<axum::Json<Me>, ApiError> {
    let tenant = state.store.tenant(staff.tenant()).await?;
    Ok(axum::Json(Me {
        user: staff.0,
        tenant,
    }))
}
