//! Opaque random tokens (refresh tokens, password links). The plain token goes to its holder
//! once; the store keeps only its SHA-256, so a database leak yields no usable token.

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// A freshly minted token: the plain value for its holder and the hash for the store.
pub struct OneTimeToken {
    plain: SecretString,
    /// Hex SHA-256 of the plain token, as stored.
    pub hash: String,
    /// When it stops working, in Unix milliseconds.
    pub expires_at_ms: i64,
}

impl OneTimeToken {
    /// 256 random bits, valid for `ttl` from now.
    pub fn generate(ttl: chrono::Duration) -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let plain = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Self {
            hash: hash_token(&plain),
            plain: plain.into(),
            expires_at_ms: (chrono::Utc::now() + ttl).timestamp_millis(),
        }
    }

    /// The plain token, for the one place it is handed over.
    pub fn reveal(&self) -> &str {
        self.plain.expose_secret()
    }
}

/// The stored form of a presented token.
pub fn hash_token(plain: &str) -> String {
    hex::encode(Sha256::digest(plain.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_unique_and_stored_only_as_their_hash() {
        let a = OneTimeToken::generate(chrono::Duration::minutes(5));
        let b = OneTimeToken::generate(chrono::Duration::minutes(5));
        assert_ne!(a.reveal(), b.reveal());
        assert_eq!(a.hash, hash_token(a.reveal()));
        assert_ne!(a.hash, a.reveal());
        assert_eq!(a.hash.len(), 64);
    }
}
