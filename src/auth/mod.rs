//! Who is calling the API: password hashing, access tokens, refresh and one-time tokens, and
//! login rate limits. The HTTP layer asks; the store keeps hashes only.

mod jwt;
mod password;
mod rate_limit;
mod token;

pub use jwt::{AccessClaims, JwtKeys, ACCESS_TOKEN_TTL};
pub use password::{hash_password, verify_password, PasswordError, MIN_PASSWORD_LEN};
pub use rate_limit::{RateLimitError, RateLimiter};
pub use token::{hash_token, OneTimeToken};
