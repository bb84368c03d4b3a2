//! Short-lived access tokens: HS256 JWTs carrying user, tenant and role. Only HS256 is
//! accepted, so `alg: none` and algorithm-confusion tokens are refused.

use actors::domain::{Role, TenantId, UserId};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// How long an access token lives; clients refresh after that.
pub const ACCESS_TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(15);

/// What an access token says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The user.
    pub sub: UserId,
    /// The user's tenant.
    pub tid: TenantId,
    /// The user's role when the token was issued (the server re-reads it on every request).
    pub role: Role,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
}

/// The keys that sign and check access tokens, made once from `JWT_SECRET`.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    /// Keys from the configured secret.
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
            validation,
        }
    }

    /// Signs a token for this user, valid for [`ACCESS_TOKEN_TTL`].
    pub fn issue(&self, user: UserId, tenant: TenantId, role: Role) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: user,
            tid: tenant,
            role,
            iat: now,
            exp: now + ACCESS_TOKEN_TTL.num_seconds(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail")
    }

    /// Checks signature, algorithm and expiry; the error text is safe to show the caller.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, String> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "the access token has expired; refresh it".to_owned()
                }
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    "the access token must be signed with HS256".to_owned()
                }
                _ => "the access token is not valid".to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> JwtKeys {
        JwtKeys::new(&SecretString::from(
            "0123456789abcdef0123456789abcdef".to_owned(),
        ))
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let (user, tenant) = (UserId::new(), TenantId::new());
        let claims = keys()
            .verify(&keys().issue(user, tenant, Role::Admin))
            .unwrap();
        assert_eq!(
            (claims.sub, claims.tid, claims.role),
            (user, tenant, Role::Admin)
        );
        assert_eq!(claims.exp - claims.iat, 900);
    }

    #[test]
    fn tampered_unsigned_and_foreign_tokens_are_refused() {
        let token = keys().issue(UserId::new(), TenantId::new(), Role::Viewer);
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(&parts[1]).unwrap()).unwrap();
        parts[1] = engine.encode(payload.replace("viewer", "owner"));
        assert!(keys().verify(&parts.join(".")).is_err(), "tampered payload");

        let none_header = engine.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(keys().verify(&unsigned).is_err(), "alg none");

        let other = JwtKeys::new(&SecretString::from(
            "another-secret-another-secret-xx".to_owned(),
        ));
        assert!(keys()
            .verify(&other.issue(UserId::new(), TenantId::new(), Role::Owner))
            .is_err());
    }

    #[test]
    fn expired_tokens_say_so() {
        let now = chrono::Utc::now().timestamp();
        let claims = AccessClaims {
            sub: UserId::new(),
            tid: TenantId::new(),
            role: Role::Owner,
            iat: now - 3600,
            exp: now - 60,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(
            keys().verify(&token).unwrap_err(),
            "the access token has expired; refresh it"
        );
    }
}
