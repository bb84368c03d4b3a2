//! Stream tokens: how the media WebSocket knows a connection is a call we started. The voice
//! webhook (or an outbound dial) puts a short-lived HS256 token in the `<Stream>`'s
//! `<Parameter>`s; Twilio hands it back in `start.customParameters`, and the socket is
//! accepted only if the token verifies, has not expired, names the CallSid of `start.callSid`
//! (an inbound call's token carries it) and the call waiting under that CallSid (an outbound
//! call's SID is only known once Twilio has accepted the dial). Its key is derived from
//! `JWT_SECRET` under its own label, so neither kind of token passes as the other.

use actors::domain::{AgentId, CallId, TenantId, E164};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long Twilio has to open an inbound call's stream after the webhook answered.
pub const INBOUND_STREAM_TTL_SECS: i64 = 30;
/// How long an outbound call may ring and be answered before its stream opens.
pub const OUTBOUND_STREAM_TTL_SECS: i64 = 120;
/// The `<Parameter>` name that carries the token.
pub const STREAM_TOKEN_PARAMETER: &str = "token";
/// Audience of stream tokens; access tokens carry none.
const AUDIENCE: &str = "twilio-media-stream";

/// What a stream token grants: one call's media, and what the socket needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamGrant {
    /// Twilio's CallSid, when known at issue (inbound); must equal `start.callSid`.
    pub call_sid: Option<String>,
    /// Our call.
    pub call_id: CallId,
    /// Whose call it is.
    pub tenant: TenantId,
    /// The agent answering.
    pub agent: AgentId,
    /// The caller's number.
    pub customer: String,
    /// The tenant's number that was dialled.
    pub business_number: String,
}

impl StreamGrant {
    /// The business number as a typed value (it was a valid E.164 when issued).
    pub fn business_number(&self) -> Option<E164> {
        E164::parse(&self.business_number).ok()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(flatten)]
    grant: StreamGrant,
    aud: String,
    exp: i64,
}

/// Why a stream was refused; the text goes in the WebSocket close reason, so it says what
/// is wrong without revealing anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamTokenError {
    /// No token parameter.
    #[error("no stream token")]
    Missing,
    /// Bad signature, wrong audience, malformed, or expired.
    #[error("invalid or expired stream token")]
    Invalid,
    /// A good token for another call.
    #[error("the stream token is for another call")]
    OtherCall,
}

/// Issues and checks stream tokens.
#[derive(Clone)]
pub struct StreamTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl StreamTokens {
    /// Keys derived from the server's JWT secret.
    pub fn new(jwt_secret: &SecretString) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(jwt_secret.expose_secret().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(b"switchboard twilio media stream token v1");
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 2;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// A token for `grant`, valid for `ttl_secs`.
    pub fn issue(&self, grant: &StreamGrant, ttl_secs: i64) -> String {
        let claims = Claims {
            grant: grant.clone(),
            aud: AUDIENCE.to_owned(),
            exp: chrono::Utc::now().timestamp() + ttl_secs,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing with an HMAC key cannot fail")
    }

    /// The grant of `token`, if it is valid and for the call `call_sid`.
    pub fn verify(
        &self,
        token: Option<&str>,
        call_sid: &str,
    ) -> Result<StreamGrant, StreamTokenError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(StreamTokenError::Missing)?;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| StreamTokenError::Invalid)?
            .claims;
        if claims
            .grant
            .call_sid
            .as_deref()
            .is_some_and(|sid| sid != call_sid)
        {
            return Err(StreamTokenError::OtherCall);
        }
        Ok(claims.grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(call_sid: &str) -> StreamGrant {
        StreamGrant {
            call_sid: Some(call_sid.to_owned()),
            call_id: CallId::new(),
            tenant: TenantId::new(),
            agent: AgentId::new(),
            customer: "+14155550100".to_owned(),
            business_number: "+14155550199".to_owned(),
        }
    }

    fn tokens(secret: &str) -> StreamTokens {
        StreamTokens::new(&SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_token_opens_only_its_own_call() {
        let keys = tokens("a-secret-of-at-least-thirty-two-chars!");
        let issued = grant("CA1");
        let token = keys.issue(&issued, 30);
        assert_eq!(keys.verify(Some(&token), "CA1"), Ok(issued));
        assert_eq!(
            keys.verify(Some(&token), "CA2"),
            Err(StreamTokenError::OtherCall)
        );
        assert_eq!(keys.verify(None, "CA1"), Err(StreamTokenError::Missing));
        assert_eq!(keys.verify(Some(""), "CA1"), Err(StreamTokenError::Missing));
    }

    #[test]
    fn forged_tampered_and_access_tokens_are_refused() {
        let keys = tokens("a-secret-of-at-least-thirty-two-chars!");
        let other = tokens("another-secret-of-at-least-thirty-two!!");
        let forged = other.issue(&grant("CA1"), 30);
        assert_eq!(
            keys.verify(Some(&forged), "CA1"),
            Err(StreamTokenError::Invalid)
        );
        let mut tampered = keys.issue(&grant("CA1"), 30);
        tampered.insert(tampered.len() - 3, 'x');
        assert_eq!(
            keys.verify(Some(&tampered), "CA1"),
            Err(StreamTokenError::Invalid)
        );
        let access = crate::auth::JwtKeys::new(&SecretString::from(
            "a-secret-of-at-least-thirty-two-chars!".to_owned(),
        ))
        .issue(
            actors::domain::UserId::new(),
            TenantId::new(),
            actors::domain::Role::Owner,
        );
        assert_eq!(
            keys.verify(Some(&access), "CA1"),
            Err(StreamTokenError::Invalid)
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let keys = tokens("a-secret-of-at-least-thirty-two-chars!");
        let claims = Claims {
            grant: grant("CA1"),
            aud: AUDIENCE.to_owned(),
            exp: chrono::Utc::now().timestamp() - 60,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &keys.encoding).unwrap();
        assert_eq!(
            keys.verify(Some(&token), "CA1"),
            Err(StreamTokenError::Invalid)
        );
    }
}
