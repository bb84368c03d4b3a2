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
use crate::calls::{stream_twiml, Answer};
use crate::store::{StoreError, TwilioCallStatus};
use crate::texts::{self, InboundText, WebhookReply};
use crate::twilio::rest::MessageStatus;
use crate::twilio::signature::{self, SIGNATURE_HEADER};
use crate::twilio::twiml::{self, Dial, MessagingResponse, VoiceResponse};
use actors::domain::E164;
use supervisors::tenant::Refusal;

/// Said when the dialled number is not one of ours.
const NOT_IN_SERVICE: &str = "Sorry, the number you called is not in service. Goodbye.";
/// Said while the server has no speech and language providers to run the agent with.
const NOT_CONFIGURED: &str =
    "Thanks for calling. This line's assistant is not set up to take calls yet. Please try again later. Goodbye.";
/// Said when the tenant cannot take another call and has no fallback number.
const ALL_LINES_BUSY: &str =
    "Thanks for calling. All of our lines are busy right now. Please call back in a few minutes. Goodbye.";
/// Said before handing the call of a customer staff have taken over to the agent's transfer
/// number.
const CONNECTING_STAFF: &str = "Thanks for calling. Connecting you to a member of our team now.";
/// Said to a customer staff have taken over when there is no transfer number to send them to.
const STAFF_WILL_CALL_BACK: &str =
    "Thanks for calling. A member of our team will get back to you shortly. Goodbye.";
/// Said before handing a call the agent cannot take to the fallback number.
const CONNECTING_FALLBACK: &str = "All of our assistants are busy. Connecting you to a person now.";

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
    twiml_xml(response.to_xml())
}

fn twiml_xml(xml: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, twiml::CONTENT_TYPE)],
        xml,
    )
        .into_response()
}

fn goodbye(sentence: &str) -> Response {
    twiml_response(VoiceResponse::new().say(sentence).hangup())
}

/// A call is ringing one of the numbers pointed at switchboard: route it by `To` to its
/// tenant and agent, admit it, and connect its media stream. Unknown numbers hear "not in
/// service"; a tenant at its limit sends the caller to the agent's fallback number or says
/// its lines are busy.
#[utoipa::path(post, path = "/twilio/voice", tag = "twilio",
    responses((status = 200, description = "TwiML for the call", content_type = "text/xml"),
        (status = 400, description = "a webhook without a CallSid", body = Problem),
        (status = 403, description = "missing or invalid X-Twilio-Signature", body = Problem)))]
pub async fn voice(State(state): State<AppState>, form: TwilioForm) -> Result<Response, ApiError> {
    let call_sid = form
        .get("CallSid")
        .filter(|sid| !sid.is_empty())
        .ok_or_else(|| ApiError::field("CallSid", "is required"))?;
    let Some(to) = form.get("To").and_then(|to| E164::parse(to).ok()) else {
        tracing::warn!(call_sid, "a call to a number that is not E.164");
        return Ok(goodbye(NOT_IN_SERVICE));
    };
    let route = match state.store.route_number(&to).await? {
        Some(route) if our_account(&state, &form) => route,
        _ => {
            // Refused politely: the caller is not to blame for a misrouted number.
            tracing::warn!(target: "security", call_sid, %to, "refused a call that routes to no tenant (unknown number or another Twilio account)");
            return Ok(goodbye(NOT_IN_SERVICE));
        }
    };
    let from = form.get("From").unwrap_or("anonymous");
    if let Some(user) = state.store.takeover_of(route.tenant, from).await? {
        // Staff are handling this customer: the agent does not pick up.
        tracing::info!(call_sid, tenant_id = %route.tenant, user_id = %user, "a call from a customer staff have taken over");
        let agent = state.store.agent(route.tenant, route.agent).await?;
        return Ok(match agent.draft.transfer_number {
            Some(number) => twiml_response(
                VoiceResponse::new()
                    .say(CONNECTING_STAFF)
                    .dial(Dial::number(number)),
            ),
            None => goodbye(STAFF_WILL_CALL_BACK),
        });
    }
    let Some(calls) = &state.calls else {
        tracing::warn!(call_sid, tenant_id = %route.tenant, "a call arrived but no providers are configured");
        return Ok(goodbye(NOT_CONFIGURED));
    };
    let answer = match calls
        .answer_inbound(&state.store, &route, call_sid, from, &to)
        .await
    {
        Ok(answer) => answer,
        Err(StoreError::Conflict(_)) => {
            tracing::warn!(call_sid, "the voice webhook came twice for one call");
            return Ok(goodbye(ALL_LINES_BUSY));
        }
        Err(other) => return Err(other.into()),
    };
    match answer {
        Answer::Stream { token } => {
            let twiml = stream_twiml(&state.public_url, token).map_err(|e| {
                tracing::error!(error = %e, "PUBLIC_URL gives no usable stream URL");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "PUBLIC_URL gives no usable media stream URL",
                )
            })?;
            tracing::info!(call_sid, tenant_id = %route.tenant, agent_id = %route.agent, "call answered");
            Ok(twiml_xml(twiml))
        }
        Answer::Refused {
            refusal: Refusal::UnknownAgent,
            ..
        } => Ok(goodbye(NOT_IN_SERVICE)),
        Answer::Refused {
            fallback: Some(number),
            ..
        } => Ok(twiml_response(
            VoiceResponse::new()
                .say(CONNECTING_FALLBACK)
                .dial(Dial::number(number)),
        )),
        Answer::Refused { fallback: None, .. } => Ok(goodbye(ALL_LINES_BUSY)),
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
    if status.is_final() {
        if let Some(calls) = &state.calls {
            calls.stream_never_came(call_sid);
        }
    }
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

/// Refuses a webhook that cannot be routed to exactly one tenant, as a security warning:
/// a signed request for an account or number that is not ours is a misconfiguration at
/// best and a probe at worst.
fn unroutable(what: &'static str, detail: String) -> ApiError {
    tracing::warn!(target: "security", %detail, "refused a Twilio {what} webhook that routes to no tenant");
    ApiError::new(StatusCode::NOT_FOUND, detail)
}

/// Whether a webhook's `AccountSid` is the configured account's (any account when none is
/// configured: signatures alone then vouch for the request).
fn our_account(state: &AppState, form: &TwilioForm) -> bool {
    match (&state.settings.twilio_rest, form.get("AccountSid")) {
        (Some(rest), sent) => sent == Some(rest.account_sid.as_str()),
        (None, _) => true,
    }
}

/// A text arrived at one of the numbers pointed at switchboard: it is stored in the
/// customer's conversation with the number's tenant and answered by that number's agent —
/// in the TwiML answer when the tenant prefers, otherwise through the REST API. A text to
/// a number no tenant has, or from another Twilio account, is refused (404) and logged as
/// a security warning. A retried webhook (same `MessageSid`) is answered with nothing.
#[utoipa::path(post, path = "/twilio/sms", tag = "twilio",
    responses((status = 200, description = "TwiML: empty, or the agent's reply", content_type = "text/xml"),
        (status = 403, description = "missing or invalid X-Twilio-Signature", body = Problem),
        (status = 404, description = "the text routes to no tenant", body = Problem),
        (status = 422, description = "a webhook without MessageSid or From", body = Problem)))]
pub async fn sms(State(state): State<AppState>, form: TwilioForm) -> Result<Response, ApiError> {
    let message_sid = form
        .get("MessageSid")
        .filter(|sid| !sid.is_empty())
        .ok_or_else(|| ApiError::field("MessageSid", "is required"))?
        .to_owned();
    let from = form
        .get("From")
        .filter(|from| !from.is_empty())
        .ok_or_else(|| ApiError::field("From", "is required"))?
        .to_owned();
    if !our_account(&state, &form) {
        return Err(unroutable(
            "messaging",
            format!("the text {message_sid} is for another Twilio account"),
        ));
    }
    let to = form.get("To").unwrap_or_default();
    let routed = match E164::parse(to) {
        Ok(number) => state
            .store
            .route_number(&number)
            .await?
            .map(|r| (number, r)),
        Err(_) => None,
    };
    let Some((number, route)) = routed else {
        return Err(unroutable(
            "messaging",
            format!("no tenant has the number {to:?} the text {message_sid} was sent to"),
        ));
    };
    let text = InboundText {
        message_sid,
        from,
        body: form.get("Body").unwrap_or_default().to_owned(),
        media_urls: InboundText::media_from(form.get("NumMedia"), |n| {
            form.get(&format!("MediaUrl{n}")).map(str::to_owned)
        }),
        segments: form
            .get("NumSegments")
            .and_then(|n| n.parse::<u32>().ok())
            .map_or(1, i64::from),
    };
    let reply = match texts::receive_text(&state, &route, &number, text).await? {
        WebhookReply::Nothing => MessagingResponse::new(),
        WebhookReply::Message(body) => MessagingResponse::new().message(body.as_str()),
    };
    Ok(twiml_xml(reply.to_xml()))
}

/// Twilio reports the delivery of a text we sent (`StatusCallback`). Always 204 for a signed
/// request, so Twilio does not retry; an unknown MessageSid is logged and ignored, and a
/// report older than the recorded status (they can arrive out of order) changes nothing.
#[utoipa::path(post, path = "/twilio/sms/status", tag = "twilio",
    responses((status = 204, description = "status recorded"),
        (status = 403, description = "missing or invalid X-Twilio-Signature", body = Problem),
        (status = 404, description = "a report for another Twilio account", body = Problem),
        (status = 422, description = "no MessageSid, or a MessageStatus Twilio does not send", body = Problem)))]
pub async fn sms_status(
    State(state): State<AppState>,
    form: TwilioForm,
) -> Result<StatusCode, ApiError> {
    let message_sid = form
        .get("MessageSid")
        .filter(|sid| !sid.is_empty())
        .ok_or_else(|| ApiError::field("MessageSid", "is required"))?;
    let status = form
        .get("MessageStatus")
        .and_then(MessageStatus::parse)
        .ok_or_else(|| ApiError::field("MessageStatus", "is not a Twilio message status"))?;
    if !our_account(&state, &form) {
        return Err(unroutable(
            "message status",
            format!("the report on {message_sid} is for another Twilio account"),
        ));
    }
    let error_code = form.get("ErrorCode").filter(|c| !c.is_empty());
    if !state
        .store
        .apply_message_status(message_sid, status.as_str(), error_code)
        .await?
    {
        tracing::warn!(
            message_sid,
            "a delivery report for a text switchboard does not know"
        );
    }
    Ok(StatusCode::NO_CONTENT)
}
