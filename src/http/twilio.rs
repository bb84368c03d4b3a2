//! Twilio's webhooks. Every request must carry a valid `X-Twilio-Signature` over
//! `PUBLIC_URL` + the path (and query) and its form parameters; anything else is refused with
//! 403 and changes nothing. Answers are TwiML; a caller always hears a polite sentence, never
//! an error tone.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::{ApiError, Problem};
use super::AppState;
use crate::store::TwilioCallStatus;
use crate::twilio::signature::{self, SIGNATURE_HEADER};
use crate::twilio::twiml::{self, VoiceResponse};
use actors::domain::E164;

/// Said when the dialled number is not one of ours.
const NOT_IN_SERVICE: &str = "Sorry, the number you called is not in service. Goodbye.";
/// Said while the runtime has no speech and language providers to run the agent with.
const NOT_CONFIGURED: &str =
    "Thanks for calling. This line's assistant is not set up to take calls yet. Please try again later. Goodbye.";

/// The form parameters of a webhook whose signature checked out.
pub struct TwilioForm(Vec<(String, String)>);

impl TwilioForm {
    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<AppState> for TwilioForm {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let Some(token) = state.settings.twilio_auth_token.clone() else {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Twilio is not configured here: set TWILIO_AUTH_TOKEN",
            ));
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let url = format!("{}{path}", state.public_url);
        let sent = req
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this server accepts",
            )
        })?;
        let params: Vec<(String, String)> = serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not a form: {e}")))?;
        signature::validate(&token, &url, &params, sent.as_deref()).map_err(|e| {
            tracing::warn!(%url, error = %e, "refused a Twilio webhook");
            ApiError::forbidden("the request is not signed by Twilio for this URL")
        })?;
        Ok(Self(params))
    }
}

fn twiml_response(response: VoiceResponse) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, twiml::CONTENT_TYPE)],
        response.to_xml(),
    )
        .into_response()
}

fn goodbye(sentence: &str) -> Response {
    twiml_response(VoiceResponse::new().say(sentence).hangup())
}

/// A call is ringing one of the numbers pointed at switchboard: route it by `To` to its
/// tenant and agent. Until the phone pipeline is wired in, a known number is answered with
/// a polite "not set up yet" and an unknown one with "not in service".
#[utoipa::path(post, path = "/twilio/voice", tag = "twilio",
    responses((status = 200, description = "TwiML for the call", content_type = "text/xml"),
        (status = 403, description = "missing or invalid X-Twilio-Signature", body = Problem)))]
pub async fn voice(State(state): State<AppState>, form: TwilioForm) -> Result<Response, ApiError> {
    let call_sid = form.get("CallSid").unwrap_or("-");
    let Some(to) = form.get("To").and_then(|to| E164::parse(to).ok()) else {
        tracing::warn!(call_sid, "a call to a number that is not E.164");
        return Ok(goodbye(NOT_IN_SERVICE));
    };
    match state.store.route_number(&to).await? {
        None => {
            tracing::warn!(call_sid, %to, "a call to a number no tenant has");
            Ok(goodbye(NOT_IN_SERVICE))
        }
        Some(route) => {
            tracing::info!(call_sid, tenant_id = %route.tenant, agent_id = %route.agent, "call answered: not configured");
            Ok(goodbye(NOT_CONFIGURED))
        }
    }
}

/// Twilio reports a call's progress (`StatusCallback`): status, and on completion its
/// duration. Always 204 for a signed request, so Twilio does not retry; a CallSid that is
/// not ours is logged and ignored.
#[utoipa::path(post, path = "/twilio/voice/status", tag = "twilio",
    responses((status = 204, description = "status recorded"),
        (status = 400, description = "a CallStatus Twilio does not send", body = Problem),
        (status = 403, description = "missing or invalid X-Twilio-Signature", body = Problem)))]
pub async fn voice_status(
    State(state): State<AppState>,
    form: TwilioForm,
) -> Result<StatusCode, ApiError> {
    let call_sid = form
        .get("CallSid")
        .ok_or_else(|| ApiError::field("CallSid", "is required"))?;
    let status = form
        .get("CallStatus")
        .and_then(TwilioCallStatus::parse)
        .ok_or_else(|| ApiError::field("CallStatus", "is not a Twilio call status"))?;
    let duration = match form.get("CallDuration") {
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|d| *d >= 0)
                .ok_or_else(|| ApiError::field("CallDuration", "is not a number of seconds"))?,
        ),
        None => None,
    };
    if !state
        .store
        .apply_call_status(call_sid, status, duration)
        .await?
    {
        tracing::warn!(
            call_sid,
            "a status callback for a call switchboard does not know"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
