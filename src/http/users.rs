//! `/v1/users`: the tenant's staff. Listing is open to every role; inviting, changing roles
//! and removing need owner or admin, only an owner may touch owners, and the last owner can
//! be neither demoted nor removed.

use actors::domain::{Role, UserId};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, Problem};
use super::extract::{Json, PathId, Staff};
use super::{validate, AppState};
use crate::auth::OneTimeToken;
use crate::store::{NewUser, User};

/// How long an invitation link works.
const INVITE_TTL: chrono::Duration = chrono::Duration::days(7);

/// Users of a tenant.
#[derive(Serialize, ToSchema)]
pub struct UserList {
    /// Oldest first.
    pub items: Vec<User>,
}

/// Invites a staff member; they choose a password through the invitation link.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    /// Their login email.
    pub email: String,
    /// Their name.
    pub name: String,
    /// Their role.
    #[schema(value_type = String, example = "agent")]
    pub role: Role,
}

/// A new role.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// The role to give.
    #[schema(value_type = String, example = "viewer")]
    pub role: Role,
}

/// Only an owner may grant the owner role or change an owner.
fn may_manage(staff: &Staff, current: Option<Role>, wanted: Role) -> Result<(), ApiError> {
    staff.require_admin()?;
    if staff.0.role != Role::Owner && (wanted == Role::Owner || current == Some(Role::Owner)) {
        return Err(ApiError::forbidden(
            "only an owner may grant, change or remove the owner role",
        ));
    }
    Ok(())
}

/// Every user of the tenant.
#[utoipa::path(get, path = "/v1/users", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserList)))]
pub async fn list(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<axum::Json<UserList>, ApiError> {
    Ok(axum::Json(UserList {
        items: state.store.users(staff.tenant()).await?,
    }))
}

/// One user.
#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = User), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<UserId>,
) -> Result<axum::Json<User>, ApiError> {
    Ok(axum::Json(state.store.user(staff.tenant(), id).await?))
}

/// Invites a staff member. The invitation link is queued for delivery (`user.invited`).
#[utoipa::path(post, path = "/v1/users", tag = "users", security(("bearer" = [])), request_body = InviteRequest,
    responses((status = 201, body = User), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn invite(
    State(state): State<AppState>,
    staff: Staff,
    Json(req): Json<InviteRequest>,
) -> Result<(StatusCode, axum::Json<User>), ApiError> {
    may_manage(&staff, None, req.role)?;
    let new = NewUser {
        email: validate::email("email", &req.email)?,
        name: validate::text("name", &req.name, 1, 100)?,
        role: req.role,
        password_hash: None,
    };
    let invitation = OneTimeToken::generate(INVITE_TTL);
    let user = state
        .store
        .invite_user(staff.tenant(), staff.actor(), new, &invitation)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(user)))
}

/// Changes a user's role.
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), request_body = RoleChange,
    params(("id" = String, Path)),
    responses((status = 200, body = User), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn change_role(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<UserId>,
    Json(req): Json<RoleChange>,
) -> Result<axum::Json<User>, ApiError> {
    staff.require_admin()?;
    let current = state.store.user(staff.tenant(), id).await?;
    may_manage(&staff, Some(current.role), req.role)?;
    Ok(axum::Json(
        state
            .store
            .change_role(staff.tenant(), staff.actor(), id, req.role)
            .await?,
    ))
}

/// Removes a user and ends their sessions.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "removed"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    staff: Staff,
    PathId(id): PathId<UserId>,
) -> Result<StatusCode, ApiError> {
    staff.require_admin()?;
    let current = state.store.user(staff.tenant(), id).await?;
    may_manage(&staff, Some(current.role), current.role)?;
    state
        .store
        .remove_user(staff.tenant(), staff.actor(), id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
