//! Refresh tokens (rotating, revocable by family) and one-time password tokens (reset and
//! invitation). Only SHA-256 hashes of tokens are stored; the plain token of a password link
//! is written once, to the outbox, for delivery to the user.

use actors::domain::TenantId;
use serde::Serialize;
use sqlx::{Any, Transaction};

use super::users::{UserRow, USER_COLUMNS};
use super::{audit, now_ms, Actor, Scope, Store, StoreError, User};
use crate::auth::OneTimeToken;

/// Why a password token was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PasswordTokenPurpose {
    /// The user forgot their password.
    Reset,
    /// An admin invited the user, who has no password yet.
    Invite,
}

impl PasswordTokenPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Reset => "reset",
            Self::Invite => "invite",
        }
    }

    /// The outbox event that carries the link to the user.
    fn event_type(self) -> &'static str {
        match self {
            Self::Reset => "user.password_reset_requested",
            Self::Invite => "user.invited",
        }
    }
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The token was valid: it is now spent and the new one replaces it.
    Rotated(User),
    /// The token had already been used or revoked: its whole family is now revoked.
    Reused,
    /// No such token, or it has expired.
    Invalid,
}

#[derive(sqlx::FromRow)]
struct RefreshRow {
    id: String,
    tenant_id: String,
    user_id: String,
    family_id: String,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
}

async fn insert_refresh(
    tx: &mut Transaction<'static, Any>,
    tenant: &str,
    user: &str,
    family: &str,
    token: &OneTimeToken,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, tenant_id, user_id, family_id, token_hash, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(tenant)
    .bind(user)
    .bind(family)
    .bind(&token.hash)
    .bind(token.expires_at_ms)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn revoke_family(tx: &mut Transaction<'static, Any>, family: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
    )
    .bind(family)
    .bind(now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Stores a password token and queues the message that carries it to the user.
pub(crate) async fn insert_password_token(
    tx: &mut Transaction<'static, Any>,
    user: &User,
    purpose: PasswordTokenPurpose,
    token: &OneTimeToken,
) -> Result<(), StoreError> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO password_tokens (id, tenant_id, user_id, purpose, token_hash, expires_at, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(user.tenant_id.to_string())
    .bind(user.id.to_string())
    .bind(purpose.as_str())
    .bind(&token.hash)
    .bind(token.expires_at_ms)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    let payload = serde_json::json!({
        "user_id": user.id,
        "email": user.email,
        "name": user.name,
        "token": token.reveal(),
        "expires_at": chrono::DateTime::from_timestamp_millis(token.expires_at_ms),
    });
    super::webhooks::enqueue_in(tx, user.tenant_id, purpose.event_type(), &payload, now).await
}

impl Store {
    /// Starts a new session (a new refresh-token family) for a user who just proved who they are.
    pub async fn start_session(&self, user: &User, token: &OneTimeToken) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(user.tenant_id)).await?;
        let family = uuid::Uuid::now_v7().to_string();
        insert_refresh(
            &mut tx,
            &user.tenant_id.to_string(),
            &user.id.to_string(),
            &family,
            token,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends the refresh token with hash `presented` and stores `next` in its place. A token
    /// presented twice means it was stolen or replayed, so its whole family is revoked.
    pub async fn rotate_refresh(
        &self,
        presented: &str,
        next: &OneTimeToken,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let row: Option<RefreshRow> = sqlx::query_as(
            "SELECT id, tenant_id, user_id, family_id, expires_at, used_at, revoked_at
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(presented)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(RefreshOutcome::Invalid);
        };
        let now = now_ms();
        if row.used_at.is_some() || row.revoked_at.is_some() {
            revoke_family(&mut tx, &row.family_id).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused);
        }
        if row.expires_at <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let spent = sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL")
            .bind(&row.id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if spent == 0 {
            // Another request spent it between our read and this write: a replay race.
            revoke_family(&mut tx, &row.family_id).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Reused);
        }
        insert_refresh(&mut tx, &row.tenant_id, &row.user_id, &row.family_id, next).await?;
        let user: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(&row.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(user) = user else {
            return Ok(RefreshOutcome::Invalid);
        };
        tx.commit().await?;
        Ok(RefreshOutcome::Rotated(user.into_credentials()?.user))
    }

    /// Ends the session the refresh token with hash `presented` belongs to (logout). Unknown
    /// tokens are ignored, so logging out twice is harmless.
    pub async fn end_session(&self, presented: &str) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(presented)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(family) = family {
            revoke_family(&mut tx, &family).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a password-reset request: the token for the user and an audit entry.
    pub async fn request_password_reset(
        &self,
        user: &User,
        token: &OneTimeToken,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(user.tenant_id)).await?;
        insert_password_token(&mut tx, user, PasswordTokenPurpose::Reset, token).await?;
        audit::record(
            &mut tx,
            user.tenant_id,
            Actor::System,
            "user.password_reset_requested",
            "user",
            Some(&user.id.to_string()),
            &serde_json::json!({ "email": user.email }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Spends a password token (reset or invitation) and sets the new password hash. Every
    /// session of the user ends, so a stolen refresh token dies with the old password.
    /// An unknown, spent or expired token is `NotFound`.
    pub async fn use_password_token(
        &self,
        presented: &str,
        password_hash: &str,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let now = now_ms();
        let found: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE password_tokens SET used_at = $2
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
             RETURNING tenant_id, user_id, purpose",
        )
        .bind(presented)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let (tenant, user_id, purpose) = found.ok_or(StoreError::NotFound)?;
        let row: UserRow = sqlx::query_as(&format!(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}"
        ))
        .bind(&user_id)
        .bind(password_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
        )
        .bind(&user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let user = row.into_credentials()?.user;
        let tenant: TenantId = super::parse_id(&tenant)?;
        audit::record(
            &mut tx,
            tenant,
            Actor::User(user.id),
            "user.password_set",
            "user",
            Some(&user_id),
            &serde_json::json!({ "via": purpose }),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Events waiting in the outbox for the tenant, oldest first: what the webhook
    /// dispatcher delivers (password links today).
    pub async fn outbox_events(
        &self,
        tenant: TenantId,
        event_type: &str,
    ) -> Result<Vec<serde_json::Value>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT payload FROM outbox_events WHERE tenant_id = $1 AND event_type = $2 ORDER BY created_at, id",
        )
        .bind(tenant.to_string())
        .bind(event_type)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter().map(|r| super::parse_json(r)).collect()
    }
}
