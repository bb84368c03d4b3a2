//! A call's phone leg on Twilio: the [`Telephony`] port over a Media Stream and the REST API.
//!
//! Audio, marks and `clear` go into a queue the media socket drains; the queue exists from
//! the moment the voice webhook starts the call, so the greeting is synthesised while Twilio
//! is still opening the stream and plays the instant it connects. Hang-up closes the stream
//! (with nothing after `<Connect>` in the TwiML, Twilio then ends the call) and, when the REST
//! API is configured, also ends the call there; transfers and texts need the REST API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actors::domain::{CallId, TenantId, E164};
use actors::ports::{CallInfo, PortError, PortResult, Speaker, Telephony};
use async_trait::async_trait;
use ractor::ActorRef;
use supervisors::call::CallMsg;
use tokio::sync::mpsc;

use crate::texts::{SendError, Texter};
use crate::twilio::rest::{TwilioClient, TwilioError};
use crate::twilio::twiml::{Dial, VoiceResponse};

/// What the call asks of its media socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegCommand {
    /// Play this mu-law audio.
    Audio(Vec<u8>),
    /// Report when playback reaches this point.
    Mark(String),
    /// Drop unplayed audio.
    Clear,
    /// Close the stream: the call is over.
    HangUp,
}

/// The [`Telephony`] port of one Twilio call.
pub struct TwilioLeg {
    /// Set once Twilio has given the call its SID (at once for an inbound call).
    call_sid: Arc<OnceLock<String>>,
    commands: mpsc::UnboundedSender<LegCommand>,
    rest: Option<TwilioClient>,
    /// Texts during the call go out, and into the conversation, through it.
    texter: Texter,
    tenant: TenantId,
    customer: String,
    business_number: E164,
}

impl TwilioLeg {
    /// A leg for `call_sid`, with the queue its media socket will drain.
    pub fn new(
        call_sid: Arc<OnceLock<String>>,
        rest: Option<TwilioClient>,
        texter: Texter,
        call: &CallInfo,
    ) -> (Self, mpsc::UnboundedReceiver<LegCommand>) {
        let (commands, queue) = mpsc::unbounded_channel();
        let leg = Self {
            call_sid,
            commands,
            rest,
            texter,
            tenant: call.tenant,
            customer: call.customer.clone(),
            business_number: call.business_number.clone(),
        };
        (leg, queue)
    }

    /// The REST client and the call's SID, which `what` needs.
    fn rest(&self, what: &str) -> PortResult<(&TwilioClient, &str)> {
        let rest = self.rest.as_ref().ok_or_else(|| {
            PortError::Refused(format!(
                "{what} needs Twilio's REST API: set TWILIO_ACCOUNT_SID"
            ))
        })?;
        let sid = self
            .call_sid
            .get()
            .ok_or_else(|| PortError::Unavailable("the call has no CallSid yet".to_owned()))?;
        Ok((rest, sid))
    }
}

fn port_error(error: TwilioError) -> PortError {
    match error {
        TwilioError::Timeout(after) => PortError::TimedOut(after),
        TwilioError::Api { status, .. } if status < 500 => PortError::Refused(error.to_string()),
        other => PortError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl Telephony for TwilioLeg {
    fn send_audio(&self, mulaw: &[u8]) {
        let _ = self.commands.send(LegCommand::Audio(mulaw.to_vec()));
    }

    fn mark(&self, name: &str) {
        let _ = self.commands.send(LegCommand::Mark(name.to_owned()));
    }

    fn clear(&self) {
        let _ = self.commands.send(LegCommand::Clear);
    }

    async fn hang_up(&self) -> PortResult<()> {
        let _ = self.commands.send(LegCommand::HangUp);
        match self.rest("a hang-up") {
            Ok((rest, sid)) => rest.hang_up(sid).await.map(|_| ()).map_err(port_error),
            // Closing the stream ends the call: nothing follows `<Connect>` in its TwiML.
            Err(_) => Ok(()),
        }
    }

    async fn transfer(&self, to: &E164) -> PortResult<()> {
        let (rest, sid) = self.rest("a transfer")?;
        let twiml = VoiceResponse::new().dial(Dial::number(to.clone())).to_xml();
        rest.redirect_twiml(sid, &twiml)
            .await
            .map(|_| ())
            .map_err(port_error)
    }

    async fn send_sms(&self, body: &str) -> PortResult<()> {
        let to = E164::parse(&self.customer).map_err(|_| {
            PortError::Refused(format!(
                "the caller `{}` cannot receive texts",
                self.customer
            ))
        })?;
        let numbers = (&self.business_number, &to);
        match self
            .texter
            .send(self.tenant, numbers, (Speaker::Agent, None), body, 0)
            .await
        {
            Ok(_) => Ok(()),
            Err(SendError::NotConfigured) => Err(PortError::Refused(
                "a text message needs Twilio's REST API: set TWILIO_ACCOUNT_SID".to_owned(),
            )),
            Err(SendError::Twilio(error)) => Err(port_error(error)),
            Err(SendError::Store(error)) => {
                tracing::warn!(tenant_id = %self.tenant, %error, "a text sent during a call was not stored");
                Ok(())
            }
        }
    }
}

/// A started call waiting for Twilio to open its media stream.
pub struct PendingLeg {
    /// Our id of the call, which its stream token must name.
    pub call_id: CallId,
    /// Whose call it is, for the logs of its stream.
    pub tenant: TenantId,
    /// The call's actor.
    pub call: ActorRef<CallMsg>,
    /// What the call has already asked of the phone (usually the greeting).
    pub commands: mpsc::UnboundedReceiver<LegCommand>,
}

/// Calls answered by the webhook whose stream has not connected yet, by CallSid. A leg not
/// claimed within the timeout is a caller who hung up while it rang: its call is ended.
#[derive(Clone, Default)]
pub struct PendingLegs {
    legs: Arc<Mutex<HashMap<String, PendingLeg>>>,
}

impl PendingLegs {
    /// Parks a call until its stream connects, or ends it after `timeout`.
    pub fn park(&self, call_sid: String, leg: PendingLeg, timeout: Duration) {
        let call_id = leg.call_id;
        self.lock().insert(call_sid, leg);
        let legs = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let abandoned = {
                let mut parked = legs.lock();
                let sid = parked
                    .iter()
                    .find(|(_, leg)| leg.call_id == call_id)
                    .map(|(sid, _)| sid.clone());
                sid.and_then(|sid| parked.remove(&sid))
            };
            if let Some(abandoned) = abandoned {
                tracing::warn!(%call_id, "the media stream never connected; ending the call");
                let _ = abandoned.call.send_message(CallMsg::CallerHungUp);
            }
        });
    }

    /// Takes the call waiting for this stream; a second socket for the same call finds none.
    pub fn claim(&self, call_sid: &str) -> Option<PendingLeg> {
        self.lock().remove(call_sid)
    }

    /// Takes the call waiting for this stream if it is `call_id`: a token for another call
    /// leaves it waiting for its own stream.
    pub fn claim_for(&self, call_sid: &str, call_id: CallId) -> Option<PendingLeg> {
        let mut legs = self.lock();
        if legs.get(call_sid)?.call_id != call_id {
            return None;
        }
        legs.remove(call_sid)
    }

    /// Re-files a parked outbound call under the SID Twilio gave it.
    pub fn rename(&self, from: &str, to: String) {
        let mut legs = self.lock();
        if let Some(leg) = legs.remove(from) {
            legs.insert(to, leg);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PendingLeg>> {
        self.legs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
