//! When each byte of an answer goes out: the first-byte latency, the gap between streamed
//! chunks, and the faults that stall or cut a stream. Every endpoint sends through here, so
//! latency and faults mean the same thing for HTTP bodies, SSE and WebSocket messages.
//!
//! Every wait also watches the emulator's stop signal, so a stalled request (60 s by
//! default) never keeps a stopping emulator alive.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use tokio::sync::watch;

use super::script::FaultKind;

/// How long a cut stream waits before dropping its connection, so the bytes sent before the
/// cut reach the client as they would from a real connection that broke.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(20);

/// Sleeps for `duration` unless the emulator stops first; `false` means it is stopping.
pub(crate) async fn pause(shutdown: &watch::Receiver<bool>, duration: Duration) -> bool {
    let mut shutdown = shutdown.clone();
    if *shutdown.borrow() {
        return false;
    }
    if duration.is_zero() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => true,
        // An error means the handle is gone: stopping as well.
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

/// Whether the next chunk of a stream may go out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Send it.
    Send,
    /// Drop the connection now, without ending the response (a cut, or the end of a stall).
    Cut,
}

/// How one response is delivered once its first byte is due: the gap between chunks and the
/// mid-stream fault, if any.
#[derive(Clone, Debug)]
pub(crate) struct Delivery {
    per_chunk: Duration,
    cut_after: Option<usize>,
    stall_after: Option<(usize, Duration)>,
    shutdown: watch::Receiver<bool>,
}

impl Delivery {
    /// The delivery for a request hit by `fault`. Status faults never get this far; an HTTP
    /// stall before the headers is served before a delivery exists, while on a WebSocket a
    /// stall at chunk 0 is the stall before the first audio message.
    pub(crate) fn new(
        per_chunk_ms: u64,
        fault: Option<&FaultKind>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (cut_after, stall_after) = match fault {
            Some(FaultKind::Cut { after_chunks }) => (Some(*after_chunks as usize), None),
            Some(FaultKind::Stall { ms, after_chunks }) => (
                None,
                Some((*after_chunks as usize, Duration::from_millis(*ms))),
            ),
            _ => (None, None),
        };
        Self {
            per_chunk: Duration::from_millis(per_chunk_ms),
            cut_after,
            stall_after,
            shutdown,
        }
    }

    /// Whether this delivery will break the stream: callers then avoid side effects a
    /// retry should not see (such as consuming a scripted transcript).
    pub(crate) fn is_faulty(&self) -> bool {
        self.cut_after.is_some() || self.stall_after.is_some()
    }

    /// Waits as the stream's pacing and faults require before chunk `index` (0-based);
    /// `pace` says whether the per-chunk gap applies (not before the first chunk, whose
    /// wait is the first-byte latency).
    pub(crate) async fn gate(&self, index: usize, pace: bool) -> Gate {
        if self.cut_after == Some(index) {
            return Gate::Cut;
        }
        if let Some((n, stall)) = self.stall_after {
            if n == index {
                pause(&self.shutdown, stall).await;
                return Gate::Cut;
            }
        }
        if pace && !pause(&self.shutdown, self.per_chunk).await {
            return Gate::Cut;
        }
        Gate::Send
    }

    /// Breaks the stream at its end when a stall or cut is still to come after `sent`
    /// chunks: a stream that ends before reaching the fault's count is broken at its end
    /// instead, so the fault is never silently skipped.
    pub(crate) async fn break_at_end(&self, sent: usize) -> Gate {
        if let Some((n, stall)) = self.stall_after {
            if n >= sent {
                pause(&self.shutdown, stall).await;
                return Gate::Cut;
            }
        }
        if self.cut_after.is_some_and(|n| n >= sent) {
            return Gate::Cut;
        }
        Gate::Send
    }

    /// An HTTP body sending `chunks` paced and faulted. A cut or stall beyond the last
    /// chunk is moved onto the last chunk, so the end of the answer is always lost. A cut
    /// ends the body with an error, which makes hyper drop the connection without the
    /// final chunk: the client sees a truncated body, as with a real connection reset.
    pub(crate) fn body(mut self, chunks: Vec<Bytes>) -> Body {
        let last = chunks.len().saturating_sub(1);
        self.cut_after = self.cut_after.map(|n| n.min(last));
        self.stall_after = self.stall_after.map(|(n, d)| (n.min(last), d));
        struct Stream {
            chunks: VecDeque<Bytes>,
            index: usize,
            delivery: Delivery,
            done: bool,
        }
        let state = Stream {
            chunks: chunks.into(),
            index: 0,
            delivery: self,
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let chunk = st.chunks.pop_front()?;
            match st.delivery.gate(st.index, st.index > 0).await {
                Gate::Send => {
                    st.index += 1;
                    Some((Ok(chunk), st))
                }
                Gate::Cut => {
                    // Let hyper flush what was sent before the connection drops; failing at
                    // once would take buffered bytes (even the headers) down with it.
                    pause(&st.delivery.shutdown, FLUSH_BEFORE_CUT).await;
                    st.done = true;
                    Some((
                        Err(std::io::Error::other("provider emulator: stream cut")),
                        st,
                    ))
                }
            }
        });
        Body::from_stream(stream)
    }
}

/// A complete (non-streamed) body split in two, so a cut fault can deliver half of it.
pub(crate) fn halves(body: Vec<u8>) -> Vec<Bytes> {
    let body = Bytes::from(body);
    let mid = body.len() / 2;
    vec![body.slice(..mid), body.slice(mid..)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery and the stop signal's sender, which the test keeps alive: a dropped
    /// sender reads as "stopping".
    fn delivery(fault: Option<FaultKind>) -> (Delivery, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        (Delivery::new(0, fault.as_ref(), rx), tx)
    }

    #[tokio::test]
    async fn a_cut_stops_the_stream_at_its_count() {
        let (d, _stop) = delivery(Some(FaultKind::Cut { after_chunks: 2 }));
        assert_eq!(d.gate(0, false).await, Gate::Send);
        assert_eq!(d.gate(1, true).await, Gate::Send);
        assert_eq!(d.gate(2, true).await, Gate::Cut);
    }

    #[tokio::test]
    async fn a_fault_past_the_end_breaks_the_end() {
        let (d, _stop) = delivery(Some(FaultKind::Cut { after_chunks: 9 }));
        assert_eq!(d.break_at_end(3).await, Gate::Cut);
        let (clean, _stop2) = delivery(None);
        assert_eq!(clean.break_at_end(3).await, Gate::Send);
    }

    // Real (short) time: the workspace's tokio has no `test-util` feature for paused time.
    #[tokio::test]
    async fn a_stall_waits_then_cuts() {
        let (d, _stop) = delivery(Some(FaultKind::Stall {
            ms: 50,
            after_chunks: 1,
        }));
        let started = tokio::time::Instant::now();
        assert_eq!(d.gate(0, false).await, Gate::Send);
        assert_eq!(d.gate(1, true).await, Gate::Cut);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn pauses_end_when_the_emulator_stops() {
        let (tx, rx) = watch::channel(false);
        let waiting = tokio::spawn(async move { pause(&rx, Duration::from_secs(3600)).await });
        tx.send_replace(true);
        assert!(!waiting.await.unwrap());
    }
}
