//! Argon2id password hashing. Hashing is deliberately slow (tens of milliseconds), so it runs
//! on the blocking pool and never stalls the async workers that carry call audio.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use std::sync::LazyLock;

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longest password accepted; a bound keeps hashing cost bounded too.
const MAX_PASSWORD_LEN: usize = 256;

/// Why a password cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Fewer than [`MIN_PASSWORD_LEN`] characters.
    #[error("the password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// More than 256 characters.
    #[error("the password must be at most {MAX_PASSWORD_LEN} characters")]
    TooLong,
    /// The hasher failed, which only a broken stored hash or a full blocking pool causes.
    #[error("password hashing failed: {0}")]
    Internal(String),
}

/// Hashes a new password with Argon2id and a fresh salt, after checking its length.
pub async fn hash_password(password: String) -> Result<String, PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if chars > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Internal(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Internal(e.to_string()))?
}

/// Checks a password against a stored hash. With no stored hash it still spends the time of
/// one verification, so response time does not reveal whether an email has an account.
pub async fn verify_password(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && known
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password nobody knows, made with the same cost parameters as real ones.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(salt.as_str().as_bytes(), &salt)
        .expect("hashing a fixed-size input succeeds")
        .to_string()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let hash = hash_password("correct horse battery".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify_password("wrong horse battery".into(), Some(hash)).await);
    }

    #[tokio::test]
    async fn short_passwords_are_refused_and_missing_hashes_never_verify() {
        assert!(matches!(
            hash_password("short".into()).await,
            Err(PasswordError::TooShort)
        ));
        assert!(!verify_password("anything at all".into(), None).await);
    }
}
