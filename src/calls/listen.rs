//! Supervisors listening to live calls: while a call's media stream is connected on this
//! node, each frame of the caller's audio and of the agent's is offered to the call's
//! listeners as `{"event":"media","track":"inbound"|"outbound","payload":<base64 μ-law>}`,
//! the shape of Twilio's own media messages, so tools that play a Media Stream play these.
//!
//! Listening costs a call nothing while nobody listens: its frame buffer is made when the
//! first listener comes (a call nobody hears never holds one), and each frame costs one
//! atomic load. A listener that falls behind loses frames rather than slowing the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use actors::domain::CallId;
use base64::Engine;
use serde::Serialize;
use tokio::sync::broadcast;

/// Frames a listener may fall behind before it loses some: five seconds of both tracks.
const LISTEN_BUFFER: usize = 500;

/// One frame for listeners.
#[derive(Debug, Clone, Serialize)]
pub struct ListenFrame {
    /// Always `media`.
    pub event: &'static str,
    /// `inbound` (the caller) or `outbound` (the agent).
    pub track: &'static str,
    /// Base64 μ-law, 8 kHz.
    pub payload: Arc<str>,
}

/// A streaming call's frame channel, shared by its tap and the registry; made on the first
/// listen.
type Frames = Arc<OnceLock<broadcast::Sender<ListenFrame>>>;

/// The calls streaming on this node and their listeners.
#[derive(Clone, Default)]
pub struct Listeners(Arc<Mutex<HashMap<CallId, Frames>>>);

/// A streaming call's end of its listeners: dropped when the stream ends.
pub struct Tap {
    call: CallId,
    frames: Frames,
    listeners: Listeners,
}

impl Listeners {
    /// Registers `call` as streaming here, for as long as the returned tap lives.
    pub fn tap(&self, call: CallId) -> Tap {
        let frames = Frames::default();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(call, frames.clone());
        Tap {
            call,
            frames,
            listeners: self.clone(),
        }
    }

    /// A new listener of `call`, if its media stream is connected on this node.
    pub fn listen(&self, call: CallId) -> Option<broadcast::Receiver<ListenFrame>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&call)
            .map(|frames| {
                frames
                    .get_or_init(|| broadcast::channel(LISTEN_BUFFER).0)
                    .subscribe()
            })
    }
}

impl Tap {
    /// The frame channel, when someone listens.
    fn heard(&self) -> Option<&broadcast::Sender<ListenFrame>> {
        self.frames
            .get()
            .filter(|frames| frames.receiver_count() > 0)
    }

    /// Offers the caller's audio as Twilio sent it (base64).
    pub fn caller(&self, payload: &str) {
        if let Some(frames) = self.heard() {
            let _ = frames.send(ListenFrame {
                event: "media",
                track: "inbound",
                payload: payload.into(),
            });
        }
    }

    /// Offers the agent's audio (raw μ-law).
    pub fn agent(&self, mulaw: &[u8]) {
        if let Some(frames) = self.heard() {
            let payload = base64::engine::general_purpose::STANDARD.encode(mulaw);
            let _ = frames.send(ListenFrame {
                event: "media",
                track: "outbound",
                payload: payload.into(),
            });
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let mut calls = self
            .listeners
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Listeners' receivers end once the last sender (this one) is gone.
        calls.remove(&self.call);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_hear_both_tracks_only_while_the_call_streams() {
        let listeners = Listeners::default();
        let call = CallId::new();
        assert!(listeners.listen(call).is_none());
        let tap = listeners.tap(call);
        tap.caller("AAAA"); // nobody listens yet: dropped
        assert!(
            tap.frames.get().is_none(),
            "no frame buffer before a listener"
        );
        let mut ear = listeners.listen(call).unwrap();
        tap.caller("//8=");
        tap.agent(&[0xff, 0x7f]);
        let first = ear.try_recv().unwrap();
        assert_eq!((first.track, &*first.payload), ("inbound", "//8="));
        let second = ear.try_recv().unwrap();
        assert_eq!((second.track, &*second.payload), ("outbound", "/38="));
        drop(tap);
        assert!(listeners.listen(call).is_none());
        assert!(matches!(
            ear.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }
}
