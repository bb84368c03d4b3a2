//! Staff accounts. An email address is unique across the platform, so login needs only the
//! email and password; each user belongs to exactly one tenant.

use actors::domain::{Role, TenantId, UserId};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{Any, Transaction};

use super::tenants::time_of;
use super::{audit, delete_owned, now_ms, parse_id, Actor, Scope, Store, StoreError, Tenant};
use crate::auth::OneTimeToken;

/// A staff member as the API shows them; never carries the password hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    /// The user's id.
    #[schema(value_type = String, format = Uuid)]
    pub id: UserId,
    /// The tenant the user belongs to.
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantId,
    /// Login email, lower-case.
    pub email: String,
    /// Display name.
    pub name: String,
    /// What the user may do.
    #[schema(value_type = String, example = "admin")]
    pub role: Role,
    /// False for an invited user who has not yet chosen a password.
    pub active: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// A user together with the stored password hash, for checking a login.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The account.
    pub user: User,
    /// The Argon2id PHC string, absent until an invited user sets a password.
    pub password_hash: Option<String>,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Login email, already checked and lower-cased.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the tenant.
    pub role: Role,
    /// Argon2id hash, or `None` for an invitation.
    pub password_hash: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    tenant_id: String,
    email: String,
    name: String,
    role: String,
    password_hash: Option<String>,
    created_at: i64,
}

impl UserRow {
    pub(crate) fn into_credentials(self) -> Result<Credentials, StoreError> {
        let user = User {
            id: parse_id(&self.id)?,
            tenant_id: parse_id(&self.tenant_id)?,
            email: self.email,
            name: self.name,
            role: self
                .role
                .parse()
                .map_err(|e| StoreError::Corrupt(format!("{e}")))?,
            active: self.password_hash.is_some(),
            created_at: time_of(self.created_at)?,
        };
        Ok(Credentials {
            user,
            password_hash: self.password_hash,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "id, tenant_id, email, name, role, password_hash, created_at";

const EMAIL_TAKEN: &str = "an account with this email already exists";

async fn insert_user(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    new: &NewUser,
) -> Result<User, StoreError> {
    let now = now_ms();
    let row: UserRow = sqlx::query_as(&format!(
        "INSERT INTO users (id, tenant_id, email, name, role, password_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {USER_COLUMNS}"
    ))
    .bind(UserId::new().to_string())
    .bind(tenant.to_string())
    .bind(&new.email)
    .bind(&new.name)
    .bind(new.role.as_str())
    .bind(new.password_hash.clone())
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::refused_as(
        Some(StoreError::Conflict(EMAIL_TAKEN)),
        None,
    ))?;
    Ok(row.into_credentials()?.user)
}

/// Serialises changes to a tenant's set of owners: on PostgreSQL the no-op update takes the
/// tenant row's lock until commit; SQLite has one writer anyway.
async fn lock_tenant(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
        .bind(tenant.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Refuses a change that would leave the tenant without an owner.
async fn keep_an_owner(
    tx: &mut Transaction<'static, Any>,
    tenant: TenantId,
    losing: UserId,
) -> Result<(), StoreError> {
    let others: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE tenant_id = $1 AND role = 'owner' AND id <> $2",
    )
    .bind(tenant.to_string())
    .bind(losing.to_string())
    .fetch_one(&mut **tx)
    .await?;
    if others == 0 {
        return Err(StoreError::Conflict(
            "a tenant must keep at least one owner",
        ));
    }
    Ok(())
}

impl Store {
    /// Creates a tenant and its first owner together.
    pub async fn register(
        &self,
        tenant_name: &str,
        owner: NewUser,
    ) -> Result<(Tenant, User), StoreError> {
        let tenant = TenantId::new();
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO tenants (id, name, created_at, updated_at) VALUES ($1, $2, $3, $3)",
        )
        .bind(tenant.to_string())
        .bind(tenant_name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let user = insert_user(&mut tx, tenant, &owner).await?;
        audit::record(
            &mut tx,
            tenant,
            Actor::User(user.id),
            "tenant.registered",
            "tenant",
            Some(&tenant.to_string()),
            &serde_json::json!({ "name": tenant_name, "owner_email": user.email }),
        )
        .await?;
        tx.commit().await?;
        Ok((self.tenant(tenant).await?, user))
    }

    /// The account with this email in any tenant, for login and password reset.
    pub async fn credentials_by_email(
        &self,
        email: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        let mut tx = self.begin(Scope::Platform).await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        row.map(UserRow::into_credentials).transpose()
    }

    /// One user of the tenant.
    pub async fn user(&self, tenant: TenantId, id: UserId) -> Result<User, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row.ok_or(StoreError::NotFound)?.into_credentials()?.user)
    }

    /// Every user of the tenant, oldest first.
    pub async fn users(&self, tenant: TenantId) -> Result<Vec<User>, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let rows: Vec<UserRow> = sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.into_iter()
            .map(|r| Ok(r.into_credentials()?.user))
            .collect()
    }

    /// Creates a user without a password and an invitation token they set one with; the
    /// invitation is queued in the outbox for delivery.
    pub async fn invite_user(
        &self,
        tenant: TenantId,
        actor: Actor,
        new: NewUser,
        invitation: &OneTimeToken,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        let user = insert_user(&mut tx, tenant, &new).await?;
        super::tokens::insert_password_token(
            &mut tx,
            &user,
            super::PasswordTokenPurpose::Invite,
            invitation,
        )
        .await?;
        audit::record(
            &mut tx,
            tenant,
            actor,
            "user.invited",
            "user",
            Some(&user.id.to_string()),
            &serde_json::json!({ "email": user.email, "role": user.role }),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Gives a user another role; the last owner cannot be demoted.
    pub async fn change_role(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: UserId,
        role: Role,
    ) -> Result<User, StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        lock_tenant(&mut tx, tenant).await?;
        if role != Role::Owner {
            keep_an_owner(&mut tx, tenant, id).await?;
        }
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET role = $3, updated_at = $4 WHERE tenant_id = $1 AND id = $2 RETURNING {USER_COLUMNS}"
        ))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .bind(role.as_str())
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await?;
        let user = row.ok_or(StoreError::NotFound)?.into_credentials()?.user;
        audit::record(
            &mut tx,
            tenant,
            actor,
            "user.role_changed",
            "user",
            Some(&id.to_string()),
            &serde_json::json!({ "role": role }),
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Removes a user and their sessions; the last owner cannot be removed.
    pub async fn remove_user(
        &self,
        tenant: TenantId,
        actor: Actor,
        id: UserId,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin(Scope::Tenant(tenant)).await?;
        lock_tenant(&mut tx, tenant).await?;
        keep_an_owner(&mut tx, tenant, id).await?;
        delete_owned(
            &mut tx,
            tenant,
            actor,
            ("users", "user"),
            &id.to_string(),
            None,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
