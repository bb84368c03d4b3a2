//! The simulator's HTTP side: the signed form POSTs Twilio makes to the server, the voice
//! webhook when the call rings and the status callback when it ends (PROTOCOLS.md §1.1,
//! §1.6, §2).

use reqwest::Response;
use secrecy::SecretString;
use std::time::Duration;

use super::SimulatorConfig;
use crate::twilio::signature::{sign, SIGNATURE_HEADER};

/// The User-Agent Twilio's webhook requests carry, so server logs look as they will in
/// production.
pub(crate) const USER_AGENT: &str = "TwilioProxy/1.1";

/// Longest error body quoted in an error message.
const QUOTED_BODY_CHARS: usize = 500;

/// The parameters Twilio sends with every request about this call, in `status`.
pub(crate) fn call_params(config: &SimulatorConfig, status: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", config.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", config.call_sid.as_str()),
        ("CallStatus", status),
        ("Called", config.to.as_str()),
        ("Caller", config.from.as_str()),
        ("Direction", "inbound"),
        ("From", config.from.as_str()),
        ("To", config.to.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The `completed` status callback's parameters: the call's, plus how long it lasted.
pub(crate) fn completed_params(
    config: &SimulatorConfig,
    elapsed: Duration,
) -> Vec<(String, String)> {
    let mut params = call_params(config, "completed");
    params.extend([
        (
            "CallDuration".to_owned(),
            call_duration_secs(elapsed).to_string(),
        ),
        (
            "CallbackSource".to_owned(),
            "call-progress-events".to_owned(),
        ),
        ("SequenceNumber".to_owned(), "0".to_owned()),
        ("Timestamp".to_owned(), chrono::Utc::now().to_rfc2822()),
    ]);
    params
}

/// Whole seconds, any part of a second counting as one, so a call that was answered never
/// reports 0, even one that ended within its first millisecond.
fn call_duration_secs(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_nanos().div_ceil(1_000_000_000)).unwrap_or(u64::MAX)
}

/// A response's status and body (the body cut at `limit` bytes, so a server cannot make the
/// simulator buffer without bound).
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
    /// Whether the body was longer than the limit.
    pub truncated: bool,
}

impl Answer {
    /// The body shortened for an error message.
    pub fn quoted_body(&self) -> String {
        let body = self.body.trim();
        if body.chars().count() > QUOTED_BODY_CHARS {
            let cut: String = body.chars().take(QUOTED_BODY_CHARS).collect();
            format!("{cut}…")
        } else if body.is_empty() {
            "(empty body)".to_owned()
        } else {
            body.to_owned()
        }
    }

    /// Whether the status is 2xx, which is all Twilio asks of a webhook.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POSTs `params` as a form to `url`, signed as Twilio signs it.
pub(crate) async fn post_signed(
    client: &reqwest::Client,
    auth_token: &SecretString,
    url: &str,
    params: &[(String, String)],
    limit: usize,
) -> Result<Answer, reqwest::Error> {
    let response = client
        .post(url)
        .header(SIGNATURE_HEADER, sign(auth_token, url, params))
        .form(params)
        .send()
        .await?;
    read_limited(response, limit).await
}

async fn read_limited(mut response: Response, limit: usize) -> Result<Answer, reqwest::Error> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            body.extend_from_slice(&chunk[..limit - body.len()]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::call_duration_secs;
    use std::time::Duration;

    #[test]
    fn call_duration_rounds_any_part_of_a_second_up() {
        assert_eq!(call_duration_secs(Duration::from_micros(300)), 1);
        assert_eq!(call_duration_secs(Duration::from_secs(1)), 1);
        assert_eq!(call_duration_secs(Duration::from_millis(1001)), 2);
        assert_eq!(call_duration_secs(Duration::from_secs(61)), 61);
    }
}
